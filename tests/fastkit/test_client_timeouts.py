"""Every network client FastKit makes gives up on a server that never answers.

Each client kind calls a real TCP server that takes connections and never sends a byte
(or, for connect timeouts, never even completes the TCP handshake): the call fails
within the timeout it was given plus a margin, not before, with an error that names
what timed out. The defaults are checked where a client shows them (the arguments the
database driver is really called with, httpx's and redis-py's own attributes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy
from sqlalchemy import event

from fastkit.cache import get_async_redis_pool, get_redis_pool
from fastkit.database import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    AsyncMySQL,
    MySQL,
    get_dataset_pool,
    timeout_arguments,
)
from fastkit.httpx import AsyncClient, Client
from fastkit.message import (
    AsyncConsumer,
    AsyncProducer,
    ConsumeError,
    Consumer,
    ProduceError,
    Producer,
)
from hung_server import hung_server
from mariadb import URL as MARIADB_URL

MARGIN = 2.0  # seconds a call may take past its timeout (a loaded CI machine)


def _mysql(port: int, query: str = "", **kwargs: Any) -> None:
    pool = MySQL(f"mysql+pymysql://root@127.0.0.1:{port}/test{query}", **kwargs)
    try:
        pool.ping()
    finally:
        pool.close()


def _dataset(port: int, query: str) -> None:
    data_set = get_dataset_pool(f"mysql+pymysql://root@127.0.0.1:{port}/test{query}")
    try:
        data_set.query("SELECT 1")
    finally:
        data_set.close()


def _async_mysql(port: int, query: str = "", **kwargs: Any) -> None:
    async def ping() -> None:
        pool = AsyncMySQL(f"mysql+aiomysql://root@127.0.0.1:{port}/test{query}", **kwargs)
        try:
            await pool.ping()
        finally:
            await pool.close()

    asyncio.run(ping())


def _redis(port: int, timeout: float) -> None:
    client = get_redis_pool("127.0.0.1", port, "", 0, timeout)
    try:
        client.ping()
    finally:
        client.connection_pool.disconnect()


def _async_redis(port: int, timeout: float) -> None:
    async def ping() -> None:
        client = get_async_redis_pool("127.0.0.1", port, "", 0, timeout)
        try:
            await client.ping()
        finally:
            await client.connection_pool.disconnect()

    asyncio.run(ping())


def _async_producer(port: int, send_timeout: float = 10, **kwargs: Any) -> None:
    async def send() -> None:
        producer = AsyncProducer(f"127.0.0.1:{port}", "orders", **kwargs)
        try:
            await producer.send({"id": 1}, timeout=send_timeout)
        finally:
            await producer.close()

    asyncio.run(send())


def _async_consumer(port: int, request_timeout_ms: int) -> None:
    async def start() -> None:
        consumer = AsyncConsumer(f"127.0.0.1:{port}", "orders", group_id="billing",
                                 request_timeout_ms=request_timeout_ms)
        try:
            await consumer.start()
        finally:
            await consumer.stop()

    asyncio.run(start())


def _producer(port: int, request_timeout_ms: int) -> None:
    with Producer(f"127.0.0.1:{port}", "orders", request_timeout_ms=request_timeout_ms) as sync:
        sync.send({"id": 1})


def _consumer(port: int, request_timeout_ms: int) -> None:
    with Consumer(f"127.0.0.1:{port}", "orders", group_id="billing",
                  request_timeout_ms=request_timeout_ms) as consumer:
        consumer.start()


def _http(port: int, timeout: float) -> None:
    with Client(timeout=timeout, retry=False) as client:
        client.get(f"http://127.0.0.1:{port}/")


def _async_http(port: int, timeout: float) -> None:
    async def get() -> None:
        async with AsyncClient(timeout=timeout, retry=False) as client:
            await client.get(f"http://127.0.0.1:{port}/")

    asyncio.run(get())


KAFKA = r"cannot reach Kafka at 127\.0\.0\.1:\d+ \(connect and requests time out after " \
        r"request_timeout_ms=1000\)"

# (what, call(port), seconds it is given, error, what the message says)
AFTER_CONNECTING: list[tuple[str, Callable[[int], None], float, type[Exception], str]] = [
    ("sync database, read_timeout in the URL", lambda p: _mysql(p, "?read_timeout=1"), 1,
     sqlalchemy.exc.OperationalError, r"Lost connection to MySQL server .*\(timed out\)"),
    ("sync database, read_timeout in connect_args",
     lambda p: _mysql(p, connect_args={"read_timeout": 1.5}), 1.5,
     sqlalchemy.exc.OperationalError, r"\(timed out\)"),
    ("dataset, read_timeout in the URL", lambda p: _dataset(p, "?read_timeout=1"), 1,
     sqlalchemy.exc.OperationalError, r"\(timed out\)"),
    # aiomysql has no read timeout: its whole login gets connect + read timeouts.
    ("async database, in the URL",
     lambda p: _async_mysql(p, "?connect_timeout=1&read_timeout=1"), 2,
     sqlalchemy.exc.OperationalError, r"no answer from the MySQL server at 127\.0\.0\.1:\d+ "
     r"within 2 s \(connect_timeout 1 s \+ read_timeout 1 s\)"),
    ("async database, in connect_args",
     lambda p: _async_mysql(p, connect_args={"connect_timeout": 0.5, "read_timeout": 1}), 1.5,
     sqlalchemy.exc.OperationalError, r"within 1\.5 s"),
    ("sync redis", lambda p: _redis(p, 1), 1,
     redis.exceptions.TimeoutError, "Timeout reading from socket"),
    ("async redis", lambda p: _async_redis(p, 1), 1,
     redis.exceptions.TimeoutError, r"Timeout reading from 127\.0\.0\.1:\d+"),
    ("async kafka producer", lambda p: _async_producer(p, request_timeout_ms=1000), 1,
     ProduceError, KAFKA),
    ("async kafka producer, send timeout", lambda p: _async_producer(p, send_timeout=1.5), 1.5,
     ProduceError, r"no connection to Kafka at 127\.0\.0\.1:\d+ within 1\.5 s"),
    ("async kafka consumer", lambda p: _async_consumer(p, 1000), 1, ConsumeError, KAFKA),
    ("kafka producer", lambda p: _producer(p, 1000), 1, ProduceError, KAFKA),
    ("kafka consumer", lambda p: _consumer(p, 1000), 1, ConsumeError, KAFKA),
    ("http client", lambda p: _http(p, 1), 1, httpx.ReadTimeout, "timed out"),
    ("async http client", lambda p: _async_http(p, 1), 1, httpx.ReadTimeout, ""),
]

NEVER_CONNECTED: list[tuple[str, Callable[[int], None], float, type[Exception], str]] = [
    ("sync database", lambda p: _mysql(p, "?connect_timeout=1"), 1,
     sqlalchemy.exc.OperationalError, r"Can't connect to MySQL server on '127\.0\.0\.1' "
     r"\(timed out\)"),
    ("async database", lambda p: _async_mysql(p, connect_args={"connect_timeout": 1}), 1,
     sqlalchemy.exc.OperationalError, r"Can't connect to MySQL server on '127\.0\.0\.1'"),
    ("sync redis", lambda p: _redis(p, 1), 1,
     redis.exceptions.TimeoutError, "Timeout connecting to server"),
    ("async redis", lambda p: _async_redis(p, 1), 1,
     redis.exceptions.TimeoutError, "Timeout connecting to server"),
    ("async kafka producer", lambda p: _async_producer(p, request_timeout_ms=1000), 1,
     ProduceError, KAFKA),
    ("http client", lambda p: _http(p, 1), 1, httpx.ConnectTimeout, "timed out"),
    ("async http client", lambda p: _async_http(p, 1), 1, httpx.ConnectTimeout, ""),
]


def _fails_in_time(call: Callable[[int], None], port: int, seconds: float,
                   error: type[Exception], message: str) -> float:
    started = time.monotonic()
    # httpx's asyncio errors have no message: their type says what timed out.
    with pytest.raises(error, match=message or None):
        call(port)
    elapsed = time.monotonic() - started
    # Not before its timeout (the timeout is what ended it), and not long after.
    assert seconds * 0.9 <= elapsed < seconds + MARGIN, elapsed
    return elapsed


@pytest.mark.parametrize(("what", "call", "seconds", "error", "message"), AFTER_CONNECTING,
                         ids=[case[0] for case in AFTER_CONNECTING])
def test_a_server_that_accepts_and_never_answers_times_out(what, call, seconds, error, message):
    with hung_server() as port:
        _fails_in_time(call, port, seconds, error, message)


@pytest.mark.parametrize(("what", "call", "seconds", "error", "message"), NEVER_CONNECTED,
                         ids=[case[0] for case in NEVER_CONNECTED])
def test_a_server_that_never_completes_the_connection_times_out(what, call, seconds, error,
                                                                message):
    with hung_server(accept=False) as port:
        _fails_in_time(call, port, seconds, error, message)


def _driver_arguments(engine: sqlalchemy.Engine) -> dict[str, Any]:
    """The keyword arguments the driver's ``connect()`` is called with, at a real connect."""
    seen: dict[str, Any] = {}

    @event.listens_for(engine, "do_connect")
    def record(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        seen.update(cparams)

    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("SELECT 1"))
    return seen


