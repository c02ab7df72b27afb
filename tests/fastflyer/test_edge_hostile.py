"""The HTTP edge against a hostile client, through a real ``fastflyer run --port 0``: raw
requests (dot segments, a preflight without its Origin, malformed heads) that a polite
client library would never send, on a project with a static site mounted at ``/`` (the
catch-all a single-page app adds after its API routes).

- auth: a path that starts like a health check but climbs out of it
  (``/health_check/../secret.txt``, ``%2e%2e``, ``..%2f``) is protected, since the static
  mount resolves it to ``/secret.txt``;
- auth with CORS: only a real preflight (``Origin`` and ``Access-Control-Request-Method``)
  passes without credentials; without the ``Origin`` the CORS layer passes it on, so it
  would have run an ``OPTIONS`` route;
- ``HEAD`` runs as ``GET`` on the API's routes though the catch-all mount also matches
  every path (it answered 404 before);
- a request the HTTP parser refuses is a 400 in the envelope with a request id and
  ``nosniff``, as every other answer.
"""

from __future__ import annotations

import base64
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_launch import FASTFLYER, env_for, healthy_address, started

from waiting import wait_for

USER, PASSWORD = "ops", "s3cret-pass"
ORIGIN = "https://app.example"
GOOD = ("Authorization", "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
SECRET = "SECRET-FILE-CONTENT"

MAIN = '''
from pathlib import Path

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from fastflyer import FlyerAPI

app = FlyerAPI(app_path=__file__)
router = APIRouter()


@router.get("/shop")
def shop():
    return {"shop": True}


app.include_app("shop", router)


@app.get("/root-status")
def root_status():
    return {"status": "ok"}


@app.options("/options-route")
def options_route():
    return {"ran": "the OPTIONS route"}


class Order(BaseModel):
    sku: str


@app.post("/orders/{shop}")
def order(shop: str, body: Order):
    return {"shop": shop, "sku": body.sku}


@app.get("/both")
def both_get():
    return {"from": "GET"}


@app.head("/both")
def both_head():
    return Response(headers={"X-From": "HEAD"})


app.mount("/", StaticFiles(directory=Path(__file__).parent / "site", html=True), name="site")
'''


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the served project, its console output (``run.log``) and ``logs`` are."""
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def url(root: Path) -> Iterator[str]:
    """A project with auth and CORS on and a static site at ``/``, served for real."""
    project = root / "proj"
    (project / "site").mkdir(parents=True)
    (project / "site" / "secret.txt").write_text(SECRET)
    (project / "site" / "index.html").write_text("index")
    (project / "app").mkdir()
    (project / "app" / "__init__.py").write_text("")
    (project / "main.py").write_text(textwrap.dedent(MAIN))
    log = root / "run.log"
    env = env_for(root, flyer_host="127.0.0.1", HOME=str(root),
                  flyer_log_path=str(root / "logs"), flyer_auth_enable="1",
                  flyer_auth_user=USER, flyer_auth_pass=PASSWORD, flyer_cors_origins=ORIGIN)
    with started([FASTFLYER, "run", "--port", "0"], project, env, log) as process:
        yield healthy_address(process, log)


def exchange(url: str, head: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` (a request with ``Connection: close``) as it is; the status, the
    headers (lower-case names) and the body of the answer."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    top, _, body = answer.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def request(url: str, method: str, target: str, *headers: tuple[str, str]) -> bytes:
    fields = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{fields}\r\n".encode()


# --- auth: no way out of the health checks -------------------------------------------------

@pytest.mark.parametrize("target", [
    "/health_check/../secret.txt", "/health_check/%2e%2e/secret.txt",
    "/health_check/..%2fsecret.txt", "/health_check%2f..%2fsecret.txt",
    "/flyer/health_check/../../secret.txt", "/health_check/ready/../../secret.txt",
    "/health_check/./../index.html", "/health_check/.."])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_path_climbing_out_of_a_health_check_needs_the_credentials(url: str, target: str,
                                                                   method: str) -> None:
    status, headers, body = exchange(url, request(url, method, target))
    assert status == 401, body
    assert headers["www-authenticate"] == 'Basic realm="fastflyer"'
    assert SECRET.encode() not in body
    # with the credentials the static mount does serve it: the path was a way in
    status, _, body = exchange(url, request(url, "GET", "/secret.txt", GOOD))
    assert (status, body) == (200, SECRET.encode())


@pytest.mark.parametrize("target", ["/health_check", "/health_check/ready",
                                    "/flyer/health_check", "/flyer/health_check/ready"])
def test_the_health_checks_stay_open(url: str, target: str) -> None:
    status, _, body = exchange(url, request(url, "GET", target))
    assert status == 200, body


# --- auth with CORS: a preflight is an Origin and a requested method ----------------------

def test_an_options_request_without_an_origin_needs_the_credentials(url: str) -> None:
    status, _, body = exchange(url, request(
        url, "OPTIONS", "/options-route", ("Access-Control-Request-Method", "GET")))
    assert status == 401, body
    assert b"the OPTIONS route" not in body


def test_a_real_preflight_is_answered_by_cors_without_reaching_the_route(url: str) -> None:
    status, headers, body = exchange(url, request(
        url, "OPTIONS", "/options-route", ("Origin", ORIGIN),
        ("Access-Control-Request-Method", "GET")))
    assert status == 200
    assert headers["access-control-allow-origin"] == ORIGIN
    assert b"the OPTIONS route" not in body


# --- HEAD where a catch-all mount follows the routes ---------------------------------------

@pytest.mark.parametrize("target", ["/root-status", "/flyer/shop", "/flyer/docs",
                                    "/health_check/ready", "/secret.txt"])
def test_head_answers_as_get_though_a_mount_at_the_root_matches_too(url: str, target: str) -> None:
    got = exchange(url, request(url, "GET", target, GOOD))
    head = exchange(url, request(url, "HEAD", target, GOOD))
    assert got[0] == head[0] == 200, (got[2], head[2])
    assert head[1]["content-length"] == got[1]["content-length"] == str(len(got[2]))
    assert head[1]["content-type"] == got[1]["content-type"]
    assert head[2] == b""


def test_a_head_route_of_its_own_still_answers_head(url: str) -> None:
    status, headers, body = exchange(url, request(url, "HEAD", "/both", GOOD))
    assert (status, headers.get("x-from"), body) == (200, "HEAD", b"")


# --- a malformed request: the envelope and the headers of every answer ---------------------

@pytest.mark.parametrize("head", [
    b"GET /flyer/shop HTTP/1.1 junk\r\nHost: x\r\n\r\n",
    b"GET /flyer/shop HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n",
    b"POST /flyer/shop HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
    b"POST /flyer/shop HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
], ids=["request-line", "control-byte", "content-length", "chunk-size"])
def test_a_request_the_parser_refuses_is_a_400_in_the_envelope(url: str, head: bytes) -> None:
    status, headers, body = exchange(url, head)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-request-id"]
    assert headers["connection"] == "close"
    assert body == b'{"code":400,"message":"Invalid HTTP request received."}'


# --- a path is one log line, whatever it holds -----------------------------------------------

FORGED = "2026-01-01 00:00:00.000 | ERROR    | - | fastflyer.forged:1 - FORGED LINE"


def test_a_line_break_in_the_path_forges_no_log_line(url: str, root: Path) -> None:
    """The 499 of a client gone mid-upload names the path in the log: ``%0a`` in it (which
    arrives decoded) is written escaped, not as the start of a line the client wrote."""
    target = "/orders/a%0a" + FORGED.replace(" ", "%20").replace("|", "%7C")
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST {target} HTTP/1.1\r\nHost: x\r\n{GOOD[0]}: {GOOD[1]}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                     '{"sku":'.encode())  # then gone, the body unfinished
    logs = [root / "run.log", root / "logs" / "fastkit.log"]
    wait_for(lambda: all(path.exists() and "(499)" in path.read_text() for path in logs),
             timeout=30, what="the 499 line in run.log and fastkit.log")
    for path in logs:
        lines = path.read_text().splitlines()
        assert not [line for line in lines if line.startswith(FORGED[:10])], path
        told = [line for line in lines if "(499)" in line]
        assert len(told) == 1 and "/orders/a\\n2026-01-01" in told[0], told
