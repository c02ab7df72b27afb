"""Locks around jobs and functions: one run at a time, each scheduled fire once.

    locks = Locks(RedisLockBackend(get_redis_pool("127.0.0.1", 6379)), ttl=30)

    @locks.guard                       # what scheduler.lock() returns
    def rebuild_index() -> None:
        lease = current_lease()        # name, fencing number, the fire being run
        ...

A guarded function called by a scheduler takes the fire (job id + the fire's slot) and
the run; called directly, only the run. Only the job's own function takes its fire (the
guard itself, or one it wraps with ``functools.wraps``): a guarded helper the job calls,
or a task it submits to a thread pool, takes only its run. When either is taken elsewhere
the call is skipped, logged at INFO with the reason, and returns ``None``; so is a call whose lock
store is unreachable (fail closed: a job never runs twice because Redis was down). A fire
is taken by moving its job's mark forward to the fire's slot, so a process that fires
late (it started late, its clock is behind, it woke up late) never runs a fire that
another process ran, however late and whatever the ttl.

While the function runs, one watchdog thread renews its lease every ``ttl / 3``. A
renewal that finds the lease gone (it expired, or the lock store restarted and forgot
it), or a store that did not confirm the lease within two thirds of its ttl (however long
a call to it blocks), marks the lease lost and sets the
run's stop signal: the owner's ``is_stopped()`` turns true and its ``sleep()`` returns at
once inside that run, so the holder stops instead of running beside the next one.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from fastkit.executor import _instrument
from fastkit.executor._backends import (
    FIRE_TAKEN,
    FireMark,
    LocalLockBackend,
    LockBackend,
    LockUnavailable,
)
from fastkit.executor._stopping import current_run_signal
from fastkit.logging import logger

__all__ = ["Fire", "Lease", "Locks", "current_fire", "current_lease", "lock_name"]

F = TypeVar("F", bound=Callable[..., Any])
GUARD_ATTRIBUTE = "__fastkit_lock__"


_DAY_MS = 86_400_000


@dataclass(frozen=True)
class Fire:
    """One scheduled fire of a job.

    ``time`` is when this process fires it; ``slot`` (``time`` unless given) names the
    fire the same way in every process: for an interval trigger, the start of the interval
    of the epoch's grid that holds ``time``, so processes whose triggers started at
    different moments still agree. ``grace`` is the job's ``misfire_grace_time`` in
    seconds (``None``: no limit). ``period`` is the slot's width (an interval trigger's
    interval; 0 for a fire that is its own slot): marks of different widths are kept
    apart, so a job rescheduled onto another grid never finds its new slots behind the
    old mark. The mark is kept for the width, the grace and a day more.
    ``scheduled`` is False for a run now (``run_job``): it takes only the run's lock.
    """

    scheduler: str
    job_id: str
    time: datetime
    slot: datetime | None = None
    grace: float | None = 30.0
    scheduled: bool = True
    period: float = 0.0  # the slot's width in seconds: an interval trigger's interval

    @property
    def slot_ms(self) -> int:
        return round((self.slot or self.time).timestamp() * 1000)

    @property
    def key(self) -> str:
        return f"{self.job_id}:{self.slot_ms}"

    @property
    def mark(self) -> FireMark | None:
        """What the lock store keeps of this fire (``None`` for a run now)."""
        if not self.scheduled:
            return None
        period_ms = round(self.period * 1000)
        # Kept until every process's fire of this slot is past: the slot's width (a
        # process's fire may come anywhere in it), the grace, and a day for clocks.
        keep = 0 if self.grace is None else round(self.grace * 1000) + period_ms + _DAY_MS
        return FireMark(self.job_id, self.slot_ms, keep, period_ms)

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
    # When the store last confirmed the lease (time.monotonic()), and who to tell at a loss.
    renewed: float = field(default_factory=time.monotonic, repr=False, compare=False)
    on_lost: list[threading.Event] = field(default_factory=list, repr=False, compare=False)

    @property
    def ttl_ms(self) -> int:
        return max(1, round(self.ttl * 1000))

    def mark_lost(self) -> None:
        """The lease is no longer ours: tell the run holding it to stop."""
        self.lost = True
        for signal in self.on_lost:
            signal.set()


_LEASE: contextvars.ContextVar[Lease | None] = contextvars.ContextVar("fastkit_lease",
                                                                       default=None)
_FIRE: contextvars.ContextVar[Fire | None] = contextvars.ContextVar("fastkit_fire",
                                                                     default=None)
# What may take the fire of this context: the job's function and what it wraps (identity).
# Emptied while a guarded function runs, so nested guards and tasks never take the fire.
_FIRE_OWNERS: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar(
    "fastkit_fire_owners", default=())


def current_lease() -> Lease | None:
    """The lease of the guarded call running in this context, if any."""
    return _LEASE.get()


def current_fire() -> Fire | None:
    """The scheduled fire being run in this context, if a scheduler started it."""
    return _FIRE.get()


def _owner_chain(func: Any) -> tuple[Any, ...]:
    """``func``, and what it wraps (``__wrapped__``, a bound method's ``__func__``, a
    partial's ``func``), outermost first."""
    chain: list[Any] = []
    seen: set[int] = set()
    todo = [func]
    while todo and len(chain) < 64:
        item = todo.pop(0)
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        chain.append(item)
        if isinstance(item, functools.partial):
            todo.append(item.func)
        todo.append(getattr(item, "__func__", None))
        todo.append(getattr(item, "__wrapped__", None))
    return tuple(chain)


def _owns_fire(wrapper: Any) -> bool:
    """Whether ``wrapper`` is the job's own function (or in its chain) in this context."""
    return any(owner is wrapper for owner in _FIRE_OWNERS.get())


def lock_name(func: Callable[..., Any]) -> str:
    """The default lock name of ``func``: ``module.qualname``."""
    return f"{getattr(func, '__module__', None) or '?'}.{getattr(func, '__qualname__', func)}"


class _Watchdog:
    """Renews every live lease at a third of its ttl; gives up a lease the store has not
    confirmed within two thirds of its ttl, however long a call to the store blocks.

    Its thread never calls the store: each renewal runs on a short-lived thread of its own
    (at most one in flight per lease), and the watchdog marks a lease lost at its deadline
    even while a renewal is still waiting for an answer. The thread is gone when no lease
    is left.
    """

    # Serialises "the store confirmed the lease" against "the lease is given up".
    verdict = threading.Lock()

    def __init__(self) -> None:
        self._by_id: dict[int, Lease] = {}
        self._due: dict[int, float] = {}  # when each lease's next renewal starts
        self._busy: set[int] = set()  # leases whose renewal is in flight
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, lease: Lease) -> None:
        with self._wake:
            self._by_id[id(lease)] = lease
            self._due[id(lease)] = time.monotonic() + lease.ttl / 3
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fastkit-lock-watchdog",
                                                daemon=True)
                self._thread.start()
            self._wake.notify()

    def forget(self, lease: Lease) -> None:
        with self._wake:
            self._by_id.pop(id(lease), None)
            self._due.pop(id(lease), None)
            self._wake.notify()

    @staticmethod
    def give_up_if_late(lease: Lease, now: float, reason: str) -> bool:
        """Mark ``lease`` lost if the store has not confirmed it within 2/3 of its ttl."""
        with _Watchdog.verdict:
            if lease.lost:
                return True
            silent = now - lease.renewed
            if silent < lease.ttl * 2 / 3:
                return False
            # The lock may expire before another renewal: another process may take it.
            lease.mark_lost()
        logger.warning("lock {!r} is given up: its store did not confirm it within 2/3 of its "
                       "{:g} s ttl (nothing for {:g} s; {}); its holder is told to stop",
                       lease.name, lease.ttl, round(silent, 1), reason)
        return True

    def _run(self) -> None:
        while True:
            starting: list[Lease] = []
            with self._wake:
                if not self._by_id:
                    self._thread = None
                    return
                now = time.monotonic()
                wake_at = now + min(lease.ttl for lease in self._by_id.values()) / 6
                for key, lease in list(self._by_id.items()):
                    busy = key in self._busy
                    if self.give_up_if_late(lease, now, "a renewal is still waiting for an "
                                            "answer" if busy else "renewals failed"):
                        self._by_id.pop(key, None)  # never renewed again
                        self._due.pop(key, None)
                        continue
                    if not busy and now >= self._due[key]:
                        self._busy.add(key)
                        self._due[key] = now + lease.ttl / 3
                        starting.append(lease)
                    if key not in self._busy:
                        wake_at = min(wake_at, self._due[key])
                    wake_at = min(wake_at, lease.renewed + lease.ttl * 2 / 3)
            for lease in starting:
                threading.Thread(target=self._renew_one, args=(lease,), daemon=True,
                                 name=f"fastkit-lock-renew:{lease.name}").start()
            with self._wake:
                if self._by_id:
                    self._wake.wait(max(0.001, wake_at - time.monotonic()))

    def _renew_one(self, lease: Lease) -> None:
        try:
            _renew(lease)
        finally:
            with self._wake:
                self._busy.discard(id(lease))


