"""FastKit HTTP client demo: real retries and request logging against a local server.

    make httpx-demo      # or: .venv/bin/python examples/httpx_demo.py

A small server on 127.0.0.1 fails on purpose (503 with Retry-After, then a 503 that
stays), and a port nobody listens on refuses the connection, so you can watch the client
retry, give up honestly and log each call once.
"""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from fastkit.httpx import AsyncClient, Client, aiorequests, requests, status
from fastkit.logging import logger
from fastkit.request_id import bind_request_id


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits: dict[str, int] = {}  # noqa: RUF012 - demo state

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        count = self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path.startswith("/flaky") and count <= 2:
            self._send(503, {"error": "busy"}, {"Retry-After": "1"})
        elif self.path.startswith("/down"):
            self._send(503, {"error": "down for maintenance"})
        else:
            self._send(200, {"path": self.path, "hit": count,
                             "request_id": self.headers.get("X-Request-ID")})

    def _send(self, code: int, payload: dict[str, Any], headers: dict[str, str] | None = None,
              ) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    logger.info("demo server on {}", base)

    with bind_request_id("demo-request-1"):
        response = requests.get(f"{base}/flaky", headers={"Authorization": "Bearer secret"})
    print(f"1. flaky endpoint: {response.status_code} after retries -> {response.json()}")

    with Client(stop_max_attempt_number=2, wait_exponential_multiplier=0.2) as client:
        response = client.get(f"{base}/down")
    print(f"2. gave up honestly: real status {response.status_code}, body {response.json()}")

    try:
        requests.get("http://127.0.0.1:9/", retry={"wait_exponential_multiplier": 0.1})
    except httpx.ConnectError as error:
        print(f"3. connection refused, raised as httpx.ConnectError: {error.__notes__[-1]}")

    async def fan_out() -> list[int]:
        async with AsyncClient(base_url=base) as client:
            responses = await asyncio.gather(*(client.get(f"/item/{i}") for i in range(5)))
        shared = await aiorequests.get(f"{base}/shared")
        return [r.status_code for r in responses] + [shared.status_code]

    print(f"4. async fan-out: {asyncio.run(fan_out())}")
    print(f"5. status codes: {status.HTTP_604_THIRD_PARTY_TIMEOUT_ERROR} = "
          f"{status.describe(604)} ({status.phrase(604)})")
    server.shutdown()


if __name__ == "__main__":
    main()
