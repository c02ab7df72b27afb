"""Named in-process caches on cacheout, with a ``cache_result`` decorator.

``get_cacheout_pool(name, cache_type, maxsize, ttl)`` returns the cache registered under
``name``, creating it on first use: a real cacheout cache (``Cache``, ``FIFOCache``,
``LIFOCache``, ``LRUCache``, ``MRUCache``, ``LFUCache`` or ``RRCache`` for ``cache``, ``fifo``,
``lifo``, ``lru``, ``mru``, ``lfu``, ``rr``) with one more method, ``cache_result``. Asking
again for a name with another type, size or ttl is an error, never silently ignored.

``@pool.cache_result(cache_key=None, ttl=120)`` caches a sync or async function's results.
The rule: a cached result is only returned for the same decorated function and equal
arguments (same types); each caller's cancellation stays its own; locks live only while a
call is in flight. In detail:

- **Key space.** Each decoration gets its own key space: two closures made by one factory
  (same module and qualified name) never share entries. An explicit ``cache_key`` is a
  key space shared on purpose by every function decorated with it.
- **Keys.** A key is the hashable tuple ``(key space, arguments)``, never a string, so no
  ``cache_key`` text can collide with another's arguments. The arguments are bound to the
  function's signature with defaults applied, so ``f(1)``, ``f(x=1)`` and, when ``x``
  defaults to 1, ``f()`` are one call; ``**kwargs`` order does not matter. Two arguments are
  equal when they are ``==`` *and* of the same type, recursively inside tuples, lists,
  dicts, sets and frozensets (``1``, ``1.0`` and ``True`` are three keys; ``0.0`` and
  ``-0.0`` are two as well, since a signed zero can change a result). Lists, dicts, sets
  and bytearrays are keyed by value; any other unhashable argument raises ``TypeError``
  naming it. The key holds the arguments themselves (not their
  ``repr``), so an object compared by identity stays alive while its entry does and its
  address can never be taken by a new object. ``wrapper.cache_key_of(*args, **kwargs)``
  gives the key of a call, e.g. for ``pool.delete(...)``. The signature is the decorated
  callable's own: behind a ``functools.wraps`` wrapper taking ``*args, **kwargs``,
  ``f(1)`` and ``f(x=1)`` stay two keys (never one key for two calls).
- **Async.** A coroutine function (or an object with ``async def __call__``) gets an
  ``async`` wrapper. A function declared sync is judged by what its calls return: one that
  returns an awaitable (such as an async function behind a plain ``functools.wraps``
  decorator) is found out at its first call, which always runs it (even when a function
  sharing its ``cache_key`` already cached the value); from then on its wrapper returns a
  coroutine, on hits too, and the awaited *result* is what is cached, never the awaitable.
- **Concurrency.** Concurrent callers of a missing key compute it once. Sync callers wait on
  a lock that exists only while that key is in flight. Async callers share one task per
  key and event loop, which runs on its own: a caller that is cancelled or times out leaves
  without disturbing the others, and if every caller leaves the task still finishes and
  caches its result. An exception reaches every caller waiting for that computation and is
  not cached.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import cacheout

from fastkit.exceptions import FastKitError

__all__ = ["CACHE_TYPES", "CachePoolError", "get_cacheout_pool"]

F = TypeVar("F", bound=Callable[..., Any])
_MISSING = object()
_RAW = object()  # marks a key whose arguments did not bind to the signature
_VAR_POSITIONAL = object()
_VAR_KEYWORD = object()
_PLAIN = frozenset({int, str, bytes, bool, type(None), complex, range, type})
# Containers keyed by their items (so a list or a dict works): by their type's __eq__.
_BY_VALUE: dict[Any, str] = {
    tuple.__eq__: "sequence", list.__eq__: "sequence", dict.__eq__: "mapping",
    set.__eq__: "set", frozenset.__eq__: "set", bytearray.__eq__: "bytes",
}


class CachePoolError(FastKitError, ValueError):
    """A cache pool asked for with settings it cannot have."""


class _KeySpace:
    """The key space of one decoration: equal only to itself."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<cache_result {self.name} at {id(self):#x}>"


class _Unkeyable(TypeError):
    """An argument with neither a hash nor a by-value form."""


def _norm(value: Any) -> Any:
    """``value`` as a hashable key part equal only for ``==`` values of the same type."""
    kind = type(value)
    if kind in _PLAIN:
        return (kind, value)
    if kind is float:
        # 0.0 == -0.0, but they are different arguments (atan2, copysign, formatting)
        return (kind, value, math.copysign(1.0, value)) if value == 0.0 else (kind, value)
    form = _BY_VALUE.get(kind.__eq__)  # a container, or a subclass comparing like one
    if form == "sequence" and isinstance(value, (tuple, list)):
        return (kind, tuple(_norm(item) for item in value))
    if form == "mapping" and isinstance(value, dict):
        return (kind, frozenset((_norm(k), _norm(v)) for k, v in value.items()))
    if form == "set" and isinstance(value, (set, frozenset)):
        return (kind, frozenset(_norm(item) for item in value))
    if form == "bytes" and isinstance(value, bytearray):
        return (kind, bytes(value))
    try:
        hash(value)
    except TypeError:
        raise _Unkeyable(kind.__qualname__) from None
    return (kind, value)


