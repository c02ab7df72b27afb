"""Kafka producers on aiokafka: asyncio (``AsyncProducer``) and blocking (``Producer``).

    async with AsyncProducer("127.0.0.1:9092", topic="orders") as producer:
        sent = await producer.send({"id": 1})          # topic, partition, offset
    with Producer("127.0.0.1:9092", topic="orders") as producer:
        producer.send("plain text", key="order-1", headers={"source": "api"})

``send`` returns the record's metadata once the broker has it, from all in-sync replicas
(``acks="all"``), and raises :class:`ProduceError` when it cannot (broker down, unknown
topic, timeout): never a silent ``False``. Idempotent producing (no duplicates from the
client's own retries) is on wherever the broker grants it; a broker that refuses it gets
plain ``acks="all"`` producing and one log line saying so. The current request id
travels in the ``x-request-id`` header. ``Producer`` runs an ``AsyncProducer`` on a
private event loop thread, started at its first send, so one client library serves both.
Concurrent sends from one event loop share batches: ``asyncio.gather`` over many
``send`` calls costs about one round trip, not one each.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from fastkit.logging import logger
from fastkit.message._codec import encode_headers, encode_key, encode_value
from fastkit.message._loop import LoopThread

if sys.version_info >= (3, 11):
    from asyncio import timeout as _deadline
else:  # aiokafka depends on async-timeout
    from async_timeout import timeout as _deadline

__all__ = ["CONNECTION_OPTIONS", "AsyncProducer", "MessageError", "ProduceError", "Producer",
           "bootstrap"]

Headers = Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]] | None

# aiokafka options of the connection itself, shared by producers and consumers (a
# consumer passes them on to the producer of its dead-letter topic).
CONNECTION_OPTIONS = frozenset({
    "client_id", "request_timeout_ms", "retry_backoff_ms", "metadata_max_age_ms",
    "connections_max_idle_ms", "api_version", "security_protocol", "ssl_context",
    "sasl_mechanism", "sasl_plain_username", "sasl_plain_password",
    "sasl_kerberos_service_name", "sasl_kerberos_domain_name", "sasl_oauth_token_provider",
})

# Servers that refused idempotent producing: later producers do not ask again.
_NO_IDEMPOTENCE: set[str] = set()


class MessageError(RuntimeError):
    """Kafka could not do what was asked (the message names what and where)."""


class ProduceError(MessageError):
    """A message was not acknowledged by the broker."""


def bootstrap(servers: str | Sequence[str]) -> str:
    """``"host:port,host:port"`` from a string or a list; empty is an error."""
    joined = servers if isinstance(servers, str) else ",".join(servers)
    if not joined.strip():
        raise ValueError("no Kafka servers given (host:port[,host:port...])")
    return joined


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
        self._options = {"bootstrap_servers": self.servers, "acks": acks, **kwargs}
        self._producer: Any = None

    def __repr__(self) -> str:
        return f"AsyncProducer({self.servers!r}, topic={self.topic!r})"

    async def start(self) -> None:
        """Connect (done by the first send when not called)."""
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
        from aiokafka.errors import KafkaError

        producer = AIOKafkaProducer(enable_idempotence=idempotent, **self._options)
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise ProduceError(f"cannot reach Kafka at {self.servers}: "
                               f"{type(exc).__name__}: {exc}") from exc
        return producer

    async def send(self, msg: Any, topic: str | None = None, key: str | bytes | None = None,
                   headers: Headers = None, timeout: float = 10) -> Any:
        """Send one message; its ``RecordMetadata`` (topic, partition, offset)."""
        return await self._send(*self._prepare(msg, topic, key, headers), timeout)

    def _prepare(self, msg: Any, topic: str | None, key: str | bytes | None,
                 headers: Headers) -> tuple[str, bytes | None, bytes | None,
                                            list[tuple[str, bytes]]]:
        target = topic or self.topic
        if not target:
            raise ValueError("no topic: pass topic= to send() or to the producer")
        return target, encode_value(msg), encode_key(key), encode_headers(headers)

    async def _send(self, topic: str, value: bytes | None, key: bytes | None,
                    headers: list[tuple[str, bytes]], timeout: float) -> Any:
        from aiokafka.errors import KafkaError

        if self._producer is None:
            await self.start()
        try:
            async with _deadline(timeout):
                delivery = await self._producer.send(topic, value, key=key, headers=headers)
                return await delivery
        except asyncio.TimeoutError:  # TimeoutError from 3.11; async-timeout's before
            raise ProduceError(f"message to {topic!r} not acknowledged within {timeout:g} s "
                               f"(Kafka at {self.servers})") from None
        except KafkaError as exc:
            raise ProduceError(f"message to {topic!r} failed (Kafka at {self.servers}): "
                               f"{type(exc).__name__}: {exc}") from exc

    async def flush(self) -> None:
        """Wait until every message sent so far has its answer."""
        if self._producer is not None:
            await self._producer.flush()

    async def close(self) -> None:
        """Deliver what is pending, then disconnect."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

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
        prepared = self._async._prepare(msg, topic, key, headers)  # here: the request id
        try:
            return self._loop.call(self._async._send(*prepared, timeout), timeout + 5)
        except TimeoutError:  # connecting took the time
            raise ProduceError(f"message to {prepared[0]!r} not acknowledged within "
                               f"{timeout:g} s (Kafka at {self.servers})") from None

    def flush(self, timeout: float | None = 30) -> None:
        """Wait until every message sent so far has its answer."""
        if self._loop.running:
            self._loop.call(self._async.flush(), timeout)

    def close(self, timeout: float | None = 30) -> None:
        """Deliver what is pending, disconnect, stop the private loop."""
        self._loop.close(self._async.close(), timeout)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
