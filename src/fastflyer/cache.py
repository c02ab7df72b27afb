"""Caches for FastFlyer projects: :mod:`fastkit.cache` under the framework's name.

    from fastflyer.cache import get_redis_pool, get_async_redis_pool, get_cacheout_pool
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import fastkit.cache
from fastkit.cache import CACHE_TYPES, CachePoolError, get_cacheout_pool

if TYPE_CHECKING:
    from fastkit.cache import get_async_redis_pool, get_redis_pool

__all__ = ["CACHE_TYPES", "CachePoolError", "get_async_redis_pool", "get_cacheout_pool",
           "get_redis_pool"]


def __getattr__(name: str) -> Any:
    if name in ("get_redis_pool", "get_async_redis_pool"):
        return getattr(fastkit.cache, name)
    raise AttributeError(f"module 'fastflyer.cache' has no attribute {name!r}")
