"""No secret in any line the server writes: a real ``fastflyer run`` on port 0, logging at
debug to the console and to files, with an access log, serves a project whose routes receive
secrets (headers, cookies, query, JSON and form bodies), log what they received, call out
with a token in the query and fail on the answer, and raise exceptions holding a password
URL. Each planted secret must then be found 0 times in the console, in every log file and
in the access log, while the text around it (hosts, names) is still there.
"""

from __future__ import annotations

import contextlib
import http.server
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_launch import env_for, healthy_address, started, wait_for

FASTFLYER = str(Path(sys.executable).parent / "fastflyer")
STOP_WITHIN = 30.0  # seconds from SIGTERM to the end of the process

ROUTES = '''
from fastapi import Request

from fastflyer import APIRouter, logger, requests

router = APIRouter(prefix="/leaky", tags=["leaky"])


@router.get("/upstream")
def upstream(url: str, request: Request):
    key = request.headers["x-api-key"]
    requests.get(url, params={"token": key, "page": "2"}).raise_for_status()
    return {"data": None}


@router.get("/crash")
async def crash(request: Request):
    password = request.headers["x-db-password"]
    raise RuntimeError(f"cannot reach mysql://app:{password}@db.internal:3306/shop")


@router.get("/echo")
async def echo(request: Request):
    logger.debug("echo {} headers {}", request.url, dict(request.headers))
    for name, value in request.headers.items():
        logger.debug("{}: {}", name, value)
    return {"data": None}


@router.post("/json")
async def json_body(request: Request):
    body = await request.json()
    logger.debug("json body {} raw {}", body, await request.body())
    raise ValueError(f"login refused for {body}")


@router.post("/form")
async def form_body(request: Request):
    raw = await request.body()
    logger.debug("form body {}", raw.decode())
    raise PermissionError(f"form refused: {raw.decode()}")
'''


def _planted(label: str) -> str:
    # no stem of a secret's name in it, so a hit is the value itself
    return f"zq{label}{secrets.token_hex(6)}"


class _Refusing(http.server.BaseHTTPRequestHandler):
    """Answers every GET 401, as an upstream refusing the token does."""

    def do_GET(self) -> None:
        body = b'{"error": "unauthorized"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@contextlib.contextmanager
def refusing_upstream() -> Iterator[str]:
    """A local HTTP server on 127.0.0.1, port 0, answering 401; its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def leaky_project(tmp_path: Path) -> Path:
    project = tmp_path / "leaky"
    (project / "app" / "leaky").mkdir(parents=True)
    (project / "main.py").write_text("from fastflyer import FlyerAPI\n\n"
                                     "app = FlyerAPI(app_path=__file__)\n")
    (project / "app" / "__init__.py").write_text("")
    (project / "app" / "leaky" / "__init__.py").write_text(textwrap.dedent(ROUTES))
    return project


@pytest.mark.parametrize("command", ["run", "serve"])
def test_planted_secrets_reach_no_log_line(tmp_path, leaky_project, command):
    planted = {name: _planted(name) for name in (
        "apikey", "dbpass", "bearer", "cookie", "session", "query", "sig", "jsonpw",
        "jsonkey", "formpw", "formsecret")}
    logs = tmp_path / "logs"
    access = logs / "access.log"
    console = tmp_path / "console.log"
    env = env_for(tmp_path, flyer_console_log_level="debug", flyer_file_log_level="debug",
                  flyer_log_path=str(logs), flyer_access_log="1",
                  flyer_access_logfile=str(access), flyer_graceful_timeout="1")
    args = [FASTFLYER, command, "--app-dir", str(leaky_project), "--host", "127.0.0.1",
            "--port", "0", *(["--workers", "1"] if command == "serve" else [])]
    with refusing_upstream() as upstream, \
            started(args, leaky_project, env, console, new_session=True) as process:
        url = healthy_address(process, console)
        with httpx.Client(base_url=f"{url}/flyer/leaky", timeout=30) as client:
            # (a) an outgoing call with the token in its query, failing on the 401
            answer = client.get("/upstream", params={"url": f"{upstream}/v1/orders"},
                                headers={"X-Api-Key": planted["apikey"]})
            assert answer.status_code == 500, answer.text
            # (b) an exception whose message holds a password URL
            answer = client.get("/crash", headers={"X-Db-Password": planted["dbpass"]})
            assert answer.status_code == 500, answer.text
            # (c) secrets in headers, cookies, query, JSON and form bodies
            answer = client.get(
                "/echo",
                params={"access_token": planted["query"], "X-Amz-Signature": planted["sig"],
                        "page": "2"},
                headers={"Authorization": f"Bearer {planted['bearer']}",
                         "X-Api-Key": planted["apikey"],
                         "Cookie": f"theme=dark; sessionid={planted['session']}; "
                                   f"tracker={planted['cookie']}"})
            assert answer.status_code == 200, answer.text
            answer = client.post("/json", json={"user": "bob", "password": planted["jsonpw"],
                                                "api_key": planted["jsonkey"]})
            assert answer.status_code == 500, answer.text
            answer = client.post("/form", data={"username": "bob",
                                                "password": planted["formpw"],
                                                "client_secret": planted["formsecret"]})
            assert answer.status_code == 500, answer.text
        # every answered request has its access line (written within a second)
        wait_for("access lines", lambda: access.exists()
                 and len(access.read_text().splitlines()) >= 6, process, console)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_WITHIN)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after SIGTERM:\n{console.read_text()}") from None

    texts = {path.name: path.read_text(errors="replace") for path in
             [console, *sorted(p for p in logs.rglob("*") if p.is_file())]}
    assert {"console.log", "access.log", "fastkit.log", "fastkit.error.log"} <= texts.keys()
    everything = "\n".join(texts.values())
    leaks = {(name, file) for name, secret in planted.items() for file, text in texts.items()
             if secret in text}
    assert not leaks, f"planted secrets found: {sorted(leaks)}\n{everything}"

    # what surrounds them is still told
    host = upstream.removeprefix("http://")
    for log in ("fastkit.log", "fastkit.error.log", "console.log"):
        text = texts[log]
        assert "HTTPStatusError" in text and f"{host}/v1/orders?token=***&page=2" in text, log
        assert "Traceback (most recent call last)" in text, log
        assert "mysql://app:***@db.internal:3306/shop" in text, log
        assert "'password': '***'" in text and "'user': 'bob'" in text, log
        assert "password=***&client_secret=***" in text, log
    for log in ("fastkit.log", "console.log"):  # the debug lines
        text = texts[log]
        assert "access_token=***" in texts[log] and "X-Amz-Signature=***" in text, log
        assert "authorization: ***" in text and "'authorization': '***'" in text, log
        assert "cookie: ***" in text and "x-api-key: ***" in text, log
    assert "access_token=***&X-Amz-Signature=***&page=2" in texts["access.log"]
