"""The HTTP edge against a hostile client, second pass, through real servers
(``fastflyer run --port 0`` on 127.0.0.1, and uvicorn with the h11 protocol):

- A. a slow or silent client is bounded: a request head must arrive whole within
  ``flyer_header_timeout`` (1 s here), whether nothing comes, a part of the request line, a
  part of the head, or a head trickled a line at a time; then 408 in the envelope (or a
  plain close when nothing came). Keep-alive and pipelined requests are unaffected;
- B. a secret's name percent-encoded in the query (``to%6Ben``, ``pass%77ord``,
  ``%73ession``), which the app reads as ``token``, ``password``, ``session``, is masked
  in the access log, the log files and the console;
- C. a lone surrogate (``"\\ud800"``, or its raw bytes) in a JSON body is a 422 naming
  the field, with the fast path on and off, never a 500; the query, the path and headers
  cannot carry one (they decode with replacement); an error message the app builds holding
  one is still answered.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_launch import FASTFLYER, env_for, healthy_address, started, wait_for

HEADER_TIMEOUT = 1.0  # flyer_header_timeout of the servers below, seconds

MAIN = '''
import os

from fastapi import APIRouter, Header, HTTPException
from pydantic import BaseModel

from fastflyer import FlyerAPI
from fastflyer.errors import FlyerError

app = FlyerAPI(app_path=__file__)
router = APIRouter()


class Item(BaseModel):
    name: str
    tags: list[str] = []
    count: int = 0


@router.post("/items", response_model=Item)
def create_item(item: Item):
    return item


@router.post("/echo")
def echo(item: Item):
    return {"name": item.name, "tags": item.tags}


@router.post("/shops/{shop}/items")
def shop_item(shop: str, item: Item):
    return {"shop": shop, "name": item.name}


@router.get("/items/{name}")
def read_item(name: str):
    return {"name": name}


@router.get("/search")
def search(q: str = ""):
    return {"q": q}


@router.get("/header")
def header(x_name: str = Header("")):
    return {"x_name": x_name}


@router.get("/file-error")
def file_error():
    raise HTTPException(400, detail="no such file: " + os.fsdecode(b"report-\\xff.csv"))


@router.get("/flyer-error")
def flyer_error():
    raise FlyerError(400, message="bad name", detail={"name": os.fsdecode(b"a\\xfe")})


app.include_app("shop", router)
'''

SEEN = '''
from fastapi import APIRouter, Request

from fastflyer import FlyerAPI, logger

app = FlyerAPI(app_path=__file__)
router = APIRouter()


@router.get("/seen")
def seen(request: Request):
    logger.info("seen {} with {}", request.url, request.url.query)
    return {"names": sorted(request.query_params.keys())}


app.include_app("seen", router)
'''

H11_LAUNCHER = '''
import functools

import uvicorn

from fastflyer.http_limits import LimitedH11Protocol, RequestLimits
from fastflyer.settings import load_settings

limits = RequestLimits.from_settings(load_settings())
uvicorn.run("main:app", host="127.0.0.1", port=0,
            http=functools.partial(LimitedH11Protocol, limits=limits))
'''


def _project(where: Path) -> Path:
    project = where / "project"
    (project / "app").mkdir(parents=True)
    (project / "app" / "__init__.py").write_text("")
    (project / "main.py").write_text(textwrap.dedent(MAIN))
    (project / "launch_h11.py").write_text(H11_LAUNCHER)
    return project


@pytest.fixture(scope="module", params=["run", "h11"])
def edge(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """The project with ``flyer_header_timeout=1``, served by ``fastflyer run`` (httptools)
    or by uvicorn with :class:`~fastflyer.http_limits.LimitedH11Protocol`; its address."""
    root = tmp_path_factory.mktemp(f"edge-{request.param}")
    project = _project(root)
    env = env_for(root, flyer_header_timeout=str(HEADER_TIMEOUT), flyer_access_log="0",
                  flyer_log_path=str(root / "logs"))
    args = [FASTFLYER, "run", "--host", "127.0.0.1", "--port", "0"]
    if request.param == "h11":
        args = [sys.executable, str(project / "launch_h11.py")]
    log = root / "console.log"
    with started(args, project, env, log, new_session=True) as process:
        host, port = healthy_address(process, log).removeprefix("http://").rsplit(":", 1)
        yield host, int(port)


@pytest.fixture(scope="module", params=["fast-path", "no-fast-path"])
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The project served by ``fastflyer run`` with the fast path on, or off."""
    root = tmp_path_factory.mktemp(request.param)
    project = _project(root)
    env = env_for(root, flyer_fast_path="1" if request.param == "fast-path" else "0",
                  flyer_log_path=str(root / "logs"))
    log = root / "console.log"
    with started([FASTFLYER, "run", "--host", "127.0.0.1", "--port", "0"], project, env, log,
                 new_session=True) as process:
        yield healthy_address(process, log)


