"""Answers the framework builds itself, through real servers (issue 16).

A generated project served by ``fastflyer run --port 0`` (and by ``uvicorn --root-path``):

- redirects never take their host from the request: a forged ``Host`` never comes back
  in ``Location``;
- behind a root path, ``openapi.json`` names it in ``servers``, as FastAPI's own does;
- RFC 9110 methods: ``HEAD`` answers as ``GET`` without the body on every GET route, a
  405's ``Allow`` lists every method of the path, ``OPTIONS`` answers ``204`` with it (or
  the CORS preflight when CORS is on); the fast path answers as the normal path does;
- websocket refusals carry the request id and the reason.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_launch import FASTFLYER, env_for, generate_project, healthy_address, started
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from fastflyer.middleware.redirects import relative_location

DEMO = Path(__file__).parent / "demo_project"
EVIL = "evil.example"
# Headers that differ between any two answers.
_PER_ANSWER = {"date", "x-request-id", "x-lasting-time"}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project made by ``fastflyer create_app``."""
    return generate_project(tmp_path_factory.mktemp("gen"))


def _serve(args: list[str], cwd: Path, scratch: Path, **env: str) -> Iterator[str]:
    """``args`` (a server on port 0) running in ``cwd``; yields its URL once healthy."""
    scratch.mkdir(parents=True, exist_ok=True)
    log = scratch / "server.log"
    with started(args, cwd, env_for(scratch, flyer_log_path=str(scratch / "logs"),
                                    flyer_access_log="0", **env), log) as process:
        yield healthy_address(process, log)


def _run(shop: Path, scratch: Path, **env: str) -> Iterator[str]:
    yield from _serve([FASTFLYER, "run", "--host", "127.0.0.1", "--port", "0"], shop,
                      scratch, **env)


@pytest.fixture(scope="module", params=["1", "0"], ids=["fast-path", "no-fast-path"])
def url(request: pytest.FixtureRequest, shop: Path,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The generated project under ``fastflyer run``, fast path on and off."""
    yield from _run(shop, tmp_path_factory.mktemp("run"), flyer_fast_path=request.param)


@pytest.fixture
def both(shop: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The project served twice at once: fast path on, and off."""
    fast = _run(shop, tmp_path / "fast", flyer_fast_path="1")
    slow = _run(shop, tmp_path / "slow", flyer_fast_path="0")
    try:
        yield next(fast), next(slow)
    finally:
        fast.close()
        slow.close()


def _allow(answer: httpx.Response) -> set[str]:
    return {method.strip() for method in answer.headers.get("allow", "").split(",") if method}


# --- redirects ----------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "target"), [
    ("/flyer/docs/", "/flyer/docs"),        # FastAPI's router: redirect_slashes
    ("/flyer/static", "/flyer/static/"),    # the same, into the docs assets' mount
    ("/", "/flyer/docs"),                   # ours: / to the docs
])
def test_a_redirect_never_names_the_host_the_request_gave(url, path, target):
    answer = httpx.get(url + path, headers={"Host": EVIL}, follow_redirects=False, timeout=10)
    assert answer.status_code == 307
    assert answer.headers["location"] == target
    assert EVIL not in answer.headers["location"]


def test_a_relative_redirect_still_leads_where_it_did(url):
    answer = httpx.get(f"{url}/flyer/docs/", follow_redirects=True, timeout=10)
    assert answer.status_code == 200
    assert [str(hop.url) for hop in answer.history] == [f"{url}/flyer/docs/"]
    assert "swagger-ui" in answer.text


def test_a_location_that_would_read_as_another_host_keeps_one_slash():
    scope = {"type": "http", "scheme": "http", "headers": [(b"host", b"evil.example")],
             "server": ("127.0.0.1", 8080)}
    assert relative_location(b"http://evil.example//other.example/x", scope) == b"/other.example/x"
    assert relative_location(b"http://EVIL.example/\\other.example", scope) == b"/other.example"
    assert relative_location(b"http://evil.example?a=1", scope) == b"/?a=1"
    # Not the request's origin: another host, a longer host, an upgrade to https.
    for kept in (b"http://other.example/x", b"http://evil.example.com/x",
                 b"https://evil.example/x", b"/already/relative"):
        assert relative_location(kept, scope) == kept
    no_host = {**scope, "headers": []}
    assert relative_location(b"http://127.0.0.1:8080/x", no_host) == b"/x"


