"""Kafka producers on aiokafka: asyncio (``AsyncProducer``) and blocking (``Producer``).

    async with AsyncProducer("127.0.0.1:9092", topic="orders") as producer:
        sent = await producer.send({"id": 1})          # topic, partition, offset
    with Producer("127.0.0.1:9092", topic="orders") as producer:
        producer.send("plain text", key="order-1", headers={"source": "api"})

``send`` returns the record's metadata once the broker has it, from all in-sync replicas
(``acks="all"``), and raises :class:`ProduceError` when it cannot (broker down, unknown
topic, no acknowledgement within ``timeout``): never a silent ``False``. Idempotent
producing (no duplicates from the client's own retries) is on wherever the broker grants
it; a broker that refuses it gets plain ``acks="all"`` producing and one log line saying
so. The current request id travels in the ``x-request-id`` header, and with tracing on the
send's span in ``traceparent`` (see :mod:`fastkit.message._instrument`). ``Producer`` runs an
``AsyncProducer`` on a private event loop thread, started at its first send, so one
client library serves both. Concurrent sends from one event loop share batches:
``asyncio.gather`` over many ``send`` calls costs about one round trip, not one each.

Timeouts: aiokafka bounds its TCP connect and every request by ``request_timeout_ms``;
producers and consumers here set it to :data:`REQUEST_TIMEOUT_MS` (40 s) unless given.
``send`` bounds the whole call, connecting included, by its ``timeout`` (10 s).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import CancelledError as FutureCancelled
from types import TracebackType
from typing import Any

from fastkit.exceptions import FastKitError
from fastkit.logging import logger
from fastkit.message import _instrument
from fastkit.message._closing import settle, stop_within
from fastkit.message._codec import encode_headers, encode_key, encode_value
from fastkit.message._loop import LoopThread, Once

__all__ = ["CONNECTION_OPTIONS", "REQUEST_TIMEOUT_MS", "AsyncProducer", "MessageError",
           "ProduceError", "Producer", "bootstrap", "connect", "kafka_error"]

Headers = Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]] | None

# aiokafka options of the connection itself, shared by producers and consumers (a
# consumer passes them on to the producer of its dead-letter topic).
CONNECTION_OPTIONS = frozenset({
    "client_id", "request_timeout_ms", "retry_backoff_ms", "metadata_max_age_ms",
    "connections_max_idle_ms", "api_version", "security_protocol", "ssl_context",
    "sasl_mechanism", "sasl_plain_username", "sasl_plain_password",
    "sasl_kerberos_service_name", "sasl_kerberos_domain_name", "sasl_oauth_token_provider",
})

# Milliseconds: aiokafka's bound on its TCP connect and on each request's answer.
REQUEST_TIMEOUT_MS = 40000

# Servers that refused idempotent producing: later producers do not ask again.
_NO_IDEMPOTENCE: set[str] = set()


class MessageError(FastKitError, RuntimeError):
    """Kafka could not do what was asked (the message names what and where)."""


class ProduceError(MessageError):
    """A message was not acknowledged by the broker."""


def kafka_error() -> type[Exception]:
    """aiokafka's base exception (imported with the first client, not with this module)."""
    from aiokafka.errors import KafkaError

    error: type[Exception] = KafkaError
    return error


async def connect(client: Any, servers: str, error: type[MessageError],
                  request_timeout_ms: int) -> None:
    """Start an aiokafka producer or consumer; ``error`` naming the servers and the
    timeout if it cannot. A start cut short (cancelled, a caller's deadline) is stopped:
    it leaves no connection or task behind."""
    try:
        await client.start()
    except BaseException as exc:
        await client.stop()
        if isinstance(exc, kafka_error()):
            raise error(f"cannot reach Kafka at {servers} (connect and requests time out "
                        f"after request_timeout_ms={request_timeout_ms}): "
                        f"{type(exc).__name__}: {exc}") from exc
        raise


def bootstrap(servers: str | Sequence[str]) -> str:
    """``"host:port,host:port"`` from a string or a list; empty is an error."""
    joined = servers if isinstance(servers, str) else ",".join(servers)
    if not joined.strip():
        raise ValueError("no Kafka servers given (host:port[,host:port...])")
    return joined