@pytest.mark.parametrize(("query", "connect_args", "expected"), [
    ("", None, {"connect_timeout": CONNECT_TIMEOUT, "read_timeout": READ_TIMEOUT,
                "write_timeout": READ_TIMEOUT}),
    ("?read_timeout=300", None, {"connect_timeout": CONNECT_TIMEOUT, "read_timeout": 300,
                                 "write_timeout": READ_TIMEOUT}),
    # connect_args win over the URL, as in SQLAlchemy; None turns a read timeout off
    ("?read_timeout=300&connect_timeout=9", {"read_timeout": None, "connect_timeout": 7},
     {"connect_timeout": 7, "read_timeout": None, "write_timeout": READ_TIMEOUT}),
])
def test_the_driver_is_called_with_the_default_timeouts_unless_given(query, connect_args,
                                                                      expected):
    kwargs = {} if connect_args is None else {"connect_args": connect_args}
    pool = MySQL(MARIADB_URL + query, **kwargs)
    try:
        seen = _driver_arguments(pool.engine)
    finally:
        pool.close()
    assert {name: seen[name] for name in expected} == expected
    assert (CONNECT_TIMEOUT, READ_TIMEOUT) == (5, 60)


def test_a_dataset_pool_calls_its_driver_with_the_default_timeouts():
    data_set = get_dataset_pool(MARIADB_URL)
    try:
        seen = _driver_arguments(data_set.engine)
    finally:
        data_set.close()
    assert seen["connect_timeout"] == 5 and seen["read_timeout"] == seen["write_timeout"] == 60


