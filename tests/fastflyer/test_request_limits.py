"""The request is bounded in every dimension, under ``fastflyer run`` and ``fastflyer serve``.

Real server processes on 127.0.0.1 port 0, spoken to with raw sockets: a head over a
limit (one huge header, too many headers, a long URL) answers 431/414 in the envelope or
is closed; an unfinished 32 MiB header is closed once over the limit without the worker
growing; the body limit (``flyer_max_body_size``) answers 413 on every kind of route,
for a declared length and for a chunked body alike.
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_launch import FASTFLYER, env_for, healthy_address, started, wait_for

from conftest import DEMO

BODY_LIMIT = 4096
MiB = 1024 * 1024
RSS_GROWTH_ALLOWED = 4 * MiB
CLOSE_WAIT = 2.0  # seconds a refused connection gets to close

PROJECT_MAIN = f'''
from fastflyer import APIRouter, FlyerAPI

app = FlyerAPI(app_path={str(DEMO)!r})  # the demo's discovered apps

extra = APIRouter()


@extra.post("/echo")
async def echo(payload: dict) -> dict:
    return {{"keys": len(payload)}}


app.include_router(extra, prefix="/extra")  # include_router on the FlyerAPI

one = APIRouter()


@one.post("/one")
async def one_file(payload: dict) -> dict:
    return {{"keys": len(payload)}}


app.include_app("onefile", one)  # the README's one-file form
'''


@dataclass
class Server:
    host: str
    port: int
    worker_pid: int


@pytest.fixture(scope="module", params=["run", "serve", "h11"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The project above served by ``fastflyer run``, ``fastflyer serve --workers 1``, or
    uvicorn with the h11 protocol (what both use where httptools is not installed)."""
    mode = request.param
    tmp = tmp_path_factory.mktemp(f"limits-{mode}")
    project = tmp / "project"
    project.mkdir()
    (project / "main.py").write_text(PROJECT_MAIN)
    env = env_for(tmp, flyer_max_body_size=str(BODY_LIMIT), flyer_access_log="0",
                  flyer_log_path=str(tmp / "logs"))
    args = [FASTFLYER, mode, "--app-dir", str(project), "--host", "127.0.0.1", "--port", "0"]
    if mode == "serve":
        args += ["--workers", "1"]
    if mode == "h11":
        args = [sys.executable, "-m", "uvicorn", "main:app", "--app-dir", str(project),
                "--host", "127.0.0.1", "--port", "0",
                "--http", "fastflyer.http_limits:LimitedH11Protocol"]
    log = tmp / "console.log"
    with started(args, project, env, log, new_session=True) as process:
        url = healthy_address(process, log)
        host, port = url.removeprefix("http://").rsplit(":", 1)
        pid = process.pid
        if mode == "serve":
            booted = wait_for("worker", lambda: re.search(
                r"Booting worker with pid: (\d+)", log.read_text()), process, log)
            assert isinstance(booted, re.Match)
            pid = int(booted.group(1))
        yield Server(host, int(port), pid)


def connect(server: Server) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=10)


def read_answer(sock: socket.socket, deadline: float = 10.0) -> bytes:
    """Everything the server sends until it closes (a reset ends it too)."""
    sock.settimeout(deadline)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def exchange(server: Server, raw: bytes) -> bytes:
    """Send ``raw`` (as much as the server takes) and read the answer until closed."""
    with connect(server) as sock:
        # Refused before all was sent: what came back tells.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        return read_answer(sock)


def status_and_body(answer: bytes) -> tuple[int, dict[str, object] | None]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        size, _, rest = body.partition(b"\r\n")
        body = rest[:int(size, 16)]
    return status, json.loads(body) if body else None


def assert_refused(answer: bytes, status: int) -> None:
    """The envelope with ``status``, or nothing (closed before an answer could go)."""
    if not answer:
        return
    got, body = status_and_body(answer)
    assert got == status, answer[:300]
    assert body is not None and body["code"] == status and body["message"]
    assert b"connection: close" in answer.lower()


