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
from redis_server import RedisServer
from waiting import wait_for


def test_decorating_registers_without_running_and_keeps_the_name():
    pool = ThreadPoolExecutor(4)
    ran = []
    before = threading.active_count()

    @pool.submit()
    def task():
        ran.append(1)

    assert callable(task) and task.__name__ == "task"
    # Not run, and nothing that could run it later: no thread exists before start().
    assert ran == [] and not pool.running and threading.active_count() == before
    pool.start()
    wait_for(lambda: ran == [1], 5, "the registered task ran")
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
    wait_for(lambda: len(loops) == 3, 5, "the three loops are in their sleep")
    started = time.monotonic()
    pool.shutdown(wait=True, timeout=10)
    assert time.monotonic() - started < 0.5
    assert len(loops) == 3


def test_shutdown_honours_its_timeout_for_a_task_that_ignores_it(logs):
    pool = ThreadPoolExecutor(2)
    running = threading.Event()

    def stubborn():  # ignores is_stopped(): runs its 2 s whatever the pool says
        running.set()
        time.sleep(2)

    pool.submit_task(stubborn)
    pool.start()
    assert running.wait(5)
    started = time.monotonic()
    pool.shutdown(wait=True, timeout=0.3)
    assert 0.25 < time.monotonic() - started < 1.0
    assert "still running after 0.3 s" in logs.text()


def test_the_pool_starts_again_after_a_shutdown():
    pool = ThreadPoolExecutor(2)
    runs = []
    pool.submit()(lambda: runs.append(1))
    for count in (1, 2):
        pool.start()
        wait_for(lambda n=count: len(runs) == n, 5, f"run {count} of the registered task")
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


def beats_of(store: redis.Redis, prefix: str, after: float = 0.0) -> list[tuple[int, float]]:
    """The holders' heartbeats (pid, time), in time order."""
    beats = [(int(pid), float(at)) for pid, at in
             (line.split() for line in store.lrange(f"{prefix}:beats", 0, -1))]
    return sorted((beat for beat in beats if beat[1] > after), key=lambda beat: beat[1])


def stretches(beats: list[tuple[int, float]]) -> list[int]:
    """The pids of the runs of consecutive beats by one process: [a, b] is one handover."""
    runs: list[int] = []
    for pid, _ in beats:
        if not runs or runs[-1] != pid:
            runs.append(pid)
    return runs


def test_single_job_across_processes_one_holder_and_takeover_when_it_dies(prefix):
    store = redis.Redis(db=15, decode_responses=True)
    processes = [spawn("threadpool", prefix, "--run-for", "15", "--ttl", "1")
                 for _ in range(3)]
    wait_for(lambda: len(beats_of(store, prefix)) >= 10, 5, "no holder started")
    holders = stretches(beats_of(store, prefix))
    assert len(holders) == 1  # one copy runs
    os.kill(holders[0], signal.SIGKILL)
    killed = time.time()
    wait_for(lambda: beats_of(store, prefix, killed), 4, "no standby took over")
    takeover = beats_of(store, prefix, killed)[0][1]
    # Within the lock's ttl, a standby poll and the handover wait (ttl / 3 + 0.25 s).
    assert takeover - killed < 3
    wait_for(lambda: len(beats_of(store, prefix, killed)) >= 10, 5, "the new holder stopped")
    assert stretches(beats_of(store, prefix, killed)) == [beats_of(store, prefix, killed)[0][0]]
    for process in processes:
        process.terminate()
    for process in processes:
        process.communicate(timeout=10)
        assert process.returncode in (0, -signal.SIGKILL)


def test_a_holder_that_loses_its_lock_stops_before_another_starts(prefix):
    # The reported input: the private Redis holding the lock restarts and forgets it. The
    # holder is told at its next renewal (is_stopped() turns true, sleep() returns), stops,
    # and stands by; whoever takes the lock next starts only after that.
    store = redis.Redis(db=15, decode_responses=True)
    server = RedisServer()
    server.start()
    try:
        processes = [spawn("threadpool", prefix, "--run-for", "30", "--ttl", "1.5",
                           "--lock-url", server.url) for _ in range(2)]
        wait_for(lambda: len(beats_of(store, prefix)) >= 10, 5, "no holder started")
        assert len(stretches(beats_of(store, prefix))) == 1
        server.stop()
        server.start()  # empty: the holder's lock is gone
        restarted = time.time()
        wait_for(lambda: len(beats_of(store, prefix, restarted + 2)) >= 15, 10,
             "no copy runs after the restart")
        for process in processes:
            process.terminate()
        errors = [process.communicate(timeout=10)[1] for process in processes]
    finally:
        server.stop()
    # Told either way: the renewal found the lease gone, or the restart kept the store from
    # confirming it within 2/3 of the ttl (which comes first depends on the restart's pace).
    told = ("was lost while its holder runs", "is given up: its store did not confirm it")
    assert any(line in err for err in errors for line in told), errors
    # Never two copies at once: the beats after the restart come from one holder, then at
    # most one other (a handover), never interleaved.
    after = beats_of(store, prefix, restarted)
    assert len(stretches(after)) <= 2, stretches(after)
    assert all(process.returncode == 0 for process in processes)
