"""Caches for FastFlyer projects: :mod:`fastkit.cache` under the framework's name, plus
the project's default Redis.

    from fastflyer.cache import get_redis_pool, get_async_redis_pool, get_cacheout_pool
    from fastflyer.cache import default_redis, default_async_redis

``default_redis()`` is the client for ``flyer_redis_host``, ``flyer_redis_port``,
``flyer_redis_pass`` and ``flyer_redis_db``; with ``flyer_redis_host`` set, the app also
reports that Redis in its readiness check. Without ``settings``, they are those of the
app the code runs for (:func:`fastflyer.app_context.current_settings`). Its connect and
read timeouts are :func:`fastkit.cache.get_redis_pool`'s, 3 s each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import fastkit.cache
from fastflyer.app_context import current_settings
from fastkit.cache import CACHE_TYPES, CachePoolError, get_cacheout_pool

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from fastflyer.settings import FlyerSettings
    from fastkit.cache import get_async_redis_pool, get_redis_pool

__all__ = ["CACHE_TYPES", "CachePoolError", "default_async_redis", "default_redis",
           "get_async_redis_pool", "get_cacheout_pool", "get_redis_pool"]


def _redis_arguments(settings: FlyerSettings | None) -> tuple[str, int, str, int]:
    if settings is None:
        settings = current_settings()
    if not settings.redis_host:
        raise CachePoolError("no default Redis: flyer_redis_host is not set")
    return (settings.redis_host, settings.redis_port, settings.redis_pass.get_secret_value(),
            settings.redis_db)


def default_redis(settings: FlyerSettings | None = None) -> redis.Redis:
    """The ``redis.Redis`` for the ``flyer_redis_*`` settings (on a shared pool)."""
    return fastkit.cache.get_redis_pool(*_redis_arguments(settings))


def default_async_redis(settings: FlyerSettings | None = None) -> redis.asyncio.Redis:
    """The ``redis.asyncio.Redis`` for the ``flyer_redis_*`` settings: usable from any
    event loop, each loop on a pool of its own, closed with that loop (see
    :class:`fastkit.cache._redis.LoopLocalRedis`); same retry policy as :func:`default_redis`."""
    return fastkit.cache.get_async_redis_pool(*_redis_arguments(settings))


def __getattr__(name: str) -> Any:
    if name in ("get_redis_pool", "get_async_redis_pool"):
        return getattr(fastkit.cache, name)
    raise AttributeError(f"module 'fastflyer.cache' has no attribute {name!r}")
