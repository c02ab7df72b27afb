"""Metrics and traces of Kafka messages (see :mod:`fastkit.metrics`, :mod:`fastkit.tracing`).

Off unless one of them is enabled: a send or a message handled then costs one boolean test
here. Once on:

Metrics (``topic`` is the message's topic; a dead-lettered message counts under the topic
it was read from; past :data:`fastkit.metrics.CARDINALITY_LIMIT` topics in a process, the
others are ``_OTHER``):

* ``kafka_producer_messages_total{topic, result}``: sends, ``result`` being ``success``
  (acknowledged) or ``failed`` (:class:`~fastkit.message.ProduceError` or another error
  once the message was encoded);
* ``kafka_consumer_messages_total{topic, result}``: messages handled by ``run()``,
  ``success`` when the handler returned (a retry included), ``failed`` when every try
  raised; messages of an ``async for`` loop count as ``success`` when the next is asked for;
* ``kafka_consumer_dead_lettered_total{topic}``: failed messages published to the
  dead-letter topic;
* ``kafka_consumer_handle_duration_seconds{topic}``: how long a message took to handle,
  retries and dead-lettering included;
* ``kafka_consumer_lag{group, topic, partition}``: messages in the partition after the
  last one handled (the broker's high watermark from the last fetch, minus the position),
  updated after each message; a partition that moves to another member, or a consumer
  that stops, drops its series.

Traces (OpenTelemetry's messaging conventions): a ``PRODUCER`` span ``send <topic>`` per
send, whose context the message carries in its ``traceparent`` header (a header the caller
gave is kept: a dead-lettered message keeps its original ``traceparent``); a ``CONSUMER``
span ``process <topic>`` per message handled by ``run()``, child of the span that sent it
(a message without ``traceparent`` starts a trace), current while the handler runs (in its
worker thread for a ``def`` handler). Attributes: ``messaging.system`` (``kafka``),
``messaging.operation.type`` and ``.name`` (``send`` / ``process``),
``messaging.destination.name``, ``messaging.destination.partition.id``,
``messaging.kafka.offset``, ``messaging.consumer.group.name``; a failure sets
``error.type``, status ``ERROR`` and an ``exception`` event with secrets masked.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from fastkit import metrics, tracing
from fastkit.tracing import record_failure
from fastkit.tracing import span as traced

if TYPE_CHECKING:
    from fastkit.message._consumer import Message

__all__ = ["Lag", "Outcome", "dead_lettered", "iterated", "observed", "processing", "sending"]

_SYSTEM = "kafka"
_topics = metrics.CardinalityLimit()  # the topic label's values in this process


def observed() -> bool:
    """Whether messages are measured or traced (the one test each pays when not)."""
    return metrics.enabled() or tracing.enabled()


def _producer_messages() -> Any:
    return metrics.counter("kafka_producer_messages_total",
                           "Messages sent to Kafka, by topic and result (success, failed).",
                           ("topic", "result"))


def _consumer_messages() -> Any:
    return metrics.counter("kafka_consumer_messages_total",
                           "Kafka messages handled, by topic and result (success, failed).",
                           ("topic", "result"))


def _handle_duration() -> Any:
    return metrics.histogram("kafka_consumer_handle_duration_seconds",
                             "How long Kafka messages took to handle (retries and "
                             "dead-lettering included), in seconds, by topic.", ("topic",))


def _lag() -> Any:
    return metrics.gauge("kafka_consumer_lag",
                         "Messages in a partition after the last one handled by the "
                         "consumer group, by group, topic and partition.",
                         ("group", "topic", "partition"))


def _kind(name: str) -> Any:
    from opentelemetry.trace import SpanKind

    return getattr(SpanKind, name)


# -- producing -------------------------------------------------------------------------------

def _with_trace_context(headers: list[tuple[str, bytes]] | None) -> list[tuple[str, bytes]] | None:
    """``headers`` with the current span's ``traceparent`` (and ``tracestate``...) added,
    each unless a header of that name is there already; a ``traceparent`` of the caller's
    that holds no trace context (garbage, all zeros) is replaced by the span's."""
    carrier: dict[str, str] = {}
    tracing.inject(carrier)
    if not carrier:
        return headers
    if headers and not _continues(headers):
        headers = [(name, value) for name, value in headers if name.lower() != "traceparent"]
    given = {name.lower() for name, _ in headers or ()}
    added = [(name, value.encode()) for name, value in carrier.items()
             if name.lower() not in given]
    return [*(headers or ()), *added] if added else headers


def _continues(headers: Iterable[tuple[str, bytes]]) -> bool:
    """Whether ``headers`` hold no ``traceparent``, or one holding a trace context."""
    carrier = _carrier(headers)
    if "traceparent" not in carrier:
        return True
    from opentelemetry.trace import get_current_span

    return get_current_span(tracing.extract(carrier)).get_span_context().is_valid


