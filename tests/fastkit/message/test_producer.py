"""Producers against a real Kafka-protocol broker (tansu): round trips and real errors."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiokafka import AIOKafkaConsumer

from fastkit.message import REQUEST_ID_HEADER, AsyncProducer, ProduceError, Producer
from fastkit.request_id import bind_request_id
from redis_server import closed_port


async def read_all(servers: str, topic: str, count: int, timeout: float = 15) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    records = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


def test_sync_round_trip_returns_the_record_s_metadata(broker, topic):
    with Producer(broker.servers, topic=topic) as producer:
        sent = producer.send({"id": 1, "名": "值"}, key="order-1", headers={"source": "api"})
        assert (sent.topic, sent.offset >= 0) == (topic, True)
        assert 0 <= sent.partition < 4
        producer.send("plain")
        producer.send(b"\x00raw")
        producer.send([1, 2])
        producer.flush()
    records = asyncio.run(read_all(broker.servers, topic, 4))
    values = sorted(r.value for r in records)
    assert values == sorted([json.dumps({"id": 1, "名": "值"}, ensure_ascii=False,
                                        separators=(",", ":")).encode(),
                             b"plain", b"\x00raw", b"[1,2]"])
    first = next(r for r in records if r.key == b"order-1")
    assert (first.partition, first.offset) == (sent.partition, sent.offset)
    assert ("source", b"api") in first.headers


def test_async_round_trip_and_the_request_id_header(broker, topic):
    async def main():
        async with AsyncProducer(broker.servers) as producer:
            with bind_request_id("req-42"):
                sent = await producer.send({"n": 1}, topic=topic)
            await producer.send("no request", topic=topic)
        return sent

    sent = asyncio.run(main())
    records = asyncio.run(read_all(broker.servers, topic, 2))
    by_value = {r.value: dict(r.headers) for r in records}
    assert by_value[b'{"n":1}'][REQUEST_ID_HEADER] == b"req-42"
    assert REQUEST_ID_HEADER not in by_value[b"no request"]
    assert sent.topic == topic


def test_the_sync_producer_carries_the_caller_s_request_id(broker, topic):
    with Producer(broker.servers, topic=topic) as producer, bind_request_id("from-thread"):
        producer.send("x")
    (record,) = asyncio.run(read_all(broker.servers, topic, 1))
    assert dict(record.headers)[REQUEST_ID_HEADER] == b"from-thread"


def test_a_broker_that_is_down_raises_naming_it():
    with closed_port() as port:  # held: nothing can listen there during the test
        servers = f"127.0.0.1:{port}"
        with Producer(servers, topic="t", request_timeout_ms=2000) as producer, \
                pytest.raises(ProduceError, match=f"cannot reach Kafka at {servers}"):
            producer.send("lost?")

        async def main():
            async with AsyncProducer(servers, topic="t", request_timeout_ms=2000) as producer:
                await producer.send("lost?")

        with pytest.raises(ProduceError, match=f"cannot reach Kafka at {servers}"):
            asyncio.run(main())


def test_a_broker_stopped_after_connecting_makes_send_raise_within_its_timeout(topic):
    from kafka_broker import KafkaBroker

    own = KafkaBroker()
    own.start()
    producer = Producer(own.servers, topic=topic)  # aiokafka alone would wait 40 s
    try:
        producer.send("created the topic")
        own.stop()
        began = time.monotonic()
        with pytest.raises(ProduceError, match=f"not acknowledged within 2 s \\(Kafka at "
                                               f"{own.servers}\\)"):
            producer.send("after the broker died", timeout=2)
        assert time.monotonic() - began < 15
        with pytest.raises(ProduceError, match="'new-topic' not acknowledged within 1 s"):
            producer.send("no metadata for this one", topic="new-topic", timeout=1)
    finally:
        own.stop()
        producer.close(timeout=5)


def test_idempotence_is_used_where_granted_and_reported_where_refused(broker, topic, logs):
    from fastkit.message import _producer

    _producer._NO_IDEMPOTENCE.discard(broker.servers)

    async def main():
        async with AsyncProducer(broker.servers, topic=topic) as producer:  # tansu refuses
            first = await producer.send("a")
        async with AsyncProducer(broker.servers, topic=topic) as producer:  # not asked again
            await producer.send("b")
        insisting = AsyncProducer(broker.servers, topic=topic, enable_idempotence=True)
        with pytest.raises(ProduceError, match=r"cannot reach Kafka at .*UnknownError"):
            await insisting.send("c")
        return first

    assert asyncio.run(main()).offset >= 0
    assert logs.text().count("refused idempotent producing (UnknownError)") == 1


def test_bad_input_is_refused_before_sending(broker):
    producer = Producer(broker.servers)
    with pytest.raises(ValueError, match="no topic"):
        producer.send("x")
    with pytest.raises(TypeError, match="cannot send a value of type set"):
        producer.send({1, 2}, topic="t")
    with pytest.raises(TypeError, match="message key is str or bytes, not int"):
        producer.send("x", topic="t", key=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no Kafka servers"):
        Producer("")
    producer.close()
