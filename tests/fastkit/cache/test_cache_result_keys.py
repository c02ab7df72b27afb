"""cache_result's promise, one kind of fault per section, over every way to decorate.

A cached result is only returned for the same decorated function and equal arguments
(same types); each caller's cancellation stays its own; locks live only while a call is in
flight. Every test runs for each *form* of decorated callable that applies: a plain
``def``, an ``async def``, an ``async def`` behind a plain ``functools.wraps`` decorator
(a sync function returning a coroutine) and an object with ``async def __call__``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from fastkit.cache import get_cacheout_pool

FORMS = ["sync", "async", "wraps-async", "async-call"]
ASYNC_FORMS = FORMS[1:]


def pool_for(maxsize: int = 256) -> Any:
    return get_cacheout_pool(f"keys-{uuid.uuid4().hex}", "lru", maxsize=maxsize)


def build(form: str, pool: Any, body: Callable[..., Any], *, cache_key: str | None = None,
          before: Callable[[], Awaitable[Any]] | None = None) -> Any:
    """``body`` (any signature) decorated with ``cache_result`` in the given form.

    The async forms run ``await before()`` first, then ``body``; they carry ``body``'s
    signature (``__signature__``) as a hand-written one would.
    """
    decorate = pool.cache_result(cache_key=cache_key, ttl=60)
    if form == "sync":
        return decorate(body)
    signature = inspect.signature(body)

    async def run(*args: Any, **kwargs: Any) -> Any:
        if before is not None:
            await before()
        return body(*args, **kwargs)

    run.__signature__ = signature  # type: ignore[attr-defined]
    if form == "async":
        return decorate(run)
    if form == "wraps-async":
        @functools.wraps(run)
        def plain(*args: Any, **kwargs: Any) -> Any:
            return run(*args, **kwargs)
        return decorate(plain)

    class Loader:
        async def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return await run(*args, **kwargs)

    loader = Loader()
    loader.__signature__ = signature  # type: ignore[attr-defined]
    return decorate(loader)


async def call(form: str, func: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``func`` as its form is called: awaited when async, and check it is."""
    result = func(*args, **kwargs)
    assert inspect.isawaitable(result) == (form != "sync"), result
    return await result if inspect.isawaitable(result) else result


def flights(func: Any) -> Any:
    return func._cache_flights


# --- 1. Key identity of the function --------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
async def test_input_1_closures_of_one_factory_have_their_own_key_space(form):
    pool = pool_for()

    def loader_for(table: str) -> Any:
        def load(user_id: int) -> tuple[str, int]:
            return (table, user_id)
        return build(form, pool, load)

    assert await call(form, loader_for("users"), 7) == ("users", 7)
    assert await call(form, loader_for("orders"), 7) == ("orders", 7)


@pytest.mark.parametrize("form", FORMS)
async def test_one_function_decorated_twice_is_two_key_spaces(form):
    pool = pool_for()
    calls: list[int] = []

    def body(x: int) -> int:
        calls.append(x)
        return x

    first, second = build(form, pool, body), build(form, pool, body)
    assert [await call(form, first, 1), await call(form, second, 1)] == [1, 1]
    assert calls == [1, 1]


@pytest.mark.parametrize("form", FORMS)
async def test_an_explicit_cache_key_is_a_key_space_shared_on_purpose(form):
    pool = pool_for()
    first = build(form, pool, lambda x: ("first", x), cache_key="shared")
    second = build(form, pool, lambda x: ("second", x), cache_key="shared")
    assert await call(form, first, 1) == ("first", 1)
    # A sync-declared function's first call runs it, to learn if it returns awaitables.
    assert await call(form, second, 2) == ("second", 2)
    assert await call(form, second, 1) == ("first", 1)  # documented: one key space


