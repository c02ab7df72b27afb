"""Named in-process caches on cacheout, with a ``cache_result`` decorator.

``get_cacheout_pool(name, cache_type, maxsize, ttl)`` returns the cache registered under
``name``, creating it on first use: a real cacheout cache (``Cache``, ``FIFOCache``,
``LIFOCache``, ``LRUCache``, ``MRUCache``, ``LFUCache`` or ``RRCache`` for ``cache``, ``fifo``,
``lifo``, ``lru``, ``mru``, ``lfu``, ``rr``) with one more method, ``cache_result``. Asking
again for a name with another type, size or ttl is an error, never silently ignored.

``@pool.cache_result(cache_key=None, ttl=120)`` caches a sync or async function's results.
The key is ``cache_key`` (or the function's qualified name) plus the call's arguments.
Concurrent callers of a missing key compute it once (a lock per key for sync functions,
a shared future for async ones); an exception is raised to every waiter and not cached.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

import cacheout

__all__ = ["CACHE_TYPES", "CachePoolError", "get_cacheout_pool"]

F = TypeVar("F", bound=Callable[..., Any])
_MISSING = object()


class CachePoolError(ValueError):
    """A cache pool asked for with settings it cannot have."""


class _CacheResult:
    """The ``cache_result`` decorator, mixed into each cacheout class."""

    def cache_result(self, cache_key: str | None = None,
                     ttl: float | None = 120) -> Callable[[F], F]:
        """Cache ``func``'s results for ``ttl`` seconds under ``cache_key`` + arguments."""
        cache = cast("cacheout.Cache", self)

        def decorate(func: F) -> F:
            prefix = cache_key or f"{func.__module__}.{func.__qualname__}"

            def key_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
                if not args and not kwargs:
                    return prefix
                return f"{prefix}:{args!r}:{sorted(kwargs.items())!r}"

            if inspect.iscoroutinefunction(func):
                pending: dict[str, asyncio.Future[Any]] = {}

                @functools.wraps(func)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    key = key_of(args, kwargs)
                    value = cache.get(key, default=_MISSING)
                    if value is not _MISSING:
                        return value
                    waiting = pending.get(key)
                    if waiting is not None:
                        return await asyncio.shield(waiting)
                    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                    pending[key] = future
                    try:
                        value = await func(*args, **kwargs)
                    except BaseException as exc:
                        future.set_exception(exc)
                        future.exception()  # retrieved: no "never retrieved" warning
                        raise
                    finally:
                        pending.pop(key, None)
                    cache.set(key, value, ttl=ttl)
                    future.set_result(value)
                    return value

                return cast(F, async_wrapper)

            locks: dict[str, threading.Lock] = {}
            guard = threading.Lock()

            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                key = key_of(args, kwargs)
                value = cache.get(key, default=_MISSING)
                if value is not _MISSING:
                    return value
                with guard:
                    lock = locks.setdefault(key, threading.Lock())
                with lock:
                    value = cache.get(key, default=_MISSING)
                    if value is _MISSING:
                        value = func(*args, **kwargs)
                        cache.set(key, value, ttl=ttl)
                return value

            return cast(F, wrapper)

        return decorate


CACHE_TYPES: dict[str, type[cacheout.Cache]] = {
    name: type(f"{cls.__name__}Pool", (_CacheResult, cls), {})
    for name, cls in {"cache": cacheout.Cache, "fifo": cacheout.FIFOCache,
                      "lifo": cacheout.LIFOCache, "lru": cacheout.LRUCache,
                      "mru": cacheout.MRUCache, "lfu": cacheout.LFUCache,
                      "rr": cacheout.RRCache}.items()
}

_pools: dict[str, tuple[Any, tuple[str, int, float]]] = {}
_lock = threading.Lock()


def get_cacheout_pool(cache_name: str = "default", cache_type: str = "cache",
                      maxsize: int = 256, ttl: float = 0) -> Any:
    """The cache named ``cache_name``, created on first use (see the module docstring)."""
    cls = CACHE_TYPES.get(cache_type)
    if cls is None:
        raise CachePoolError(f"cache_type {cache_type!r} is not one of "
                             f"{', '.join(CACHE_TYPES)}")
    if not isinstance(maxsize, int) or maxsize < 0:
        raise CachePoolError(f"maxsize must be an integer ≥ 0 (0: unbounded), got {maxsize!r}")
    if ttl < 0:
        raise CachePoolError(f"ttl must be ≥ 0 seconds (0: no expiry), got {ttl!r}")
    wanted = (cache_type, maxsize, ttl)
    with _lock:
        found = _pools.get(cache_name)
        if found is not None:
            pool, settings = found
            if settings != wanted:
                raise CachePoolError(
                    f"cache pool {cache_name!r} exists as cache_type={settings[0]!r}, "
                    f"maxsize={settings[1]}, ttl={settings[2]}; asked for "
                    f"cache_type={cache_type!r}, maxsize={maxsize}, ttl={ttl}")
            return pool
        pool = cls(maxsize=maxsize, ttl=ttl)
        _pools[cache_name] = (pool, wanted)
        return pool