async def test_an_async_pool_works_with_its_bounded_login():
    pool = AsyncMySQL(MARIADB_URL + "?charset=utf8mb4")
    try:
        async with pool.get_session() as session:
            result = await session.execute(sqlalchemy.text("SELECT CONNECTION_ID(), 6 * 7"))
            connection_id, answer = result.one()
    finally:
        await pool.close()
    assert answer == 42 and connection_id > 0


@pytest.mark.parametrize(("url", "expected"), [
    ("mysql+pymysql://h/d", {"connect_timeout": 2.5, "read_timeout": 9, "write_timeout": 9}),
    ("mysql://h/d", {"connect_timeout": 3, "read_timeout": 9, "write_timeout": 9}),  # mysqldb
    ("mysql+aiomysql://h/d", {"connect_timeout": 2.5, "read_timeout": 9}),
    ("postgresql+asyncpg://h/d", {"timeout": 2.5, "command_timeout": 9}),
    ("postgresql+psycopg2://h/d", {"connect_timeout": 3}),
    ("sqlite:///x.db", {}),
])
def test_timeout_arguments_use_each_drivers_own_names(url, expected):
    assert timeout_arguments(url, 2.5, 9) == expected


@pytest.mark.parametrize("bad", [0, -1.0])
def test_timeout_arguments_refuse_a_timeout_that_is_not_positive(bad):
    with pytest.raises(ValueError, match="read timeout must be > 0 seconds"):
        timeout_arguments("mysql+pymysql://h/d", 1, bad)


def test_the_http_clients_default_timeouts_are_5_seconds_never_none():
    with Client() as client:
        assert client.timeout == httpx.Timeout(5.0)

    async def made() -> httpx.Timeout:
        async with AsyncClient() as client:
            return client.timeout

    assert asyncio.run(made()) == httpx.Timeout(5.0)
    with Client(timeout=httpx.Timeout(60, connect=2)) as client:
        assert (client.timeout.connect, client.timeout.read) == (2, 60)


def test_redis_clients_time_out_after_the_seeds_3_seconds_unless_given():
    client = get_redis_pool("127.0.0.1", 6379)
    options = client.connection_pool.connection_kwargs
    assert options["socket_timeout"] == options["socket_connect_timeout"] == 3
    client = get_redis_pool("redis://127.0.0.1:6379/0?socket_timeout=9")
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 9  # the URL's wins
