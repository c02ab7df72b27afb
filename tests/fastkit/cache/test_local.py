"""Named in-process caches and the cache_result decorator."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import cacheout
import pytest

from fastflyer.cache import get_cacheout_pool as flyer_get_cacheout_pool
from fastkit.cache import CACHE_TYPES, CachePoolError, get_cacheout_pool
from waiting import wait_for


def name() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.mark.parametrize(("kind", "base"), [
    ("cache", cacheout.Cache), ("fifo", cacheout.FIFOCache), ("lifo", cacheout.LIFOCache),
    ("lru", cacheout.LRUCache), ("mru", cacheout.MRUCache), ("lfu", cacheout.LFUCache),
    ("rr", cacheout.RRCache),
])
def test_every_type_is_a_real_cacheout_cache(kind, base):
    pool = get_cacheout_pool(name(), kind, maxsize=2)
    assert isinstance(pool, base)
    pool.set("a", 1)
    pool.set("b", 2)
    pool.set("c", 3)
    assert len(pool) == 2  # maxsize holds
    assert callable(pool.cache_result)


def test_the_same_name_is_the_same_pool_and_other_settings_are_an_error():
    pool_name = name()
    pool = get_cacheout_pool(pool_name, "lru", maxsize=10, ttl=5)
    assert get_cacheout_pool(pool_name, "lru", maxsize=10, ttl=5) is pool
    assert flyer_get_cacheout_pool(pool_name, "lru", maxsize=10, ttl=5) is pool
    with pytest.raises(CachePoolError, match=r"exists as cache_type='lru', maxsize=10, ttl=5; "
                       r"asked for cache_type='lru', maxsize=20, ttl=5"):
        get_cacheout_pool(pool_name, "lru", maxsize=20, ttl=5)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cache_type": "lru2"}, "cache_type 'lru2' is not one of cache, fifo, lifo"),
    ({"maxsize": -1}, "maxsize must be an integer ≥ 0"),
    ({"ttl": -1}, "ttl must be ≥ 0"),
])
def test_bad_settings_name_what_is_wrong(kwargs, message):
    with pytest.raises(CachePoolError, match=message):
        get_cacheout_pool(name(), **kwargs)


def test_ttl_expires_entries():
    pool = get_cacheout_pool(name(), "cache", ttl=0.05)
    set_at = time.monotonic()
    pool.set("k", "v")
    assert pool.get("k") == "v"
    wait_for(lambda: pool.get("k") is None, 5, "the entry expired")
    assert time.monotonic() - set_at >= 0.04  # at its ttl, not before (cacheout's own clock)


def test_cache_result_on_a_sync_function_with_the_original_cache_key_form():
    pool = get_cacheout_pool(name())
    calls: list[int] = []

    @pool.cache_result(cache_key="square", ttl=60)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert [square(3), square(3), square(4), square(x=3)] == [9, 9, 16, 9]
    assert calls == [3, 4]  # square(x=3) is the call square(3)
    assert square.__name__ == "square"
    assert pool.get(square.cache_key_of(3)) == 9
    assert square.cache_key_of(3)[0] == "square"  # the explicit key names the key space


def test_cache_result_without_a_key_uses_the_function_name():
    pool = get_cacheout_pool(name())

    @pool.cache_result()
    def constant() -> str:
        return "value"

    constant()
    assert any("constant" in repr(key[0]) for key in pool)


def test_sync_concurrent_callers_compute_once():
    pool = get_cacheout_pool(name())
    calls: list[int] = []

    @pool.cache_result(ttl=60)
    def slow(x: int) -> int:
        calls.append(x)
        time.sleep(0.2)
        return x + 1

    threads = [threading.Thread(target=slow, args=(1,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [1]


async def test_async_concurrent_callers_compute_once():
    pool = get_cacheout_pool(name())
    calls: list[int] = []

    @pool.cache_result(cache_key="user", ttl=60)
    async def load(user_id: int) -> dict:
        calls.append(user_id)
        await asyncio.sleep(0.05)
        return {"id": user_id}

    results = await asyncio.gather(*(load(7) for _ in range(20)))
    assert results == [{"id": 7}] * 20
    assert calls == [7]
    assert await load(7) == {"id": 7}
    assert calls == [7]


async def test_an_async_failure_reaches_every_waiter_and_is_not_cached():
    pool = get_cacheout_pool(name())
    attempts: list[int] = []

    @pool.cache_result(ttl=60)
    async def flaky() -> str:
        attempts.append(1)
        await asyncio.sleep(0.02)
        if len(attempts) == 1:
            raise ConnectionError("upstream down")
        return "ok"

    results = await asyncio.gather(*(flaky() for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await flaky() == "ok"
    assert len(attempts) == 2


def test_cache_types_are_listed():
    assert list(CACHE_TYPES) == ["cache", "fifo", "lifo", "lru", "mru", "lfu", "rr"]
