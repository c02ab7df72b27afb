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
died.
"""

from __future__ import annotations

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
from fastkit.utils.threads import run_in_daemon_thread

if TYPE_CHECKING:
    from fastflyer.lifespan import Lifecycle
    from fastflyer.settings import FlyerSettings
    from fastkit.executor import LockBackend

__all__ = ["SCHEDULERS", "asyncio_scheduler", "background_scheduler", "current_fire",
           "current_lease", "locks", "register_executors", "threadpool"]


def lock_backend(settings: FlyerSettings | None = None) -> LockBackend:
    """Redis when ``flyer_redis_host`` is set, else this process's memory."""
    from fastflyer.settings import load_settings

    settings = settings or load_settings()
    if not settings.redis_host:
        return LocalLockBackend()
    from fastflyer.cache import default_redis

    return RedisLockBackend(default_redis(settings))


locks = Locks(lock_backend)
background_scheduler = Scheduler("background", "background", locks=locks)
asyncio_scheduler = Scheduler("asyncio", "asyncio", locks=locks)
threadpool = ThreadPoolExecutor(32, "threadpool", locks=locks)
SCHEDULERS = {"background": background_scheduler, "asyncio": asyncio_scheduler}


def register_executors(settings: FlyerSettings, lifecycle: Lifecycle) -> None:
    """Start the schedulers and the thread pool with ``lifecycle`` and stop them with it.

    An app starts only what is not running yet (several apps in one process share them)
    and stops only what it started, waiting up to ``flyer_shutdown_timeout`` for jobs.
    """
    lifecycle.add("locks", start=lambda: locks.configure(lambda: lock_backend(settings),
                                                         ttl=settings.lock_ttl))
    for name, component in (("background scheduler", background_scheduler),
                            ("asyncio scheduler", asyncio_scheduler),
                            ("thread pool", threadpool)):
        owner = _Owner(component, settings.shutdown_timeout)
        lifecycle.add(name, start=owner.start, stop=owner.stop)


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
