"""Scheduler metrics: runs by result, their duration, and every way a fire is skipped (lock
held by another holder in the real Redis, a fire another instance ran, the lock store down,
the previous run still going, a missed fire), for thread and event-loop jobs."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from scheduler_jobs import KINDS, job_function, job_id, redis_locks, soon, stop

from fastkit import metrics, tracing
from fastkit.executor import Scheduler
from redis_server import closed_port
from waiting import until


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def runs(job: str, result: str) -> float:
    return value("scheduler_job_runs_total", job=job, result=result)


def skips(job: str, reason: str) -> float:
    return value("scheduler_job_skips_total", job=job, reason=reason)


def durations(job: str) -> float:
    return value("scheduler_job_duration_seconds_count", job=job)


@pytest.mark.parametrize("kind", KINDS)
async def test_runs_are_counted_and_timed_by_result(kind, metrics_on):
    job, failing = job_id(), []

    def body():
        if failing:
            raise RuntimeError("it failed")

    scheduler = Scheduler("metrics", kind)
    scheduler.add_job(job_function(kind, body), "interval", seconds=3600, id=job)
    scheduler.start()
    try:
        scheduler.run_job(job)
        await until(lambda: runs(job, "success") == 1, what="the run counted")
        failing.append(True)
        scheduler.run_job(job)
        await until(lambda: runs(job, "failed") == 1, what="the failed run counted")
    finally:
        await stop(scheduler)
    assert runs(job, "success") == 1 and runs(job, "failed") == 1
    assert durations(job) == 2
    assert value("scheduler_job_duration_seconds_sum", job=job) > 0


@pytest.mark.parametrize("kind", KINDS)
async def test_a_fire_is_skipped_while_another_holder_has_its_lock(kind, prefix, metrics_on,
                                                                     logs):
    job, called = job_id(), []
    scheduler = Scheduler("metrics", kind, locks=redis_locks(prefix))
    guarded = scheduler.lock(name="held")(job_function(kind, lambda: called.append(1)))
    other_instance = redis_locks(prefix)
    with other_instance.held(f"held/{job}") as lease:  # a locked job's run lock: <lock>/<id>
        assert lease is not None
        scheduler.add_job(guarded, "date", run_date=soon(), id=job)
        scheduler.start()
        try:
            await until(lambda: skips(job, "lock_held") == 1, what="the skip counted")
        finally:
            await stop(scheduler)
    assert called == [] and runs(job, "success") == runs(job, "failed") == 0
    assert durations(job) == 0
    assert "is held by a run still going" in logs.text()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_fire_another_instance_ran_is_skipped_as_taken(kind, prefix, metrics_on):
    job, called = job_id(), []
    body = job_function(kind, lambda: called.append(1))
    at = soon(0.3)
    instances = [Scheduler("metrics", kind, locks=redis_locks(prefix)) for _ in range(2)]
    for scheduler in instances:
        scheduler.add_job(body, "date", run_date=at, id=job, single_job=True)
        scheduler.start()
    try:
        await until(lambda: runs(job, "success") + skips(job, "fire_taken") == 2,
                    what="one run and one skip")
    finally:
        for scheduler in instances:
            await stop(scheduler)
    assert called == [1]
    assert runs(job, "success") == 1 and skips(job, "fire_taken") == 1
    assert skips(job, "lock_held") == 0


async def test_a_fire_is_skipped_when_the_lock_store_cannot_be_reached(metrics_on, logs):
    job, called = job_id(), []
    with closed_port() as port:
        scheduler = Scheduler("metrics", "background", locks=redis_locks("unused", port))
        scheduler.add_job(lambda: called.append(1), "interval", seconds=3600, id=job,
                          single_job=True)
        scheduler.start()
        try:
            scheduler.run_job(job)
            await until(lambda: skips(job, "lock_unavailable") == 1, what="the skip counted")
        finally:
            await stop(scheduler)
    assert called == [] and runs(job, "success") == 0
    assert "lock store unavailable" in logs.text()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_fire_is_skipped_while_the_previous_run_goes_on(kind, metrics_on):
    job = job_id()
    if kind == "background":  # the run blocks its worker thread
        started, release = threading.Event(), threading.Event()

        def blocking():
            started.set()
            assert release.wait(10)
    else:  # the run awaits on the loop
        started, release = asyncio.Event(), asyncio.Event()

        async def blocking():
            started.set()
            await asyncio.wait_for(release.wait(), 10)

    scheduler = Scheduler("metrics", kind)
    scheduler.add_job(blocking, "interval", seconds=3600, id=job)
    scheduler.start()
    try:
        scheduler.run_job(job)
        await until(started.is_set, what="the first run started")
        scheduler.get_job(job).modify(next_run_time=datetime.now(UTC))  # a fire, now
        await until(lambda: skips(job, "still_running") == 1, what="the skip counted")
        assert runs(job, "success") == 0
        release.set()
        await until(lambda: runs(job, "success") == 1, what="the first run counted")
    finally:
        release.set()
        await stop(scheduler)
    assert skips(job, "still_running") == 1 and durations(job) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_a_missed_fire_is_counted_and_not_run(kind, metrics_on):
    job, called = job_id(), []
    scheduler = Scheduler("metrics", kind)
    late = datetime.now(UTC) - timedelta(seconds=30)  # far beyond the grace below
    scheduler.add_job(job_function(kind, lambda: called.append(1)), "date", run_date=late,
                      id=job, misfire_grace_time=1)
    scheduler.start()
    try:
        await until(lambda: skips(job, "missed") == 1, what="the missed fire counted")
    finally:
        await stop(scheduler)
    assert called == [] and runs(job, "success") == 0 and durations(job) == 0


def test_nothing_is_recorded_while_metrics_and_tracing_are_off():
    was_on = metrics.enabled()
    metrics.disable()
    tracing.disable()  # off by default: tests that trace turn it on for themselves
    job, ran = job_id(), threading.Event()
    scheduler = Scheduler("metrics", "background")
    scheduler.add_job(ran.set, "interval", seconds=3600, id=job)
    scheduler.start()
    try:
        scheduler.run_job(job)
        assert ran.wait(10)
    finally:
        scheduler.shutdown(timeout=2)
        if was_on:
            metrics.enable()
    assert REGISTRY.get_sample_value("scheduler_job_runs_total",
                                     {"job": job, "result": "success"}) is None
    assert REGISTRY.get_sample_value("scheduler_job_duration_seconds_count", {"job": job}) is None
