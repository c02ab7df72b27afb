"""The thread pool: registration, submit before start, prompt shutdown, single_job takeover."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import redis
from workers import spawn

from fastkit.executor import ThreadPoolExecutor


def test_decorating_registers_without_running_and_keeps_the_name():
    pool = ThreadPoolExecutor(4)
    ran = []

    @pool.submit()
    def task():
        ran.append(1)

    assert callable(task) and task.__name__ == "task"
    time.sleep(0.1)
    assert ran == []
    pool.start()
    time.sleep(0.2)
    pool.shutdown(timeout=2)
    assert ran == [1]
    task()  # still the function itself
    assert ran == [1, 1]


def test_a_task_submitted_before_start_waits_for_it():
    pool = ThreadPoolExecutor(2)
    before = threading.active_count()
    future = pool.submit_task(lambda a, b=0: a + b, 40, b=2)
    assert threading.active_count() == before and not future.done()
    pool.start()
    assert future.result(timeout=2) == 42
    assert pool.submit_task(str.upper, "now").result(timeout=2) == "NOW"
    pool.shutdown()


def test_a_failing_task_is_logged_and_its_future_holds_the_error(logs):
    pool = ThreadPoolExecutor(2)
    pool.start()

    def broken():
        raise ValueError("nope")

    future = pool.submit_task(broken)
    with pytest.raises(ValueError, match="nope"):
        future.result(timeout=2)
    pool.shutdown()
    assert "raised ValueError" in logs.text()


def test_shutdown_stops_looping_tasks_promptly():
    pool = ThreadPoolExecutor(4)
    loops = []

    for _ in range(3):
        @pool.submit()
        def loop():
            while not pool.is_stopped():
                loops.append(1)
                pool.sleep(30)

    pool.start()
    time.sleep(0.2)
    started = time.monotonic()
    pool.shutdown(wait=True, timeout=10)
    assert time.monotonic() - started < 0.5
    assert len(loops) == 3


def test_shutdown_honours_its_timeout_for_a_task_that_ignores_it(logs):
    pool = ThreadPoolExecutor(2)
    pool.submit_task(time.sleep, 2)
    pool.start()
    time.sleep(0.1)
    started = time.monotonic()
    pool.shutdown(wait=True, timeout=0.3)
    assert 0.25 < time.monotonic() - started < 1.0
    assert "still running after 0.3 s" in logs.text()


def test_the_pool_starts_again_after_a_shutdown():
    pool = ThreadPoolExecutor(2)
    runs = []
    pool.submit()(lambda: runs.append(1))
    for _ in range(2):
        pool.start()
        time.sleep(0.1)
        pool.shutdown()
    assert runs == [1, 1]


def test_single_job_runs_one_copy_in_process():
    pool = ThreadPoolExecutor(4, lock_ttl=1)
    active, peak = [0], [0]
    guard = threading.Lock()

    def worker():
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        pool.sleep(0.3)
        with guard:
            active[0] -= 1

    futures = [pool.submit_task(worker, single_job=True) for _ in range(3)]
    pool.start()
    for future in futures:
        future.result(timeout=5)
    pool.shutdown()
    assert peak == [1]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="max_workers 0"):
        ThreadPoolExecutor(0)
    with pytest.raises(TypeError, match="needs a function"):
        ThreadPoolExecutor(1).submit_task("not callable")  # type: ignore[arg-type]


def test_single_job_across_processes_one_holder_and_takeover_when_it_dies(prefix):
    store = redis.Redis(db=15, decode_responses=True)
    processes = [spawn("threadpool", prefix, "--run-for", "10", "--ttl", "1")
                 for _ in range(3)]
    time.sleep(1.5)
    beats = [line.split() for line in store.lrange(f"{prefix}:beats", 0, -1)]
    assert beats and len({pid for pid, _ in beats}) == 1  # one copy runs
    holder = int(beats[0][0])
    os.kill(holder, signal.SIGKILL)
    killed = time.time()
    time.sleep(3.5)
    after = [line.split() for line in store.lrange(f"{prefix}:beats", 0, -1)
             if float(line.split()[1]) > killed]
    pids = {int(pid) for pid, _ in after}
    assert len(pids) == 1 and holder not in pids  # one standby took over
    takeover = min(float(t) for _, t in after)
    assert takeover - killed < 3  # within the lock's ttl plus a standby poll
    for process in processes:
        process.terminate()
    for process in processes:
        process.communicate(timeout=10)
        assert process.returncode in (0, -signal.SIGKILL)
