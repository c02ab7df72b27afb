"""Kafka consumers on aiokafka with at-least-once delivery and a dead-letter topic.

    consumer = AsyncConsumer("127.0.0.1:9092", ["orders"], group_id="billing")

    await consumer.run(handler)           # the handler is called for each message

    async for message in consumer:        # or iterate: a message counts as handled
        handle(message.json())            # when the next one is asked for

Offsets are committed only after a message was handled (the handler returned, or the
loop asked for the next message), so a crash replays what was not finished, never skips
it. A handler that raises is retried ``retries`` times, waiting ``backoff`` seconds and
doubling; then the message goes to the dead-letter topic (``<topic>.dlq`` unless named)
with the error in its headers, and consumption goes on: a message is never lost and
never blocks its partition forever.

Before partitions move to another member of the group, the message being handled by
:meth:`~AsyncConsumer.run` is let finish and what was handled is committed; the rest of
that batch is left to the new owner. :meth:`~AsyncConsumer.stop` does the same, then
leaves the group. A handler may be ``async def`` (run on the loop) or ``def`` (run in a
worker thread, as FastAPI runs sync endpoints, so heartbeats go on). The request id in a
message's ``x-request-id`` header is bound while it is handled (a new one when it has
none), and with tracing on the ``process`` span continuing its ``traceparent`` is current
(see :mod:`fastkit.message._instrument` for that and the metrics). Connecting and every
request to the broker time out after ``request_timeout_ms`` (40 s unless given).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import CancelledError as FutureCancelled
from typing import Any, NamedTuple, cast

from fastkit.logging import logger
from fastkit.logging.redact import redact_exception
from fastkit.message import _instrument
from fastkit.message._closing import settle, stop_within
from fastkit.message._codec import REQUEST_ID_HEADER
from fastkit.message._loop import LoopThread, Once
from fastkit.message._producer import (
    CONNECTION_OPTIONS,
    REQUEST_TIMEOUT_MS,
    AsyncProducer,
    MessageError,
    bootstrap,
    connect,
    kafka_error,
)
from fastkit.request_id import new_request_id, reset_request_id, set_request_id

__all__ = ["AsyncConsumer", "ConsumeError", "Consumer", "Handler", "Message"]

Handler = Callable[["Message"], Any] | Callable[["Message"], Awaitable[Any]]

COMMIT_INTERVAL = 1.0  # seconds: a long batch commits its progress at least this often


class ConsumeError(MessageError):
    """The consumer could not reach the broker, or a failed message could not be
    published to the dead-letter topic (it was not committed: it comes again)."""


class Message(NamedTuple):
    """One record: where it came from and what it holds (a named tuple: cheap to make)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int | None = None

    def text(self) -> str:
        """The value as UTF-8 text (``""`` for a tombstone)."""
        return (self.value or b"").decode()

    def json(self) -> Any:
        """The value parsed as JSON (``None`` for a tombstone)."""
        return json.loads(self.value or b"null")

    def header(self, name: str) -> bytes | None:
        """The first header called ``name`` (any case), or ``None``."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def _message(record: Any) -> Message:
    headers = record.headers
    return Message(record.topic, record.partition, record.offset, record.key, record.value,
                   tuple(headers) if headers else (), record.timestamp)


def _partition(records: list[Any]) -> Any:
    """The ``TopicPartition`` of one batch (a batch comes from one partition)."""
    from aiokafka import TopicPartition

    return TopicPartition(records[0].topic, records[0].partition)


def _asynchronous(handler: Handler) -> Callable[[Message], Awaitable[Any]]:
    """``handler`` as a coroutine function: a sync one runs in a worker thread."""
    if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            type(handler).__call__):  # an object with an ``async def __call__``
        return cast(Callable[[Message], Awaitable[Any]], handler)

    async def in_thread(message: Message) -> Any:
        result = await asyncio.to_thread(handler, message)  # copies the request id
        if inspect.isawaitable(result):
            result = await result
        return result

    return functools.wraps(handler)(in_thread)


class AsyncConsumer:
    """A group consumer; :meth:`run` it with a handler or iterate it (see the module).

    ``retries``: tries after the first before a message goes to the dead-letter topic;
    ``backoff``: seconds before the first retry (doubling after). ``dead_letter_topic``:
    where failed messages go (``<topic>.dlq`` by default). Other keyword arguments go to
    ``aiokafka.AIOKafkaConsumer`` (``session_timeout_ms``, ``max_poll_records``...).
    """

    def __init__(self, servers: str | Sequence[str], topics: str | Sequence[str],
                 group_id: str, *, retries: int = 3, backoff: float = 0.5,
                 dead_letter_topic: str | None = None, auto_offset_reset: str = "earliest",
                 **kwargs: Any) -> None:
        if not group_id:
            raise ValueError("a consumer needs a group_id (offsets are committed per group)")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries {retries!r} is not an integer ≥ 0")
        if not isinstance(backoff, int | float) or backoff < 0:
            raise ValueError(f"backoff {backoff!r} is not a number of seconds ≥ 0")
        if kwargs.get("enable_auto_commit"):
            raise ValueError("enable_auto_commit would commit messages before they are "
                             "handled; offsets are committed after handling")
        self.servers = bootstrap(servers)
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        if not self.topics or not all(isinstance(t, str) and t for t in self.topics):
            raise ValueError(f"a consumer needs at least one topic name, got {topics!r}")
        self.group_id = group_id
        self.retries = retries
        self.backoff = float(backoff)
        self.dead_letter_topic = dead_letter_topic
        kwargs.pop("enable_auto_commit", None)
        self._options = {"bootstrap_servers": self.servers, "group_id": group_id,
                         "enable_auto_commit": False, "auto_offset_reset": auto_offset_reset,
                         "request_timeout_ms": REQUEST_TIMEOUT_MS, **kwargs}
        # How long a rebalance waits for the message being handled: half the time the
        # group gives its members to rejoin.
        rebalance_ms = kwargs.get("rebalance_timeout_ms") or kwargs.get("session_timeout_ms",
                                                                          10000)
        self._revoke_wait = rebalance_ms / 2000
        self._consumer: Any = None
        self._lag = _instrument.Lag(group_id)  # kafka_consumer_lag, when metrics are on
        self._pending: dict[Any, int] = {}  # partition -> next offset, handled not committed
        self._generation = 0  # bumped when partitions are revoked: older batches are stale
        self._dead_letters: AsyncProducer | None = None
        self._stopping = asyncio.Event()
        self._busy = False  # run() is handling a message
        self._idle_waiters: list[asyncio.Future[None]] = []  # stop() and rebalances
        self._io = asyncio.Lock()  # held while the reader fetches or commits
        self._reader: asyncio.Task[Any] | None = None  # the task reading, to cut it off
        self._cut_off = False  # stop() cancelled the reader: its run() ends as stopped
        self._once = Once()  # concurrent starts share one connection
        self._running = False

    def __repr__(self) -> str:
        return f"AsyncConsumer({self.servers!r}, {self.topics!r}, group_id={self.group_id!r})"

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and join the group (done by :meth:`run` or iteration when not called)."""
        if self._consumer is None:
            await self._once.run(self._start)  # False: stop() came while connecting

    async def _start(self) -> None:
        if self._consumer is not None:
            return
        from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

        owner = self

        class _CommitBeforeMoving(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await owner._revoked(revoked)

            async def on_partitions_assigned(self, assigned: Any) -> None:
                logger.debug("consumer {!r} of {}: partitions {}", owner.group_id,
                             owner.topics, sorted(f"{tp.topic}[{tp.partition}]"
                                                  for tp in assigned))

        # New ones for each start: asyncio's belong to the loop that first waits on them.
        self._stopping, self._io = asyncio.Event(), asyncio.Lock()
        consumer = AIOKafkaConsumer(**self._options)
        consumer.subscribe(self.topics, listener=_CommitBeforeMoving())
        # stop() while connecting cancels this (and connect() leaves nothing open).
        await connect(consumer, self.servers, ConsumeError, self._options["request_timeout_ms"])
        self._consumer = consumer

    async def stop(self, timeout: float = 10) -> None:
        """Let the message being handled finish (up to ``timeout`` s), commit what was
        handled, leave the group, disconnect.

        Returns within ``timeout`` (plus about a second when it must force its way out)
        whatever the broker does, and never raises ``CancelledError`` of its own: what it
        could not finish (the message in hand, the last commit, leaving the group) is
        logged, and those messages are delivered again.
        """
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(deadline - time.monotonic(), 0.0)

        self._stopping.set()
        starting = self._once.cancel()  # stop() while connecting: nothing stays behind
        if starting is not None:
            await settle(starting, left())
        if not await self._idle(timeout):
            logger.warning("consumer {!r}: the message being handled did not finish within "
                           "{:g} s; it will be delivered again", self.group_id, timeout)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await self._let_go(consumer, left)
        self._lag.forget()
        dead_letters, self._dead_letters = self._dead_letters, None
        if dead_letters is not None:
            await dead_letters.close(left())

    async def _let_go(self, consumer: Any, left: Callable[[], float]) -> None:
        """Commit what was handled, leave the group, disconnect, within ``left()`` s."""
        io = self._io
        try:  # the reader lets go of the connection once it sees the stop
            await asyncio.wait_for(io.acquire(), max(left(), 0.5))
        except TimeoutError:
            reader = self._reader
            if reader is not None and reader is not asyncio.current_task():
                self._cut_off = True
                reader.cancel()  # stuck in a fetch or commit the broker does not answer
            logger.warning("consumer {!r}: stopped without its last commit (the broker did "
                           "not answer); those messages will be delivered again",
                           self.group_id)
        else:
            try:
                pending = len(self._pending)
                finished, error = await settle(self._commit(consumer), left())
                if not finished or error is not None:
                    logger.warning("consumer {!r}: the last commit ({} partition(s)) did "
                                   "not finish within the stop's timeout ({}); those "
                                   "messages will be delivered again (uncommitted)",
                                   self.group_id, pending,
                                   "overran" if not finished else type(error).__name__)
            finally:
                io.release()
        problem = await stop_within(consumer, left())
        if problem is not None:
            logger.warning("consumer {!r}: {}; its connections were closed (the group drops "
                           "it after session_timeout_ms; what it did not commit is delivered "
                           "again)", self.group_id, problem)

    @property
    def running(self) -> bool:
        """Whether :meth:`run` is handling messages."""
        return self._running

    async def __aenter__(self) -> AsyncConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- offsets ---------------------------------------------------------------------------

    async def _revoked(self, revoked: Any) -> None:
        """Partitions move: let the message in hand finish, commit, drop the rest."""
        self._generation += 1  # run() starts nothing more from the batches it holds
        if not await self._idle(self._revoke_wait):
            logger.warning("consumer {!r}: partitions move while a message is still being "
                           "handled; the new owner will get it again", self.group_id)
        await self._commit(self._consumer, revoked)
        self._lag.forget(revoked)

    async def _idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for run() to finish the message in hand; finished?"""
        if not self._busy:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._idle_waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return False
        return True

    def _wake_idle_waiters(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _commit(self, consumer: Any, partitions: Any = None) -> None:
        if not self._pending or consumer is None:
            return
        if partitions is None:
            offsets, self._pending = self._pending, {}
            owned = consumer.assignment()  # a message finished after its partition moved
            offsets = {tp: offset for tp, offset in offsets.items() if tp in owned}
        else:
            offsets = {tp: self._pending.pop(tp) for tp in list(self._pending)
                       if tp in partitions}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except kafka_error() as exc:
            # Not committed: those messages come again (at least once), never lost.
            logger.warning("consumer {!r}: commit failed ({}: {}); the messages will be "
                           "delivered again", self.group_id, type(exc).__name__, exc)

    # -- receiving -------------------------------------------------------------------------

    async def _batches(self, batch_timeout: float) -> AsyncGenerator[tuple[int, list[Any]], None]:
        """``(generation, records)`` until :meth:`stop`; commits what was handled first."""
        from aiokafka.errors import ConsumerStoppedError

        await self.start()
        consumer, stopping, io = self._consumer, self._stopping, self._io
        self._reader, self._cut_off = asyncio.current_task(), False
        stopped = asyncio.ensure_future(stopping.wait())
        try:
            while not stopping.is_set():
                async with io:  # never held across a yield
                    await self._commit(consumer)
                    fetch = asyncio.ensure_future(
                        consumer.getmany(timeout_ms=int(batch_timeout * 1000)))
                    done, _ = await asyncio.wait((fetch, stopped),
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if fetch not in done:  # stop() came first
                        fetch.cancel()
                        return
                    try:
                        batches = fetch.result()
                    except ConsumerStoppedError:
                        return
                generation = self._generation
                for records in batches.values():
                    yield generation, records
        except asyncio.CancelledError:
            if not self._cut_short():
                raise
        finally:
            stopped.cancel()
            self._reader = None

    def _cut_short(self) -> bool:
        """Was this task's cancellation stop() cutting the reader off, and only that?"""
        task = asyncio.current_task()
        if not self._cut_off or task is None:
            return False
        self._cut_off = False
        return task.uncancel() == 0

    async def messages(self, batch_timeout: float = 1.0) -> AsyncGenerator[Message, None]:
        """Messages as they come; each counts as handled when the next one is asked for
        (a loop left with ``break`` or an exception does not commit its last message)."""
        async with contextlib.aclosing(self._batches(batch_timeout)) as batches:
            async for generation, records in batches:
                partition = _partition(records)
                for record in records:
                    if generation != self._generation or self._stopping.is_set():
                        break  # not committed: delivered again, here or to the new owner
                    yield _message(record)
                    if generation == self._generation:
                        self._pending[partition] = record.offset + 1
                        if _instrument.observed():
                            _instrument.iterated(record.topic)
                            self._lag.update(self._consumer, partition, record.offset + 1)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self.messages()

    async def run(self, handler: Handler, batch_timeout: float = 1.0) -> None:
        """Handle every message until :meth:`stop`; failures go to the dead-letter topic.

        Raises :class:`ConsumeError` when the broker cannot be reached at start or a
        failed message cannot be published to the dead-letter topic.
        """
        handle = _asynchronous(handler)
        self._running = True
        last_commit = time.monotonic()
        try:
            async with contextlib.aclosing(self._batches(batch_timeout)) as batches:
                async for generation, records in batches:
                    io, stopping = self._io, self._stopping
                    partition = _partition(records)
                    for record in records:
                        if generation != self._generation or stopping.is_set():
                            break  # not committed: delivered again, here or to the new owner
                        message = _message(record)
                        request_id = message.header(REQUEST_ID_HEADER) if message.headers \
                            else None
                        token = set_request_id(request_id.decode(errors="replace")
                                               if request_id else new_request_id())
                        self._busy = True
                        try:
                            if _instrument.observed():  # counted, timed, traced
                                with _instrument.processing(message, self.group_id) as outcome:
                                    outcome.error = await self._handle(handle, message)
                                self._lag.update(self._consumer, partition, record.offset + 1)
                            else:
                                await self._handle(handle, message)
                            self._pending[partition] = record.offset + 1
                        finally:
                            reset_request_id(token)
                            self._busy = False
                            if self._idle_waiters:
                                self._wake_idle_waiters()
                        if time.monotonic() - last_commit > COMMIT_INTERVAL:
                            async with io:
                                await self._commit(self._consumer)
                            last_commit = time.monotonic()
        except asyncio.CancelledError:
            if not self._cut_short():  # else stop() cut the reader off: run() is done
                raise
        finally:
            self._running = False

    async def _handle(self, handle: Callable[[Message], Awaitable[Any]],
                      message: Message) -> Exception | None:
        """Handle ``message``, retrying, else dead-lettering it: the last error of a
        message every try failed, ``None`` when it was handled."""
        try:
            await handle(message)
        except Exception as exc:
            return await self._recover(handle, message, exc)
        return None

    async def _recover(self, handle: Callable[[Message], Awaitable[Any]], message: Message,
                       error: Exception) -> Exception | None:
        """The handler raised: retry it, then send the message to the dead-letter topic
        (the last error; ``None`` when a retry handled it)."""
        for attempt in range(1, self.retries + 1):
            logger.warning("{}[{}]@{}: handler raised {} (try {} of {}); retrying",
                           message.topic, message.partition, message.offset,
                           type(error).__name__, attempt, self.retries + 1)
            await asyncio.sleep(self.backoff * (2 ** (attempt - 1)))
            try:
                await handle(message)
                return None
            except Exception as exc:
                error = exc
        await self._dead_letter(message, error)
        return error

    async def _dead_letter(self, message: Message, error: Exception) -> None:
        topic = self.dead_letter_topic or f"{message.topic}.dlq"
        if self._dead_letters is None:
            shared = {k: v for k, v in self._options.items() if k in CONNECTION_OPTIONS}
            self._dead_letters = AsyncProducer(self.servers, **shared)
        failure = f"{type(error).__name__}: {redact_exception(error)}"  # masked, never raises
        headers = [*message.headers,
                   ("x-error", failure.encode()[:1024]),
                   ("x-error-type", type(error).__name__.encode()),
                   ("x-original-topic", message.topic.encode()),
                   ("x-original-partition", str(message.partition).encode()),
                   ("x-original-offset", str(message.offset).encode())]
        try:
            await self._dead_letters.send(message.value, topic, message.key, headers, 10)
        except MessageError as exc:
            raise ConsumeError(f"{message.topic}[{message.partition}]@{message.offset} failed "
                               f"({failure}) and could not be sent to "
                               f"the dead-letter topic {topic!r}: {exc}; it was not "
                               "committed") from exc
        _instrument.dead_lettered(message.topic)
        logger.opt(exception=error).error(
            "{}[{}]@{}: handler failed {} times; message sent to {!r}", message.topic,
            message.partition, message.offset, self.retries + 1, topic)


async def _next(stream: AsyncIterator[Message]) -> Message:
    return await stream.__anext__()


class Consumer:
    """A blocking consumer: an :class:`AsyncConsumer` on a private event loop thread.

        with Consumer("127.0.0.1:9092", "orders", group_id="billing") as consumer:
            for message in consumer:              # blocks; handled when the next is asked
                print(message.json())

        consumer.run(handler)                     # blocks until stop() from another thread

    Same arguments and guarantees as :class:`AsyncConsumer`. ``run`` calls a ``def``
    handler in a worker thread and an ``async def`` one on the private loop; Ctrl-C
    (``KeyboardInterrupt``) stops it gracefully, committing what was handled.
    """

    def __init__(self, servers: str | Sequence[str], topics: str | Sequence[str],
                 group_id: str, **kwargs: Any) -> None:
        self._async = AsyncConsumer(servers, topics, group_id, **kwargs)
        self._loop = LoopThread("fastkit-kafka-consumer")

    def __getattr__(self, name: str) -> Any:  # servers, topics, group_id, retries...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._async, name)

    def __repr__(self) -> str:
        return f"Consumer({self._async.servers!r}, {self._async.topics!r}, " \
               f"group_id={self._async.group_id!r})"

    def start(self) -> None:
        """Connect and join the group (done by :meth:`run` or iteration when not called)."""
        self._loop.call(self._async.start())

    def run(self, handler: Handler, batch_timeout: float = 1.0) -> None:
        """Handle every message until :meth:`stop` (see :meth:`AsyncConsumer.run`)."""
        try:
            self._loop.call(self._async.run(handler, batch_timeout))
        except FutureCancelled:  # stop() from another thread ended the loop under it
            return
        except KeyboardInterrupt:
            self.stop()
            raise

    def messages(self, batch_timeout: float = 1.0) -> Iterator[Message]:
        """Messages as they come (see :meth:`AsyncConsumer.messages`)."""
        stream = self._async.messages(batch_timeout)
        try:
            while True:
                try:
                    message = self._loop.call(_next(stream))
                except StopAsyncIteration:
                    return
                yield message
        finally:
            if self._loop.running:
                # RuntimeError: interrupted mid-fetch, the generator is being cancelled
                with contextlib.suppress(RuntimeError):
                    self._loop.call(stream.aclose(), 10)

    def __iter__(self) -> Iterator[Message]:
        return self.messages()

    def stop(self, timeout: float = 10) -> None:
        """Let the message being handled finish, commit, leave the group, disconnect."""
        self._loop.close(self._async.stop(timeout), timeout + 10)

    close = stop

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
