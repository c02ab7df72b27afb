"""Redis clients on shared connection pools (redis-py).

``get_redis_pool(host, port, passwd, database, timeout)`` keeps the original's positional
order. The same arguments give a client on the same pool, from any thread; responses are
decoded to ``str``. ``host`` may instead be a ``redis://``, ``rediss://`` or ``unix://`` URL.
Connections open at the first command, never here. An unreachable server fails that
command with redis-py's ``ConnectionError``, which names the host and port; passwords
appear in no repr and no message.

Both clients get their options from one builder, :func:`_options`, so they behave alike:
connect and read timeouts of ``timeout`` seconds, no health-check pings, and the same retry
policy (:data:`RETRIES` retries of a command that failed with a ``ConnectionError``, after
a short jittered backoff, each on a fresh connection). A connection the server closed
(``CLIENT KILL``, a restart, ``timeout``) therefore costs the next command nothing, even
when the client has not yet noticed the close; a server that stays down fails the command
with ``ConnectionError``. Timeouts are not retried: the command may have run. Keyword
arguments (``retry=``, ``retry_on_error=``, ``health_check_interval=``...) override these.

:func:`get_async_redis_pool` returns a :class:`LoopLocalRedis`, a ``redis.asyncio.Redis``
that works from any event loop: asyncio connections belong to the loop that opened them,
so its ``connection_pool`` is the pool of the running loop (one per loop and arguments,
made on first use there and closed when that loop shuts down). redis-py documents no way
to share one asyncio pool across loops; this keeps its client and pool classes as they are
and only picks the pool per loop.

``close()`` (sync) and ``aclose()`` (asyncio) close the connections of the client's pool
(for asyncio, the running loop's): the pool is shared by every client with the same
arguments, and those reconnect at their next command.

While metrics are on (:func:`fastkit.metrics.enable`), every pool keeps
``db_client_connections_usage{pool,state}`` (:mod:`fastkit._pool_metrics`): ``used``, the
connections handed out by ``get_connection()`` and not yet released; ``idle``, those back
in the pool (redis-py keeps a released connection in the pool until the pool drops it).
``pool`` is the ``client_name`` given, else ``host:port/db`` (``path/db`` for a Unix
socket). While metrics are off, each checkout and release costs one boolean test.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Hashable
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis.backoff import ExponentialWithJitterBackoff

from fastkit import metrics
from fastkit._loop_local import LoopLocal
from fastkit._pool_metrics import PoolUsage, pool_name

__all__ = ["RETRIES", "AsyncMeteredConnectionPool", "LoopLocalRedis", "MeteredConnectionPool",
           "SharedRedis", "get_async_redis_pool", "get_redis_pool"]

RETRIES = 3
"""Retries of a command that failed with ``ConnectionError`` (sync and asyncio alike)."""
_BACKOFF = {"base": 0.05, "cap": 0.5}  # seconds: first retry after up to 50 ms

_URL_SCHEMES = ("redis://", "rediss://", "unix://")
_lock = threading.Lock()


def _usage(pool: redis.ConnectionPool | redis.asyncio.ConnectionPool) -> PoolUsage:
    """The connection gauge of ``pool``, named from its connection arguments (never
    its URL or password); retired when the pool is collected."""
    kwargs = pool.connection_kwargs
    given = kwargs.get("client_name")
    if given:
        name = str(given)
    elif kwargs.get("path"):
        name = pool_name(str(kwargs["path"]), None, kwargs.get("db", 0))
    else:
        name = pool_name(str(kwargs.get("host", "localhost")), kwargs.get("port", 6379),
                         kwargs.get("db", 0))
    usage = PoolUsage(name)
    usage.watch(pool)
    return usage


class MeteredConnectionPool(redis.ConnectionPool):
    """redis-py's ``ConnectionPool`` that keeps the connection gauge while metrics are on
    (its checkouts and releases; everything else is redis-py's). ``fastkit_usage`` is its
    :class:`~fastkit._pool_metrics.PoolUsage` (``.name``: its ``pool`` label)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fastkit_usage = _usage(self)

    def get_connection(self, *args: Any, **kwargs: Any) -> redis.Connection:
        connection = super().get_connection(*args, **kwargs)
        if metrics.enabled():
            self.fastkit_usage.checked_out(connection)
        return connection

    def release(self, connection: Any) -> None:
        super().release(connection)
        if metrics.enabled():
            self.fastkit_usage.checked_in(connection)


class AsyncMeteredConnectionPool(redis.asyncio.ConnectionPool):
    """The asyncio :class:`MeteredConnectionPool`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fastkit_usage = _usage(self)

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        connection = await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        if metrics.enabled():
            self.fastkit_usage.checked_out(connection)
        return connection

    async def release(self, connection: Any) -> None:
        await super().release(connection)
        if metrics.enabled():
            self.fastkit_usage.checked_in(connection)


_sync_pools: dict[Hashable, redis.ConnectionPool] = {}


async def _disconnect(pool: redis.asyncio.ConnectionPool) -> None:
    await pool.disconnect()


_async_pools: LoopLocal[redis.asyncio.ConnectionPool] = LoopLocal(_disconnect)


def _options(host: str, port: int | str, passwd: str | None, database: int | str,
             timeout: float, extra: dict[str, Any], *, for_asyncio: bool
             ) -> tuple[Hashable, str | None, dict[str, Any]]:
    """``(cache key, url, pool keyword arguments)``, validated: the one builder of both
    clients' options; only the ``Retry`` class differs (redis-py has one per flavour)."""
    options: dict[str, Any] = {"decode_responses": True, "socket_timeout": timeout,
                               "socket_connect_timeout": timeout}
    url: str | None = None
    if str(host).startswith(_URL_SCHEMES):
        url = str(host)
    else:
        try:
            port_number = int(port)
        except (TypeError, ValueError):
            raise ValueError(f"redis port {port!r} is not a number") from None
        if not 0 < port_number < 65536:
            raise ValueError(f"redis port {port_number} is not between 1 and 65535")
        try:
            db = int(database)
        except (TypeError, ValueError):
            raise ValueError(f"redis database {database!r} is not a number") from None
        options.update(host=str(host), port=port_number, db=db, password=passwd or None)
    options.update(extra)
    key = (url, tuple(sorted((k, repr(v)) for k, v in options.items())))
    retry_class = redis.asyncio.retry.Retry if for_asyncio else redis.retry.Retry
    policy: dict[str, Any] = {
        # Each connection deep-copies it: nothing is shared between connections.
        "retry": retry_class(ExponentialWithJitterBackoff(**_BACKOFF), RETRIES,
                             supported_errors=(redis.ConnectionError,)),
        "retry_on_error": [redis.ConnectionError],
        "health_check_interval": 0,
    }
    return key, url, {**policy, **options}


class SharedRedis(redis.Redis):
    """A ``redis.Redis`` on a shared pool whose ``close()`` closes the pool's connections
    (the pool stays usable: every client on it reconnects at its next command)."""

    def close(self) -> None:
        super().close()
        self.connection_pool.disconnect()

    def __del__(self) -> None:  # a collected client closes nothing that others share
        with contextlib.suppress(Exception):
            redis.Redis.close(self)

    def client(self) -> redis.Redis:
        """A client on one connection of the pool (its ``close()`` releases only that)."""
        return redis.Redis(connection_pool=self.connection_pool, single_connection_client=True)


class LoopLocalRedis(redis.asyncio.Redis):
    """A ``redis.asyncio.Redis`` usable from any event loop: ``connection_pool`` is the
    running loop's pool for the client's arguments (outside a loop, a pool of its own).

    Everything else is redis-py's: commands, ``pipeline()``, ``pubsub()``, ``lock()``.
    A pipeline or pubsub takes the pool of the loop it is made in, so make it where it is
    used. ``aclose()`` closes the running loop's pool's connections (shared with every
    client of the same arguments; they reconnect at their next command).
    """

    def __init__(self, key: Hashable, url: str | None, options: dict[str, Any]) -> None:
        self._pool_key = key
        self._pool_url = url
        self._pool_options = options
        self._own_pool: redis.asyncio.ConnectionPool | None = None
        super().__init__(connection_pool=self.connection_pool)

    def _make_pool(self) -> redis.asyncio.ConnectionPool:
        if self._pool_url:
            return AsyncMeteredConnectionPool.from_url(self._pool_url, **self._pool_options)
        return AsyncMeteredConnectionPool(**self._pool_options)

    @property
    def connection_pool(self) -> redis.asyncio.ConnectionPool:
        """The running loop's pool (made on first use in that loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop: one pool for this client, for inspection
            if self._own_pool is None:
                self._own_pool = self._make_pool()
            return self._own_pool
        return _async_pools.get(self._pool_key, self._make_pool)

    @connection_pool.setter
    def connection_pool(self, value: redis.asyncio.ConnectionPool) -> None:
        """Ignored: the pool is chosen per loop (redis-py's ``__init__`` assigns it)."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool=False)
        if close_connection_pool is not False:
            await self.connection_pool.disconnect()

    def client(self) -> redis.asyncio.Redis:
        """A client on one connection of the running loop's pool."""
        return redis.asyncio.Redis(connection_pool=self.connection_pool,
                                   single_connection_client=True)


def get_redis_pool(host: str = "localhost", port: int | str = 6379, passwd: str | None = "",
                   database: int | str = 0, timeout: float = 3, **kwargs: Any) -> redis.Redis:
    """A ``redis.Redis`` (:class:`SharedRedis`) on the pool shared by every call with the
    same arguments, made once however many threads ask at once."""
    key, url, options = _options(host, port, passwd, database, timeout, kwargs, for_asyncio=False)
    pool = _sync_pools.get(key)
    if pool is None:
        with _lock:
            pool = _sync_pools.get(key)
            if pool is None:
                pool = (MeteredConnectionPool.from_url(url, **options) if url
                        else MeteredConnectionPool(**options))
                _sync_pools[key] = pool
    return SharedRedis(connection_pool=pool)


def get_async_redis_pool(host: str = "localhost", port: int | str = 6379,
                         passwd: str | None = "", database: int | str = 0, timeout: float = 3,
                         **kwargs: Any) -> redis.asyncio.Redis:
    """A ``redis.asyncio.Redis`` (:class:`LoopLocalRedis`) usable from any event loop, on
    the pool its loop shares among calls with the same arguments; safe to make at import.
    Same options and retry policy as :func:`get_redis_pool`."""
    key, url, options = _options(host, port, passwd, database, timeout, kwargs, for_asyncio=True)
    return LoopLocalRedis(key, url, options)