# --- a root path ---------------------------------------------------------------------------

_PLAIN_FASTAPI = """\
from fastapi import FastAPI

app = FastAPI()


@app.get("/health_check")
def health():
    return {"ok": True}
"""


def _uvicorn(app_dir: Path, scratch: Path) -> Iterator[str]:
    yield from _serve([sys.executable, "-m", "uvicorn", "main:app", "--app-dir", str(app_dir),
                       "--root-path", "/api", "--host", "127.0.0.1", "--port", "0"],
                      app_dir, scratch)


def test_behind_a_root_path_openapi_names_it_in_servers_as_fastapi_does(shop, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "main.py").write_text(_PLAIN_FASTAPI)
    fastapi_url = _uvicorn(plain, tmp_path / "a")
    ours_url = _uvicorn(shop, tmp_path / "b")
    try:
        theirs = httpx.get(f"{next(fastapi_url)}/openapi.json", timeout=10).json()["servers"]
        ours = next(ours_url)
        schema = httpx.get(f"{ours}/flyer/openapi.json", timeout=10)
        assert schema.status_code == 200
        assert schema.json()["servers"] == theirs == [{"url": "/api"}]
        docs = httpx.get(f"{ours}/flyer/docs", timeout=10).text
        assert "'/api/flyer/openapi.json'" in docs
        # Redirects keep the root path, and still never the request's host.
        for path, target in (("/flyer/docs/", "/api/flyer/docs"), ("/", "/api/flyer/docs"),
                             ("/flyer/static", "/api/flyer/static/")):
            moved = httpx.get(ours + path, headers={"Host": EVIL}, timeout=10)
            assert (moved.status_code, moved.headers["location"]) == (307, target)
    finally:
        fastapi_url.close()
        ours_url.close()


def test_without_a_root_path_openapi_has_no_servers(url):
    assert "servers" not in httpx.get(f"{url}/flyer/openapi.json", timeout=10).json()


# --- HEAD, 405, OPTIONS --------------------------------------------------------------------

_GET_ROUTES = [
    "/flyer/docs", "/flyer/redoc", "/flyer/openapi.json", "/flyer/docs/oauth2-redirect", "/",
    "/flyer/demo?id=1",           # an app's route the fast path serves
    "/flyer/demo?id=-1",          # its business error (504)
    "/flyer/demo",                # its 422
    "/flyer/users?page=1",        # a path with GET and POST routes
    "/flyer/items/1", "/flyer/tasks", "/health_check/ready", "/flyer/static/favicon.png",
]


@pytest.mark.parametrize("path", _GET_ROUTES)
def test_head_answers_as_get_without_the_body(url, path):
    with httpx.Client(base_url=url, timeout=10) as client:
        got = client.get(path)
        head = client.head(path)
    assert head.status_code == got.status_code
    assert head.content == b""
    assert {k: v for k, v in head.headers.items() if k not in _PER_ANSWER} == \
           {k: v for k, v in got.headers.items() if k not in _PER_ANSWER}
    assert head.headers["content-length"] == str(len(got.content))


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("DELETE", "/flyer/users", {"GET", "HEAD", "POST", "OPTIONS"}),   # two routes, one path
    ("PUT", "/flyer/demo", {"GET", "HEAD", "OPTIONS"}),
    ("PATCH", "/flyer/items", {"POST", "OPTIONS"}),
    ("HEAD", "/flyer/items", {"POST", "OPTIONS"}),                     # no GET: no HEAD
    ("PUT", "/flyer/tasks/background/heartbeat", {"GET", "HEAD", "DELETE", "OPTIONS"}),
    ("POST", "/flyer/docs", {"GET", "HEAD", "OPTIONS"}),
    ("POST", "/flyer/static/favicon.png", {"GET", "HEAD", "OPTIONS"}),
])
def test_a_405_allows_every_method_of_the_path(url, method, path, allowed):
    answer = httpx.request(method, url + path, timeout=10)
    assert answer.status_code == 405
    assert _allow(answer) == allowed
    if method != "HEAD":
        assert answer.json() == {"code": 405, "message": "Method Not Allowed"}


