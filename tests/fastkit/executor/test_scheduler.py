"""Schedulers in one process: defaults, aligned fire times, ids, errors, run now, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime

import pytest

from fastkit.executor import EPOCH, JobNotFound, Scheduler, current_fire


@pytest.fixture
def scheduler():
    made = Scheduler("test", "background")
    yield made
    made.shutdown(timeout=2)


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_creating_a_scheduler_starts_nothing():
    before = threading.active_count()
    made = Scheduler("idle", "background")
    made.add_job(print, "interval", seconds=5, id="idle")
    assert threading.active_count() == before
    assert made._aps is not None and not made.running


def test_jobs_default_to_one_instance_and_coalesced_fires(scheduler):
    scheduler.add_job(print, "interval", seconds=5, id="defaults")
    scheduler.start()  # APScheduler applies the defaults when the job reaches its store
    job = scheduler.get_job("defaults")
    assert job.max_instances == 1 and job.coalesce is True


def test_interval_fires_are_aligned_to_the_epoch(scheduler):
    job = scheduler.add_job(print, "interval", seconds=5, id="aligned")
    assert job.trigger.start_date == EPOCH
    scheduler.start()
    next_fire = scheduler.get_job("aligned").next_run_time
    assert next_fire.timestamp() % 5 == 0
    own = scheduler.add_job(print, "interval", seconds=5, id="own",
                            start_date=datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC))
    assert own.next_run_time.timestamp() % 5 == 1  # a start_date given is kept


def test_job_ids_are_url_safe_and_default_to_the_function_name(scheduler):
    def report():
        pass

    first = scheduler.add_job(report, "interval", seconds=5)
    second = scheduler.add_job(report, "interval", seconds=5)
    assert first.id == "test_scheduler.test_job_ids_are_url_safe_and_default_to_the_function_name" \
        "._locals_.report"
    assert second.id == f"{first.id}-2"
    for bad in ("a/b c", "x\n", ".", ".."):  # "x\n" passed a "$"-anchored match once
        with pytest.raises(ValueError, match="not URL-safe"):
            scheduler.add_job(report, "interval", seconds=5, id=bad)


def test_a_coroutine_function_is_refused_by_the_background_scheduler(scheduler):
    async def job():
        pass

    with pytest.raises(TypeError, match="asyncio scheduler"):
        scheduler.add_job(job, "interval", seconds=1)


def test_a_locked_job_cannot_jitter(scheduler):
    with pytest.raises(ValueError, match="jitter"):
        scheduler.add_job(print, "interval", seconds=5, jitter=2, single_job=True)


def test_a_job_that_raises_is_logged_with_its_id_and_the_scheduler_goes_on(scheduler, logs):
    runs = []

    def flaky():
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("first run fails")

    scheduler.add_job(flaky, "interval", seconds=1, id="flaky")
    scheduler.start()
    scheduler.run_job("flaky")
    wait_until(lambda: len(runs) >= 2, timeout=4)
    errors = [r for r in logs.records if r["level"] == "ERROR"]
    assert "job 'flaky' of scheduler 'test' raised RuntimeError" in errors[0]["message"]
    assert "first run fails" in errors[0]["text"] and "Traceback" in errors[0]["text"]


def test_run_now_keeps_the_schedule_and_marks_its_own_fire(scheduler):
    fires = []
    scheduler.add_job(lambda: fires.append(current_fire()), "interval", seconds=3600,
                      id="hourly")
    scheduler.start()
    before = scheduler.get_job("hourly").next_run_time
    scheduler.run_job("hourly")
    wait_until(lambda: fires)
    assert fires[0].job_id == "hourly" and fires[0].time < before
    assert scheduler.get_job("hourly").next_run_time == before
    assert before.timestamp() % 3600 == 0


def test_pause_resume_remove(scheduler):
    scheduler.add_job(print, "interval", seconds=60, id="steer")
    scheduler.start()
    assert scheduler.pause_job("steer").next_run_time is None
    assert scheduler.resume_job("steer").next_run_time.timestamp() % 60 == 0
    scheduler.remove_job("steer")
    with pytest.raises(JobNotFound, match="no job 'steer' in scheduler 'test'"):
        scheduler.get_job("steer")


def test_max_instances_skips_a_fire_while_the_job_runs(scheduler, logs):
    release = threading.Event()
    scheduler.add_job(lambda: release.wait(5), "interval", seconds=3600, id="slow")
    scheduler.start()
    scheduler.run_job("slow")
    wait_until(lambda: scheduler._aps._lookup_executor("default").running)
    with pytest.raises(Exception, match="maximum number of instances"):
        scheduler.run_job("slow")
    release.set()


def test_shutdown_waits_for_running_jobs_up_to_its_timeout(logs):
    made = Scheduler("slow", "background")
    running = threading.Event()

    def sleeper():  # ignores is_stopped(): runs its 3 s whatever the scheduler says
        running.set()
        time.sleep(3)

    made.add_job(sleeper, "interval", seconds=3600, id="sleeper")
    made.start()
    made.run_job("sleeper")
    assert running.wait(5)
    started = time.monotonic()
    made.shutdown(wait=True, timeout=0.5)
    assert 0.4 < time.monotonic() - started < 1.5
    assert "still going after 0.5 s" in logs.text()


def test_shutdown_returns_as_soon_as_jobs_end_and_sleep_is_cut_short():
    made = Scheduler("sleepy", "background")
    ended = []
    running = threading.Event()

    def patient():
        running.set()
        made.sleep(30)
        ended.append(made.is_stopped())

    made.add_job(patient, "interval", seconds=3600, id="patient")
    made.start()
    made.run_job("patient")
    assert running.wait(5)
    started = time.monotonic()
    made.shutdown(wait=True, timeout=10)
    assert time.monotonic() - started < 1
    assert ended == [True]


def test_a_stopped_scheduler_starts_again_with_its_jobs(scheduler):
    runs = []
    scheduler.add_job(lambda: runs.append(1), "interval", seconds=3600, id="kept")
    scheduler.start()
    scheduler.shutdown()
    assert [job.id for job in scheduler.get_jobs()] == ["kept"]
    scheduler.start()
    scheduler.run_job("kept")
    wait_until(lambda: runs)


def test_the_asyncio_scheduler_runs_coroutines_on_the_loop_that_started_it():
    async def main():
        made = Scheduler("loop", "asyncio")
        loop = asyncio.get_running_loop()
        seen = []
        ran = asyncio.Event()

        async def job():
            seen.append(asyncio.get_running_loop() is loop)
            ran.set()

        made.add_job(job, "interval", seconds=3600, id="coro")
        made.start()
        made.run_job("coro")
        await asyncio.wait_for(ran.wait(), 5)
        await made.aclose(1)
        return seen

    assert asyncio.run(main()) == [True]


def test_the_asyncio_scheduler_needs_a_running_loop():
    with pytest.raises(RuntimeError, match="event loop"):
        Scheduler("loop", "asyncio").start()


def test_aclose_cancels_coroutine_jobs_still_running_after_its_timeout(logs):
    async def main():
        made = Scheduler("loop", "asyncio")
        cancelled = []
        running, ended = asyncio.Event(), asyncio.Event()

        async def job():
            running.set()
            try:
                await asyncio.sleep(10)  # the job's own work: longer than aclose waits
            except asyncio.CancelledError:
                cancelled.append(1)
                raise
            finally:
                ended.set()

        made.add_job(job, "interval", seconds=3600, id="long")
        made.start()
        made.run_job("long")
        await asyncio.wait_for(running.wait(), 5)
        await made.aclose(0.2)
        await asyncio.wait_for(ended.wait(), 5)  # far less than the job's 10 s
        return cancelled

    assert asyncio.run(main()) == [1]
    assert "cancelled" in logs.text()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="scheduler_type 'thread'"):
        Scheduler("x", "thread")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_workers 0"):
        Scheduler("x", max_workers=0)