@pytest.mark.parametrize("form", FORMS)
async def test_a_cache_key_containing_colons_is_no_other_keys_arguments(form):
    pool = pool_for()
    user = build(form, pool, lambda user_id: ("user", user_id), cache_key="user")
    odd = build(form, pool, lambda: "odd", cache_key="user:(7,):[]")
    assert await call(form, user, 7) == ("user", 7)
    assert await call(form, odd) == "odd"  # was the key "user:(7,):[]" of user(7)
    assert user.cache_key_of(7) != odd.cache_key_of()


@pytest.mark.parametrize("form", FORMS)
async def test_methods_of_two_instances_do_not_share_results(form):
    pool = pool_for()

    class Repo:
        def __init__(self, name: str) -> None:
            self.name = name

    method = build(form, pool, lambda self, x: (self.name, x))
    assert await call(form, method, Repo("a"), 1) == ("a", 1)
    assert await call(form, method, Repo("b"), 1) == ("b", 1)


# --- 2. Locks and pending calls live only while in flight -----------------------------


@pytest.mark.parametrize("form", FORMS)
async def test_input_2_twenty_thousand_distinct_calls_leave_no_locks(form):
    pool = pool_for(maxsize=100)
    decorated = build(form, pool, lambda x: x * 2)
    for i in range(20_000):
        assert await call(form, decorated, i) == i * 2
    assert len(pool) == 100
    assert flights(decorated).locks == {}
    assert flights(decorated).tasks == {}


def in_flight_together(threads: list[threading.Thread], started: threading.Event) -> None:
    """Wait (polling, with a deadline) until one thread computes and every other one waits
    for it inside cache_result."""
    assert started.wait(10)
    deadline = time.monotonic() + 10

    def waiting(thread: threading.Thread, frames: dict[int, Any]) -> bool:
        frame = frames.get(thread.ident)  # type: ignore[arg-type]
        while frame is not None:
            if frame.f_code.co_name == "run_sync":
                return True
            frame = frame.f_back
        return False

    while True:
        frames = sys._current_frames()
        if all(waiting(thread, frames) for thread in threads):
            return
        assert time.monotonic() < deadline, "threads never met in cache_result"
        time.sleep(0.001)


@pytest.mark.parametrize("outcome", ["value", "error"])
def test_concurrent_threads_on_one_key_compute_once_and_leave_no_lock(outcome):
    pool = pool_for()
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    @pool.cache_result(ttl=60)
    def slow(x: int) -> int:
        calls.append(x)
        started.set()
        assert release.wait(10)
        if outcome == "error" and len(calls) == 1:
            raise ConnectionError("upstream down")
        return x + 1

    results: list[object] = []

    def caller() -> None:
        try:
            results.append(slow(1))
        except ConnectionError as exc:
            results.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    in_flight_together(threads, started)
    assert len(flights(slow).locks) == 1  # one key in flight, one lock
    release.set()
    for thread in threads:
        thread.join(10)
    assert calls == [1]
    if outcome == "value":
        assert results == [2] * 8
    else:  # every waiter gets the error, and it is not cached
        assert all(isinstance(r, ConnectionError) for r in results)
        assert slow(1) == 2
    assert flights(slow).locks == {}


@pytest.mark.parametrize("form", ASYNC_FORMS)
async def test_concurrent_async_callers_compute_once_and_leave_no_task(form):
    pool = pool_for()
    release = asyncio.Event()
    calls: list[int] = []

    def body(x: int) -> int:
        calls.append(x)
        return x + 1

    decorated = build(form, pool, body, before=release.wait)
    waiters = [asyncio.ensure_future(call(form, decorated, 1)) for _ in range(20)]
    await asyncio.sleep(0)  # one loop turn: every waiter reaches its await, no time passes
    assert len(flights(decorated).tasks) == 1
    release.set()
    assert await asyncio.gather(*waiters) == [2] * 20
    assert calls == [1]
    assert flights(decorated).tasks == {}


# --- 3. Awaitables are awaited, never cached ------------------------------------------


