"""The asyncio Redis client behaves as the sync one: from any event loop, after its
connection is killed, across a server restart, with one retry policy; each test runs for
both clients. Real servers only: the shared Redis (database 13) and, for restarts, a
private redis-server."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from fastkit.cache import get_async_redis_pool, get_redis_pool
from redis_server import RedisServer
from waiting import wait_for

HOST, PORT, DB = "127.0.0.1", 6379, 13
FLAVOURS = ["sync", "async"]


def connections_named(name: str, port: int = PORT) -> int:
    admin = redis.Redis(host=HOST, port=port)
    try:
        return sum(1 for client in admin.client_list() if client.get("name") == name)
    finally:
        admin.close()


class Client:
    """One client of either flavour, called the same way; the asyncio one runs every call
    in one event loop (an ``asyncio.Runner``) unless told to use a new loop each call."""

    def __init__(self, flavour: str, *args: Any, **kwargs: Any) -> None:
        self.flavour = flavour
        self.client: Any = (get_redis_pool if flavour == "sync"
                            else get_async_redis_pool)(*args, **kwargs)
        self.runner = asyncio.Runner()

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.flavour == "sync":
            return getattr(self.client, method)(*args, **kwargs)

        async def call() -> Any:
            return await getattr(self.client, method)(*args, **kwargs)

        return self.runner.run(call())

    def close(self) -> None:
        self.runner.close()


@pytest.fixture
def key() -> Iterator[str]:
    name = f"fastkit-test:{uuid.uuid4().hex}"
    yield name
    redis.Redis(host=HOST, port=PORT, db=DB).delete(name)


@pytest.fixture
def name() -> str:
    return f"fastkit-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=FLAVOURS)
def client(request: pytest.FixtureRequest, name: str) -> Iterator[Client]:
    made = Client(request.param, HOST, PORT, "", DB, client_name=name)
    yield made
    made.close()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_client_made_outside_any_loop_works_in_successive_loops(flavour, key, name):
    # The module-level form: `cache = get_async_redis_pool(...)` in settings.py, then used
    # by code run with asyncio.run() more than once (scripts, tests, CLI commands).
    client = (get_redis_pool if flavour == "sync" else get_async_redis_pool)(
        HOST, PORT, "", DB, client_name=name)

    async def use(value: str) -> str:
        if flavour == "sync":
            client.set(key, value)
            return str(client.get(key))
        await client.set(key, value)
        return str(await client.get(key))

    for round_ in range(3):
        assert asyncio.run(use(f"v{round_}")) == f"v{round_}"
        if flavour == "async":  # the finished loop's connections closed with it
            wait_for(lambda: connections_named(name) == 0)


# The loop closed under open connections: asyncio and redis-py warn as those are collected.
@pytest.mark.filterwarnings("ignore::ResourceWarning",
                            "ignore::pytest.PytestUnraisableExceptionWarning")
def test_each_loop_gets_its_own_pool_and_a_closed_loop_keeps_none(key, name):
    client = get_async_redis_pool(HOST, PORT, "", DB, client_name=name)
    assert isinstance(client, redis.asyncio.Redis)

    async def pool() -> Any:
        await client.ping()
        assert get_async_redis_pool(HOST, PORT, "", DB, client_name=name).connection_pool \
            is client.connection_pool  # shared within the loop
        return client.connection_pool

    first, second = asyncio.run(pool()), asyncio.run(pool())
    assert first is not second

    # A loop closed without shutting down its generators: its pool is dropped at the
    # next first use elsewhere, and nothing in the new loop is disturbed.
    loop = asyncio.new_event_loop()
    loop.run_until_complete(client.ping())
    loop.close()
    assert asyncio.run(pool()) is not first
    del loop
    gc.collect()  # the warnings of its connections, collected here rather than later


def test_the_asyncio_client_keeps_redis_py_api_in_any_loop(key, name):
    client = get_async_redis_pool(HOST, PORT, "", DB, client_name=name)

    async def use(round_: int) -> None:
        async with client.pipeline(transaction=True) as pipe:
            pipe.set(key, round_).get(key)
            assert await pipe.execute() == [True, str(round_)]
        channel = f"{key}:channel"
        pubsub = client.pubsub()
        await pubsub.subscribe(channel)
        try:
            deadline = time.monotonic() + 10
            received = None
            while received is None:
                await client.publish(channel, f"m{round_}")
                message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                   timeout=0.2)
                if message is not None:
                    received = message["data"]
                assert time.monotonic() < deadline
            assert received == f"m{round_}"
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
        async with client.lock(f"{key}:lock", timeout=5):
            assert await client.exists(f"{key}:lock") == 1
        assert client.get_connection_kwargs()["db"] == DB

    for round_ in range(2):
        asyncio.run(use(round_))


def test_a_killed_connection_is_replaced_on_the_next_command(client, key):
    assert client("set", key, "before")
    client_id = client("client_id")
    admin = redis.Redis(host=HOST, port=PORT)
    assert admin.client_kill_filter(_id=client_id) == 1
    # The next command runs on a fresh connection, even though the killed one was not
    # yet seen closed (the async client had no chance to read the close).
    assert client("get", key) == "before"
    assert client("client_id") != client_id


def test_a_server_restart_fails_commands_while_down_and_not_after(private_redis, name):
    for flavour in FLAVOURS:
        client = Client(flavour, HOST, private_redis.port, "", 0, timeout=1, client_name=name)
        try:
            assert client("set", "k", flavour)
            private_redis.stop()
            with pytest.raises(redis.ConnectionError):
                client("get", "k")
            private_redis.start()
            # The first command after the server is back succeeds (its data is gone:
            # the private server keeps nothing on disk).
            assert client("get", "k") is None
            assert client("set", "k", "again")
            assert client("get", "k") == "again"
        finally:
            client.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_restart_between_commands_costs_nothing(private_redis, flavour, name):
    client = Client(flavour, HOST, private_redis.port, "", 0, timeout=1, client_name=name)
    try:
        assert client("set", "k", "v")
        private_redis.stop()
        private_redis.start()
        assert client("ping") is True  # the dead pooled connection is replaced
    finally:
        client.close()


def test_both_clients_share_one_retry_and_timeout_policy():
    sync = get_redis_pool(HOST, PORT, "", DB, timeout=2)
    asynchronous = get_async_redis_pool(HOST, PORT, "", DB, timeout=2)
    ours = ("host", "port", "db", "password", "decode_responses", "socket_timeout",
            "socket_connect_timeout", "health_check_interval", "retry_on_error", "client_name")
    sync_options = {k: sync.connection_pool.connection_kwargs.get(k) for k in ours}
    async_options = {k: asynchronous.connection_pool.connection_kwargs.get(k) for k in ours}
    assert sync_options == async_options
    sync_retry = sync.connection_pool.connection_kwargs["retry"]
    async_retry = asynchronous.connection_pool.connection_kwargs["retry"]
    assert sync_options["socket_timeout"] == sync_options["socket_connect_timeout"] == 2
    assert sync_options["health_check_interval"] == 0
    assert sync_options["retry_on_error"] == [redis.ConnectionError]
    assert sync_retry.get_retries() == async_retry.get_retries() >= 1
    assert type(sync_retry._backoff) is type(async_retry._backoff)
    assert set(sync_retry._supported_errors) == set(async_retry._supported_errors) \
        == {redis.ConnectionError}
    # Each connection applies that policy (redis-py copies it into every connection).
    sync_connection = sync.connection_pool.make_connection()
    async_connection = asynchronous.connection_pool.make_connection()
    assert sync_connection.retry.get_retries() == async_connection.retry.get_retries()
