"""Faults reported against the clients, each replayed against a real local server.

Every test runs over the four entry points of ``test_retry`` where the fault concerns
them all: FastKit's clients and plain httpx clients over the retry transports.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from test_retry import KINDS, call, make_async, make_sync

from fastkit.httpx import Client, aiorequests, parse_retry_after, requests

both = pytest.mark.parametrize("kind", KINDS)


def waits(logs: Any) -> list[float]:
    """The waits announced by the retry WARNING lines, in seconds."""
    return [float(m.split(" in ")[1].split("s ")[0]) for m in logs.retries()]


# --------------------------------------------------------------------------- Retry-After

def _date(seconds: float) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


RETRY_AFTER_FORMS = {
    "zero": "0",
    "negative": "-5",
    "decimal": "1.5",
    "blank": "   ",
    "word": "soon",
    "joined": "3, 5",
    "nan": "nan",
    "inf": "inf",
    "superscript": "²",
    "past date": "Wed, 21 Oct 2015 07:28:00 GMT",
    "mangled date": "Wed, 32 Foo 2015 99:99:99 GMT",
    "year 9999": "Fri, 31 Dec 9999 23:59:59 GMT",
    "naive date": "Wed, 21 Oct 2015 07:28:00",
    "huge": "9" * 400,
}


@both
@pytest.mark.parametrize("form", RETRY_AFTER_FORMS)
def test_every_retry_after_form_gets_a_sane_wait(kind, form, server, key, logs):
    """Never zero while the policy backs off (multiplier 2: at least 2 s), never past the
    60 s budget: a wait that would pass it gives up and returns the server's answer."""
    value = RETRY_AFTER_FORMS[form]
    response = call(kind, "GET", f"{server.url}/flaky",
                    {"wait_exponential_multiplier": 2, "stop_max_delay": 60},
                    params={"key": key, "fail": 1, "status": 503, "retry_after": value})
    seen = waits(logs)
    if server.hits(key) == 1:  # gave up: only for a wait past the budget
        assert response.status_code == 503
        assert seen == []
        parsed = parse_retry_after(value)
        assert parsed is not None and parsed > 60
    else:
        assert response.status_code == 200
        (wait,) = seen
        assert 2.0 <= wait <= 60.0


@both
def test_retry_after_shorter_than_the_backoff_waits_the_backoff(kind, server, key, logs):
    call(kind, "GET", f"{server.url}/flaky?key={key}&fail=1&retry_after=1",
         {"wait_exponential_multiplier": 4})
    assert waits(logs) == [4.0]


@both
def test_a_future_date_past_the_budget_gives_up(kind, server, key):
    response = call(kind, "GET", f"{server.url}/flaky",
                    {"stop_max_delay": 30},
                    params={"key": key, "fail": 1, "retry_after": _date(3600)})
    assert response.status_code == 503
    assert server.hits(key) == 1


@both
def test_without_a_budget_an_endless_retry_after_gives_up(kind, server, key):
    response = call(kind, "GET", f"{server.url}/flaky?key={key}&fail=1&retry_after={'9' * 400}",
                    {"stop_max_delay": None})
    assert response.status_code == 503
    assert server.hits(key) == 1


@pytest.mark.parametrize("value", [*RETRY_AFTER_FORMS.values(), "３", "\x00", "1e3", "+3",
                                   "Wed, 21 Oct 2015 07:28:00 +9999", None, ""])
def test_parse_retry_after_never_raises_and_is_finite_or_none(value):
    parsed = parse_retry_after(value)
    assert parsed is None or parsed >= 0
    if parsed is not None and value != "9" * 400:
        assert math.isfinite(parsed)


# --------------------------------------------------------------------------- streamed predicate

def seed_predicate(response: httpx.Response) -> bool:
    """The seed's own predicate: it reads the body (``response.text``) to log it."""
    if response.status_code in [429, 500, 502, 503, 504]:
        assert response.text  # the body is there to read
        return True
    return False


LIMITS = httpx.Limits(max_connections=1)
TIMEOUT = httpx.Timeout(5.0, pool=1.0)


