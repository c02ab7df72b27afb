"""Kafka consumers on aiokafka with at-least-once delivery and a dead-letter topic.

    consumer = AsyncConsumer("127.0.0.1:9092", ["orders"], group_id="billing")

    async for message in consumer:        # the offset is committed when you ask for the next
        handle(message.json())

    await consumer.run(handler)           # or: the handler is called for each message

Offsets are committed only after a message was handled (the loop body returned, or the
handler did), so a crash replays what was not finished, never skips it. A handler that
raises is retried ``retries`` times with ``backoff`` seconds between tries; then the
message goes to the dead-letter topic (``<topic>.dlq`` unless named) with the error in
its headers, and consumption goes on: a message is never lost and never blocks its
partition forever. Before partitions move to another consumer of the group, and when the
consumer stops, what was handled is committed. The request id of the message's
``x-request-id`` header is bound while it is handled.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastkit.logging import logger
from fastkit.message._codec import REQUEST_ID_HEADER
from fastkit.message._producer import AsyncProducer, MessageError, bootstrap
from fastkit.request_id import bind_request_id

__all__ = ["AsyncConsumer", "ConsumeError", "Message"]

Handler = Callable[["Message"], Any] | Callable[["Message"], Awaitable[Any]]


class ConsumeError(MessageError):
    """The consumer could not reach the broker or commit its offsets."""


@dataclass(frozen=True)
class Message:
    """One record: where it came from and what it holds."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int | None = None

    def text(self) -> str:
        return (self.value or b"").decode()

    def json(self) -> Any:
        return json.loads(self.value or b"null")

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class _Progress:
    """Offsets handled and not yet committed, per partition."""

    pending: dict[Any, int] = field(default_factory=dict)

    def handled(self, tp: Any, offset: int) -> None:
        self.pending[tp] = offset + 1

    def take(self, partitions: Any = None) -> dict[Any, int]:
        chosen = {tp: o for tp, o in self.pending.items()
                  if partitions is None or tp in partitions}
        for tp in chosen:
            del self.pending[tp]
        return chosen


