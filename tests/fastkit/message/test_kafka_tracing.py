"""Kafka traces against a real broker (tansu): a send span in the caller's trace whose
context and request id ride in the message's headers, a process span continuing it, current
(with the request id) while the handler runs, failures recorded, dead letters keeping the
headers."""

from __future__ import annotations

import asyncio
import threading

import pytest
from kafka_clients import consumer_of, handler_of
from opentelemetry.trace import SpanKind, StatusCode

from fastkit import tracing
from fastkit.message import AsyncProducer, Producer
from fastkit.request_id import bind_request_id, get_request_id
from waiting import until


async def consume(broker, topic: str, handler, done, **options) -> None:
    consumer = consumer_of(broker, topic, **options)
    running = asyncio.create_task(consumer.run(handler))
    try:
        await until(lambda: done() or running.done(), timeout=30, what="the messages handled")
    finally:
        await consumer.stop()
        await running


def recording(kind: str, seen: list, fail: bool = False):
    """A handler (``def`` or ``async def``) noting what it sees while it runs."""
    def note(message):
        seen.append({"message": message, "request_id": get_request_id(),
                     "ids": tracing.current_ids(), "thread": threading.get_ident()})
        if fail:
            raise ValueError("cannot handle it, token=s3cret")

    return handler_of(kind, note)


def ids(span) -> tuple[str, str]:
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


def named(exporter, name: str) -> list:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def traceparent_span_id(message) -> str:
    return message.header("traceparent").decode().split("-")[2]  # version-trace-span-flags


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_the_process_span_continues_the_send_span(kind, broker, topic, kit_spans):
    seen: list = []
    with tracing.span("request") as request, bind_request_id("req-42"):
        async with AsyncProducer(broker.servers, topic=topic) as producer:
            sent = await producer.send({"id": 1}, key="order-1")
    await consume(broker, topic, recording(kind, seen), lambda: seen)

    (send,) = named(kit_spans, f"send {topic}")
    assert send.kind == SpanKind.PRODUCER
    assert send.parent.span_id == request.get_span_context().span_id  # in the caller's trace
    assert send.context.trace_id == request.get_span_context().trace_id
    assert dict(send.attributes) == {
        "messaging.system": "kafka", "messaging.operation.type": "send",
        "messaging.operation.name": "send", "messaging.destination.name": topic,
        "messaging.destination.partition.id": str(sent.partition),
        "messaging.kafka.offset": sent.offset}

    (process,) = named(kit_spans, f"process {topic}")
    assert process.kind == SpanKind.CONSUMER
    assert process.context.trace_id == send.context.trace_id  # the trace goes on
    assert process.parent.span_id == send.context.span_id  # child of the send
    assert process.status.status_code == StatusCode.UNSET
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.destination.name"] == topic
    assert process.attributes["messaging.destination.partition.id"] == str(sent.partition)
    assert process.attributes["messaging.kafka.offset"] == sent.offset

    (handled,) = seen
    message = handled["message"]
    assert traceparent_span_id(message) == ids(send)[1]
    assert message.header("X-Request-ID") == b"req-42"
    assert handled["request_id"] == "req-42"  # bound while the handler ran
    assert handled["ids"] == ids(process)  # the process span is current in the handler
    if kind == "sync":
        assert handled["thread"] != threading.get_ident()  # in a worker thread, all the same


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_failed_message_is_an_error_span_and_its_dead_letter_keeps_the_headers(
        kind, broker, topic, kit_spans):
    tried: list = []
    with tracing.span("request"), bind_request_id("req-dlq"):
        async with AsyncProducer(broker.servers, topic=topic) as producer:
            await producer.send("poison", headers={"source": "test"})
    await consume(broker, topic, recording(kind, tried, fail=True),
                  lambda: named(kit_spans, f"process {topic}"), retries=1, backoff=0.01)
    dead: list = []
    await consume(broker, f"{topic}.dlq", recording("async", dead), lambda: dead)

    (send,) = named(kit_spans, f"send {topic}")
    (process,) = named(kit_spans, f"process {topic}")
    assert len(tried) == 2 and {seen["ids"] for seen in tried} == {ids(process)}
    assert process.parent.span_id == send.context.span_id
    assert process.status.status_code == StatusCode.ERROR
    assert process.attributes["error.type"] == "ValueError"
    (event,) = process.events
    assert event.attributes["exception.type"] == "ValueError"
    assert "s3cret" not in event.attributes["exception.message"]

    (dead_letter_send,) = named(kit_spans, f"send {topic}.dlq")
    assert dead_letter_send.parent.span_id == process.context.span_id  # sent while handling

    message = dead[0]["message"]
    assert traceparent_span_id(message) == ids(send)[1]  # the original's, kept
    assert message.header("X-Request-ID") == b"req-dlq"
    assert message.header("source") == b"test"
    assert message.header("x-error-type") == b"ValueError"


async def test_a_message_without_trace_context_starts_a_trace(broker, topic, kit_spans):
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=broker.servers)  # no headers at all
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"plain")
    finally:
        await producer.stop()
    seen: list = []
    with tracing.span("unrelated"):  # the consumer's own context is no parent either
        await consume(broker, topic, recording("async", seen), lambda: seen)
    (process,) = named(kit_spans, f"process {topic}")
    assert process.parent is None
    assert seen[0]["ids"] == ids(process)
    assert seen[0]["request_id"]  # a new one, bound all the same


def test_the_blocking_producer_sends_in_the_callers_trace(broker, topic, kit_spans):
    with tracing.span("request") as request, Producer(broker.servers, topic=topic) as producer:
        producer.send("one")
    (send,) = named(kit_spans, f"send {topic}")
    assert send.parent.span_id == request.get_span_context().span_id


async def test_a_traceparent_the_caller_gives_is_kept(broker, topic, kit_spans):
    given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    seen: list = []
    async with AsyncProducer(broker.servers, topic=topic) as producer:
        await producer.send("linked", headers={"traceparent": given})
    await consume(broker, topic, recording("async", seen), lambda: seen)
    assert seen[0]["message"].header("traceparent") == given.encode()
    (process,) = named(kit_spans, f"process {topic}")
    assert f"{process.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert f"{process.parent.span_id:016x}" == "b7ad6b7169203331"
