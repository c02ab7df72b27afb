"""Lock overhead per scheduled fire on the local Redis: what a locked job pays to start.

For each of 1,000 fires (distinct fire times, as a scheduler makes them), in one process:

* ``acquire``: ``Locks.acquire`` (one Lua round trip moving the job's fire mark, taking
  the run and the fencing number) plus the watchdog taking the lease;
* ``release``: freeing the run at the end (the mark stays);
* ``guarded call``: a whole call of a ``@scheduler.lock()`` function doing nothing;
* ``bare SET NX PX``: one plain redis-py ``SET NX PX``, the floor for any Redis lock.

The four run interleaved, fire by fire; medians and p99 in ms. Needs Redis on
127.0.0.1:6379::

    python bench/bench_lock.py [--fires 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import redis

from fastkit.executor import Fire, Locks, RedisLockBackend
from fastkit.executor._locks import fire_context, reset_fire


def p99(values: list[float]) -> float:
    return sorted(values)[max(0, round(len(values) * 0.99) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fires", type=int, default=1000)
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    client = redis.Redis(db=15, decode_responses=True)
    prefix = f"bench-lock:{uuid.uuid4().hex[:8]}:"
    locks = Locks(RedisLockBackend(client, prefix=prefix), ttl=30)

    @locks.guard(name="guarded")
    def noop() -> None:
        pass

    start = datetime(2026, 1, 1, tzinfo=UTC)
    timings: dict[str, list[float]] = {"acquire": [], "release": [], "guarded call": [],
                                       "bare SET NX PX": []}
    for _ in range(50):  # warm up: connections, script cache
        client.set(f"{prefix}warm", 1, nx=True, px=1000)
    for i in range(args.fires):
        fire = Fire("bench", "job", start + timedelta(seconds=i))
        began = time.perf_counter()
        lease = locks.acquire("job", fire)
        acquired = time.perf_counter()
        assert lease is not None
        locks.release(lease)
        released = time.perf_counter()
        timings["acquire"].append((acquired - began) * 1000)
        timings["release"].append((released - acquired) * 1000)

        token = fire_context(fire, noop)
        began = time.perf_counter()
        noop()
        timings["guarded call"].append((time.perf_counter() - began) * 1000)
        reset_fire(token)

        began = time.perf_counter()
        client.set(f"{prefix}bare:{i}", "token", nx=True, px=30_000)
        timings["bare SET NX PX"].append((time.perf_counter() - began) * 1000)

    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    print(f"lock overhead per fire, {args.fires} fires, local Redis (ms)")
    for name, values in timings.items():
        print(f"  {name:16} median {statistics.median(values):6.3f}   p99 {p99(values):6.3f}")


if __name__ == "__main__":
    main()
