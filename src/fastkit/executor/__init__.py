"""Scheduling and background work: APScheduler 3 schedulers, a thread pool, and locks that
make a job run once across processes.

    from fastkit.executor import Scheduler, ThreadPoolExecutor, current_lease

    scheduler = Scheduler("jobs", "background", redis_config="redis://127.0.0.1:6379/0")

    @scheduler.lock()
    def customfunc() -> None:
        print("fence", current_lease().fence)

    scheduler.add_job(customfunc, "interval", seconds=5, id="customjob")

Nothing starts at import or at creation: threads start with ``start()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastkit._lazy import lazy_exports

if TYPE_CHECKING:
    from fastkit.executor._backends import (
        LocalLockBackend,
        LockBackend,
        LockUnavailable,
        RedisLockBackend,
        redis_backend,
    )
    from fastkit.executor._locks import Fire, Lease, Locks, current_fire, current_lease
    from fastkit.executor._scheduler import EPOCH, JOB_ID_PATTERN, JobNotFound, Scheduler
    from fastkit.executor._stopping import Stopping
    from fastkit.executor._threadpool import ThreadPoolExecutor

__all__ = [
    "EPOCH",
    "JOB_ID_PATTERN",
    "Fire",
    "JobNotFound",
    "Lease",
    "LocalLockBackend",
    "LockBackend",
    "LockUnavailable",
    "Locks",
    "RedisLockBackend",
    "Scheduler",
    "Stopping",
    "ThreadPoolExecutor",
    "current_fire",
    "current_lease",
    "redis_backend",
]

# APScheduler (the `scheduler` extra) is imported with Scheduler, on first use.
__getattr__ = lazy_exports(__name__, globals(), {
    "LocalLockBackend": "._backends", "LockBackend": "._backends",
    "LockUnavailable": "._backends", "RedisLockBackend": "._backends",
    "redis_backend": "._backends",
    "Fire": "._locks", "Lease": "._locks", "Locks": "._locks", "current_fire": "._locks",
    "current_lease": "._locks",
    "EPOCH": "._scheduler", "JOB_ID_PATTERN": "._scheduler", "JobNotFound": "._scheduler",
    "Scheduler": "._scheduler",
    "Stopping": "._stopping",
    "ThreadPoolExecutor": "._threadpool",
})
