"""Consumers against a real Kafka-protocol broker (tansu): at least once, dead letters."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest

from fastkit.message import REQUEST_ID_HEADER, AsyncConsumer, AsyncProducer
from fastkit.request_id import bind_request_id, get_request_id


async def produce(servers: str, topic: str, values: list, **headers: str) -> None:
    async with AsyncProducer(servers, topic=topic) as producer:
        for value in values:
            await producer.send(value, key=str(value), headers=headers or None)


def group() -> str:
    return f"g-{uuid.uuid4().hex[:8]}"


async def run_until(consumer: AsyncConsumer, handler, done, timeout: float = 20) -> None:
    task = asyncio.create_task(consumer.run(handler))
    try:
        async with asyncio.timeout(timeout):
            while not done():
                await asyncio.sleep(0.05)
    finally:
        await consumer.stop()
        await task


def test_a_handler_sees_every_message_with_its_request_id(broker, topic):
    seen = []

    async def handler(message):
        seen.append((message.json(), get_request_id()))

    async def main():
        with bind_request_id("req-7"):
            await produce(broker.servers, topic, [{"n": i} for i in range(20)])
        consumer = AsyncConsumer(broker.servers, topic, group_id=group())
        await run_until(consumer, handler, lambda: len(seen) >= 20)

    asyncio.run(main())
    assert sorted(v["n"] for v, _ in seen) == list(range(20))
    assert {rid for _, rid in seen} == {"req-7"}


def test_iteration_commits_what_was_handled_and_stop_keeps_it(broker, topic):
    name = group()

    async def main():
        await produce(broker.servers, topic, [f"m{i}" for i in range(10)])
        first = []
        async with AsyncConsumer(broker.servers, topic, group_id=name) as consumer:
            async for message in consumer:
                first.append(message.text())
                if len(first) == 10:
                    break  # the tenth was not finished: it comes again
        await produce(broker.servers, topic, ["m10"])
        again = []
        consumer = AsyncConsumer(broker.servers, topic, group_id=name)
        await run_until(consumer, lambda m: again.append(m.text()), lambda: "m10" in again)
        return first, again

    first, again = asyncio.run(main())
    assert sorted(first) == sorted(f"m{i}" for i in range(10))
    assert sorted(again) == sorted([first[-1], "m10"])  # only the unfinished one, once more


def test_a_failing_handler_retries_then_sends_to_the_dead_letter_topic(broker, topic, logs):
    tries = Counter()

    def handler(message):
        tries[message.text()] += 1
        if message.text() == "poison":
            raise ValueError("cannot handle poison")

    async def main():
        await produce(broker.servers, topic, ["ok1", "poison", "ok2"])
        consumer = AsyncConsumer(broker.servers, topic, group_id=group(), retries=2,
                                 backoff=0.01)
        await run_until(consumer, handler, lambda: tries["ok1"] and tries["ok2"] and
                        tries["poison"] == 3)
        dead = []
        reader = AsyncConsumer(broker.servers, f"{topic}.dlq", group_id=group())
        await run_until(reader, dead.append, lambda: dead)
        return dead

    (dead,) = asyncio.run(main())
    assert tries == Counter({"ok1": 1, "ok2": 1, "poison": 3})
    assert dead.text() == "poison" and dead.key == b"poison"
    assert dead.header("x-error") == b"ValueError: cannot handle poison"
    assert dead.header("x-original-topic") == topic.encode()
    assert "sent to" in logs.text() and "Traceback" in logs.text()


def test_two_consumers_of_a_group_share_four_partitions_and_lose_nothing(broker, topic):
    handled = Counter()
    by_consumer: list[set[int]] = [set(), set()]

    async def main():
        await produce(broker.servers, topic, [str(i) for i in range(1000)])
        name = group()
        consumers = [AsyncConsumer(broker.servers, topic, group_id=name) for _ in range(2)]

        def handler_for(index):
            def handler(message):
                handled[message.key] += 1
                by_consumer[index].add(message.partition)
            return handler

        tasks = [asyncio.create_task(c.run(handler_for(i))) for i, c in enumerate(consumers)]
        async with asyncio.timeout(30):
            while len(handled) < 1000:
                await asyncio.sleep(0.05)
        for consumer in consumers:
            await consumer.stop()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert len(handled) == 1000  # every message at least once
    assert by_consumer[0] and by_consumer[1]  # both took partitions


def test_bad_arguments_are_refused(broker):
    with pytest.raises(ValueError, match="group_id"):
        AsyncConsumer(broker.servers, "t", group_id="")
    with pytest.raises(ValueError, match="at least one topic"):
        AsyncConsumer(broker.servers, [], group_id="g")
    with pytest.raises(ValueError, match="retries -1"):
        AsyncConsumer(broker.servers, "t", group_id="g", retries=-1)


def test_request_id_header_name():
    assert REQUEST_ID_HEADER == "x-request-id"