def _renew(lease: Lease) -> None:
    """One renewal of ``lease`` (blocks as long as the store does); its result is ignored
    once the lease was given up meanwhile."""
    if lease.backend is None or lease.lost:
        return
    asked = time.monotonic()
    try:
        kept = lease.backend.extend(lease.name, lease.token, lease.ttl_ms)
    except LockUnavailable as exc:
        if not _Watchdog.give_up_if_late(lease, time.monotonic(), str(exc)):
            logger.warning("lock {!r}: could not renew it ({}); trying again", lease.name, exc)
        return
    with _Watchdog.verdict:
        if lease.lost:  # given up while the call was in flight: nothing changes
            return
        if kept:
            lease.renewed = max(lease.renewed, asked)
            return
        lease.mark_lost()
    logger.warning("lock {!r} was lost while its holder runs (expired, or the lock store "
                   "restarted): its holder is told to stop; another process may take it",
                   lease.name)


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

        With a ``fire``, the run's lock is the job's own (``<name>/<job id>``): one run
        at a time per job, as APScheduler's ``max_instances=1``, so two jobs of one locked
        function never take each other's fires. Raises :class:`LockUnavailable` when the
        lock store cannot be reached.
        """
        backend = self.backend
        self._warn_local(backend, what or name)
        if fire is not None:
            name = f"{name}/{fire.job_id}"
        lease = Lease(name, 0, _positive_ttl(ttl or self.ttl), fire, backend=backend)
        fence = backend.acquire(name, lease.token, lease.ttl_ms, fire.mark if fire else None)
        if fence < 1:
            if fence == FIRE_TAKEN:
                logger.info("{} skipped: that fire was taken already, by this process or "
                            "another ({})", what or name, backend.describe())
            else:
                logger.info("{} skipped: lock {!r} is held by a run still going ({})",
                            what or name, name, backend.describe())
            _instrument.fire_skipped(fire, "fire_taken" if fence == FIRE_TAKEN else "lock_held")
            return None
        lease.fence = fence
        signal = current_run_signal()
        if signal is not None:  # a scheduler's fire or a pool's task: told at a loss
            lease.on_lost.append(signal)
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

    def _attempt(self, name: str, ttl: float | None, qualname: str,
                 fire: Fire | None) -> Lease | None:
        what = str(fire) if fire else qualname
        try:
            return self.acquire(name, fire, ttl, what)
        except LockUnavailable as exc:
            logger.warning("{} skipped: lock store unavailable ({})", what, exc)
            _instrument.fire_skipped(fire, "lock_unavailable")
            return None

    @contextmanager
    def held(self, name: str, ttl: float | None = None) -> Iterator[Lease | None]:
        """``with locks.held("name") as lease:`` ``lease`` is ``None`` if taken elsewhere.

        It takes only the run's lock, never a scheduled fire (inside a job too)."""
        lease = self._attempt(name, ttl, name, None)
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
                fire = _FIRE.get() if _owns_fire(guarded_async) else None
                lease = await asyncio.to_thread(self._attempt, lock, ttl, qualname, fire)
                if lease is None:
                    return None
                token, owners = _LEASE.set(lease), _FIRE_OWNERS.set(())
                try:
                    run = _instrument.job_run(fire)  # the job's run, when observed
                    if run is None:
                        return await func(*args, **kwargs)
                    with run.running():
                        return await func(*args, **kwargs)
                finally:
                    _FIRE_OWNERS.reset(owners)
                    _LEASE.reset(token)
                    await asyncio.to_thread(self.release, lease)

            wrapper: Any = guarded_async
        else:
            @functools.wraps(func)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                fire = _FIRE.get() if _owns_fire(guarded) else None
                lease = self._attempt(lock, ttl, qualname, fire)
                if lease is None:
                    return None
                token, owners = _LEASE.set(lease), _FIRE_OWNERS.set(())
                try:
                    run = _instrument.job_run(fire)  # the job's run, when observed
                    if run is None:
                        return func(*args, **kwargs)
                    with run.running():
                        return func(*args, **kwargs)
                finally:
                    _FIRE_OWNERS.reset(owners)
                    _LEASE.reset(token)
                    self.release(lease)

            wrapper = guarded
        setattr(wrapper, GUARD_ATTRIBUTE, lock)
        return wrapper