def read_until_closed(sock: socket.socket, within: float) -> tuple[bytes, float]:
    """What the server sends until it closes the connection, and when it closed (seconds
    from now); fails when it is still open after ``within`` seconds."""
    start = time.monotonic()
    deadline = start + within
    received = b""
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"still open after {within:g} s; received {received[:300]!r}"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        except TimeoutError:
            continue
        if not chunk:
            return received, time.monotonic() - start
        received += chunk


def answers(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The answers in ``data`` (each with a Content-Length): status, headers, body."""
    out = []
    while data:
        top, _, rest = data.partition(b"\r\n\r\n")
        lines = top.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        size = int(headers["content-length"])
        if not _ or len(rest) < size:
            raise ValueError("an unfinished answer")
        out.append((int(lines[0].split()[1]), headers, rest[:size]))
        data = rest[size:]
    return out


def read_answers(sock: socket.socket, count: int, within: float = 10) -> list[
        tuple[int, dict[str, str], bytes]]:
    """The first ``count`` answers on a connection that stays open."""
    deadline = time.monotonic() + within
    received = b""
    while True:
        try:
            got = answers(received)
            if len(got) >= count:
                return got
        except (KeyError, ValueError, IndexError):
            pass
        left = deadline - time.monotonic()
        assert left > 0, f"{count} answers not received within {within:g} s: {received!r}"
        sock.settimeout(left)
        chunk = sock.recv(65536)
        assert chunk, f"closed after {received!r}"
        received += chunk


def assert_timed_out(received: bytes) -> None:
    ((status, headers, body),) = answers(received)
    assert status == 408, received
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    assert headers["x-request-id"] and headers["x-content-type-options"] == "nosniff"
    assert json.loads(body) == {"code": 408, "message": f"Request head not received within "
                                                        f"{HEADER_TIMEOUT:g} s"}


# --- A. a request head arrives whole within flyer_header_timeout ----------------------------

def test_a_connection_that_sends_nothing_is_closed_without_an_answer(edge: tuple[str, int]) -> None:
    with socket.create_connection(edge) as sock:
        received, after = read_until_closed(sock, within=HEADER_TIMEOUT + 10)
    assert received == b""
    assert after >= HEADER_TIMEOUT - 0.2


@pytest.mark.parametrize("head", [
    b"G", b"GET /flyer/search?q=1 HTT", b"GET /flyer/search HTTP/1.1\r\n",
    b"GET /flyer/search HTTP/1.1\r\nHost: x\r\n", b"GET /flyer/search HTTP/1.1\r\nHost: x\r\n\r",
], ids=["one-byte", "request-line", "line-no-headers", "one-header", "almost"])
def test_a_head_that_stops_is_answered_408_and_closed(edge: tuple[str, int], head: bytes) -> None:
    with socket.create_connection(edge) as sock:
        sock.sendall(head)
        received, after = read_until_closed(sock, within=HEADER_TIMEOUT + 10)
    assert_timed_out(received)
    assert after >= HEADER_TIMEOUT - 0.2


def test_a_head_trickled_a_line_at_a_time_is_bounded_too(edge: tuple[str, int]) -> None:
    """One header line every 0.3 s, each well within any per-read timer: the head's
    deadline still comes."""
    with socket.create_connection(edge) as sock:
        start = time.monotonic()
        sock.sendall(b"GET /flyer/search HTTP/1.1\r\nHost: x\r\n")
        received = b""
        for line in range(100):
            sock.settimeout(0.3)  # the pace of the trickle, and the read of the answer
            try:
                received = sock.recv(65536)
                break
            except TimeoutError:
                sock.sendall(b"X-Line-%d: v\r\n" % line)
        assert received, "never answered"
        rest, _ = read_until_closed(sock, within=10)
    assert_timed_out(received + rest)
    assert HEADER_TIMEOUT - 0.2 <= time.monotonic() - start < HEADER_TIMEOUT + 3


def test_after_an_answer_the_next_head_is_timed_from_its_first_byte(edge: tuple[str, int]) -> None:
    """On a kept-alive connection, an idle pause longer than the head timeout is
    keep-alive's (5 s), and the next head gets its own deadline."""
    with socket.create_connection(edge) as sock:
        sock.sendall(b"GET /flyer/search?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        ((status, _, body),) = read_answers(sock, 1)
        assert (status, json.loads(body)) == (200, {"q": "1"})
        sock.settimeout(HEADER_TIMEOUT + 0.5)  # idle for longer than the head timeout
        with pytest.raises(TimeoutError):
            sock.recv(1)
        sock.sendall(b"GET /flyer/search?q=2 HTTP/1.1\r\nHost: x\r\n\r\n")
        ((status, _, body),) = read_answers(sock, 1)
        assert (status, json.loads(body)) == (200, {"q": "2"})
        sock.sendall(b"GET /flyer/search?q=3 HTTP/1.1\r\n")  # then nothing
        received, after = read_until_closed(sock, within=HEADER_TIMEOUT + 10)
    assert_timed_out(received)
    assert after >= HEADER_TIMEOUT - 0.2


def test_pipelined_requests_and_a_head_in_two_reads_are_served(edge: tuple[str, int]) -> None:
    with socket.create_connection(edge) as sock:
        sock.sendall(b"GET /flyer/search?q=a HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /flyer/search?q=b HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /flyer/search?q=c HTTP/1.1\r\nHo")
        got = read_answers(sock, 2)
        sock.sendall(b"st: x\r\n\r\n")
        got += read_answers(sock, 1)
    assert [(status, json.loads(body)) for status, _, body in got] == [
        (200, {"q": "a"}), (200, {"q": "b"}), (200, {"q": "c"})]


def test_a_body_is_timed_by_the_body_timeout_not_the_head_timeout(edge: tuple[str, int]) -> None:
    """A body pausing longer than the head timeout (its own timeout is 30 s) is read."""
    body = b'{"name": "slow"}'
    with socket.create_connection(edge) as sock:
        sock.sendall(b"POST /flyer/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:5])
        sock.settimeout(HEADER_TIMEOUT + 0.5)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        sock.sendall(body[5:])
        ((status, _, answer),) = read_answers(sock, 1)
    assert (status, json.loads(answer)) == (200, {"name": "slow", "tags": []})


# --- B. a percent-encoded secret's name is a secret's name ----------------------------------

def _encodings(name: str) -> list[str]:
    """``name`` percent-encoded in several ways, each of which the app reads as ``name``."""
    whole = "".join(f"%{ord(c):02X}" for c in name)
    return [f"{name[:2]}%{ord(name[2]):02x}{name[3:]}",  # one letter, lower-case hex
            f"%{ord(name[0]):02X}{name[1:]}",  # the first letter
            whole, whole.lower(),  # every letter
            f"{name[:-1]}%{ord(name[-1]):02X}".upper()]  # the last, the name in capitals


SECRET_NAMES = ["token", "password", "session", "access_token", "api_key", "client_secret",
                "x-amz-signature", "passwd"]


def test_percent_encoded_secret_names_are_masked_in_every_log(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "app").mkdir(parents=True)
    (project / "app" / "__init__.py").write_text("")
    (project / "main.py").write_text(textwrap.dedent(SEEN))
    logs = tmp_path / "logs"
    access = logs / "access.log"
    console = tmp_path / "console.log"
    env = env_for(tmp_path, flyer_console_log_level="debug", flyer_file_log_level="debug",
                  flyer_log_path=str(logs), flyer_access_log="1",
                  flyer_access_logfile=str(access), flyer_graceful_timeout="1")
    planted: dict[str, str] = {}
    with started([FASTFLYER, "run", "--host", "127.0.0.1", "--port", "0"], project, env,
                 console, new_session=True) as process:
        url = healthy_address(process, console)
        host, port = url.removeprefix("http://").rsplit(":", 1)
        sent = 0
        for name in SECRET_NAMES:
            for index, encoded in enumerate(_encodings(name)):
                value = f"zqLEAK{sent}x{index}q"
                planted[f"{name} as {encoded}"] = value
                target = f"/flyer/seen?page=1&{encoded}={value}&q=2"
                with socket.create_connection((host, int(port)), timeout=10) as sock:
                    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n"
                                 "Connection: close\r\n\r\n".encode())
                    received, _ = read_until_closed(sock, within=10)
                ((status, _, body),) = answers(received)
                # the app reads the name decoded: it is the secret's, so must the log be
                assert status == 200, body
                assert name in {n.lower() for n in json.loads(body)["names"]}, (encoded, body)
                sent += 1
        wait_for("access lines", lambda: access.exists() and len(
            [line for line in access.read_text().splitlines() if "/seen" in line]) >= sent,
            process, console)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after SIGTERM:\n{console.read_text()}") from None
    texts = {path.name: path.read_text(errors="replace") for path in
             [console, *sorted(p for p in logs.rglob("*") if p.is_file())]}
    assert {"console.log", "access.log", "fastkit.log"} <= texts.keys()
    assert texts["console.log"].count("zqLEAK") == 0 and "/flyer/seen" in texts["console.log"]
    leaks = sorted((what, file) for what, value in planted.items()
                   for file, text in texts.items() if value in text)
    assert not leaks, f"planted values found: {leaks}"
    assert texts["access.log"].count("=***") >= sent


# --- C. a lone surrogate is a 422, never a 500 -----------------------------------------------

def post(url: str, target: str, body: bytes,
         content_type: str = "application/json") -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
                     .encode() + body)
        received, _ = read_until_closed(sock, within=10)
    ((answer,),) = [answers(received)]
    return answer


def get(url: str, target: str, *headers: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
                     + b"".join(header + b"\r\n" for header in headers) + b"\r\n")
        received, _ = read_until_closed(sock, within=10)
    ((answer,),) = [answers(received)]
    return answer


LONE = [
    (rb'{"name": "\ud800"}', ["body", "name"]),
    (rb'{"name": "a\udc00b"}', ["body", "name"]),
    (rb'{"name": "\uDBFF"}', ["body", "name"]),
    (rb'{"name": "\ud800\u0041"}', ["body", "name"]),  # a high one not followed by a low one
    (rb'{"name": "\udc00\ud800"}', ["body", "name"]),  # the pair the wrong way round
    (rb'{"name": "\\\ud800"}', ["body", "name"]),  # an escaped backslash, then the escape
    (b'{"name": "\xed\xa0\x80"}', ["body", "name"]),  # the raw bytes json.loads passes
    (b'{"name": "\xed\xa0\xbd\xed\xb8\x80"}', ["body", "name"]),  # CESU-8, no UTF-8
    (rb'{"name": "ok", "tags": ["a", "\udfff"]}', ["body", "tags", 1]),
    (rb'{"name": "ok", "count": "\ud800"}', ["body", "count"]),  # would fail validation
    (rb'{"name": "ok", "\ud800": 1}', ["body", "\\ud800"]),  # a key
]


@pytest.mark.parametrize(("body", "loc"), LONE, ids=[str(n) for n in range(len(LONE))])
@pytest.mark.parametrize("target", ["/flyer/items", "/flyer/echo", "/flyer/shops/s1/items"])
def test_a_lone_surrogate_in_a_json_body_is_a_422_naming_the_field(
        url: str, target: str, body: bytes, loc: list[object]) -> None:
    status, headers, answer = post(url, target, body)
    assert status == 422, answer
    assert headers["content-type"] == "application/json"
    answer.decode("utf-8")  # strict: the answer is UTF-8
    sent = json.loads(answer)
    assert sent["code"] == 422
    assert sent["detail"] == [{"loc": loc, "type": "string_unicode", "msg": sent["detail"][0][
        "msg"]}]
    assert "surrogate" in sent["detail"][0]["msg"]


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8",
                                          "application/vnd.api+json", "APPLICATION/JSON"])
