"""Kafka messaging on aiokafka (the ``kafka`` extra): producers and group consumers.

    from fastkit.message import Producer, AsyncProducer, Consumer, AsyncConsumer

    with Producer("127.0.0.1:9092", topic="orders") as producer:
        sent = producer.send({"id": 1})            # RecordMetadata: topic, partition, offset

    consumer = AsyncConsumer("127.0.0.1:9092", "orders", group_id="billing")
    await consumer.run(handle)                     # at least once; failures to orders.dlq

Nothing connects at creation: a producer connects at its first send, a consumer when it
starts running.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastkit._lazy import lazy_exports

if TYPE_CHECKING:
    from fastkit.message._codec import REQUEST_ID_HEADER
    from fastkit.message._consumer import AsyncConsumer, ConsumeError, Consumer, Handler, Message
    from fastkit.message._producer import AsyncProducer, MessageError, ProduceError, Producer

__all__ = ["REQUEST_ID_HEADER", "AsyncConsumer", "AsyncProducer", "ConsumeError", "Consumer",
           "Handler", "Message", "MessageError", "ProduceError", "Producer"]

__getattr__ = lazy_exports(__name__, globals(), {
    "REQUEST_ID_HEADER": "._codec",
    "AsyncConsumer": "._consumer", "ConsumeError": "._consumer", "Consumer": "._consumer",
    "Handler": "._consumer", "Message": "._consumer",
    "AsyncProducer": "._producer", "MessageError": "._producer", "ProduceError": "._producer",
    "Producer": "._producer",
})