class _Expiry:
    """Deadlines of messages waiting for their acknowledgement, one timer per tenth of a
    second.

    A timer per message costs the event loop dearly when thousands of sends are in flight
    (each sits in its timer heap); messages whose deadlines fall in the same tenth of a
    second share one, which fails those still waiting with :class:`ProduceError`.
    """

    GRAIN = 0.1

    def __init__(self, servers: str) -> None:
        self.servers = servers
        self._slots: dict[tuple[asyncio.AbstractEventLoop, int],
                          dict[asyncio.Future[Any], tuple[str, float]]] = {}

    def watch(self, delivery: asyncio.Future[Any], topic: str,
              timeout: float) -> dict[asyncio.Future[Any], tuple[str, float]]:
        """Fail ``delivery`` after ``timeout`` s; the slot to ``pop`` it from when done."""
        loop = asyncio.get_running_loop()
        slot = (loop, math.ceil((loop.time() + timeout) / self.GRAIN))
        waiting = self._slots.get(slot)
        if waiting is None:
            waiting = self._slots[slot] = {}
            loop.call_at(slot[1] * self.GRAIN, self._expire, slot)
        waiting[delivery] = (topic, timeout)
        return waiting

    def pending(self, loop: asyncio.AbstractEventLoop) -> int:
        """How many messages sent on ``loop`` still wait for their acknowledgement."""
        return sum(1 for (owner, _), waiting in self._slots.items() if owner is loop
                   for delivery in waiting if not delivery.done())

    def fail(self, loop: asyncio.AbstractEventLoop, error: BaseException) -> int:
        """Fail every message of ``loop`` still waiting with ``error``; how many."""
        failed = 0
        for slot in [slot for slot in self._slots if slot[0] is loop]:
            for delivery in self._slots[slot]:
                if not delivery.done():
                    delivery.set_exception(type(error)(*error.args))
                    failed += 1
        return failed

    def _expire(self, slot: tuple[asyncio.AbstractEventLoop, int]) -> None:
        for delivery, (topic, timeout) in self._slots.pop(slot, {}).items():
            if not delivery.done():  # aiokafka skips a future that is done already
                delivery.set_exception(ProduceError(
                    f"message to {topic!r} not acknowledged within {timeout:g} s "
                    f"(Kafka at {self.servers})"))