def _positive_ttl(ttl: float) -> float:
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) or ttl <= 0:
        raise ValueError(f"lock ttl {ttl!r} is not a number of seconds > 0")
    return float(ttl)


FireToken = tuple[contextvars.Token[Fire | None], contextvars.Token[tuple[Any, ...]]]


def fire_context(fire: Fire, func: Callable[..., Any]) -> FireToken:
    """Mark the fire being run in this context (used by the schedulers' executors).

    Only ``func`` (the job's function) may take the fire: a guard in its ``__wrapped__``
    chain does; a guarded helper it calls, or a task it submits, does not.
    """
    return _FIRE.set(fire), _FIRE_OWNERS.set(_owner_chain(func))


def guards_fire(func: Callable[..., Any]) -> bool:
    """Whether a lock guard in ``func``'s chain takes its fire (see :func:`fire_context`)."""
    return any(getattr(item, GUARD_ATTRIBUTE, None) is not None for item in _owner_chain(func))


def reset_fire(token: FireToken) -> None:
    _FIRE_OWNERS.reset(token[1])
    _FIRE.reset(token[0])


def clear_run_context() -> None:
    """Forget the lease and fire of the code that submitted a task (run in the task's
    own copy of the context): a task never holds or takes its submitter's."""
    _LEASE.set(None)
    _FIRE.set(None)
    _FIRE_OWNERS.set(())