async def sending(deliver: Callable[[list[tuple[str, bytes]] | None], Awaitable[Any]],
                  topic: str, headers: list[tuple[str, bytes]] | None) -> Any:
    """``await deliver(headers)`` (a send to ``topic``, returning its ``RecordMetadata``)
    inside its ``send`` span, with the span's trace context in ``headers``; counted."""
    counting = metrics.enabled()
    with traced(f"send {topic}", kind=_kind("PRODUCER") if tracing.enabled() else None,
                attributes={"messaging.system": _SYSTEM, "messaging.operation.type": "send",
                            "messaging.operation.name": "send",
                            "messaging.destination.name": topic}) as span:
        if span is not None:
            headers = _with_trace_context(headers)
        try:
            sent = await deliver(headers)
        except Exception:
            if counting:
                _producer_messages().labels(_topics(topic), "failed").inc()
            raise
        if counting:
            _producer_messages().labels(_topics(topic), "success").inc()
        if span is not None:
            span.set_attribute("messaging.destination.partition.id", str(sent.partition))
            span.set_attribute("messaging.kafka.offset", sent.offset)
        return sent


# -- consuming -------------------------------------------------------------------------------

class Outcome:
    """What handling a message came to: ``error`` is the last error of a message whose
    every try failed (it went to the dead-letter topic), ``None`` when it was handled."""

    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: Exception | None = None


def _carrier(headers: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    return {name.lower(): value.decode("latin-1") for name, value in headers
            if value is not None}


@contextmanager
def processing(message: Message, group: str) -> Iterator[Outcome]:
    """Around the handling of ``message`` by ``group``'s consumer: its ``process`` span
    (child of the span that sent it; current inside), counted and timed. Set the
    :class:`Outcome`'s ``error`` when the handler failed for good."""
    outcome = Outcome()
    counting = metrics.enabled()
    started = time.perf_counter()
    tracing_on = tracing.enabled()
    topic = message.topic
    with traced(f"process {topic}", kind=_kind("CONSUMER") if tracing_on else None,
                context=tracing.extract(_carrier(message.headers)) if tracing_on else None,
                attributes={"messaging.system": _SYSTEM, "messaging.operation.type": "process",
                            "messaging.operation.name": "process",
                            "messaging.destination.name": topic,
                            "messaging.consumer.group.name": group,
                            "messaging.destination.partition.id": str(message.partition),
                            "messaging.kafka.offset": message.offset}) as span:
        try:
            yield outcome
        except Exception:  # recorded on the span by traced()
            if counting:
                _handled(topic, "failed", started)
            raise
        if outcome.error is not None and span is not None:
            record_failure(span, outcome.error)
    if counting:
        _handled(topic, "success" if outcome.error is None else "failed", started)


def _handled(topic: str, result: str, started: float) -> None:
    label = _topics(topic)
    _consumer_messages().labels(label, result).inc()
    _handle_duration().labels(label).observe(time.perf_counter() - started)


def iterated(topic: str) -> None:
    """A message of an ``async for`` loop was handled (the next one was asked for)."""
    if metrics.enabled():
        _consumer_messages().labels(_topics(topic), "success").inc()


def dead_lettered(topic: str) -> None:
    """A message of ``topic`` was published to the dead-letter topic."""
    if metrics.enabled():
        metrics.counter("kafka_consumer_dead_lettered_total",
                        "Kafka messages published to the dead-letter topic after every "
                        "try to handle them failed, by the topic they were read from.",
                        ("topic",)).labels(_topics(topic)).inc()


class Lag:
    """``kafka_consumer_lag`` of one consumer's partitions (see the module)."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._children: dict[Any, Any] = {}  # TopicPartition -> its gauge child

    def update(self, consumer: Any, partition: Any, position: int) -> None:
        """``partition``'s lag once the message before ``position`` was handled: the high
        watermark aiokafka has from its last fetch (no request) minus ``position``."""
        if not metrics.enabled() or consumer is None:
            return
        try:
            highwater = consumer.highwater(partition)
        except Exception:  # the partition moved meanwhile (not assigned any more)
            return
        if highwater is None:
            return
        child = self._children.get(partition)
        if child is None:
            child = self._children[partition] = _lag().labels(
                self.group, partition.topic, str(partition.partition))
        child.set(max(highwater - position, 0))

    def forget(self, partitions: Iterable[Any] | None = None) -> None:
        """Drop the series of ``partitions`` (``None``: all of this consumer's): they
        moved to another member, or the consumer stopped."""
        if not self._children:
            return
        chosen = list(self._children) if partitions is None else [
            tp for tp in partitions if tp in self._children]
        if not chosen:
            return
        gauge = _lag()
        several = metrics.multiprocess_directory() is not None
        for tp in chosen:
            child = self._children.pop(tp)
            if several:  # a file's value cannot be removed there; 0 adds nothing to sums
                child.set(0)
            else:
                gauge.remove(self.group, tp.topic, str(tp.partition))
