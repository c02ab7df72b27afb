"""Kafka producers on aiokafka: asyncio (``AsyncProducer``) and blocking (``Producer``).

    async with AsyncProducer("127.0.0.1:9092", topic="orders") as producer:
        sent = await producer.send({"id": 1})          # topic, partition, offset
    with Producer("127.0.0.1:9092", topic="orders") as producer:
        producer.send("plain text", key="order-1", headers={"source": "api"})

``send`` returns the record's metadata once the broker has it, from all in-sync replicas
(``acks="all"``), and raises :class:`ProduceError` when it cannot (broker down, unknown
topic, timeout): never a silent ``False``. The current request id travels in the
``x-request-id`` header. ``Producer`` runs an ``AsyncProducer`` on a private event loop
thread, started at its first send, so one client library serves both.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

from fastkit.message._codec import encode_headers, encode_key, encode_value

__all__ = ["AsyncProducer", "MessageError", "ProduceError", "Producer", "bootstrap"]

T = TypeVar("T")
Headers = Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]] | None


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
    """An aiokafka producer that connects at its first send (or ``start()``)."""

    def __init__(self, servers: str | Sequence[str], topic: str | None = None, *,
                 acks: int | str = "all", **kwargs: Any) -> None:
        self.servers = bootstrap(servers)
        self.topic = topic
        self._options = {"bootstrap_servers": self.servers, "acks": acks, **kwargs}
        self._producer: Any = None

    def __repr__(self) -> str:
        return f"AsyncProducer({self.servers!r}, topic={self.topic!r})"

    async def start(self) -> None:
        if self._producer is not None:
            return
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        producer = AIOKafkaProducer(**self._options)
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise ProduceError(f"cannot reach Kafka at {self.servers}: "
                               f"{type(exc).__name__}: {exc}") from exc
        self._producer = producer

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

        await self.start()
        try:
            return await asyncio.wait_for(
                self._producer.send_and_wait(topic, value, key=key, headers=headers), timeout)
        except TimeoutError:
            raise ProduceError(f"message to {topic!r} not acknowledged within {timeout:g} s "
                               f"(Kafka at {self.servers})") from None
        except KafkaError as exc:
            raise ProduceError(f"message to {topic!r} failed (Kafka at {self.servers}): "
                               f"{type(exc).__name__}: {exc}") from exc

    async def flush(self) -> None:
        if self._producer is not None:
            await self._producer.flush()

    async def close(self) -> None:
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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    @property
    def servers(self) -> str:
        return self._async.servers

    @property
    def topic(self) -> str | None:
        return self._async.topic

    def __repr__(self) -> str:
        return f"Producer({self.servers!r}, topic={self.topic!r})"

    def _call(self, coroutine: Any, timeout: float | None) -> Any:
        with self._guard:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name="fastkit-kafka-producer",
                                                daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout)

    def send(self, msg: Any, topic: str | None = None, key: str | bytes | None = None,
             headers: Headers = None, timeout: float = 10) -> Any:
        """Send one message; its ``RecordMetadata``. Raises :class:`ProduceError`."""
        prepared = self._async._prepare(msg, topic, key, headers)  # here: the request id
        return self._call(self._async._send(*prepared, timeout), timeout + 5)

    def flush(self, timeout: float | None = 30) -> None:
        if self._loop is not None:
            self._call(self._async.flush(), timeout)

    def close(self, timeout: float | None = 30) -> None:
        with self._guard:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._async.close(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            loop.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