def test_every_json_content_type_is_checked(url: str, content_type: str) -> None:
    status, _, answer = post(url, "/flyer/echo", rb'{"name": "\ud800"}', content_type)
    assert status == 422, answer


@pytest.mark.parametrize(("body", "name"), [
    (rb'{"name": "\ud83d\ude00"}', "\U0001f600"),  # a pair, as ensure_ascii clients send it
    (rb'{"name": "\\ud800"}', "\\ud800"),  # a backslash, then the text "ud800"
    ('{"name": "한국어 \U0001f600"}'.encode(), "한국어 \U0001f600"),  # ED 95 9C: Hangul
    (b'{"name": "' + b"x" * 70000 + b'\xf0\x9f\x98\x80"}', "x" * 70000 + "\U0001f600"),
])
@pytest.mark.parametrize("target", ["/flyer/items", "/flyer/echo"])
def test_unicode_text_passes(url: str, target: str, body: bytes, name: str) -> None:
    status, _, answer = post(url, target, body)
    assert status == 200, answer
    assert json.loads(answer)["name"] == name


def test_json_that_is_no_json_is_still_the_routes_422(url: str) -> None:
    status, _, answer = post(url, "/flyer/echo", rb'{"name": "\ud800"')
    assert status == 422, answer
    assert json.loads(answer)["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(("target", "headers", "key"), [
    ("/flyer/search?q=%ED%A0%80", (), "q"),  # invalid UTF-8 in the query
    ("/flyer/search?q=%F0%9F", (), "q"),
    ("/flyer/items/%ED%A0%80", (), "name"),  # ... and in the path
    ("/flyer/header", (b"X-Name: \xed\xa0\x80",), "x_name"),  # raw bytes in a header
])
def test_the_query_the_path_and_headers_carry_no_surrogate(url: str, target: str,
                                                           headers: tuple[bytes, ...],
                                                           key: str) -> None:
    status, _, answer = get(url, target, *headers)
    assert status == 200, answer
    value = json.loads(answer.decode("utf-8"))[key]
    assert not any("\ud800" <= c <= "\udfff" for c in value), ascii(value)