@pytest.mark.parametrize("form", ASYNC_FORMS)
async def test_input_3_async_results_are_cached_not_their_coroutines(form):
    pool = pool_for()
    calls: list[int] = []

    def body(x: int) -> int:
        calls.append(x)
        return x * 10

    decorated = build(form, pool, body)
    assert [await call(form, decorated, 1) for _ in range(3)] == [10, 10, 10]
    assert await call(form, decorated, x=1) == 10
    assert calls == [1]


async def test_input_3_as_written_a_wraps_decorator_and_an_async_call_object():
    pool = pool_for()

    def logged(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)
        return inner

    @pool.cache_result()
    @logged
    async def fetch(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    class Fetcher:
        async def __call__(self, x: int) -> int:
            return x + 2

    fetcher = pool.cache_result()(Fetcher())
    assert [await fetch(1), await fetch(1)] == [2, 2]  # was: cannot reuse already awaited
    assert [await fetcher(1), await fetcher(1)] == [3, 3]
    assert inspect.iscoroutinefunction(fetcher)  # frameworks see it as async


async def test_a_sync_function_returning_another_awaitable_caches_its_result():
    pool = pool_for()
    calls: list[int] = []

    class Ready:
        def __init__(self, value: int) -> None:
            self.value = value

        def __await__(self):  # type: ignore[no-untyped-def]
            calls.append(self.value)
            yield from asyncio.sleep(0).__await__()
            return self.value

    ready = pool.cache_result()(lambda x: Ready(x))
    assert [await ready(5), await ready(5), await ready(6)] == [5, 5, 6]
    assert calls == [5, 6]


@pytest.mark.parametrize("form", ASYNC_FORMS)
async def test_an_async_failure_is_not_cached(form):
    pool = pool_for()
    calls: list[int] = []

    def body(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise ConnectionError("upstream down")
        return x

    decorated = build(form, pool, body)
    with pytest.raises(ConnectionError):
        await call(form, decorated, 1)
    assert await call(form, decorated, 1) == 1
    assert calls == [1, 1]


# --- 4. One caller's cancellation never reaches another ------------------------------


@pytest.mark.parametrize("how", ["timeout", "cancel"])
@pytest.mark.parametrize("form", ASYNC_FORMS)
async def test_input_4_a_caller_that_leaves_does_not_cancel_another(form, how):
    pool = pool_for()
    started, release = asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    async def slow() -> None:
        started.set()
        await release.wait()  # the slow upstream

    def body(name: str) -> str:
        calls.append(name)
        return name.upper()

    lookup = build(form, pool, body, before=slow)
    if how == "timeout":
        first = asyncio.ensure_future(asyncio.wait_for(call(form, lookup, "x"), 0.1))
    else:
        first = asyncio.ensure_future(call(form, lookup, "x"))
    await started.wait()
    second = asyncio.ensure_future(call(form, lookup, "x"))  # no timeout
    await asyncio.sleep(0)  # one loop turn: the second caller joins, no time passes
    if how == "cancel":
        first.cancel()
    with pytest.raises((TimeoutError, asyncio.CancelledError)):
        await first
    release.set()
    assert await second == "X"  # was: CancelledError
    assert calls == ["x"]
    assert flights(lookup).tasks == {}


@pytest.mark.parametrize("form", ASYNC_FORMS)
async def test_when_every_caller_leaves_the_call_still_finishes_and_is_cached(form):
    pool = pool_for()
    release = asyncio.Event()
    calls: list[str] = []

    def body(name: str) -> str:
        calls.append(name)
        return name.upper()

    lookup = build(form, pool, body, before=release.wait)
    caller = asyncio.ensure_future(call(form, lookup, "x"))
    await asyncio.sleep(0)
    [running] = flights(lookup).tasks.values()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    release.set()
    assert await running == "X"
    assert await call(form, lookup, "x") == "X"
    assert calls == ["x"]


@pytest.mark.parametrize("form", ASYNC_FORMS)
async def test_an_error_reaches_every_remaining_waiter_after_one_left(form):
    pool = pool_for()
    release = asyncio.Event()
    calls: list[str] = []

    def body(name: str) -> str:
        calls.append(name)
        if len(calls) == 1:
            raise ConnectionError("upstream down")
        return name

    lookup = build(form, pool, body, before=release.wait)
    waiters = [asyncio.ensure_future(call(form, lookup, "x")) for _ in range(3)]
    await asyncio.sleep(0)
    waiters[0].cancel()
    release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert all(isinstance(r, ConnectionError) for r in results[1:])
    assert await call(form, lookup, "x") == "x"  # not cached
    assert calls == ["x", "x"]


async def test_calls_from_two_event_loops_do_not_share_a_task():
    pool = pool_for()

    @pool.cache_result()
    async def load(x: int) -> int:
        await asyncio.sleep(0)
        return x

    results: list[int] = []
    thread = threading.Thread(target=lambda: results.append(asyncio.run(load(3))))
    thread.start()
    assert await load(3) == 3
    thread.join(10)
    assert results == [3]
    assert flights(load).tasks == {}


# --- 5. Keys: equal arguments of the same type, bound to the signature -----------------


class SameRepr:
    """Unequal objects that print alike."""

    def __repr__(self) -> str:
        return "SameRepr()"


class LooksLikeOne:
    """Prints as the int 1."""

    def __repr__(self) -> str:
        return "1"


class Unhashable:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unhashable)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Point:
    x: int
    y: int


def selfish() -> list[Any]:
    looped: list[Any] = []
    looped.append(looped)
    return looped


def kind(*args: Any, **kwargs: Any) -> Any:
    """What a body sees, with the exact types."""
    def typed(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return (type(value).__name__, [typed(v) for v in value])
        if isinstance(value, dict):
            return ("dict", sorted((repr(k), typed(v)) for k, v in value.items()))
        if isinstance(value, (set, frozenset)):
            return (type(value).__name__, sorted(repr(typed(v)) for v in value))
        return (type(value).__name__, repr(value) if isinstance(value, float) else value)
    return (typed(args), sorted((k, typed(v)) for k, v in kwargs.items()))


def one(x: Any) -> Any:
    return kind(x)


def with_default(x: int = 5, y: str = "a") -> Any:
    return kind(x, y)


def keyword_only(x: int, *, flag: bool = False) -> Any:
    return kind(x, flag=flag)


def starred(*args: Any, **kwargs: Any) -> Any:
    return kind(*args, **kwargs)


# (body, first call, second call): each pair must be two different calls.
DIFFERENT = {
    "int-vs-float": (one, ((1,), {}), ((1.0,), {})),
    "int-vs-bool": (one, ((1,), {}), ((True,), {})),
    "same-repr-other-type": (one, ((1,), {}), ((LooksLikeOne(),), {})),
    "zero-vs-negative-zero": (one, ((0.0,), {}), ((-0.0,), {})),
    "str-vs-bytes": (one, (("a",), {}), ((b"a",), {})),
    "tuple-vs-list": (one, (((1, 2),), {}), (([1, 2],), {})),
    "nested-int-vs-bool": (one, (([1, (2,)],), {}), (([True, (2,)],), {})),
    "dict-values-by-type": (one, (({"a": 1},), {}), (({"a": 1.0},), {})),
    "set-vs-frozenset": (one, (({1},), {}), ((frozenset({1}),), {})),
    "list-order": (one, (([1, 2],), {}), (([2, 1],), {})),
    "flag-true-vs-one": (keyword_only, ((1,), {"flag": True}), ((1,), {"flag": 1})),
    "star-args-vs-one-tuple": (starred, ((1, 2), {}), (((1, 2),), {})),
    "star-args-vs-kwargs": (starred, ((1,), {}), ((), {"x": 1})),
}

# (body, first call, second call): each pair must be the same call, computed once.
SAME = {
    "positional-vs-keyword": (one, ((1,), {}), ((), {"x": 1})),
    "default-vs-explicit": (with_default, ((), {}), ((5,), {"y": "a"})),
    "default-vs-keyword": (with_default, ((), {}), ((), {"x": 5})),
    "kwargs-order": (starred, ((), {"a": 1, "b": 2}), ((), {"b": 2, "a": 1})),
    "equal-lists": (one, (([1, [2]],), {}), (([1, [2]],), {})),
    "equal-dicts-any-order": (one, (({"a": 1, "b": 2},), {}), (({"b": 2, "a": 1},), {})),
    "equal-frozen-dataclasses": (one, ((Point(1, 2),), {}), ((Point(1, 2),), {})),
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", DIFFERENT)
async def test_input_5_unequal_arguments_are_different_keys(form, case):
    body, (args1, kwargs1), (args2, kwargs2) = DIFFERENT[case]
    pool = pool_for()
    decorated = build(form, pool, body)
    assert await call(form, decorated, *args1, **kwargs1) == body(*args1, **kwargs1)
    assert await call(form, decorated, *args2, **kwargs2) == body(*args2, **kwargs2)
    assert decorated.cache_key_of(*args1, **kwargs1) != decorated.cache_key_of(*args2,
                                                                             **kwargs2)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", SAME)
async def test_equal_arguments_are_one_call(form, case):
    body, (args1, kwargs1), (args2, kwargs2) = SAME[case]
    pool = pool_for()
    calls: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return body(*args, **kwargs)

    counted.__signature__ = inspect.signature(body)  # type: ignore[attr-defined]
    decorated = build(form, pool, counted)
    first = await call(form, decorated, *args1, **kwargs1)
    assert await call(form, decorated, *args2, **kwargs2) == first
    assert calls == [1]


@pytest.mark.parametrize("form", FORMS)
async def test_objects_with_the_same_repr_are_different_keys(form):
    pool = pool_for()
    decorated = build(form, pool, lambda x: x)
    a, b = SameRepr(), SameRepr()
    assert await call(form, decorated, a) is a
    assert await call(form, decorated, b) is b


@pytest.mark.parametrize("form", FORMS)
async def test_a_new_object_at_a_freed_address_is_a_different_key(form):
    pool = pool_for()
    decorated = build(form, pool, lambda x: x.serial)  # the result holds no reference

    class Plain:  # the default repr: "<...Plain object at 0x...>"
        def __init__(self, serial: int) -> None:
            self.serial = serial

    for serial in range(50):  # CPython hands a freed address to the next object of its size
        fresh = Plain(serial)
        assert await call(form, decorated, fresh) == serial  # was: the previous one's
        del fresh


@pytest.mark.parametrize("form", FORMS)
async def test_a_list_argument_is_keyed_by_its_value_at_call_time(form):
    pool = pool_for()
    decorated = build(form, pool, lambda items: sum(items))
    items = [1, 2]
    assert await call(form, decorated, items) == 3
    items.append(3)
    assert await call(form, decorated, items) == 6


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("argument", "message"), [
    (Unhashable(), r"argument 'x' is an unhashable Unhashable"),
    ([Unhashable()], r"argument 'x' is an unhashable Unhashable"),
    (selfish(), r"an argument contains itself"),
])
async def test_an_argument_without_a_key_is_a_type_error_naming_it(form, argument, message):
    pool = pool_for()
    decorated = build(form, pool, lambda x: x)
    with pytest.raises(TypeError, match=message):
        await call(form, decorated, argument)


@pytest.mark.parametrize("form", FORMS)
async def test_calls_that_do_not_bind_fail_as_the_function_does_and_are_not_cached(form):
    pool = pool_for()
    decorated = build(form, pool, lambda x: x)
    for _ in range(2):
        with pytest.raises(TypeError, match="unexpected keyword argument 'y'"):
            await call(form, decorated, y=1)
    assert len(pool) == 0