class AsyncProducer:
    """An aiokafka producer that connects at its first send (or ``start()``).

    ``enable_idempotence``: ``None`` (the default) asks for it and falls back to plain
    ``acks="all"`` producing where the broker refuses; ``True`` insists (start-up fails
    where refused); ``False`` never asks. Other keyword arguments go to
    ``aiokafka.AIOKafkaProducer``.
    """

    def __init__(self, servers: str | Sequence[str], topic: str | None = None, *,
                 acks: int | str = "all", enable_idempotence: bool | None = None,
                 **kwargs: Any) -> None:
        self.servers = bootstrap(servers)
        self.topic = topic
        self._idempotence = enable_idempotence
        self._options = {"bootstrap_servers": self.servers, "acks": acks,
                         "request_timeout_ms": REQUEST_TIMEOUT_MS, **kwargs}
        self._producer: Any = None
        self._once = Once()  # concurrent first sends share one start
        self._expiry = _Expiry(self.servers)

    def __repr__(self) -> str:
        return f"AsyncProducer({self.servers!r}, topic={self.topic!r})"

    async def start(self) -> None:
        """Connect (done by the first send when not called). Concurrent first sends, from
        tasks or (through :class:`Producer`) threads, share one connection."""
        if self._producer is None and not await self._once.run(self._start):
            raise ProduceError(f"not connected to Kafka at {self.servers}: the producer was "
                               "closed while connecting")

    async def _start(self) -> None:
        if self._producer is not None:
            return
        from aiokafka.errors import BrokerResponseError

        asked = self._idempotence is True or (
            self._idempotence is None and self._options["acks"] in ("all", -1)
            and self.servers not in _NO_IDEMPOTENCE)
        try:
            self._producer = await self._connect(asked)
        except ProduceError as exc:
            if not (asked and self._idempotence is None
                    and isinstance(exc.__cause__, BrokerResponseError)):
                raise
            _NO_IDEMPOTENCE.add(self.servers)
            logger.warning("Kafka at {} refused idempotent producing ({}); producing with "
                           "acks={} alone", self.servers, type(exc.__cause__).__name__,
                           self._options["acks"])
            self._producer = await self._connect(False)

    async def _connect(self, idempotent: bool) -> Any:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(enable_idempotence=idempotent, **self._options)
        await connect(producer, self.servers, ProduceError, self._options["request_timeout_ms"])
        return producer

    async def send(self, msg: Any, topic: str | None = None, key: str | bytes | None = None,
                   headers: Headers = None, timeout: float = 10) -> Any:
        """Send one message; its ``RecordMetadata`` (topic, partition, offset).

        Raises :class:`ProduceError` when the broker does not acknowledge it within
        ``timeout`` seconds (to a tenth; connecting, at the first send, has the same
        bound), ``ValueError`` without a topic and ``TypeError`` for a value or key it
        cannot send (before anything is sent).
        """
        target = topic or self.topic
        if not target:
            raise ValueError("no topic: pass topic= to send() or to the producer")
        value, key_bytes = encode_value(msg), encode_key(key)
        wire_headers = encode_headers(headers)  # here: the caller's request id
        if _instrument.observed():  # a send span (its traceparent in the headers), counted
            return await _instrument.sending(
                lambda traced: self._deliver(target, value, key_bytes, traced, timeout),
                target, wire_headers)
        return await self._deliver(target, value, key_bytes, wire_headers, timeout)

    async def _deliver(self, target: str, value: bytes | None, key_bytes: bytes | None,
                       wire_headers: list[tuple[str, bytes]] | None, timeout: float) -> Any:
        if self._producer is None:
            try:
                async with asyncio.timeout(timeout):
                    await self.start()
            except TimeoutError:
                raise ProduceError(f"message to {target!r} not sent: no connection to Kafka "
                                   f"at {self.servers} within {timeout:g} s") from None
        producer = self._producer
        if producer is None:  # closed while connecting
            raise ProduceError(f"message to {target!r} not sent: the producer for Kafka at "
                               f"{self.servers} was closed")
        try:
            if producer.client.cluster.partitions_for_topic(target) is None:
                # The topic's metadata comes first, within the timeout too.
                async with asyncio.timeout(timeout):
                    await producer.partitions_for(target)
            # Queued at once (or once the buffer has room, within request_timeout_ms).
            delivery = await producer.send(target, value, key=key_bytes, headers=wire_headers)
            if delivery.done():
                return delivery.result()
            waiting = self._expiry.watch(delivery, target, timeout)
            try:
                return await delivery
            finally:
                waiting.pop(delivery, None)
        except TimeoutError:
            raise ProduceError(f"message to {target!r} not acknowledged within {timeout:g} s "
                               f"(Kafka at {self.servers})") from None
        except kafka_error() as exc:
            raise ProduceError(f"message to {target!r} failed (Kafka at {self.servers}): "
                               f"{type(exc).__name__}: {exc}") from exc

    async def flush(self) -> None:
        """Wait until every message sent so far has its answer."""
        if self._producer is not None:
            await self._producer.flush()

    async def close(self, timeout: float = 10) -> None:
        """Deliver what is pending (up to ``timeout`` seconds), then disconnect.

        Returns within ``timeout`` (plus half a second when it must force its way out)
        whatever the broker does, and never raises ``CancelledError`` of its own. Past
        the timeout (the broker is gone or does not answer) the messages still pending
        fail: each ``send`` waiting for one raises :class:`ProduceError`; none is dropped
        silently, and the lines logged say how many.
        """
        starting = self._once.cancel()  # a start under way leaves nothing behind
        if starting is not None:
            await settle(starting, timeout)
        producer, self._producer = self._producer, None
        if producer is None:
            return
        failure = ProduceError(f"producer for Kafka at {self.servers} closed before the "
                               "broker acknowledged the message")
        pending = self._expiry.pending(asyncio.get_running_loop())
        problem = await stop_within(producer, timeout, failure)
        if problem is not None:
            failed = self._expiry.fail(asyncio.get_running_loop(), failure)
            logger.warning("Kafka producer for {}: {}; {} message(s) still pending were "
                           "failed and its connections closed", self.servers, problem,
                           max(failed, pending))

    async def __aenter__(self) -> AsyncProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Producer:
    """A blocking producer: an :class:`AsyncProducer` on a private event loop thread."""

    def __init__(self, servers: str | Sequence[str], topic: str | None = None,
                 **kwargs: Any) -> None:
        self._async = AsyncProducer(servers, topic, **kwargs)
        self._loop = LoopThread("fastkit-kafka-producer")

    @property
    def servers(self) -> str:
        return self._async.servers

    @property
    def topic(self) -> str | None:
        return self._async.topic

    def __repr__(self) -> str:
        return f"Producer({self.servers!r}, topic={self.topic!r})"

    def send(self, msg: Any, topic: str | None = None, key: str | bytes | None = None,
             headers: Headers = None, timeout: float = 10) -> Any:
        """Send one message; its ``RecordMetadata``. Raises :class:`ProduceError`."""
        # The call runs in a copy of this thread's context: the request id goes along.
        try:
            return self._loop.call(self._async.send(msg, topic, key, headers, timeout),
                                   timeout + 5)
        except TimeoutError:  # connecting took the time
            raise ProduceError(f"message to {topic or self.topic!r} not acknowledged within "
                               f"{timeout:g} s (Kafka at {self.servers})") from None
        except FutureCancelled:  # close() from another thread ended the loop under it
            raise ProduceError(f"message to {topic or self.topic!r} not sent: the producer "
                               f"for Kafka at {self.servers} was closed") from None

    def flush(self, timeout: float | None = 30) -> None:
        """Wait until every message sent so far has its answer."""
        if self._loop.running:
            self._loop.call(self._async.flush(), timeout)

    def close(self, timeout: float = 10) -> None:
        """Deliver what is pending (up to ``timeout`` s), disconnect, stop the private loop."""
        self._loop.close(self._async.close(timeout), timeout + 10)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