@pytest.mark.parametrize("kind", ["sync", "sync-transport"])
def test_streamed_call_with_a_reading_predicate_releases_every_connection(kind, server, key):
    with make_sync(kind, limits=LIMITS, timeout=TIMEOUT, retry_by_result=seed_predicate,
                   follow_redirects=True) as client:
        with client.stream("GET", f"{server.url}/flaky?key={key}&fail=1") as response:
            assert response.status_code == 200
            assert response.read() == b'{"hit": 2}'
        assert client.get(f"{server.url}/get").status_code == 200  # no PoolTimeout
        with client.stream("GET", f"{server.url}/stream?chunks=3") as response:
            assert list(response.iter_lines()) == ["chunk0", "chunk1", "chunk2"]
    assert server.hits(key) == 2


@pytest.mark.parametrize("kind", ["async", "async-transport"])
async def test_async_streamed_call_with_a_reading_predicate_releases_connections(kind, server,
                                                                                  key):
    async with make_async(kind, limits=LIMITS, timeout=TIMEOUT,
                          retry_by_result=seed_predicate) as client:
        async with client.stream("GET", f"{server.url}/flaky?key={key}&fail=1") as response:
            assert response.status_code == 200
            assert await response.aread() == b'{"hit": 2}'
        assert (await client.get(f"{server.url}/get")).status_code == 200
    assert server.hits(key) == 2


class Refused(Exception):
    pass


def refusing(response: httpx.Response) -> bool:
    raise Refused(response.status_code)


@both
def test_a_predicate_that_raises_leaves_no_connection_behind(kind, server, key):
    url = f"{server.url}/flaky?key={key}&fail=1"
    if kind.startswith("sync"):
        with make_sync(kind, limits=LIMITS, timeout=TIMEOUT, retry_by_result=refusing) as client:
            for _ in range(2):
                with pytest.raises(Refused), client.stream("GET", url):
                    pass
            assert client.get(f"{server.url}/get", extensions={"retry": False}).status_code == 200
    else:
        async def run() -> None:
            async with make_async(kind, limits=LIMITS, timeout=TIMEOUT,
                                  retry_by_result=refusing) as client:
                for _ in range(2):
                    with pytest.raises(Refused):
                        await client.get(url)
                response = await client.get(f"{server.url}/get", extensions={"retry": False})
                assert response.status_code == 200

        asyncio.run(run())
    assert server.hits(key) == 2


def test_a_raising_predicate_is_named_in_the_note_and_the_log(server, key, logs):
    with Client(retry_by_result=refusing) as client, pytest.raises(Refused) as info:
        client.get(f"{server.url}/flaky?key={key}&fail=1")
    assert any("retry_by_result raised Refused" in n for n in info.value.__notes__)
    (line,) = logs.calls()
    assert line["error"].startswith("Refused")


@both
def test_discarded_attempts_return_their_connection(kind, server, key):
    """Five 503s then a 200 over one connection: each discarded answer was closed."""
    response = call(kind, "GET", f"{server.url}/flaky?key={key}&fail=5",
                    {"limits": LIMITS, "timeout": TIMEOUT, "stop_max_attempt_number": 6})
    assert response.status_code == 200
    assert server.hits(key) == 6


# --------------------------------------------------------------------------- shared cookies