@pytest.mark.parametrize(("path", "allowed"), [
    ("/flyer/users", {"GET", "HEAD", "POST", "OPTIONS"}),
    ("/flyer/demo", {"GET", "HEAD", "OPTIONS"}),
    ("/flyer/items", {"POST", "OPTIONS"}),
    ("/flyer/docs", {"GET", "HEAD", "OPTIONS"}),
    ("/flyer/static/favicon.png", {"GET", "HEAD", "OPTIONS"}),
])
def test_options_answers_its_own_allow(url, path, allowed):
    answer = httpx.options(url + path, timeout=10)
    assert answer.status_code == 204
    assert _allow(answer) == allowed
    assert answer.content == b""
    assert answer.headers["x-request-id"]


def test_options_on_a_path_nothing_serves_is_a_404(url):
    answer = httpx.options(f"{url}/flyer/nowhere", timeout=10)
    assert answer.status_code == 404
    assert answer.json()["code"] == 404


def test_the_fast_path_answers_as_the_normal_path(both):
    fast, slow = both
    requests = [("GET", "/flyer/demo?id=1"), ("HEAD", "/flyer/demo?id=1"),
                ("HEAD", "/flyer/demo?id=x"), ("OPTIONS", "/flyer/demo"),
                ("PUT", "/flyer/demo"), ("POST", "/flyer/items"), ("HEAD", "/flyer/items"),
                ("OPTIONS", "/flyer/items"), ("GET", "/flyer/demo/")]
    for method, path in requests:
        one = httpx.request(method, fast + path, timeout=10, json={"name": "a", "price": 1}
                            if method == "POST" else None)
        other = httpx.request(method, slow + path, timeout=10, json={"name": "a", "price": 1}
                              if method == "POST" else None)
        assert (one.status_code, _allow(one), one.headers.get("location")) == \
               (other.status_code, _allow(other), other.headers.get("location")), (method, path)
        if method != "POST":  # a new item has a new id
            assert one.content == other.content, (method, path)


def test_with_cors_options_answers_the_preflight_or_with_allow(shop, tmp_path):
    origin = "https://app.example"
    server = _run(shop, tmp_path, flyer_cors_origins=origin)
    try:
        url = next(server)
        preflight = httpx.options(f"{url}/flyer/items", timeout=10, headers={
            "Origin": origin, "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        assert "POST" in preflight.headers["access-control-allow-methods"]
        plain = httpx.options(f"{url}/flyer/items", timeout=10, headers={"Origin": origin})
        assert plain.status_code == 204
        assert _allow(plain) == {"POST", "OPTIONS"}
        assert plain.headers["access-control-allow-origin"] == origin
        head = httpx.head(f"{url}/flyer/demo?id=1", timeout=10, headers={"Origin": origin})
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["access-control-allow-origin"] == origin
    finally:
        server.close()


# --- websockets ----------------------------------------------------------------------------

def _ws(url: str) -> str:
    return url.replace("http://", "ws://", 1)


@pytest.mark.parametrize("sent", ["ws-test-1", None], ids=["client-id", "new-id"])
def test_a_websocket_with_no_route_is_refused_with_the_request_id_and_why(url, sent):
    headers = {"X-Request-ID": sent} if sent else {}
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{_ws(url)}/flyer/demo", additional_headers=headers, open_timeout=10)
    answer = refused.value.response
    assert answer.status_code == 403
    request_id = answer.headers["x-request-id"]
    assert request_id == sent if sent else len(request_id) == 32
    assert answer.headers["content-type"] == "application/json"
    assert bytes(answer.body) == (b'{"code":403,"message":"Forbidden: no websocket route at '
                                  b'this path"}')


def test_a_websocket_refused_by_the_limit_names_the_request_id(tmp_path):
    server = _serve([FASTFLYER, "run", "--app-dir", str(DEMO), "--host", "127.0.0.1",
                     "--port", "0"], tmp_path, tmp_path, flyer_worker_connections="1")
    try:
        echo = f"{_ws(next(server))}/flyer/errors/echo"
        with connect(echo, additional_headers={"X-Request-ID": "first"}) as first:
            assert first.response is not None
            assert first.response.headers["x-request-id"] == "first"
            first.send("1")
            assert first.recv(timeout=5) == "1"  # served: it counts now
            with connect(echo, additional_headers={"X-Request-ID": "second"}) as second, \
                    pytest.raises(ConnectionClosed) as closed:
                assert second.response is not None
                assert second.response.headers["x-request-id"] == "second"
                second.recv(timeout=5)
        received = closed.value.rcvd
        assert received is not None
        assert (received.code, received.reason) == (
            1013, "server busy; retry shortly; request id second")
    finally:
        server.close()
