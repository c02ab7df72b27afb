"""A scheduled fire belongs to the job's own function: helpers and tasks never take it."""

from __future__ import annotations

import asyncio
import functools
import threading
from datetime import UTC, datetime, timedelta

import pytest

from fastkit.executor import (
    LocalLockBackend,
    Locks,
    Scheduler,
    ThreadPoolExecutor,
    current_fire,
    current_lease,
)
from waiting import wait_for


@pytest.fixture
def locks():
    return Locks(LocalLockBackend(), ttl=5)


@pytest.fixture
def pool(locks):
    made = ThreadPoolExecutor(2, "fire-owner-pool", locks=locks)
    made.start()
    yield made
    made.shutdown(timeout=5)


def soon() -> datetime:
    return datetime.now(UTC) + timedelta(milliseconds=200)


def test_locked_helpers_in_a_background_job_run_every_call(locks, pool, logs):
    calls, seen = [], []
    done = threading.Event()

    @locks.guard
    def helper(i):
        calls.append(i)
        seen.append((current_fire(), current_lease()))

    def job():  # not locked: each helper call takes its run's lock only
        for i in range(3):
            helper(i)
        pool.submit_task(helper, "from-task").result(5)
        done.set()

    scheduler = Scheduler("fire-owner", "background", locks=locks)
    scheduler.add_job(job, "date", run_date=soon(), id="nested")
    scheduler.start()
    try:
        assert done.wait(10)
    finally:
        scheduler.shutdown(timeout=5)
    assert calls == [0, 1, 2, "from-task"]
    assert "that fire was taken already" not in logs.text()
    for fire, lease in seen[:3]:
        assert fire is not None and fire.job_id == "nested"  # the job's fire is still seen
        assert lease is not None and lease.fire is None  # ... but not taken by the helper
    fire, lease = seen[3]
    assert fire is None and lease is not None and lease.fire is None  # in the pool task


def test_locked_helpers_in_an_asyncio_job_run_every_call(locks, pool):
    calls = []

    @locks.guard
    async def helper(i):
        calls.append(i)
        assert current_lease().fire is None

    @locks.guard
    def sync_helper(i):
        calls.append(i)

    async def main():
        done = asyncio.Event()

        async def job():
            for i in range(3):
                await helper(i)
            await asyncio.wrap_future(pool.submit_task(sync_helper, "from-task"))
            done.set()

        scheduler = Scheduler("fire-owner-async", "asyncio", locks=locks)
        scheduler.add_job(job, "date", run_date=soon(), id="nested-async")
        scheduler.start()
        try:
            await asyncio.wait_for(done.wait(), 10)
        finally:
            await scheduler.aclose(5)

    asyncio.run(main())
    assert calls == [0, 1, 2, "from-task"]


def _run_twice(locks, func, single_job=False):
    """The same fire of ``func`` in two schedulers on one lock store (as two processes)."""
    when = soon()
    for _ in range(2):  # alike in every process: the scheduler's name, the job's id
        scheduler = Scheduler("owner", "background", locks=locks)
        scheduler.add_job(func, "date", run_date=when, id="owned", single_job=single_job,
                          misfire_grace_time=30)
        scheduler.start()
        try:
            wait_for(lambda s=scheduler: not s.get_jobs())  # the date job fired
        finally:
            scheduler.shutdown(timeout=5)  # waits for its run


def _make_job(locks, runs, helper_calls):
    @locks.guard
    def helper(i):
        helper_calls.append(i)

    def job():
        runs.append((current_fire(), current_lease()))
        for i in range(3):
            helper(i)

    return job


def test_a_locked_job_under_another_decorator_still_takes_its_fire(locks, logs):
    runs, helper_calls = [], []
    inner = _make_job(locks, runs, helper_calls)

    def traced(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            return func(*args, **kwargs)
        return wrapper

    job = traced(locks.guard(name="owned-job")(inner))
    _run_twice(locks, job)
    assert len(runs) == 1, runs  # the second scheduler's same fire was refused
    fire, lease = runs[0]
    assert lease is not None and lease.fire == fire and fire.job_id == "owned"
    assert helper_calls == [0, 1, 2]  # helper calls never take (nor are refused) the fire
    assert logs.text().count("that fire was taken already") == 1


def test_single_job_jobs_take_their_fire_and_helpers_do_not(locks, logs):
    runs, helper_calls = [], []
    job = _make_job(locks, runs, helper_calls)
    _run_twice(locks, job, single_job=True)
    assert len(runs) == 1, runs
    fire, lease = runs[0]
    assert lease is not None and lease.fire == fire and fire.job_id == "owned"
    assert helper_calls == [0, 1, 2]
    assert logs.text().count("that fire was taken already") == 1


def test_a_pool_task_submitted_by_a_locked_job_has_its_own_lease(locks, pool):
    seen = {}
    done = threading.Event()

    def plain_task():
        seen["plain"] = (current_lease(), current_fire())

    def single_task():
        seen["single"] = current_lease()

    @locks.guard
    def job():
        seen["job"] = current_lease()
        pool.submit_task(plain_task).result(5)
        pool.submit_task(single_task, single_job=True).result(5)
        done.set()

    scheduler = Scheduler("fire-owner-lease", "background", locks=locks)
    scheduler.add_job(job, "date", run_date=soon(), id="lease")
    scheduler.start()
    try:
        assert done.wait(10)
    finally:
        scheduler.shutdown(timeout=5)
    assert seen["job"] is not None and seen["job"].fire is not None
    assert seen["plain"] == (None, None)
    single = seen["single"]
    assert single is not None and single is not seen["job"]
    assert single.name.endswith("single_task") and single.fire is None
