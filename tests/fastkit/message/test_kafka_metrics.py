"""Kafka metrics against a real broker (tansu): messages sent, handled, failed and
dead-lettered by topic, the handling time, and each partition's lag."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from kafka_clients import consumer_of, handler_of
from prometheus_client import REGISTRY

from fastkit.message import AsyncProducer, ProduceError, Producer
from kafka_broker import create_topic
from redis_server import closed_port
from waiting import until


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Figures:
    """The Kafka figures of ``topic``, read now."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def read(self) -> dict[str, float]:
        topic = self.topic
        return {
            "sent": value("kafka_producer_messages_total", topic=topic, result="success"),
            "send_failed": value("kafka_producer_messages_total", topic=topic, result="failed"),
            "dead_letters_sent": value("kafka_producer_messages_total", topic=f"{topic}.dlq",
                                       result="success"),
            "handled": value("kafka_consumer_messages_total", topic=topic, result="success"),
            "failed": value("kafka_consumer_messages_total", topic=topic, result="failed"),
            "dead_lettered": value("kafka_consumer_dead_lettered_total", topic=topic),
            "timed": value("kafka_consumer_handle_duration_seconds_count", topic=topic),
        }

    def delta(self, before: dict[str, float]) -> dict[str, float]:
        now = self.read()
        return {name: now[name] - before[name] for name in now if now[name] != before[name]}


def poisoned(kind: str):
    """A handler (``def`` or ``async def``) that fails on ``poison``."""
    def check(message):
        if message.text() == "poison":
            raise ValueError("cannot handle poison")

    return handler_of(kind, check)


async def one_partition_holding(broker, count: int) -> str:
    """A fresh topic of one partition holding the messages "0", "1", ... (``count`` of
    them, at offsets 0, 1, ...)."""
    topic = await asyncio.to_thread(create_topic, broker.servers, f"t-{uuid.uuid4().hex[:10]}",
                                    partitions=1)
    async with AsyncProducer(broker.servers, topic=topic) as producer:
        for number in range(count):
            await producer.send(str(number))
    return topic


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_sent_handled_failed_and_dead_lettered_messages_are_counted(
        kind, broker, topic, metrics_on):
    figures = Figures(topic)
    before = figures.read()
    async with AsyncProducer(broker.servers, topic=topic) as producer:
        for text in ("ok1", "poison", "ok2"):
            await producer.send(text, key=text)
    consumer = consumer_of(broker, topic, retries=1, backoff=0.01)
    running = asyncio.create_task(consumer.run(poisoned(kind)))
    try:
        await until(lambda: figures.delta(before).get("timed") == 3, timeout=30,
                    what="three handled")
    finally:
        await consumer.stop()
        await running
    assert figures.delta(before) == {"sent": 3, "dead_letters_sent": 1, "handled": 2,
                                     "failed": 1, "dead_lettered": 1, "timed": 3}


async def test_a_send_that_fails_is_counted(metrics_on):
    topic = f"t-{uuid.uuid4().hex[:10]}"
    with closed_port() as port:
        producer = AsyncProducer(f"127.0.0.1:{port}", topic=topic)
        try:
            with pytest.raises(ProduceError):
                await producer.send("lost", timeout=2)
        finally:
            await producer.close(1)
    assert value("kafka_producer_messages_total", topic=topic, result="failed") == 1
    assert value("kafka_producer_messages_total", topic=topic, result="success") == 0


def test_the_blocking_producer_counts_its_sends(broker, topic, metrics_on):
    with Producer(broker.servers, topic=topic) as producer:
        producer.send("one")
        producer.send("two")
    assert value("kafka_producer_messages_total", topic=topic, result="success") == 2


async def test_the_lag_is_what_is_left_after_the_last_message_handled(broker, metrics_on):
    topic = await one_partition_holding(broker, 5)
    reached, release = threading.Event(), threading.Event()

    def handler(message):  # holds the third message (offset 2) until released
        if message.offset == 2:
            reached.set()
            assert release.wait(20)

    consumer = consumer_of(broker, topic)
    labels = {"group": consumer.group_id, "topic": topic, "partition": "0"}

    def lag() -> float | None:
        return REGISTRY.get_sample_value("kafka_consumer_lag", labels)

    running = asyncio.create_task(consumer.run(handler))
    try:
        await until(reached.is_set, timeout=30, what="the third message in hand")
        assert lag() == 3  # offsets 0 and 1 handled: 2, 3 and 4 are left
        release.set()
        await until(lambda: lag() == 0, timeout=30, what="every message handled")
    finally:
        release.set()
        await consumer.stop()
        await running
    assert lag() is None  # a stopped consumer's partitions are no longer its


async def test_an_iterated_message_counts_once_the_next_is_asked_for(broker, metrics_on):
    topic = await one_partition_holding(broker, 3)
    consumer = consumer_of(broker, topic)
    labels = {"group": consumer.group_id, "topic": topic, "partition": "0"}
    got = []
    try:
        async for message in consumer:
            got.append(message.text())
            if len(got) == 3:
                lag = REGISTRY.get_sample_value("kafka_consumer_lag", labels)
                break  # the third is not finished: not counted, delivered again
    finally:
        await consumer.stop()
    assert got == ["0", "1", "2"]
    assert value("kafka_consumer_messages_total", topic=topic, result="success") == 2
    assert lag == 1  # two handled of three