class _Keys:
    """Builds ``(key space, normalized bound arguments)`` for one decorated function."""

    def __init__(self, func: Callable[..., Any], space: Any, label: str) -> None:
        self.space = space
        self.label = label
        try:
            # The callable's own signature: a functools.wraps wrapper may change it.
            self.signature: inspect.Signature | None = inspect.signature(
                func, follow_wrapped=False)
        except (TypeError, ValueError):
            self.signature = None
        params = list(self.signature.parameters.values()) if self.signature else []
        self.names = [p.name for p in params]
        self.simple = self.signature is not None and all(
            p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)
        self.positional = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                              for p in params)
        self.by_name = {p.name: i for i, p in enumerate(params)
                        if p.kind is not p.POSITIONAL_ONLY}
        self.defaults = [p.default for p in params]

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.simple:
            if not kwargs and len(args) == self.positional == len(self.names):
                return (self.space, self._norm_all(self.names, args))  # the common case
            values = self._bind_simple(args, kwargs)
            if values is not None:
                return (self.space, self._norm_all(self.names, values))
        if self.signature is not None:
            try:
                bound = self.signature.bind(*args, **kwargs)
            except TypeError:
                pass  # the call itself will fail; key it as it was made
            else:
                bound.apply_defaults()
                values = []
                for name, value in bound.arguments.items():
                    kind = self.signature.parameters[name].kind
                    if kind is inspect.Parameter.VAR_POSITIONAL:
                        values.append((_VAR_POSITIONAL, self._norm_all(
                            [f"*{name}[{i}]" for i in range(len(value))], value)))
                    elif kind is inspect.Parameter.VAR_KEYWORD:
                        values.append((_VAR_KEYWORD, self._norm_named(value)))
                    else:
                        values.append(self._norm_all([name], (value,))[0])
                return (self.space, tuple(values))
        return (self.space, _RAW,
                self._norm_all([f"positional argument {i}" for i in range(len(args))], args),
                self._norm_named(kwargs))

    def _bind_simple(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any] | None:
        """Python's binding for a signature without ``*args``/``**kwargs``; None if invalid."""
        if len(args) > self.positional:
            return None
        values = list(args)
        values += [_MISSING] * (len(self.names) - len(args))
        for name, value in kwargs.items():
            index = self.by_name.get(name)
            if index is None or values[index] is not _MISSING:
                return None
            values[index] = value
        for index, value in enumerate(values):
            if value is _MISSING:
                default = self.defaults[index]
                if default is inspect.Parameter.empty:
                    return None
                values[index] = default
        return values

    def _norm_all(self, names: list[str], values: Any) -> tuple[Any, ...]:
        try:
            return tuple([_norm(value) for value in values])
        except _Unkeyable:
            for name, value in zip(names, values, strict=True):
                try:
                    _norm(value)
                except _Unkeyable as exc:
                    raise TypeError(self._unkeyable(name, str(exc))) from None
            raise  # pragma: no cover - every failure names its argument above
        except RecursionError:
            raise TypeError(f"cache_result({self.label}): an argument contains itself "
                            "and cannot be part of a cache key") from None

    def _norm_named(self, kwargs: dict[str, Any]) -> tuple[Any, ...]:
        names = sorted(kwargs)
        return tuple(zip(names, self._norm_all(names, [kwargs[n] for n in names]),
                         strict=True))

    def _unkeyable(self, name: str, kind: str) -> str:
        return (f"cache_result({self.label}): argument {name!r} is an unhashable {kind}, "
                "which cannot be part of a cache key; pass a hashable value (a tuple, a "
                "frozenset, a frozen dataclass...) or a list, dict or set of them")


class _KeyLock:
    """One sync key in flight: its lock and, once computed, its outcome."""

    __slots__ = ("error", "lock", "value")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.value: Any = _MISSING
        self.error: Exception | None = None


