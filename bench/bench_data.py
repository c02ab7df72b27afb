"""Data components against the raw libraries, side by side in one run.

1. Redis: ``get_redis_pool`` client against a plain ``redis.Redis`` (same server, both
   decoding responses), SET then GET of a small value; operations per second.
2. ``cache_result`` hit path against a plain dict lookup; µs per call.
3. dataset ``find_one`` on an indexed column: our ``Dataset`` (autocommit, a ping per
   operation), dataset's own ``Database`` and raw SQLAlchemy Core (``engine.connect()``
   per call, as a request handler would); µs per call.

Each pair runs in interleaved rounds (5 by default) in this one process, pinned to one
core when there are several; the figures are medians. Needs Redis on 127.0.0.1:6379 and
MariaDB on 127.0.0.1:3306 (root, no password, database ``test``)::

    python bench/bench_data.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable

import dataset
import redis
import sqlalchemy

from fastkit.cache import get_cacheout_pool, get_redis_pool
from fastkit.database import get_dataset_pool

MARIADB = "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"
TABLE = "bench_find_one"


def per_second(operation: Callable[[int], object], count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        operation(i)
    return count / (time.perf_counter() - started)


def micros(operation: Callable[[int], object], count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        operation(i)
    return (time.perf_counter() - started) / count * 1e6


def interleaved(rounds: int, runs: dict[str, Callable[[], float]]) -> dict[str, float]:
    results: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            results[name].append(run())
    return {name: statistics.median(values) for name, values in results.items()}


def bench_redis(rounds: int, count: int) -> dict[str, float]:
    ours = get_redis_pool("127.0.0.1", 6379, "", 15)
    raw = redis.Redis(host="127.0.0.1", port=6379, db=15, decode_responses=True)

    def run(client: redis.Redis) -> Callable[[], float]:
        def operation(i: int) -> None:
            client.set("bench:data", i)
            client.get("bench:data")
        return lambda: per_second(operation, count) * 2  # two commands each

    return interleaved(rounds, {"raw redis-py": run(raw), "get_redis_pool": run(ours)})


def bench_cache(rounds: int, count: int) -> dict[str, float]:
    pool = get_cacheout_pool("bench", "lru", maxsize=1024, ttl=0)

    @pool.cache_result(ttl=3600)
    def cached(key: int) -> int:
        return key * 2

    @pool.cache_result(ttl=3600)
    async def cached_async(key: int) -> int:
        return key * 2

    plain = {i: i * 2 for i in range(64)}
    for i in range(64):
        cached(i)
    loop = asyncio.new_event_loop()
    for i in range(64):
        loop.run_until_complete(cached_async(i))

    async def async_hits() -> float:
        started = time.perf_counter()
        for i in range(count):
            await cached_async(i & 63)
        return (time.perf_counter() - started) / count * 1e6

    try:
        return interleaved(rounds, {
            "dict lookup": lambda: micros(lambda i: plain.get(i & 63), count),
            "cache_result (sync)": lambda: micros(lambda i: cached(i & 63), count),
            "cache_result (async)": lambda: loop.run_until_complete(async_hits()),
        })
    finally:
        loop.close()


def bench_find_one(rounds: int, count: int) -> dict[str, float]:
    ours = get_dataset_pool(MARIADB)
    ours[TABLE].drop()
    table = ours[TABLE]
    table.insert_many([{"key_item": i, "item1": i, "item2": str(i)} for i in range(1000)])
    table.create_index(["key_item"])
    upstream = dataset.connect(MARIADB)
    engine = sqlalchemy.create_engine(MARIADB)
    core = sqlalchemy.Table(TABLE, sqlalchemy.MetaData(), autoload_with=engine)
    statement = sqlalchemy.select(core).where(core.c.key_item == sqlalchemy.bindparam("k"))

    def raw_core(i: int) -> object:
        with engine.connect() as connection:
            return connection.execute(statement.limit(1), {"k": i % 1000}).first()

    try:
        return interleaved(rounds, {
            "SQLAlchemy Core": lambda: micros(raw_core, count),
            "dataset Database": lambda: micros(
                lambda i: upstream[TABLE].find_one(key_item=i % 1000), count),
            "Dataset (ours)": lambda: micros(
                lambda i: ours[TABLE].find_one(key_item=i % 1000), count),
        })
    finally:
        # dataset's own Database keeps a read transaction open (and with it a metadata
        # lock on the table): close it before the DROP, which would otherwise wait.
        upstream.close()
        engine.dispose()
        table.drop()
        ours.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    redis_ops = bench_redis(args.rounds, 20_000)
    cache_us = bench_cache(args.rounds, 200_000)
    find_us = bench_find_one(args.rounds, 3_000)

    print(f"Redis SET+GET, commands/s (median of {args.rounds} rounds)")
    base = redis_ops["raw redis-py"]
    for name, value in redis_ops.items():
        print(f"  {name:22} {value:>10,.0f}  {value / base:.2f}x")
    print("cache hit, µs per call")
    for name, value in cache_us.items():
        print(f"  {name:22} {value:>10.3f}")
    print("find_one on an indexed column, µs per call")
    base = find_us["SQLAlchemy Core"]
    for name, value in find_us.items():
        print(f"  {name:22} {value:>10.1f}  {value / base:.2f}x")


if __name__ == "__main__":
    main()
