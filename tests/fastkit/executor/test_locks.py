"""Locks on the real Redis of 127.0.0.1:6379 and in process: take, renew, release, fail closed."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest
import redis

from fastkit.executor import (
    Fire,
    LocalLockBackend,
    Locks,
    LockUnavailable,
    RedisLockBackend,
    current_lease,
)
from fastkit.executor._locks import fire_context, reset_fire
from redis_server import closed_port
from waiting import wait_for


@pytest.fixture(params=["redis", "local"])
def backend(request, prefix):
    if request.param == "redis":
        return RedisLockBackend(redis.Redis(db=15, decode_responses=True),
                                prefix=f"{prefix}:lock:")
    return LocalLockBackend()


FIRE = Fire("s", "job", datetime(2026, 1, 1, tzinfo=UTC))


def test_a_run_is_held_once_and_every_take_gets_a_higher_fence(backend):
    locks = Locks(backend, ttl=5)
    first = locks.acquire("name")
    assert first is not None and first.fence >= 1
    assert locks.acquire("name") is None  # held
    locks.release(first)
    second = locks.acquire("name")
    assert second is not None and second.fence == first.fence + 1
    locks.release(second)


def test_a_fire_runs_once_even_after_its_run_ended(backend):
    locks = Locks(backend, ttl=5)
    lease = locks.acquire("name", FIRE)
    assert lease is not None
    locks.release(lease)
    assert locks.acquire("name", FIRE) is None  # the fire key is left to expire
    other = Fire("s", "job", datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC))
    assert locks.acquire("name", other) is not None


def test_a_fire_refused_while_the_previous_run_is_going_is_consumed(backend):
    locks = Locks(backend, ttl=5)
    running = locks.acquire("name", Fire("s", "job", datetime(2025, 12, 31, tzinfo=UTC)))
    assert running is not None
    assert locks.acquire("name", FIRE) is None  # HELD: the fire is skipped everywhere
    locks.release(running)
    assert locks.acquire("name", FIRE) is None


def test_two_jobs_of_one_locked_function_each_run_their_fires(backend):
    # The run's lock of a scheduled fire is the job's own: report-eu running never makes
    # report-us skip its fire of the same time (one run at a time per job).
    locks = Locks(backend, ttl=5)
    eu = locks.acquire("report", Fire("s", "report-eu", FIRE.time))
    us = locks.acquire("report", Fire("s", "report-us", FIRE.time))
    assert eu is not None and us is not None
    assert locks.acquire("report", Fire("s", "report-eu", FIRE.time)) is None
    locks.release(eu)
    locks.release(us)


def test_a_job_moved_to_another_grid_is_not_behind_its_old_mark(backend):
    # A cron fire at :44 marked 21:08:44; rescheduled to a 1-minute interval starting at
    # :46, its fire at 21:08:46 has the slot 21:08:00, on another grid: it runs.
    locks = Locks(backend, ttl=5)
    cron = Fire("s", "job", datetime(2026, 1, 1, 21, 8, 44, tzinfo=UTC))
    interval = Fire("s", "job", datetime(2026, 1, 1, 21, 8, 46, tzinfo=UTC),
                    slot=datetime(2026, 1, 1, 21, 8, tzinfo=UTC), period=60)
    for fire in (cron, interval):
        lease = locks.acquire("name", fire)
        assert lease is not None, fire
        locks.release(lease)
    assert locks.acquire("name", interval) is None  # still once per slot on its grid


def test_the_watchdog_keeps_a_long_holder_s_lock(backend):
    locks = Locks(backend, ttl=0.3)
    lease = locks.acquire("name")
    taken = lease.renewed
    # Time passed, shown by the store: it confirmed a renewal more than three ttls later.
    wait_for(lambda: lease.renewed - taken > 3 * 0.3, 5, "a renewal three ttls on")
    assert locks.acquire("name") is None
    assert not lease.lost
    locks.release(lease)
    again = locks.acquire("name")
    assert again is not None
    locks.release(again)  # no lease is left renewing after the test


def test_a_dead_holder_s_lock_expires(backend):
    locks = Locks(backend, ttl=0.3)
    lease = locks.acquire("name")
    locks._watchdog.forget(lease)  # what a killed process does: stop renewing
    assert locks.acquire("name") is None  # held until its ttl runs out
    taken = []
    wait_for(lambda: taken.append(locks.acquire("name")) or taken[-1] is not None, 5,
             "the lock expired")
    locks.release(taken[-1])


def test_a_lease_taken_over_is_reported_lost(backend, logs):
    locks = Locks(backend, ttl=0.3)
    lease = locks.acquire("name")
    locks._watchdog.forget(lease)
    taken = []
    wait_for(lambda: taken.append(locks.acquire("name")) or taken[-1] is not None, 5,
             "the lock expired")
    thief = taken[-1]
    _renew_now(lease)
    assert lease.lost and thief is not None
    assert "was lost while its holder runs" in logs.text()
    locks.release(thief)


def _renew_now(lease):
    from fastkit.executor._locks import _renew

    _renew(lease)


def test_guard_skips_a_direct_call_while_another_holds_the_lock(backend, logs):
    locks = Locks(backend, ttl=5)
    inside, release = threading.Event(), threading.Event()
    calls = []

    @locks.guard
    def work(n):
        calls.append(n)
        inside.set()
        release.wait(5)
        return n * 2

    first = threading.Thread(target=work, args=(1,))
    first.start()
    inside.wait(5)
    assert work(2) is None  # skipped, not queued
    release.set()
    first.join()
    assert calls == [1]
    assert work(3) == 6
    assert "skipped: lock" in logs.text()
    assert work.__name__ == "work"


def test_guarded_functions_see_their_lease_and_fire(backend):
    locks = Locks(backend, ttl=5)
    seen = []

    @locks.guard(name="named")
    def work():
        seen.append(current_lease())

    token = fire_context(FIRE, work)
    try:
        work()
    finally:
        reset_fire(token)
    # A fire's run lock is its job's own: <name>/<job id>.
    assert seen[0].name == "named/job" and seen[0].fire == FIRE and seen[0].fence >= 1
    assert current_lease() is None


def test_async_guard_runs_on_the_loop(backend):
    locks = Locks(backend, ttl=5)

    async def main():
        holding, release = asyncio.Event(), asyncio.Event()

        @locks.guard
        async def work():
            holding.set()
            await release.wait()  # the lock is held until the second call has tried
            return current_lease().fence

        first = asyncio.create_task(work())
        await asyncio.wait_for(holding.wait(), 10)
        second = await asyncio.wait_for(work(), 10)
        release.set()
        return [await first, second]

    results = asyncio.run(main())
    assert results[0] is not None and results[1] is None  # one ran, one skipped


def test_unreachable_redis_fails_closed(logs):
    with closed_port() as port:  # held: nothing can listen there during the test
        client = redis.Redis(port=port, socket_connect_timeout=0.5)
        locks = Locks(RedisLockBackend(client), ttl=5)
        with pytest.raises(LockUnavailable, match=rf"Redis at localhost:{port}"):
            locks.acquire("name")
        ran = []

        @locks.guard
        def work():
            ran.append(1)

        assert work() is None and ran == []
    assert "skipped: lock store unavailable" in logs.text()


def test_in_process_locks_warn_once_that_processes_each_run_the_job(logs):
    locks = Locks(None, ttl=5)
    for _ in range(3):
        locks.release(locks.acquire("name"))
    assert logs.text().count("locks hold within this process only") == 1


def test_backend_factory_is_called_at_the_first_lock_only():
    made = []

    def factory():
        made.append(1)
        return LocalLockBackend()

    locks = Locks(factory)
    assert made == []
    locks.release(locks.acquire("a"))
    locks.release(locks.acquire("b"))
    assert made == [1]


@pytest.mark.parametrize("ttl", [0, -1, "5", True])
def test_bad_ttl_is_refused(ttl):
    with pytest.raises(ValueError, match="lock ttl"):
        Locks(None, ttl=ttl)