def get(path: str, *headers: bytes) -> bytes:
    lines = [f"GET {path} HTTP/1.1".encode(), b"Host: localhost", *headers,
             b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def rss(pid: int) -> int:
    """The resident memory of process ``pid``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


# --- the request head -------------------------------------------------------------------------

def test_a_normal_request_is_served(server: Server) -> None:
    status, body = status_and_body(exchange(server, get("/health_check", b"X-Small: yes")))
    assert status == 200 and body is not None and body["code"] == 200


def test_a_header_of_one_mib_is_refused_with_431(server: Server) -> None:
    answer = exchange(server, get("/health_check", b"X-Big: " + b"a" * MiB))
    assert_refused(answer, 431)


def test_a_header_just_over_the_field_limit_is_refused_with_431(server: Server) -> None:
    answer = exchange(server, get("/health_check", b"X-Big: " + b"a" * 8200))
    assert answer, "closed without an answer"
    assert_refused(answer, 431)


def test_many_headers_are_refused_with_431(server: Server) -> None:
    many = [b"X-H%d: 1" % number for number in range(150)]
    answer = exchange(server, get("/health_check", *many))
    assert answer, "closed without an answer"
    assert_refused(answer, 431)


def test_a_url_of_100_kib_is_refused_with_414(server: Server) -> None:
    answer = exchange(server, get("/health_check?q=" + "a" * 100 * 1024))
    assert answer, "closed without an answer"
    assert_refused(answer, 414)


def test_headers_within_the_limits_are_served(server: Server) -> None:
    many = [b"X-H%d: %s" % (number, b"v" * 100) for number in range(90)]  # ~10 KiB in all
    status, _ = status_and_body(exchange(server, get("/health_check?q=" + "a" * 4000, *many)))
    assert status == 200


def test_an_unfinished_32_mib_header_is_closed_and_takes_no_memory(server: Server) -> None:
    exchange(server, get("/health_check"))  # warm
    before = rss(server.worker_pid)
    chunk = b"a" * 64 * 1024
    sent = 0
    closed = False
    with connect(server) as sock:
        sock.sendall(b"GET /health_check HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
        while sent < 32 * MiB and not closed:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sent += len(chunk)
            # Wait for the server's answer or close, up to a short deadline per chunk.
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                closed = True
        answer = read_answer(sock, deadline=CLOSE_WAIT) if closed else b""
    after = rss(server.worker_pid)
    print(f"worker RSS before {before / MiB:.1f} MiB, after {after / MiB:.1f} MiB, "
          f"{sent / 1024:.0f} KiB sent before the close")
    assert closed, f"the server held {sent / MiB:.0f} MiB of an unfinished header"
    assert sent <= MiB, f"closed only after {sent / 1024:.0f} KiB"
    assert after - before < RSS_GROWTH_ALLOWED, (before, after)
    assert_refused(answer, 431)
    status, _ = status_and_body(exchange(server, get("/health_check")))
    assert status == 200  # the worker still serves


def test_an_unfinished_trailer_is_closed(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(post("/extra/echo", b"Transfer-Encoding: chunked")
                     + b"2\r\n{}\r\n0\r\nX-Trailer: ")
        sent = 0
        closed = False
        while sent < 4 * MiB and not closed:
            try:
                sock.sendall(b"a" * 16 * 1024)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 16 * 1024
            closed = bool(select.select([sock], [], [], 0.05)[0])
        assert sent <= MiB, f"closed only after {sent / 1024:.0f} KiB"


# --- the body ---------------------------------------------------------------------------------

ROUTES = {  # kind of route -> a path that takes a POST body
    "discovered app": "/flyer/users",
    "include_router": "/extra/echo",
    "include_app": "/flyer/one",
}
ANY_ROUTE = {**ROUTES, "task API": "/flyer/tasks/background/heartbeat/run",
             "docs": "/flyer/docs", "openapi": "/flyer/openapi.json", "no route": "/nowhere"}


def post(path: str, *headers: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1".encode(), b"Host: localhost",
             b"Content-Type: application/json", *headers, b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def big_json(size: int) -> bytes:
    return json.dumps({"name": "ann", "age": 7, "padding": "x" * size}).encode()


@pytest.mark.parametrize("kind", list(ANY_ROUTE))
def test_a_declared_length_over_the_limit_is_refused_before_the_body(server: Server,
                                                                     kind: str) -> None:
    # 10 MiB declared, nothing sent: the answer comes without waiting for the body.
    answer = exchange(server, post(ANY_ROUTE[kind], b"Content-Length: %d" % (10 * MiB)))
    status, body = status_and_body(answer)
    assert status == 413 and body is not None and body["code"] == 413


@pytest.mark.parametrize("kind", list(ROUTES))
def test_a_chunked_body_over_the_limit_is_refused(server: Server, kind: str) -> None:
    payload = big_json(BODY_LIMIT * 4)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece)
                      for piece in (payload[i:i + 1000] for i in range(0, len(payload), 1000)))
    answer = exchange(server, post(ROUTES[kind], b"Transfer-Encoding: chunked")
                      + chunks + b"0\r\n\r\n")
    status, body = status_and_body(answer)
    assert status == 413 and body is not None and body["code"] == 413, answer[:300]


@pytest.mark.parametrize("kind", list(ROUTES))
def test_a_chunked_body_within_the_limit_is_served(server: Server, kind: str) -> None:
    payload = big_json(100)
    answer = exchange(server, post(ROUTES[kind], b"Transfer-Encoding: chunked")
                      + b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload))
    status, _ = status_and_body(answer)
    assert status in (200, 201), answer[:300]


def test_a_body_longer_than_its_content_length_gives_the_app_only_the_declared_bytes(
        server: Server) -> None:
    # Content-Length says 2 ("{}"); what follows is no body but the next request, which
    # is no request: the app sees {} and the rest is refused as malformed.
    answer = exchange(server, post("/extra/echo", b"Content-Length: 2")
                      + b"{}" + b"x" * (BODY_LIMIT * 4))
    first, _, rest = answer.partition(b"HTTP/1.1 ")[2].partition(b"HTTP/1.1 ")
    status, body = status_and_body(b"HTTP/1.1 " + first)
    assert status == 200 and body == {"keys": 0}
    assert not rest or rest.startswith(b"400")


def test_a_content_length_longer_than_the_body_waits_and_is_closed_by_the_client(
        server: Server) -> None:
    # Declared within the limit, fewer bytes sent: the server waits for the rest and
    # serves nothing; it never answers with a partial body.
    with connect(server) as sock:
        sock.sendall(post("/extra/echo", b"Content-Length: 100") + b"{}")
        readable, _, _ = select.select([sock], [], [], 0.5)
        assert not readable
    started_at = time.monotonic()
    status, _ = status_and_body(exchange(server, get("/health_check")))
    assert status == 200 and time.monotonic() - started_at < 5


# --- the body read timeout --------------------------------------------------------------------

BODY_TIMEOUT = 1.0  # flyer_body_timeout of the servers below, seconds
H11_LAUNCHER = '''
import functools

import uvicorn

from fastflyer.http_limits import LimitedH11Protocol, RequestLimits
from fastflyer.settings import load_settings

limits = RequestLimits.from_settings(load_settings())
uvicorn.run("main:app", host="127.0.0.1", port=0,
            http=functools.partial(LimitedH11Protocol, limits=limits))
'''


@pytest.fixture(scope="module", params=["run", "serve", "h11"])
def one_slot_server(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The project above with ``flyer_body_timeout=1`` and ``flyer_worker_connections=1``
    (the default body size limit), served as :func:`server` serves it."""
    mode = request.param
    tmp = tmp_path_factory.mktemp(f"body-timeout-{mode}")
    project = tmp / "project"
    project.mkdir()
    (project / "main.py").write_text(PROJECT_MAIN)
    (project / "launch_h11.py").write_text(H11_LAUNCHER)
    env = env_for(tmp, flyer_body_timeout=str(BODY_TIMEOUT), flyer_worker_connections="1",
                  flyer_access_log="0", flyer_log_path=str(tmp / "logs"))
    args = [FASTFLYER, mode, "--app-dir", str(project), "--host", "127.0.0.1", "--port", "0"]
    if mode == "serve":
        args += ["--workers", "1"]
    if mode == "h11":
        args = [sys.executable, str(project / "launch_h11.py")]
    log = tmp / "console.log"
    with started(args, project, env, log, new_session=True) as process:
        url = healthy_address(process, log)
        host, port = url.removeprefix("http://").rsplit(":", 1)
        yield Server(host, int(port), process.pid)


def assert_body_timed_out(answer: bytes) -> None:
    status, body = status_and_body(answer)
    assert status == 408, answer[:300]
    assert body == {"code": 408, "message": "Request body not received within 1 s"}
    head = answer.partition(b"\r\n\r\n")[0].lower()
    assert b"connection: close" in head and b"x-request-id: " in head
    assert b"x-content-type-options: nosniff" in head


def stall(server: Server, raw: bytes) -> tuple[bytes, float]:
    """Send ``raw``, a request whose body stops short, and wait on the socket: what the
    server sent until it closed, and the seconds that took (fails if it never closes)."""
    with connect(server) as sock:
        sock.sendall(raw)
        began = time.monotonic()
        answer = read_answer(sock, deadline=BODY_TIMEOUT + 9)  # TimeoutError if held open
        return answer, time.monotonic() - began


def test_a_declared_body_that_stops_answers_408_and_closes(one_slot_server: Server) -> None:
    answer, took = stall(one_slot_server, post("/extra/echo", b"Content-Length: 100000")
                         + b'{"a": 1234')
    print(f"408 after {took:.2f} s")
    assert_body_timed_out(answer)
    assert BODY_TIMEOUT * 0.9 <= took < BODY_TIMEOUT + 2


def test_a_chunked_body_that_stops_answers_408_and_closes(one_slot_server: Server) -> None:
    answer, took = stall(one_slot_server, post("/extra/echo", b"Transfer-Encoding: chunked")
                         + b"a\r\n{\"a\": 1234\r\n")
    print(f"408 after {took:.2f} s")
    assert_body_timed_out(answer)
    assert BODY_TIMEOUT * 0.9 <= took < BODY_TIMEOUT + 2


def test_a_slow_but_steady_body_is_served(one_slot_server: Server) -> None:
    # Seven pieces, one every half timeout: 3.5 s in all, over three times the timeout.
    payload = json.dumps({f"k{n}": "v" * 20 for n in range(7)}).encode()
    size = -(-len(payload) // 7)
    pieces = [payload[i:i + size] for i in range(0, len(payload), size)]
    assert len(pieces) == 7
    began = time.monotonic()
    with connect(one_slot_server) as sock:
        sock.sendall(post("/extra/echo", b"Content-Length: %d" % len(payload)))
        for piece in pieces:
            time.sleep(BODY_TIMEOUT / 2)  # the sender's pace: the input, not a wait
            sock.sendall(piece)
        answer = read_answer(sock)
    took = time.monotonic() - began
    status, body = status_and_body(answer)
    assert status == 200 and body == {"keys": 7}, answer[:300]
    assert took >= 3 * BODY_TIMEOUT


def test_a_normal_post_is_unaffected_by_the_body_timeout(one_slot_server: Server) -> None:
    began = time.monotonic()
    status, body = status_and_body(exchange(one_slot_server, post(
        "/extra/echo", b"Content-Length: 8") + b'{"a": 1}'))
    assert status == 200 and body == {"keys": 1}
    assert time.monotonic() - began < BODY_TIMEOUT


def test_the_connection_slot_is_free_right_after_the_408(one_slot_server: Server) -> None:
    request = post("/extra/echo", b"Content-Length: 2") + b"{}"
    with connect(one_slot_server) as sock:
        sock.sendall(post("/extra/echo", b"Content-Length: 100000") + b"{")
        # The stalled request holds the only slot (flyer_worker_connections=1) ...
        status, _ = status_and_body(exchange(one_slot_server, request))
        assert status == 503
        assert_body_timed_out(read_answer(sock, deadline=BODY_TIMEOUT + 9))
    # ... until its 408: the next request is served.
    status, body = status_and_body(exchange(one_slot_server, request))
    assert status == 200 and body == {"keys": 0}