@pytest.mark.parametrize(("target", "status", "shown"), [
    ("/flyer/file-error", 400, {"code": 400, "message": "no such file: report-\udcff.csv"}),
    ("/flyer/flyer-error", 400, {"code": 400, "message": "bad name",
                                 "detail": {"name": "a\udcfe"}}),
])
def test_an_error_the_app_builds_with_a_surrogate_is_answered(url: str, target: str,
                                                              status: int, shown: object) -> None:
    """``os.fsdecode`` of a file name that is no UTF-8 gives surrogates: the envelope
    writes them as JSON escapes rather than failing into a 500."""
    got, _, answer = get(url, target)
    assert got == status, answer
    assert json.loads(answer.decode("ascii")) == shown


@pytest.mark.parametrize(("text", "shown"), [
    ("q=1&to%6Ben=v1", "q=1&to%6Ben=***"),
    ("%70%61%73%73%77%6F%72%64=v2&page=1", "%70%61%73%73%77%6F%72%64=***&page=1"),
    ("GET /x?%73ession=v3 failed", "GET /x?%73ession=*** failed"),
    ("https://api.example/v1?api%5Fkey=v4", "https://api.example/v1?api%5Fkey=***"),
    ("form sent: user=bob&pass%77ord=v5", "form sent: user=bob&pass%77ord=***"),
    ('body {"pass\\u0077ord": "v6", "user": "bob"}',
     'body {"pass\\u0077ord": "***", "user": "bob"}'),
    ("load 50% and to%6Ben: v7", "load 50% and to%6Ben: ***"),
])
def test_the_redaction_reads_names_as_the_receiver_does(text: str, shown: str) -> None:
    """B's kind in every redaction function with a name pre-check: the query's, and free
    text's (URLs, ``name=value`` pairs, JSON with ``\\u`` escapes)."""
    from fastkit.logging.redact import redact_query, redact_text

    assert redact_text(text) == shown
    if "=" in text and " " not in text and ":" not in text:
        assert redact_query(text) == shown
