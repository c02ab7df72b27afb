"""Caches: Redis clients on shared pools, and named in-process caches.

    from fastkit.cache import get_redis_pool, get_async_redis_pool, get_cacheout_pool

    redis = get_redis_pool("127.0.0.1", 6379, "", 0)      # the seed's positional form
    redis.set("a", 1); redis.get("a")                      # -> "1" (responses are str)

    cache = get_cacheout_pool("users", "lru", maxsize=1024, ttl=60)

    @cache.cache_result(ttl=120)
    async def load_user(user_id: int) -> dict: ...

Nothing connects at creation: a Redis client opens its first connection on its first
command, so creating one in a project's ``settings.py`` is safe at import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastkit._lazy import lazy_exports
from fastkit.cache._local import CACHE_TYPES, CachePoolError, get_cacheout_pool

if TYPE_CHECKING:
    from fastkit.cache._redis import get_async_redis_pool, get_redis_pool

__all__ = [
    "CACHE_TYPES",
    "CachePoolError",
    "get_async_redis_pool",
    "get_cacheout_pool",
    "get_redis_pool",
]

# redis is an optional dependency (the `redis` extra): imported on first use.
__getattr__ = lazy_exports(__name__, globals(), {
    "get_redis_pool": "._redis", "get_async_redis_pool": "._redis",
})
