"""Jobs for the scheduler metrics and tracing tests: fresh ids, fire times, a job function of
either scheduler kind, locks in the real Redis, and a shutdown that waits for fired date
jobs to leave the store."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from fastkit.executor import Locks, RedisLockBackend, Scheduler

KINDS = ["background", "asyncio"]  # a def job in a thread, an async def job on the loop


def job_id() -> str:
    return f"job-{uuid.uuid4().hex[:10]}"


def soon(seconds: float = 0.2) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def redis_locks(prefix: str, port: int = 6379) -> Locks:
    """Locks in the real Redis (db 15) under ``prefix``: each call is one more instance."""
    return Locks(RedisLockBackend(redis.Redis(port=port, db=15, socket_connect_timeout=1),
                                  f"{prefix}:"), ttl=10)


def job_function(kind: str, body: Callable[[], Any]) -> Callable[[], Any]:
    """``body()`` as the job's function: ``def`` for a background scheduler, ``async def``
    for an asyncio one."""
    if kind == "background":
        def job() -> Any:
            return body()
    else:
        async def job() -> Any:
            return body()
    return job


async def stop(scheduler: Scheduler) -> None:
    """Shut down, once the date jobs that fired have left the store: APScheduler removes
    one after its fire, and a shutdown meanwhile makes that removal raise in its thread."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
            job.trigger.__class__.__name__ == "DateTrigger" and job.next_run_time is not None
            and job.next_run_time <= datetime.now(UTC) for job in scheduler.get_jobs()):
        await asyncio.sleep(0.02)  # polling to the deadline
    if scheduler.scheduler_type == "asyncio":
        await scheduler.aclose(2)
    else:
        scheduler.shutdown(timeout=2)