class AsyncConsumer:
    """A group consumer; iterate it or :meth:`run` it with a handler (see the module)."""

    def __init__(self, servers: str | Sequence[str], topics: str | Sequence[str],
                 group_id: str, *, retries: int = 3, backoff: float = 0.5,
                 dead_letter_topic: str | None = None, auto_offset_reset: str = "earliest",
                 **kwargs: Any) -> None:
        if not group_id:
            raise ValueError("a consumer needs a group_id (offsets are committed per group)")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries {retries!r} is not an integer ≥ 0")
        self.servers = bootstrap(servers)
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        if not self.topics:
            raise ValueError("a consumer needs at least one topic")
        self.group_id = group_id
        self.retries = retries
        self.backoff = backoff
        self.dead_letter_topic = dead_letter_topic
        self._options = {"bootstrap_servers": self.servers, "group_id": group_id,
                         "enable_auto_commit": False, "auto_offset_reset": auto_offset_reset,
                         **kwargs}
        self._consumer: Any = None
        self._progress = _Progress()
        self._dead_letters: AsyncProducer | None = None
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()
        self._finished.set()

    def __repr__(self) -> str:
        return f"AsyncConsumer({self.servers!r}, {self.topics!r}, group_id={self.group_id!r})"

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._consumer is not None:
            return
        from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
        from aiokafka.errors import KafkaError

        owner = self

        class _CommitBeforeMoving(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await owner._commit(revoked)

            async def on_partitions_assigned(self, assigned: Any) -> None:
                logger.debug("consumer {} of group {!r}: partitions {}", owner.topics,
                             owner.group_id, sorted(f"{tp.topic}[{tp.partition}]"
                                                    for tp in assigned))

        consumer = AIOKafkaConsumer(**self._options)
        consumer.subscribe(self.topics, listener=_CommitBeforeMoving())
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise ConsumeError(f"cannot reach Kafka at {self.servers}: "
                               f"{type(exc).__name__}: {exc}") from exc
        self._stopping.clear()
        self._consumer = consumer

    async def stop(self, timeout: float = 10) -> None:
        """Let the message being handled finish (up to ``timeout`` s), commit what was
        handled, leave the group, close."""
        self._stopping.set()
        if not self._finished.is_set():
            try:
                await asyncio.wait_for(self._finished.wait(), timeout)
            except TimeoutError:
                logger.warning("consumer of group {!r}: the message being handled did not "
                               "finish within {:g} s; it will be delivered again",
                               self.group_id, timeout)
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            await self._commit(None, consumer)
        finally:
            await consumer.stop()
            if self._dead_letters is not None:
                await self._dead_letters.close()
                self._dead_letters = None

    async def __aenter__(self) -> AsyncConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- offsets ---------------------------------------------------------------------------

    async def _commit(self, partitions: Any, consumer: Any = None) -> None:
        consumer = consumer or self._consumer
        offsets = self._progress.take(partitions)
        if not offsets or consumer is None:
            return
        from aiokafka.errors import KafkaError

        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # Not committed: those messages come again (at least once), never lost.
            logger.warning("consumer of group {!r}: commit failed ({}: {}); the messages "
                           "will be delivered again", self.group_id, type(exc).__name__, exc)

    def _mark(self, message: Message) -> None:
        from aiokafka import TopicPartition

        self._progress.handled(TopicPartition(message.topic, message.partition), message.offset)

    # -- receiving -------------------------------------------------------------------------

    async def _batches(self, batch_timeout: float) -> AsyncIterator[list[Any]]:
        """Batches of records until :meth:`stop`; commits what was handled before each."""
        from aiokafka.errors import ConsumerStoppedError

        await self.start()
        consumer = self._consumer
        while not self._stopping.is_set():
            await self._commit(None)
            try:
                batches = await consumer.getmany(timeout_ms=int(batch_timeout * 1000))
            except ConsumerStoppedError:
                return
            for records in batches.values():
                yield records

    async def messages(self, batch_timeout: float = 0.5) -> AsyncIterator[Message]:
        """Messages as they come; each counts as handled when the next one is asked for
        (a loop left with ``break`` or an exception does not commit its last message)."""
        async for records in self._batches(batch_timeout):
            for record in records:
                if self._stopping.is_set():
                    return
                message = _message(record)
                yield message
                self._mark(message)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self.messages()

    async def run(self, handler: Handler, batch_timeout: float = 0.5) -> None:
        """Handle every message until :meth:`stop`; failures go to the dead-letter topic."""
        self._finished.clear()  # stop() waits for the message being handled
        try:
            async for records in self._batches(batch_timeout):
                for record in records:
                    if self._stopping.is_set():
                        break  # the rest of the batch is not committed: delivered again
                    message = _message(record)
                    await self._handle(handler, message)
                    self._mark(message)
        finally:
            self._finished.set()

    async def _handle(self, handler: Handler, message: Message) -> None:
        request_id = message.header(REQUEST_ID_HEADER)
        with bind_request_id(request_id.decode() if request_id else None):
            for attempt in range(self.retries + 1):
                try:
                    result = handler(message)
                    if inspect.isawaitable(result):
                        await result
                    return
                except Exception as exc:
                    if attempt < self.retries:
                        logger.warning("{}[{}]@{}: handler raised {} (try {} of {}); "
                                       "retrying", message.topic, message.partition,
                                       message.offset, type(exc).__name__, attempt + 1,
                                       self.retries + 1)
                        await asyncio.sleep(self.backoff * (2 ** attempt))
                        continue
                    await self._dead_letter(message, exc)

    async def _dead_letter(self, message: Message, error: Exception) -> None:
        topic = self.dead_letter_topic or f"{message.topic}.dlq"
        if self._dead_letters is None:
            self._dead_letters = AsyncProducer(self.servers)
        headers = [*message.headers,
                   ("x-error", f"{type(error).__name__}: {error}".encode()[:1024]),
                   ("x-error-type", type(error).__name__.encode()),
                   ("x-original-topic", message.topic.encode()),
                   ("x-original-partition", str(message.partition).encode()),
                   ("x-original-offset", str(message.offset).encode())]
        # Raises if the dead-letter topic cannot take it: the offset is then not committed.
        await self._dead_letters._send(topic, message.value, message.key, headers, 10)
        logger.opt(exception=error).error(
            "{}[{}]@{}: handler failed {} times; message sent to {!r}", message.topic,
            message.partition, message.offset, self.retries + 1, topic)


def _message(record: Any) -> Message:
    return Message(record.topic, record.partition, record.offset, record.key, record.value,
                   tuple(record.headers or ()), record.timestamp)
