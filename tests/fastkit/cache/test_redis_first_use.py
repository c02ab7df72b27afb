"""Redis pools start once under concurrent first use (threads and tasks), and a client's
close leaves no connection open on the server (the shared Redis, database 13)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis

from fastflyer.cache import default_async_redis, default_redis
from fastflyer.settings import FlyerSettings
from fastkit.cache import get_async_redis_pool, get_redis_pool
from waiting import at_once, wait_for

HOST, PORT, DB = "127.0.0.1", 6379, 13
THREADS, TASKS = 32, 50


def connections_named(name: str) -> int:
    admin = redis.Redis(host=HOST, port=PORT)
    try:
        return sum(1 for client in admin.client_list() if client.get("name") == name)
    finally:
        admin.close()


@pytest.fixture
def name() -> str:
    return f"fastkit-first-{uuid.uuid4().hex[:12]}"


def test_threads_at_first_use_share_one_sync_pool(name):
    clients = at_once(THREADS, lambda: get_redis_pool(HOST, PORT, "", DB, client_name=name))
    assert len({id(client.connection_pool) for client in clients}) == 1


def test_tasks_at_first_use_share_one_pool_per_loop(name):
    async def main() -> set[int]:
        async def first_use() -> int:
            client = get_async_redis_pool(HOST, PORT, "", DB, client_name=name)
            await client.ping()
            return id(client.connection_pool)

        return set(await asyncio.gather(*(first_use() for _ in range(TASKS))))

    pools = at_once(8, lambda: asyncio.run(main()))
    assert all(len(in_loop) == 1 for in_loop in pools)  # one pool in each loop...
    assert len(set().union(*pools)) == 8  # ...and one for each loop
    wait_for(lambda: connections_named(name) == 0)  # each closed with its loop


def test_the_fastflyer_defaults_start_once():
    settings = FlyerSettings(redis_host=HOST, redis_port=PORT, redis_db=DB)
    clients = at_once(THREADS, lambda: default_redis(settings))
    assert len({id(client.connection_pool) for client in clients}) == 1

    async def main() -> set[int]:
        async def first_use() -> int:
            return id(default_async_redis(settings).connection_pool)

        return set(await asyncio.gather(*(first_use() for _ in range(TASKS))))

    assert len(asyncio.run(main())) == 1


def test_close_of_the_sync_client_closes_its_connections(name):
    client = get_redis_pool(HOST, PORT, "", DB, client_name=name)
    key = f"fastkit-test:{name}"
    try:
        at_once(8, lambda: client.incr(key))  # several connections at once
        assert client.get(key) == "8"
        assert connections_named(name) >= 1
        client.close()
        wait_for(lambda: connections_named(name) == 0)
        assert client.get(key) == "8"  # the pool stays usable
    finally:
        client.delete(key)
        client.close()


def test_aclose_of_the_asyncio_client_closes_its_connections(name):
    key = f"fastkit-test:{name}"

    async def main() -> None:
        client = get_async_redis_pool(HOST, PORT, "", DB, client_name=name)
        await asyncio.gather(*(client.incr(key) for _ in range(TASKS)))
        assert await client.get(key) == str(TASKS)
        assert await asyncio.to_thread(connections_named, name) >= 1
        await client.aclose()
        await asyncio.to_thread(wait_for, lambda: connections_named(name) == 0)
        assert await client.delete(key) == 1  # the pool stays usable
        await client.aclose()

    asyncio.run(main())
    assert connections_named(name) == 0
