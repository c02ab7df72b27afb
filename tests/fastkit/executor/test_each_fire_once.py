""""Each fire runs once across processes", whatever the trigger's form, however late a
process fires, whatever its clock says and whatever the lock's ttl.

Every process is ``locked_worker.py`` with a locked job on a real Redis (127.0.0.1:6379,
db 15); each run records its fire's slot there, so runs are counted per fire. A process
"started late" builds its trigger at a later wall-clock moment (``--build-at``), so its
trigger object has another phase; a process with a skewed clock runs under Debian's
libfaketime (``FAKETIME``).
"""

from __future__ import annotations

import time

import pytest
import redis
from test_multiprocess import assert_each_fire_once, fires
from workers import finish, ready, start

from preflight import libfaketime


def skewed(seconds: float) -> dict[str, str]:
    """The environment of a process whose wall clock is ``seconds`` off (monotonic kept)."""
    library = libfaketime()
    assert library, "libfaketime is missing: apt-get install faketime"
    return {"LD_PRELOAD": library, "FAKETIME": f"{seconds:+g}",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def started_apart(kind: str, prefix: str, offsets: list[float], *options: str,
                  env: list[dict[str, str] | None] | None = None) -> list:
    """Processes building their triggers ``offsets`` seconds apart, all ready."""
    begin = time.time() + 2.5  # every interpreter is up by then
    processes = [start(kind, prefix, "--build-at", f"{begin + offset:.3f}", *options,
                       env=(env or [None] * len(offsets))[number])
                 for number, offset in enumerate(offsets)]
    return [ready(process) for process in processes]


def test_a_skewed_clock_is_skewed():
    # What the test below relies on: a process under libfaketime reads a clock that is off.
    import subprocess
    import sys

    reading = subprocess.run([sys.executable, "-c", "import time; print(time.time())"],
                             env={**skewed(-100)}, capture_output=True, text=True, timeout=30)
    assert abs(float(reading.stdout) - (time.time() - 100)) < 5, reading


@pytest.mark.parametrize(("kind", "trigger"), [
    ("scheduler", "object"),     # add_job(job, IntervalTrigger(seconds=1)), the reported input
    ("scheduler", "decorator"),  # @scheduled_job(IntervalTrigger(...))
    ("scheduler", "or"),         # an interval inside a combining trigger
    ("scheduler", "cron"),
    ("scheduler", "string"),     # "interval", seconds=1
    ("asyncio", "object"),
])
def test_every_trigger_form_runs_each_fire_once(kind, trigger, prefix, store):
    processes = started_apart(kind, prefix, [0.0, 0.4, 0.7], "--trigger", trigger,
                              "--run-for", "6", "--job-seconds", "0.1")
    errors = finish(processes)
    counted = fires(store, prefix)
    assert_each_fire_once(counted, 1000, at_least=5)
    # The others were told why they skipped, at INFO.
    assert any("skipped: that fire was taken already" in err for err in errors)


def test_a_process_firing_late_never_runs_a_fire_that_ran(prefix, store):
    # A date fire at T; a second process starts 2 s after T, well within the 30 s misfire
    # grace, with a 0.3 s lock ttl: the first run's lock is long gone, the fire's mark is not.
    run_date = time.time() + 3
    on_time = start("scheduler", prefix, "--trigger", "date", "--run-date", f"{run_date:.3f}",
                    "--run-for", "6", "--ttl", "0.3", "--job-seconds", "0.1")
    late = start("scheduler", prefix, "--trigger", "date", "--run-date", f"{run_date:.3f}",
                 "--build-at", f"{run_date + 2:.3f}", "--run-for", "2", "--ttl", "0.3",
                 "--job-seconds", "0.1")
    errors = finish([ready(on_time), ready(late)])
    assert fires(store, prefix) == {round(run_date * 1000): 1}
    assert "skipped: that fire was taken already" in errors[1]


def test_skewed_clocks_never_run_a_fire_twice(prefix, store):
    # One process 1.5 s behind (every fire it reaches ran already), one 0.6 s ahead (it
    # reaches every fire first), one on time; the lock ttl (0.3 s) is shorter than the skew.
    processes = started_apart("scheduler", prefix, [0.0, 0.0, 0.0], "--trigger", "object",
                              "--run-for", "6", "--ttl", "0.3", "--job-seconds", "0.1",
                              env=[None, skewed(-1.5), skewed(0.6)])
    errors = finish(processes)
    counted = fires(store, prefix)
    assert_each_fire_once(counted, 1000, at_least=4)
    runners = {line.split()[0] for line in store.lrange(f"{prefix}:runs", 0, -1)}
    assert str(processes[1].pid) not in runners  # behind: it never got a fire first
    assert "skipped: that fire was taken already" in errors[1]


def test_a_locked_job_refuses_a_trigger_object_with_jitter():
    from apscheduler.triggers.interval import IntervalTrigger

    from fastkit.executor import Scheduler

    scheduler = Scheduler("jitter")

    @scheduler.lock()
    def job() -> None: ...

    with pytest.raises(ValueError, match="cannot use jitter"):
        scheduler.add_job(job, IntervalTrigger(seconds=5, jitter=2), id="j")
    with pytest.raises(ValueError, match="cannot use jitter"):
        scheduler.add_job(print, IntervalTrigger(seconds=5, jitter=2), id="k", single_job=True)


def test_the_mark_outlives_the_lock_and_a_day_past_the_grace(prefix):
    from datetime import UTC, datetime

    from fastkit.executor import Fire, Locks, RedisLockBackend

    client = redis.Redis(db=15)
    locks = Locks(RedisLockBackend(client, prefix=f"{prefix}:lock:"), ttl=0.05)
    fire = Fire("s", "job", datetime(2026, 1, 1, tzinfo=UTC), grace=60)
    lease = locks.acquire("name", fire)
    assert lease is not None
    locks.release(lease)
    mark = f"{prefix}:lock:{{name/job}}:mark:job:0"
    assert int(client.get(mark)) == fire.slot_ms
    assert 86_400_000 < client.pttl(mark) <= 86_460_000  # grace + a day, not the lock's ttl
    assert locks.acquire("name", fire) is None  # the same fire, after its lock expired
    earlier = Fire("s", "job", datetime(2025, 12, 31, tzinfo=UTC))
    assert locks.acquire("name", earlier) is None  # an older fire, reached late
    unbounded = Fire("s", "other", datetime(2026, 1, 1, tzinfo=UTC), grace=None)
    lease = locks.acquire("name", unbounded)
    assert lease is not None
    locks.release(lease)
    assert client.pttl(f"{prefix}:lock:{{name/other}}:mark:other:0") == -1  # kept for good
    # A weekly interval: a process may fire anywhere in the week, so the mark outlives it.
    weekly = Fire("s", "weekly", datetime(2026, 1, 1, tzinfo=UTC), grace=60, period=604_800)
    lease = locks.acquire("name", weekly)
    assert lease is not None
    locks.release(lease)
    kept = client.pttl(f"{prefix}:lock:{{name/weekly}}:mark:weekly:604800000")
    assert 604_800_000 + 86_400_000 < kept <= 604_800_000 + 86_460_000


@pytest.mark.parametrize("kind", ["background", "asyncio"])
def test_a_locked_job_is_told_at_once_when_its_lock_is_lost(kind, prefix):
    # A long locked job loops until is_stopped(); the lock store restarts and forgets its
    # lease. Its next renewal (ttl / 3) tells it: is_stopped() turns true inside that run
    # and sleep() returns, though the scheduler itself goes on.
    import asyncio
    import threading

    from fastkit.executor import Locks, RedisLockBackend, Scheduler
    from redis_server import RedisServer

    server = RedisServer()
    server.start()
    client = redis.Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
    scheduler = Scheduler(f"lost-{kind}", kind, locks=Locks(
        RedisLockBackend(client, prefix=f"{prefix}:lock:"), ttl=0.9))
    running, ended = threading.Event(), threading.Event()
    seen: list[bool] = []

    @scheduler.lock()
    def loop() -> None:
        running.set()
        while not scheduler.is_stopped():
            scheduler.sleep(30)
        seen.append(scheduler.is_stopped())
        ended.set()

    @scheduler.lock()
    async def aloop() -> None:
        running.set()
        while not scheduler.is_stopped():
            await scheduler.asleep(30)
        seen.append(scheduler.is_stopped())
        ended.set()

    async def scenario() -> None:
        scheduler.add_job(aloop if kind == "asyncio" else loop, "interval", hours=1, id="loop")
        scheduler.start()
        scheduler.run_job("loop")
        assert await asyncio.to_thread(running.wait, 5)
        server.stop()
        server.start()  # empty: the lease is gone
        assert await asyncio.to_thread(ended.wait, 5), "the job was not told"
        assert seen == [True]
        assert not scheduler.is_stopped()  # outside that run, the scheduler goes on
        await scheduler.aclose(2) if kind == "asyncio" else scheduler.shutdown(timeout=2)

    try:
        asyncio.run(scenario())
    finally:
        client.close()
        server.stop()