class _Flights:
    """The calls of one decorated function that are in flight, and nothing else."""

    def __init__(self, cache: cacheout.Cache, ttl: float | None) -> None:
        self.cache = cache
        self.ttl = ttl
        self.guard = threading.Lock()
        self.locks: dict[Any, _KeyLock] = {}
        self.tasks: dict[tuple[asyncio.AbstractEventLoop, Any], asyncio.Task[Any]] = {}
        # A sync-declared function's shape, learnt from its first own call: None until then.
        self.returns_awaitable: bool | None = None

    def run_sync(self, key: Any, func: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> Any:
        """The value of a sync call (or, found out now, an awaitable of an async one)."""
        with self.guard:
            entry = self.locks.get(key)
            if entry is None:
                entry = self.locks[key] = _KeyLock()
        with entry.lock:
            if entry.error is not None:
                raise entry.error
            if entry.value is not _MISSING:
                return entry.value
            try:
                if self.returns_awaitable:
                    return self.run_async(key, func, args, kwargs, None)
                # Until the function's own first call shows whether it returns awaitables,
                # a hit (from another function sharing its cache_key) cannot be returned in
                # the right shape: that first call goes through the function.
                value = (self.cache.get(key, default=_MISSING)
                         if self.returns_awaitable is False else _MISSING)
                if value is _MISSING:
                    value = func(*args, **kwargs)
                    self.returns_awaitable = inspect.isawaitable(value)
                    if self.returns_awaitable:
                        return self.run_async(key, func, args, kwargs, value)
                    self.cache.set(key, value, ttl=self.ttl)
                entry.value = value
                return value
            except Exception as exc:
                entry.error = exc
                raise
            finally:
                # Later callers start afresh: the lock lives only while the key is in flight.
                with self.guard:
                    if self.locks.get(key) is entry:
                        del self.locks[key]

    async def run_async(self, key: Any, func: Callable[..., Any], args: tuple[Any, ...],
                        kwargs: dict[str, Any], first: Awaitable[Any] | None) -> Any:
        """Await the one computation of ``key`` in this loop, starting it if needed."""
        value = self.cache.get(key, default=_MISSING)
        if value is not _MISSING:
            _discard(first)
            return value
        loop = asyncio.get_running_loop()
        slot = (loop, key)
        task = self.tasks.get(slot)
        if task is None or task.done():
            awaitable = first if first is not None else func(*args, **kwargs)
            task = loop.create_task(self._compute(slot, key, awaitable))
            self.tasks[slot] = task
            task.add_done_callback(functools.partial(self._finished, slot))
        else:
            _discard(first)
        # The task belongs to no caller: cancelling this caller cancels only its shield.
        return await asyncio.shield(task)

    async def _compute(self, slot: tuple[asyncio.AbstractEventLoop, Any], key: Any,
                       awaitable: Any) -> Any:
        try:
            value = await awaitable if inspect.isawaitable(awaitable) else awaitable
            self.cache.set(key, value, ttl=self.ttl)
            return value
        finally:
            if self.tasks.get(slot) is asyncio.current_task():
                del self.tasks[slot]

    def _finished(self, slot: tuple[asyncio.AbstractEventLoop, Any],
                  task: asyncio.Task[Any]) -> None:
        if self.tasks.get(slot) is task:  # cancelled before it ever ran
            del self.tasks[slot]
        if not task.cancelled():
            task.exception()  # retrieved, even when every caller has left


def _discard(awaitable: Awaitable[Any] | None) -> None:
    """Close a coroutine that will not be awaited (no "never awaited" warning)."""
    close = getattr(awaitable, "close", None)
    if close is not None and inspect.iscoroutine(awaitable):
        close()


def _is_async(func: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    # an object with ``async def __call__``
    return (callable(func) and not inspect.isroutine(func) and not isinstance(func, type)
            and inspect.iscoroutinefunction(type(func).__call__))


def _label(func: Callable[..., Any]) -> str:
    named = func if hasattr(func, "__qualname__") else type(func)
    return f"{getattr(named, '__module__', '?')}.{getattr(named, '__qualname__', '?')}"


class _CacheResult:
    """The ``cache_result`` decorator, mixed into each cacheout class."""

    def cache_result(self, cache_key: str | None = None,
                     ttl: float | None = 120) -> Callable[[F], F]:
        """Cache ``func``'s results for ``ttl`` seconds (see the module docstring).

        Without ``cache_key`` each decorated function has its own key space; functions
        decorated with the same ``cache_key`` share one on purpose, so equal arguments
        (bound to each one's signature) give the same entry.
        """
        cache = cast("cacheout.Cache", self)

        def decorate(func: F) -> F:
            label = _label(func)
            keys = _Keys(func, cache_key or _KeySpace(label), label)
            flights = _Flights(cache, ttl)

            if _is_async(func):
                @functools.wraps(func)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    key = keys(args, kwargs)
                    value = cache.get(key, default=_MISSING)
                    if value is not _MISSING:
                        return value
                    return await flights.run_async(key, func, args, kwargs, None)

                wrapper: Any = async_wrapper
            else:
                @functools.wraps(func)
                def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                    key = keys(args, kwargs)
                    if flights.returns_awaitable:
                        return flights.run_async(key, func, args, kwargs, None)
                    if flights.returns_awaitable is False:
                        value = cache.get(key, default=_MISSING)
                        if value is not _MISSING:
                            return value
                    return flights.run_sync(key, func, args, kwargs)

                wrapper = sync_wrapper
            wrapper.cache_key_of = lambda *args, **kwargs: keys(args, kwargs)
            wrapper._cache_flights = flights  # in-flight state, for tests
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
