"""Locked jobs in separate processes sharing one Redis: each fire runs once in total.

Each process is ``locked_worker.py`` (a scheduler with a locked interval job); the job
records every run in the real Redis of 127.0.0.1:6379, so runs are counted per fire.
"""

from __future__ import annotations

import itertools
import os
import signal
import time

import pytest
import redis
from workers import finish, spawn

from redis_server import RedisServer


def fires(store: redis.Redis, prefix: str) -> dict[int, int]:
    return {int(k): int(v) for k, v in store.hgetall(f"{prefix}:fires").items()}


def assert_each_fire_once(counted: dict[int, int], interval_ms: int, at_least: int) -> None:
    assert len(counted) >= at_least, counted
    assert set(counted.values()) == {1}, {k: v for k, v in counted.items() if v != 1}
    times = sorted(counted)
    # Aligned to the epoch: every fire is a multiple of the interval, and none is missing.
    assert all(t % interval_ms == 0 for t in times), times
    assert times == list(range(times[0], times[-1] + interval_ms, interval_ms)), times


@pytest.mark.parametrize("kind", ["scheduler", "asyncio"])
def test_three_processes_run_every_fire_exactly_once(kind, prefix, store):
    processes = [spawn(kind, prefix, "--run-for", "11", "--job-seconds", "0.2")
                 for _ in range(3)]
    finish(processes)
    counted = fires(store, prefix)
    assert_each_fire_once(counted, 1000, at_least=9)
    runners = {line.split()[0] for line in store.lrange(f"{prefix}:runs", 0, -1)}
    assert len(runners) >= 2  # the fires spread over the processes; none is privileged
    fences = [int(line.split()[2]) for line in store.lrange(f"{prefix}:runs", 0, -1)]
    assert len(set(fences)) == len(fences)  # every run got its own fencing number


def test_killing_the_process_running_a_long_job_moves_the_next_fire(prefix, store):
    # A 4 s job every second, lock ttl 1.5 s: while it runs, later fires are skipped.
    processes = [spawn("scheduler", prefix, "--run-for", "14", "--job-seconds", "4",
                       "--ttl", "1.5") for _ in range(3)]
    started = f"{prefix}:started"
    deadline = time.monotonic() + 5
    while not store.llen(started):
        assert time.monotonic() < deadline, "no fire started"
        time.sleep(0.05)
    victim_pid, victim_fire = store.lindex(started, 0).split()
    os.kill(int(victim_pid), signal.SIGKILL)
    killed_at = time.time()
    deadline = time.monotonic() + 6
    while True:
        later = [line.split() for line in store.lrange(started, 1, -1)]
        if later:
            break
        assert time.monotonic() < deadline, "no other process took the job over"
        time.sleep(0.05)
    pid, fire_ms = later[0]
    assert pid != victim_pid
    assert int(fire_ms) > int(victim_fire)
    assert int(fire_ms) / 1000 - killed_at < 4  # after the lock expired, not never
    finish(processes)
    starts = [line.split()[1] for line in store.lrange(started, 0, -1)]
    assert len(starts) == len(set(starts))  # no fire started twice


def test_redis_down_skips_locked_runs_and_they_resume_when_it_returns(prefix, store):
    server = RedisServer()
    server.start()
    try:
        processes = [spawn("scheduler", prefix, "--run-for", "12", "--job-seconds", "0.1",
                           "--lock-url", server.url) for _ in range(3)]
        time.sleep(3.5)
        server.stop()
        stopped = time.time()
        time.sleep(3)
        server.start()
        restarted = time.time()
        errors = finish(processes)
    finally:
        server.stop()
    counted = fires(store, prefix)
    assert set(counted.values()) == {1}, counted  # no fire ran twice
    assert any(t / 1000 < stopped for t in counted)
    assert not [t for t in counted if stopped + 0.5 < t / 1000 < restarted - 0.5]
    assert len([t for t in counted if t / 1000 > restarted + 1]) >= 3  # resumed
    assert all(p.returncode == 0 for p in processes)  # nobody crashed
    assert any("lock store unavailable" in err for err in errors)


def test_a_locked_function_called_directly_is_exclusive_across_processes(prefix, store):
    processes = [spawn("direct", prefix, "--run-for", "3", "--job-seconds", "0.05")
                 for _ in range(3)]
    errors = finish(processes)
    runs = sorted((float(start), float(end), pid) for pid, start, end in
                  (line.split() for line in store.lrange(f"{prefix}:direct", 0, -1)))
    assert len(runs) >= 10
    assert len({pid for _, _, pid in runs}) >= 2
    for (_, previous_end, _), (start, _, _) in itertools.pairwise(runs):
        assert start >= previous_end - 0.001  # never two at once (the end is logged last)
    assert int(store.get(f"{prefix}:skipped") or 0) > 0
    assert any("skipped: lock 'direct' is held" in err for err in errors)
