"""The schedulers and thread pool of a FastFlyer project, started and stopped with the app.

    from fastflyer import background_scheduler, asyncio_scheduler, threadpool

    @background_scheduler.lock()     # one run at a time, each fire once, across processes
    def customfunc():
        print("hello world!")

    background_scheduler.add_job(customfunc, "interval", seconds=5, id="customjob")

The app's lifespan starts both schedulers and the thread pool and stops them within
``flyer_shutdown_timeout``. Locks live in the Redis of ``flyer_redis_host`` (the same for
every worker and every instance); without it they hold within one process, and a warning
says so at the first lock. ``flyer_lock_ttl`` is how long a lock outlives a holder that
died. Lock keys are namespaced by the service's name (``fastkit:lock:<service>:``, see
:func:`fastflyer.service.service_name`): two services sharing one Redis never share a
lock, however their jobs are named, while the workers and instances of one service do.

With the app's metrics or tracing on, every job run is counted, timed and traced, and every
fire not run is counted with its reason (lock held elsewhere, fire taken, lock store
unavailable, previous run still going, missed): see :mod:`fastkit.executor._instrument`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastkit.executor import (
    LocalLockBackend,
    Locks,
    RedisLockBackend,
    Scheduler,
    ThreadPoolExecutor,
    current_fire,
    current_lease,
)
from fastkit.logging import logger
from fastkit.utils.threads import run_in_daemon_thread

if TYPE_CHECKING:
    from fastflyer.lifespan import Lifecycle
    from fastflyer.settings import FlyerSettings
    from fastkit.executor import LockBackend

__all__ = ["SCHEDULERS", "asyncio_scheduler", "background_scheduler", "current_fire",
           "current_lease", "lock_backend", "lock_prefix", "locks", "register_executors",
           "threadpool"]


def lock_prefix(service: str) -> str:
    """Where the locks of ``service`` live in Redis: ``fastkit:lock:<service>:``."""
    return f"fastkit:lock:{service}:"


def lock_backend(settings: FlyerSettings | None = None,
                 service: str = "fastflyer") -> LockBackend:
    """Redis when ``flyer_redis_host`` of ``settings`` is set (keys under
    :func:`lock_prefix` of ``service``), else this process's memory. ``settings``
    defaults to :func:`fastflyer.app_context.current_settings`."""
    if settings is None:
        from fastflyer.app_context import current_settings

        settings = current_settings()
    if not settings.redis_host:
        return LocalLockBackend()
    from fastflyer.cache import default_redis

    return RedisLockBackend(default_redis(settings), lock_prefix(service))


locks = Locks(lock_backend)
background_scheduler = Scheduler("background", "background", locks=locks)
asyncio_scheduler = Scheduler("asyncio", "asyncio", locks=locks)
threadpool = ThreadPoolExecutor(32, "threadpool", locks=locks)
SCHEDULERS = {"background": background_scheduler, "asyncio": asyncio_scheduler}


def register_executors(settings: FlyerSettings, lifecycle: Lifecycle,
                       service: str = "fastflyer") -> None:
    """Start the schedulers and the thread pool with ``lifecycle`` and stop them with it.

    An app starts only what is not running yet (several apps in one process share them)
    and stops only what it started, waiting up to ``flyer_shutdown_timeout`` for jobs.
    Locks are namespaced by ``service`` (:func:`fastflyer.service.service_name`). The
    first app to start configures the process's locks and keeps them until it stops; an
    app starting meanwhile with another lock configuration (service, Redis, ttl) is told,
    in a warning, that it shares the first app's schedulers and their locks.
    """
    claim = _LockClaim(settings, service)
    lifecycle.add("locks", start=claim.start, stop=claim.stop)
    for name, component in (("background scheduler", background_scheduler),
                            ("asyncio scheduler", asyncio_scheduler),
                            ("thread pool", threadpool)):
        owner = _Owner(component, settings.shutdown_timeout)
        lifecycle.add(name, start=owner.start, stop=owner.stop)


@dataclass(frozen=True)
class _LockSetup:
    service: str
    redis: str  # where the locks live: host:port/db, or "in-process"
    ttl: float


class _LockClaim:
    """An app's claim on the process's locks: the first app holding none configures them."""

    owner: _LockSetup | None = None  # the app whose locks the shared components use

    def __init__(self, settings: FlyerSettings, service: str) -> None:
        self.settings = settings
        where = (f"Redis {settings.redis_host}:{settings.redis_port}/{settings.redis_db}"
                 if settings.redis_host else "in-process")
        self.setup = _LockSetup(service, where, settings.lock_ttl)
        self.owns = False

    def start(self) -> None:
        owner = _LockClaim.owner
        if owner is None:
            settings, service = self.settings, self.setup.service
            locks.configure(lambda: lock_backend(settings, service), ttl=settings.lock_ttl)
            _LockClaim.owner, self.owns = self.setup, True
        elif owner != self.setup:
            logger.warning(
                "service {!r} starts in a process where service {!r} runs already: the "
                "schedulers and thread pool are shared by the process and keep the locks of "
                "{!r} ({}, ttl {:g} s), not those of {!r} ({}, ttl {:g} s)", self.setup.service,
                owner.service, owner.service, owner.redis, owner.ttl, self.setup.service,
                self.setup.redis, self.setup.ttl)

    def stop(self) -> None:
        if self.owns:
            self.owns = False
            _LockClaim.owner = None


class _Owner:
    def __init__(self, component: Scheduler | ThreadPoolExecutor, timeout: float) -> None:
        self.component = component
        self.timeout = timeout
        self.started = False

    async def start(self) -> None:  # on the loop: the asyncio scheduler binds to it
        if not self.component.running:
            self.component.start()
            self.started = True

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        if isinstance(self.component, Scheduler) and self.component.scheduler_type == "asyncio":
            await self.component.aclose(self.timeout)
        else:
            # Not asyncio.to_thread: a thread left behind must not hold the process's exit.
            await run_in_daemon_thread(self.component.shutdown, wait=True, timeout=self.timeout)
