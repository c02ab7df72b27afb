"""Redis clients on shared connection pools (redis-py).

``get_redis_pool(host, port, passwd, database, timeout)`` keeps the original's positional
order. The same arguments give a client on the same pool, from any thread; responses are
decoded to ``str``. ``host`` may instead be a ``redis://``, ``rediss://`` or ``unix://`` URL.
Connections open at the first command, never here. An unreachable server fails that
command with redis-py's ``ConnectionError``, which names the host and port; passwords
appear in no repr and no message.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Hashable
from typing import Any

import redis
import redis.asyncio

__all__ = ["get_async_redis_pool", "get_redis_pool"]

_URL_SCHEMES = ("redis://", "rediss://", "unix://")
_lock = threading.Lock()
_sync_pools: dict[Hashable, redis.ConnectionPool] = {}
# Per event loop, forgotten with the loop.
_async_pools: weakref.WeakKeyDictionary[Any, dict[Hashable, redis.asyncio.ConnectionPool]] = (
    weakref.WeakKeyDictionary())


def _options(host: str, port: int | str, passwd: str | None, database: int | str,
             timeout: float, extra: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """``(url, pool keyword arguments)``, validated."""
    options: dict[str, Any] = {"decode_responses": True, "socket_timeout": timeout,
                               "socket_connect_timeout": timeout, **extra}
    if str(host).startswith(_URL_SCHEMES):
        return str(host), options
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
    return None, options


def _key(url: str | None, options: dict[str, Any]) -> Hashable:
    return (url, tuple(sorted((k, repr(v)) for k, v in options.items())))


def get_redis_pool(host: str = "localhost", port: int | str = 6379, passwd: str | None = "",
                   database: int | str = 0, timeout: float = 3, **kwargs: Any) -> redis.Redis:
    """A ``redis.Redis`` on the pool shared by every call with the same arguments."""
    url, options = _options(host, port, passwd, database, timeout, kwargs)
    key = _key(url, options)
    with _lock:
        pool = _sync_pools.get(key)
        if pool is None:
            pool = (redis.ConnectionPool.from_url(url, **options) if url
                    else redis.ConnectionPool(**options))
            _sync_pools[key] = pool
    return redis.Redis(connection_pool=pool)


def get_async_redis_pool(host: str = "localhost", port: int | str = 6379,
                         passwd: str | None = "", database: int | str = 0, timeout: float = 3,
                         **kwargs: Any) -> redis.asyncio.Redis:
    """A ``redis.asyncio.Redis`` on a pool shared by calls with the same arguments made in
    the same event loop (asyncio connections belong to the loop that opened them)."""
    url, options = _options(host, port, passwd, database, timeout, kwargs)
    key = _key(url, options)
    try:
        loop: Any = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    with _lock:
        try:
            pools = _async_pools.setdefault(loop, {}) if loop is not None else {}
        except TypeError:  # a loop that cannot be weakly referenced: no sharing
            pools = {}
        pool = pools.get(key)
        if pool is None:
            pool = (redis.asyncio.ConnectionPool.from_url(url, **options) if url
                    else redis.asyncio.ConnectionPool(**options))
            pools[key] = pool
    return redis.asyncio.Redis(connection_pool=pool)
