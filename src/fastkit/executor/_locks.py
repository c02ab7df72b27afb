"""Locks around jobs and functions: one run at a time, each scheduled fire once.

    locks = Locks(RedisLockBackend(get_redis_pool("127.0.0.1", 6379)), ttl=30)

    @locks.guard                       # what scheduler.lock() returns
    def rebuild_index() -> None:
        lease = current_lease()        # name, fencing number, the fire being run
        ...

A guarded function called by a scheduler takes the fire (job id + scheduled time) and the
run; called directly, only the run. When either is taken elsewhere the call is skipped
and logged, and returns ``None``; so is a call whose lock store is unreachable (fail
closed: a job never runs twice because Redis was down). While the function runs, one
watchdog thread renews its lease every ``ttl / 3``; at the end the run is released and the
fire left to expire, so a replica whose clock runs a little late cannot run it again.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from fastkit.executor._backends import (
    FIRE_TAKEN,
    LocalLockBackend,
    LockBackend,
    LockUnavailable,
)
from fastkit.logging import logger

__all__ = ["Fire", "Lease", "Locks", "current_fire", "current_lease", "lock_name"]

F = TypeVar("F", bound=Callable[..., Any])
GUARD_ATTRIBUTE = "__fastkit_lock__"


@dataclass(frozen=True)
class Fire:
    """One scheduled fire of a job: the same in every process that computes it."""

    scheduler: str
    job_id: str
    time: datetime

    @property
    def key(self) -> str:
        return f"{self.job_id}:{round(self.time.timestamp() * 1000)}"

    def __str__(self) -> str:
        return f"job {self.job_id!r} fire at {self.time.isoformat()}"


@dataclass
class Lease:
    """A lock held by the running call: ``fence`` grows with every take of ``name``."""

    name: str
    fence: int
    ttl: float
    fire: Fire | None = None
    token: str = field(default_factory=lambda: uuid.uuid4().hex, repr=False)
    lost: bool = False
    backend: LockBackend | None = field(default=None, repr=False, compare=False)

    @property
    def ttl_ms(self) -> int:
        return max(1, round(self.ttl * 1000))


_LEASE: contextvars.ContextVar[Lease | None] = contextvars.ContextVar("fastkit_lease",
                                                                       default=None)
_FIRE: contextvars.ContextVar[Fire | None] = contextvars.ContextVar("fastkit_fire",
                                                                     default=None)


def current_lease() -> Lease | None:
    """The lease of the guarded call running in this context, if any."""
    return _LEASE.get()


def current_fire() -> Fire | None:
    """The scheduled fire being run in this context, if a scheduler started it."""
    return _FIRE.get()


def lock_name(func: Callable[..., Any]) -> str:
    """The default lock name of ``func``: ``module.qualname``."""
    return f"{getattr(func, '__module__', None) or '?'}.{getattr(func, '__qualname__', func)}"


class _Watchdog:
    """One thread renewing every live lease at a third of its ttl; gone when none is left."""

    def __init__(self) -> None:
        self._by_id: dict[int, Lease] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, lease: Lease) -> None:
        with self._wake:
            self._by_id[id(lease)] = lease
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fastkit-lock-watchdog",
                                                daemon=True)
                self._thread.start()
            self._wake.notify()

    def forget(self, lease: Lease) -> None:
        with self._wake:
            self._by_id.pop(id(lease), None)
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._by_id:
                    self._thread = None
                    return
                self._wake.wait(min(lease.ttl for lease in self._by_id.values()) / 3)
                leases = list(self._by_id.values())
            for lease in leases:
                _renew(lease)


def _renew(lease: Lease) -> None:
    if lease.backend is None or lease.lost:
        return
    fire = lease.fire.key if lease.fire else None
    try:
        kept = lease.backend.extend(lease.name, lease.token, lease.ttl_ms, fire)
    except LockUnavailable as exc:
        logger.warning("lock {!r}: could not renew it ({}); trying again", lease.name, exc)
        return
    if not kept:
        lease.lost = True
        logger.warning("lock {!r} was lost while its holder runs (expired or the lock store "
                       "restarted): another process may start it", lease.name)


class Locks:
    """Takes, renews and releases locks on one backend; guards functions with them.

    ``backend`` is a :class:`~fastkit.executor.LockBackend`, a function returning one
    (called at the first lock, so nothing connects before), or ``None`` for in-process
    locks. ``ttl`` is how long a lock outlives a holder that died, in seconds.
    """

    def __init__(self, backend: LockBackend | Callable[[], LockBackend] | None = None,
                 ttl: float = 30.0) -> None:
        self._source = backend
        self._backend: LockBackend | None = None
        self._resolve = threading.Lock()
        self._warned = False
        self.ttl = _positive_ttl(ttl)
        self._watchdog = _Watchdog()

    def configure(self, backend: LockBackend | Callable[[], LockBackend] | None = None,
                  ttl: float | None = None) -> None:
        """Use another backend (taken at the next lock) and/or another default ttl."""
        with self._resolve:
            self._source, self._backend, self._warned = backend, None, False
        if ttl is not None:
            self.ttl = _positive_ttl(ttl)

    @property
    def backend(self) -> LockBackend:
        with self._resolve:
            if self._backend is None:
                source = self._source
                if source is None:
                    self._backend = LocalLockBackend()
                elif callable(source) and not hasattr(source, "acquire"):
                    self._backend = source()
                else:
                    self._backend = cast("LockBackend", source)
            return self._backend

    def acquire(self, name: str, fire: Fire | None = None, ttl: float | None = None,
                what: str | None = None) -> Lease | None:
        """The lease, or ``None`` (logged) when the fire or the run is taken elsewhere.

        Raises :class:`LockUnavailable` when the lock store cannot be reached.
        """
        backend = self.backend
        self._warn_local(backend, what or name)
        lease = Lease(name, 0, _positive_ttl(ttl or self.ttl), fire, backend=backend)
        fence = backend.acquire(name, lease.token, lease.ttl_ms, fire.key if fire else None)
        if fence < 1:
            if fence == FIRE_TAKEN:
                logger.debug("{} skipped: this fire runs in another process", what or name)
            else:
                logger.info("{} skipped: lock {!r} is held by a run still going ({})",
                            what or name, name, backend.describe())
            return None
        lease.fence = fence
        self._watchdog.watch(lease)
        return lease

    def release(self, lease: Lease) -> None:
        """End ``lease``: its run is freed, its fire (if any) left to expire."""
        self._watchdog.forget(lease)
        if lease.backend is None or lease.lost:
            return
        try:
            lease.backend.release(lease.name, lease.token)
        except LockUnavailable as exc:
            logger.warning("lock {!r}: could not release it ({}); it expires in {:g} s",
                           lease.name, exc, lease.ttl)

    def _warn_local(self, backend: LockBackend, what: str) -> None:
        if backend.shared or self._warned:
            return
        self._warned = True
        logger.warning("locks hold within this process only (no Redis configured): with "
                       "several processes, each of them runs every locked job (first: {})",
                       what)

    def _attempt(self, name: str, ttl: float | None, qualname: str) -> Lease | None:
        fire = _FIRE.get()
        what = str(fire) if fire else qualname
        try:
            return self.acquire(name, fire, ttl, what)
        except LockUnavailable as exc:
            logger.warning("{} skipped: lock store unavailable ({})", what, exc)
            return None

    @contextmanager
    def held(self, name: str, ttl: float | None = None) -> Iterator[Lease | None]:
        """``with locks.held("name") as lease:`` ``lease`` is ``None`` if taken elsewhere."""
        lease = self._attempt(name, ttl, name)
        token = _LEASE.set(lease)
        try:
            yield lease
        finally:
            _LEASE.reset(token)
            if lease is not None:
                self.release(lease)

    def guard(self, func: F | None = None, *, name: str | None = None,
              ttl: float | None = None) -> Any:
        """Decorator: run ``func`` only under its lock (sync or ``async def``)."""
        if func is None:
            return functools.partial(self.guard, name=name, ttl=ttl)
        if getattr(func, GUARD_ATTRIBUTE, None) is not None:
            return func
        lock = name or lock_name(func)
        qualname = getattr(func, "__qualname__", lock)

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                lease = await asyncio.to_thread(self._attempt, lock, ttl, qualname)
                if lease is None:
                    return None
                token = _LEASE.set(lease)
                try:
                    return await func(*args, **kwargs)
                finally:
                    _LEASE.reset(token)
                    await asyncio.to_thread(self.release, lease)

            wrapper: Any = guarded_async
        else:
            @functools.wraps(func)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                lease = self._attempt(lock, ttl, qualname)
                if lease is None:
                    return None
                token = _LEASE.set(lease)
                try:
                    return func(*args, **kwargs)
                finally:
                    _LEASE.reset(token)
                    self.release(lease)

            wrapper = guarded
        setattr(wrapper, GUARD_ATTRIBUTE, lock)
        return wrapper


def _positive_ttl(ttl: float) -> float:
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) or ttl <= 0:
        raise ValueError(f"lock ttl {ttl!r} is not a number of seconds > 0")
    return float(ttl)


def fire_context(fire: Fire) -> contextvars.Token[Fire | None]:
    """Mark the fire being run in this context (used by the schedulers' executors)."""
    return _FIRE.set(fire)


def reset_fire(token: contextvars.Token[Fire | None]) -> None:
    _FIRE.reset(token)
