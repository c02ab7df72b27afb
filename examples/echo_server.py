"""A small httpbin-like HTTP server: what the README's HTTP client examples call as ``base_url``.

    make echo-server                     # http://127.0.0.1:8081; ECHO_PORT=9001 for another
    python3 examples/echo_server.py --port 0     # any free port, printed

Standard library only, so it starts at once, with or without the project installed. It
answers httpbin's paths: ``/get``, ``/post``, ``/put``, ``/patch``, ``/delete`` and
``/anything`` echo the request as JSON (method, url, args, headers as sent, data, json);
``/headers``; ``/status/<code>``; ``/stream/<n>`` (n JSON lines, chunked); ``/delay/<s>``
(at most 10 s). The first line it prints says where it listens; then one line per request.
Ctrl-C stops it with status 0.
"""

from __future__ import annotations

import argparse
import errno
import json
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

METHOD_PATHS = {"get": {"GET", "HEAD"}, "post": {"POST"}, "put": {"PUT"},
                "patch": {"PATCH"}, "delete": {"DELETE"}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "echo-server"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request, from log_request, on stdout

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        print(f"{self.command} {self.path} {code}", flush=True)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while size := int(self.rfile.readline().strip() or b"0", 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return data
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None,
              ) -> None:
        body = b"" if payload is None else json.dumps(payload, indent=2).encode() + b"\n"
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _echo(self, body: bytes) -> dict[str, Any]:
        split = urlsplit(self.path)
        try:
            as_json = json.loads(body) if body else None
        except ValueError:
            as_json = None
        return {
            "method": self.command,
            "url": f"http://{self.headers.get('Host', '')}{self.path}",
            "args": {k: v[0] if len(v) == 1 else v for k, v in parse_qs(split.query).items()},
            "headers": dict(self.headers.items()),
            "origin": self.client_address[0],
            "data": body.decode("utf-8", "replace"),
            "json": as_json,
        }

    def _handle(self) -> None:
        parts = [p for p in urlsplit(self.path).path.split("/") if p]
        body = self._body()
        kind, arg = [*parts, "", ""][:2]
        if kind in METHOD_PATHS and len(parts) == 1:
            if self.command not in METHOD_PATHS[kind]:
                self._send(405, {"error": f"{self.path} takes {', '.join(METHOD_PATHS[kind])}"})
            else:
                self._send(200, self._echo(body))
        elif kind == "anything":
            self._send(200, self._echo(body))
        elif kind == "headers" and len(parts) == 1:
            self._send(200, {"headers": dict(self.headers.items())})
        elif kind == "status" and arg.isdigit() and 100 <= int(arg) <= 999:
            self._send(int(arg))
        elif kind == "stream" and arg.isdigit():
            echo = self._echo(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(min(int(arg), 100)):
                line = json.dumps({"id": i, "url": echo["url"], "args": echo["args"]}).encode()
                line += b"\n"
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif kind == "delay" and arg.replace(".", "", 1).isdigit():
            time.sleep(min(float(arg), 10.0))
            self._send(200, self._echo(body))
        else:
            self._send(404, {"error": f"no such path: {self.path}"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)  # Ctrl-C and SIGTERM are how it is meant to stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="echo_server.py",
        description="A small httpbin-like HTTP server (the README's base_url).")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081,
                        help="port (default: 8081; 0: any free port, printed)")
    args = parser.parse_args(argv)
    try:
        server = EchoServer((args.host, args.port), Handler)
    except OSError as exc:
        why = (f"port {args.port} is already in use" if exc.errno == errno.EADDRINUSE
               else exc.strerror or str(exc))
        print(f"echo-server: error: cannot listen on {args.host}:{args.port}: {why}; choose "
              "another port with --port N, e.g. make echo-server ECHO_PORT=9001 (0: any free "
              "port)", file=sys.stderr)
        return 1
    host, port = args.host, server.server_port
    print(f'echo server on http://{host}:{port} (Ctrl-C stops); in Python: '
          f'base_url = "http://{host}:{port}"', flush=True)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
