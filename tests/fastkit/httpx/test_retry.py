"""Retry behaviour against a real local server.

The suite runs over four entry points: FastKit's ``Client`` and ``AsyncClient``, and
plain ``httpx.Client`` / ``httpx.AsyncClient`` whose transport is a ``RetryTransport`` /
``AsyncRetryTransport`` (per-call options then travel in ``extensions={"retry": ...}``).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from fastkit.httpx import (
    RETRY_KEYS,
    AsyncClient,
    AsyncRetryTransport,
    Client,
    RetryPolicy,
    RetryTransport,
    UrllibExceptionWarning,
    set_testing,
)

KINDS = ["sync", "async", "sync-transport", "async-transport"]


def _split(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The retry keys (and ``retry``, ``report_log``) apart from httpx's own keywords."""
    ours = {k: v for k, v in options.items() if k in RETRY_KEYS or k in ("retry", "report_log")}
    return ours, {k: v for k, v in options.items() if k not in ours}


def make_sync(kind: str, **options: Any) -> httpx.Client:
    """FastKit's ``Client``, or a plain ``httpx.Client`` over a ``RetryTransport``."""
    if kind == "sync":
        return Client(**options)
    ours, theirs = _split(options)
    transport = RetryTransport(httpx.HTTPTransport(limits=theirs.pop("limits", httpx.Limits())),
                               **ours)
    return httpx.Client(transport=transport, **theirs)


def make_async(kind: str, **options: Any) -> httpx.AsyncClient:
    """FastKit's ``AsyncClient``, or a plain ``httpx.AsyncClient`` over an
    ``AsyncRetryTransport``."""
    if kind == "async":
        return AsyncClient(**options)
    ours, theirs = _split(options)
    inner = httpx.AsyncHTTPTransport(limits=theirs.pop("limits", httpx.Limits()))
    return httpx.AsyncClient(transport=AsyncRetryTransport(inner, **ours), **theirs)


