"""Locked jobs in separate processes sharing one Redis: each fire runs once in total.

Each process is ``locked_worker.py`` (a scheduler with a locked interval job); the job
records every run in the real Redis of 127.0.0.1:6379, so runs are counted per fire.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import threading
import time

import pytest
import redis
from workers import finish, spawn

from redis_server import RedisServer
from waiting import wait_for


def fires(store: redis.Redis, prefix: str) -> dict[int, int]:
    return {int(k): int(v) for k, v in store.hgetall(f"{prefix}:fires").items()}


def follow(process) -> tuple[threading.Thread, list[str]]:
    """The lines of ``process``'s standard error, appended as they come, and the thread
    that reads them (it ends, closing the pipe, when the process does)."""
    lines: list[str] = []

    def read() -> None:
        with process.stderr:
            for line in process.stderr:
                lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader, lines


def skipped_fires(logs: tuple[list[str], ...]) -> set[str]:
    """The fire times the workers logged as skipped for an unreachable lock store."""
    pattern = re.compile(r"fire at (\S+) skipped: lock store unavailable")
    return {found.group(1) for lines in logs for line in list(lines)
            for found in [pattern.search(line)] if found}


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
    wait_for(lambda: store.llen(started), 5, "a fire started")
    victim_pid, victim_fire = store.lindex(started, 0).split()
    os.kill(int(victim_pid), signal.SIGKILL)
    killed_at = time.time()
    wait_for(lambda: store.llen(started) > 1, 6, "another process took the job over")
    pid, fire_ms = store.lindex(started, 1).split()
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
        readers, logs = zip(*(follow(process) for process in processes), strict=True)
        wait_for(lambda: len(fires(store, prefix)) >= 3, 6, "three fires ran")
        server.stop()
        stopped = time.time()
        # The outage lasts until the workers skipped two fires for it (what proves that
        # fires came while Redis was down), not a guessed number of seconds.
        wait_for(lambda: len(skipped_fires(logs)) >= 2, 6, "two fires skipped while down")
        server.start()
        restarted = time.time()
        for process, reader in zip(processes, readers, strict=True):
            process.wait(30)
            process.stdout.close()
            reader.join(10)
        errors = ["".join(lines) for lines in logs]
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
