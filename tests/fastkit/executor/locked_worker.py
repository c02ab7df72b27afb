"""One "instance" for the multi-process lock tests: run it several times side by side.

    python locked_worker.py scheduler|asyncio|threadpool REDIS_URL PREFIX [options]

Every run of the locked job records itself in Redis under ``PREFIX``:
``PREFIX:fires`` (a hash: fire time in ms -> runs), ``PREFIX:runs`` (a list of
"pid fire_ms fence start end"), so the test can count runs per fire across processes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import redis

from fastkit.executor import Locks, RedisLockBackend, Scheduler, ThreadPoolExecutor, current_lease


def pause(seconds: float) -> None:
    """time.sleep, by a timed wait: it works under libfaketime, where time.sleep fails."""
    threading.Event().wait(max(0.0, seconds))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["scheduler", "asyncio", "threadpool", "direct"])
    parser.add_argument("redis_url")
    parser.add_argument("prefix")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--job-seconds", type=float, default=0.2)
    parser.add_argument("--run-for", type=float, default=12.0)
    parser.add_argument("--ttl", type=float, default=3.0)
    parser.add_argument("--lock-url", help="where the locks live (default: redis_url)")
    parser.add_argument("--trigger", default="string",
                        choices=["string", "object", "decorator", "cron", "date", "or"],
                        help="how the job's trigger is given")
    parser.add_argument("--build-at", type=float,
                        help="wall-clock time (epoch s) to build the trigger and add the job "
                             "at: a process started that late")
    parser.add_argument("--run-date", type=float, help="the date trigger's time (epoch s)")
    parser.add_argument("--grace", type=int, default=30, help="misfire_grace_time")
    args = parser.parse_args()

    store = redis.Redis.from_url(args.redis_url, decode_responses=True, socket_timeout=1,
                                 socket_connect_timeout=1)
    lock_store = redis.Redis.from_url(args.lock_url or args.redis_url, decode_responses=True,
                                      socket_timeout=1, socket_connect_timeout=1)
    locks = Locks(RedisLockBackend(lock_store, prefix=f"{args.prefix}:lock:"), ttl=args.ttl)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))

    def fire_of() -> str:
        lease = current_lease()
        assert lease is not None and lease.fire is not None
        return lease.fire.key.rsplit(":", 1)[1]

    def record(start: float) -> None:
        lease = current_lease()
        assert lease is not None and lease.fire is not None
        fire_ms = lease.fire.key.rsplit(":", 1)[1]
        store.hincrby(f"{args.prefix}:fires", fire_ms, 1)
        store.rpush(f"{args.prefix}:runs",
                    f"{os.getpid()} {fire_ms} {lease.fence} {start:.3f} {time.time():.3f}")

    if args.kind == "direct":  # a locked function called directly, in a loop
        @locks.guard(name="direct")
        def critical() -> bool:
            start = time.time()
            pause(args.job_seconds)
            store.rpush(f"{args.prefix}:direct", f"{os.getpid()} {start:.6f} {time.time():.6f}")
            return True

        print("ready", flush=True)
        skipped = 0
        deadline = time.monotonic() + args.run_for
        while not stop["now"] and time.monotonic() < deadline:
            if critical() is None:
                skipped += 1
            pause(0.01)
        store.incrby(f"{args.prefix}:skipped", skipped)
        return

    if args.kind == "threadpool":
        pool = ThreadPoolExecutor(4, locks=locks)

        @pool.submit(single_job=True)
        def holder() -> None:
            lease = current_lease()
            while not pool.is_stopped():
                store.rpush(f"{args.prefix}:beats", f"{os.getpid()} {time.time():.3f}")
                pool.sleep(0.1)
            del lease

        pool.start()
        print("ready", flush=True)
        deadline = time.monotonic() + args.run_for
        while not stop["now"] and time.monotonic() < deadline:
            pause(0.05)
        pool.shutdown(timeout=5)
        return

    if args.kind == "scheduler":
        scheduler = Scheduler("bg", "background", locks=locks)

        @scheduler.lock()
        def job() -> None:
            start = time.time()
            store.rpush(f"{args.prefix}:started", f"{os.getpid()} {fire_of()}")
            pause(args.job_seconds)
            record(start)

        scheduler.start()
        add_job(scheduler, job, args)
        print("ready", flush=True)
        deadline = time.monotonic() + args.run_for
        while not stop["now"] and time.monotonic() < deadline:
            pause(0.05)
        scheduler.shutdown(timeout=5)
        return

    async def run_async() -> None:
        scheduler = Scheduler("aio", "asyncio", locks=locks)
        loop = asyncio.get_running_loop()

        @scheduler.lock()
        async def job() -> None:
            assert asyncio.get_running_loop() is loop  # on the app's loop
            start = time.time()
            await asyncio.sleep(args.job_seconds)
            await asyncio.to_thread(record, start)

        scheduler.start()
        add_job(scheduler, job, args)
        print("ready", flush=True)
        deadline = time.monotonic() + args.run_for
        while not stop["now"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await scheduler.aclose(5)

    asyncio.run(run_async())


def add_job(scheduler: Scheduler, job: Any, args: argparse.Namespace) -> None:
    """Add the locked job in the form ``--trigger`` names, at ``--build-at`` if given."""
    from apscheduler.triggers.combining import OrTrigger
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if args.build_at is not None:  # this "instance" starts that late
        pause(max(0.0, args.build_at - time.time()))
    options: dict[str, Any] = {"id": "locked-job", "misfire_grace_time": args.grace}
    if args.trigger == "string":
        scheduler.add_job(job, "interval", seconds=args.interval, **options)
    elif args.trigger == "object":  # its start is this process's now + the interval
        scheduler.add_job(job, IntervalTrigger(seconds=args.interval), **options)
    elif args.trigger == "decorator":
        scheduler.scheduled_job(IntervalTrigger(seconds=args.interval), **options)(job)
    elif args.trigger == "or":
        scheduler.add_job(job, OrTrigger([IntervalTrigger(seconds=args.interval),
                                          DateTrigger(datetime(2100, 1, 1, tzinfo=UTC))]),
                          **options)
    elif args.trigger == "cron":
        scheduler.add_job(job, CronTrigger(second="*"), **options)
    else:
        run_date = datetime.fromtimestamp(args.run_date, UTC)
        scheduler.add_job(job, DateTrigger(run_date), **options)


if __name__ == "__main__":
    main()
    sys.exit(0)