def per_call(kind: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A plain httpx client takes ``retry=`` as the ``retry`` request extension."""
    if kind.endswith("-transport") and "retry" in kwargs:
        kwargs = dict(kwargs)
        kwargs["extensions"] = {"retry": kwargs.pop("retry")}
    return kwargs


def call(kind: str, method: str, url: str, client_kwargs: dict[str, Any] | None = None,
         **kwargs: Any) -> httpx.Response:
    """Run one request on a fresh client of ``kind`` and return the response."""
    options = client_kwargs or {}
    kwargs = per_call(kind, kwargs)
    if kind.startswith("sync"):
        with make_sync(kind, **options) as client:
            return client.request(method, url, **kwargs)

    async def run() -> httpx.Response:
        async with make_async(kind, **options) as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(run())


both = pytest.mark.parametrize("kind", KINDS)


@both
def test_status_503_is_retried_then_succeeds(kind, server, key, logs):
    response = call(kind, "GET", f"{server.url}/flaky?key={key}&fail=2")
    assert response.status_code == 200
    assert server.hits(key) == 3
    assert len(logs.retries()) == 2
    (line,) = logs.calls()
    assert line["attempts"] == 3
    assert line["status"] == 200


@both
def test_giving_up_returns_the_real_last_response(kind, server, key):
    response = call(kind, "GET", f"{server.url}/flaky?key={key}&fail=9&status=502",
                    {"stop_max_attempt_number": 2})
    assert server.hits(key) == 2
    assert response.status_code == 502
    assert response.json() == {"hit": 2, "error": "flaky"}
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(httpx.HTTPStatusError):
        response.raise_for_status()


@both
@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_every_default_status_is_retried(kind, status, server, key):
    response = call(kind, "GET", f"{server.url}/flaky?key={key}&fail=1&status={status}")
    assert response.status_code == 200
    assert server.hits(key) == 2


@both
def test_other_statuses_are_not_retried(kind, server, key):
    response = call(kind, "GET", f"{server.url}/flaky?key={key}&fail=1&status=404")
    assert response.status_code == 404
    assert server.hits(key) == 1


@both
def test_post_status_is_not_retried_by_default(kind, server, key):
    response = call(kind, "POST", f"{server.url}/flaky?key={key}&fail=1", json={"a": 1})
    assert response.status_code == 503
    assert server.hits(key) == 1


@both
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"])
def test_idempotent_methods_are_retried(kind, method, server, key):
    response = call(kind, method, f"{server.url}/flaky?key={key}&fail=1")
    assert response.status_code == 200
    assert server.hits(key) == 2


@both
def test_retry_methods_extends_the_rule(kind, server, key):
    response = call(kind, "POST", f"{server.url}/flaky?key={key}&fail=1",
                    {"retry_methods": {"GET", "post"}}, json={"a": 1})
    assert response.status_code == 200
    assert server.hits(key) == 2
    assert server.bodies(key) == [b'{"a":1}', b'{"a":1}']


@both
def test_retry_by_result_decides_for_every_method(kind, server, key):
    seen: list[int] = []

    def retry_by_result(response: httpx.Response) -> bool:
        seen.append(response.status_code)
        return response.json().get("hit", 0) < 3

    response = call(kind, "POST", f"{server.url}/post?key={key}",
                    {"retry_by_result": retry_by_result, "stop_max_attempt_number": 5},
                    json={"a": 1})
    assert response.status_code == 200
    assert response.json()["hit"] == 3
    assert seen == [200, 200, 200]


@both
def test_retry_by_result_false_stops_retries_on_503(kind, server, key):
    response = call(kind, "GET", f"{server.url}/flaky?key={key}&fail=1",
                    {"retry_by_result": lambda r: False})
    assert response.status_code == 503
    assert server.hits(key) == 1


@both
def test_connect_error_is_retried_for_post_then_raised(kind, logs, refused_port):
    url = f"http://127.0.0.1:{refused_port}/post"
    with pytest.raises(httpx.ConnectError) as info:
        call(kind, "POST", url, json={"a": 1})
    assert len(logs.retries()) == 2
    assert any("after 3 attempts" in note for note in info.value.__notes__)
    (line,) = logs.calls()
    assert line["status"] is None
    assert line["error"].startswith("ConnectError")
    assert line["_level"] == "WARNING"


@both
def test_pool_timeout_never_reached_the_server_so_post_retries(kind, server, key):
    limits = httpx.Limits(max_connections=1)
    timeout = httpx.Timeout(5.0, pool=0.05)
    url = f"{server.url}/post?key={key}"
    if kind.startswith("sync"):
        with make_sync(kind, limits=limits, timeout=timeout) as client, \
                client.stream("GET", f"{server.url}/stream?chunks=2"), \
                pytest.raises(httpx.PoolTimeout) as info:
            client.post(url, json={})
    else:
        async def run() -> pytest.ExceptionInfo[httpx.PoolTimeout]:
            async with make_async(kind, limits=limits, timeout=timeout) as client, \
                    client.stream("GET", f"{server.url}/stream?chunks=2"):
                with pytest.raises(httpx.PoolTimeout) as info:
                    await client.post(url, json={})
                return info

        info = asyncio.run(run())
    assert server.hits(key) == 0
    assert any("after 3 attempts" in note for note in info.value.__notes__)


@both
def test_read_timeout_is_retried_for_get(kind, server, key):
    response = call(kind, "GET", f"{server.url}/slow?key={key}&fail=1&delay=0.5",
                    {"timeout": 0.2})
    assert response.status_code == 200
    assert server.hits(key) == 2


@both
def test_read_timeout_is_not_retried_for_post(kind, server, key):
    with pytest.raises(httpx.ReadTimeout) as info:
        call(kind, "POST", f"{server.url}/slow?key={key}&fail=1&delay=0.5",
             {"timeout": 0.2}, json={})
    assert server.hits(key) == 1
    assert any("after 1 attempt" in note for note in info.value.__notes__)


@both
def test_dropped_connection_is_retried_for_get(kind, server, key):
    response = call(kind, "GET", f"{server.url}/drop?key={key}&fail=2")
    assert response.status_code == 200
    assert server.hits(key) == 3


@both
def test_dropped_connection_is_not_retried_for_post(kind, server, key):
    with pytest.raises(httpx.RemoteProtocolError):
        call(kind, "POST", f"{server.url}/drop?key={key}&fail=2", json={})
    assert server.hits(key) == 1


@both
def test_retry_by_except_decides_alone(kind, server, key, refused_port):
    # Only ReadTimeout is retried: a connect error is raised at once.
    with pytest.raises(httpx.ConnectError):
        call(kind, "GET", f"http://127.0.0.1:{refused_port}/",
             {"retry_by_except": (httpx.ReadTimeout,)})
    # ...and a read timeout of a POST is retried, since the caller said so.
    response = call(kind, "POST", f"{server.url}/slow?key={key}&fail=1&delay=0.5",
                    {"retry_by_except": (httpx.ReadTimeout,), "timeout": 0.2}, json={})
    assert response.status_code == 200
    assert server.hits(key) == 2


def test_exponential_waits_follow_the_seed(server, key, logs):
    # multiplier 2 gives 2 s, 4 s, 8 s, then the 10 s cap.
    policy = {"stop_max_attempt_number": 5, "stop_max_delay": 100,
              "wait_exponential_multiplier": 2, "wait_exponential_max": 10}
    response = call("sync", "GET", f"{server.url}/flaky?key={key}&fail=4", policy)
    assert response.status_code == 200
    waits = [m.split(" in ")[1].split("s ")[0] for m in logs.retries()]
    assert waits == ["2.00", "4.00", "8.00", "10.00"]


def test_backoff_formula():
    policy = RetryPolicy(wait_exponential_multiplier=0.5, wait_exponential_max=3)
    assert [policy.backoff(k) for k in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_adds_at_most_its_maximum(server, key, logs):
    policy = {"stop_max_attempt_number": 4, "wait_exponential_multiplier": 1,
              "wait_jitter_max": 0.5}
    call("sync", "GET", f"{server.url}/flaky?key={key}&fail=3", policy)
    waits = [float(m.split(" in ")[1].split("s ")[0]) for m in logs.retries()]
    assert len(waits) == 3
    for base, wait in zip([1, 2, 4], waits, strict=False):
        assert base <= wait <= base + 0.5


@both
def test_no_wait_starts_that_would_end_past_the_budget(kind, server, key, logs):
    # Waits 2 then 4: the second would end at 6 s > 5 s, so it stops after 2 attempts.
    response = call(kind, "GET", f"{server.url}/flaky?key={key}&fail=9",
                    {"stop_max_attempt_number": 10, "stop_max_delay": 5,
                     "wait_exponential_multiplier": 2})
    assert response.status_code == 503
    assert server.hits(key) == 2


@both
def test_retry_after_seconds_replaces_the_backoff(kind, server, key, logs):
    response = call(kind, "GET", f"{server.url}/flaky?key={key}&fail=1&status=429&retry_after=3")
    assert response.status_code == 200
    assert "in 3.00s" in logs.retries()[0]


def test_retry_after_http_date(server, key, logs):
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=4), usegmt=True)
    response = call("sync", "GET", f"{server.url}/flaky",
                    params={"key": key, "fail": 1, "status": 503, "retry_after": when})
    assert response.status_code == 200
    wait = float(logs.retries()[0].split(" in ")[1].split("s ")[0])
    assert 2.0 <= wait <= 4.0


@both
def test_retry_after_past_the_budget_gives_up_at_once(kind, server, key):
    response = call(kind, "GET", f"{server.url}/flaky?key={key}&fail=1&status=429&retry_after=120")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "120"
    assert server.hits(key) == 1


@both
def test_per_call_retry_false_and_overrides(kind, server, key):
    off = f"{key}-off"
    response = call(kind, "GET", f"{server.url}/flaky?key={off}&fail=1", retry=False)
    assert response.status_code == 503
    assert server.hits(off) == 1
    response = call(kind, "GET", f"{server.url}/flaky?key={key}&fail=4",
                    retry={"stop_max_attempt_number": 5})
    assert response.status_code == 200
    assert server.hits(key) == 5


def test_per_call_retry_on_verbs(server, key):
    with Client() as client:
        assert client.get(f"{server.url}/flaky?key={key}&fail=1", retry=False).status_code == 503
        assert client.post(f"{server.url}/flaky?key={key}&fail=3", json={},
                           retry={"retry_methods": {"POST"}}).status_code == 200
        assert server.hits(key) == 1 + 3


@both
def test_client_retry_false_disables_retries(kind, server, key):
    response = call(kind, "GET", f"{server.url}/flaky?key={key}&fail=1", {"retry": False})
    assert response.status_code == 503
    assert server.hits(key) == 1


@both
def test_a_generator_body_is_sent_once(kind, server, key):
    if kind.startswith("sync"):
        def body():
            yield b"part1"
            yield b"part2"
    else:
        async def body():
            yield b"part1"
            yield b"part2"
    response = call(kind, "PUT", f"{server.url}/flaky?key={key}&fail=1", content=body())
    assert response.status_code == 503
    assert server.bodies(key) == [b"part1part2"]


def test_a_generator_body_is_not_resent_after_connect_error(logs, refused_port):
    def body():
        yield b"x"

    with pytest.raises(httpx.ConnectError) as info:
        call("sync", "PUT", f"http://127.0.0.1:{refused_port}/", content=body())
    assert logs.retries() == []
    assert any("cannot be replayed" in note for note in info.value.__notes__)


@both
def test_multipart_uploads_are_replayed(kind, server, key, tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"file-content")
    with path.open("rb") as handle:
        response = call(kind, "PUT", f"{server.url}/flaky?key={key}&fail=1",
                        files={"f": handle})
    assert response.status_code == 200
    first, second = server.bodies(key)
    assert first == second
    assert b"file-content" in first


@pytest.mark.parametrize("kind", ["sync", "sync-transport"])
def test_stream_retries_before_the_body_reaches_the_caller(kind, server, key):
    with make_sync(kind) as client, \
            client.stream("GET", f"{server.url}/flaky?key={key}&fail=2") as r:
        assert r.status_code == 200
        assert r.read() == b'{"hit": 3}'


@pytest.mark.parametrize("kind", ["async", "async-transport"])
async def test_async_stream_retries_before_the_body(kind, server, key):
    async with make_async(kind) as client, \
            client.stream("GET", f"{server.url}/flaky?key={key}&fail=1") as r:
        assert r.status_code == 200
        assert await r.aread() == b'{"hit": 2}'


def test_urllib3_exceptions_from_the_seed_are_mapped_with_a_warning(refused_port):
    from urllib3.exceptions import HTTPError, NewConnectionError, ResponseError

    with pytest.warns(UrllibExceptionWarning, match="NewConnectionError"):
        client = Client(retry_by_except=(HTTPError, ResponseError, NewConnectionError))
    assert client.retry_policy.retry_by_except == (httpx.TransportError, httpx.ConnectError)
    with pytest.raises(httpx.ConnectError) as info:
        client.get(f"http://127.0.0.1:{refused_port}/")
    assert any("after 3 attempts" in note for note in info.value.__notes__)
    client.close()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"stop_max_attempts": 3}, TypeError, "stop_max_attempt_number"),
        ({"retry_by_exception": ()}, TypeError, "retry_by_except"),
        ({"stop_max_attempt_number": 0}, ValueError, "stop_max_attempt_number must be >= 1"),
        ({"stop_max_attempt_number": "3"}, TypeError, "stop_max_attempt_number must be an int"),
        ({"stop_max_delay": -1}, ValueError, "stop_max_delay must be >= 0"),
        ({"wait_exponential_multiplier": "2"}, TypeError, "wait_exponential_multiplier"),
        ({"wait_exponential_max": float("nan")}, ValueError, "wait_exponential_max"),
        ({"retry_by_result": 3}, TypeError, "retry_by_result must be a callable"),
        ({"retry_by_except": ("nope",)}, TypeError, "retry_by_except must hold exception"),
        ({"retry_methods": "GET"}, TypeError, "retry_methods"),
        ({"report_log": "yes"}, TypeError, "report_log must be a bool"),
        ({"retry": 3}, TypeError, "retry must be True, False"),
    ],
)
@pytest.mark.parametrize("make", [Client, AsyncClient, RetryTransport, AsyncRetryTransport])
def test_bad_options_fail_at_construction_naming_the_key(make, kwargs, error, match):
    with pytest.raises(error, match=match):
        make(**kwargs)


def test_bad_per_call_retry_names_the_key(server):
    with Client() as client, pytest.raises(TypeError, match="unknown retry option 'bogus'"):
        client.get(f"{server.url}/get", retry={"bogus": 1})


def test_unknown_httpx_keyword_is_httpx_own_error():
    with pytest.raises(TypeError, match="unexpected keyword argument 'nonsense'"):
        Client(nonsense=1)


@pytest.mark.slow
def test_real_waits_are_slept(server, key):
    set_testing(False)
    started = time.monotonic()
    response = call("sync", "GET", f"{server.url}/flaky?key={key}&fail=2",
                    {"wait_exponential_multiplier": 0.2})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert 0.6 <= elapsed < 3.0


@pytest.mark.slow
def test_real_budget_bounds_the_whole_call(server, key):
    set_testing(False)
    started = time.monotonic()
    response = call("sync", "GET", f"{server.url}/flaky?key={key}&fail=99",
                    {"stop_max_attempt_number": 50, "stop_max_delay": 1.0,
                     "wait_exponential_multiplier": 0.1, "wait_exponential_max": 0.3})
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert elapsed <= 1.2
    assert server.hits(key) >= 4