def _in_another_request(work: Any) -> Any:
    """Run ``work()`` in a fresh thread and context, as another caller's request would."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(contextvars.Context().run(work)))
    thread.start()
    thread.join(30)
    return out[0]


def test_requests_keeps_no_cookie_between_callers(server, key):
    user_a = requests.get(f"{server.url}/cookie?name=session&value=user-a-secret")
    assert user_a.cookies["session"] == "user-a-secret"  # A sees its own answer's cookie
    _in_another_request(lambda: requests.get(f"{server.url}/get?key={key}"))
    assert "cookie" not in server.headers(key)[0]
    assert len(requests.cookies) == 0


def test_requests_sends_a_callers_own_cookie_header(server, key):
    requests.get(f"{server.url}/get?key={key}", headers={"Cookie": "mine=1"})
    requests.get(f"{server.url}/get?key={key}")
    first, second = server.headers(key)
    assert first["cookie"] == "mine=1"
    assert "cookie" not in second


def test_aiorequests_keeps_no_cookie_between_callers(server, key):
    async def user_a() -> None:
        await aiorequests.get(f"{server.url}/cookie?name=session&value=user-a-secret")
        await aiorequests.get(f"{server.url}/get?key={key}")  # same loop, same pool

    async def user_b() -> None:
        await aiorequests.get(f"{server.url}/get?key={key}")

    async def both_users() -> None:
        await user_a()
        await asyncio.create_task(user_b(), context=contextvars.Context())

    asyncio.run(both_users())
    assert [h.get("cookie") for h in server.headers(key)] == [None, None]


def test_own_client_keeps_its_cookies(server, key):
    with Client() as client:
        client.get(f"{server.url}/cookie?name=session&value=abc")
        client.get(f"{server.url}/get?key={key}")
    assert server.headers(key)[0]["cookie"] == "session=abc"


# --------------------------------------------------------------------------- body redaction

@both
def test_json_bodies_are_redacted_in_the_call_log(kind, server, logs):
    payload = {"user": "bob", "password": "pw-secret-1",
               "nested": {"access_token": "tok-secret-2", "items": [{"client_secret": "s-3"}]},
               "note": "visible"}
    call(kind, "POST", f"{server.url}/post", json=payload)
    (line,) = logs.calls()
    assert line["_level"] == "INFO"
    body = line["body"]
    for secret in ("pw-secret-1", "tok-secret-2", "s-3"):
        assert secret not in logs.text()
    assert '"password":"***"' in body.replace(" ", "")
    assert "bob" in body and "visible" in body


@both
def test_form_bodies_are_redacted_in_the_call_log(kind, server, logs):
    form = {"client_secret": "cs-secret-1", "access_token": "at-secret-2",
            "passwd": "pw-secret-3", "grant_type": "client_credentials"}
    call(kind, "POST", f"{server.url}/post", data=form)
    (line,) = logs.calls()
    for secret in ("cs-secret-1", "at-secret-2", "pw-secret-3"):
        assert secret not in logs.text()
    assert "client_secret=***" in line["body"]
    assert "grant_type=client_credentials" in line["body"]


def test_text_bodies_are_redacted_in_the_call_log(server, logs):
    requests.post(f"{server.url}/post", content=b"password=hunter2 user=bob",
                  headers={"Content-Type": "text/plain"})
    assert "hunter2" not in logs.text()
    assert "user=bob" in logs.calls()[0]["body"]


# --------------------------------------------------------------------------- refusals say why

@both
def test_a_refused_post_says_it_is_not_idempotent(kind, server, key):
    with pytest.raises(httpx.ReadTimeout) as info:
        call(kind, "POST", f"{server.url}/slow?key={key}&fail=1&delay=0.5",
             {"timeout": 0.2}, json={})
    (note,) = [n for n in info.value.__notes__ if n.startswith("fastkit:")]
    assert "after 1 attempt (POST is not idempotent" in note
    assert "retry_methods" in note


@both
def test_a_call_with_retries_off_says_so(kind, server, key):
    with pytest.raises(httpx.ReadTimeout) as info:
        call(kind, "GET", f"{server.url}/slow?key={key}&fail=1&delay=0.5",
             {"timeout": 0.2}, retry=False)
    assert any("retries are off for this call" in n for n in info.value.__notes__)


@both
def test_an_exception_outside_retry_by_except_says_so(kind, server, key):
    with pytest.raises(httpx.ReadTimeout) as info:
        call(kind, "GET", f"{server.url}/slow?key={key}&fail=1&delay=0.5",
             {"timeout": 0.2, "retry_by_except": (httpx.ConnectError,)})
    assert any("ReadTimeout is not in retry_by_except" in n for n in info.value.__notes__)
