"""Kafka in a FastFlyer project: consumers declared by apps, the project's producer.

    # app/orders/__init__.py
    from fastflyer.message import KafkaRouter, Message

    kafka = KafkaRouter()

    @kafka.consumer("orders", group_id="billing")
    async def bill(message: Message) -> None:       # ``def`` runs in a worker thread
        ...

    # a route that publishes
    from fastflyer.message import default_async_producer

    await default_async_producer().send({"id": 1}, topic="orders")

An app's ``kafka`` (a :class:`KafkaRouter`) is found like its ``router``. Its consumers
start with the app's lifespan, each in its own task, and stop within
``flyer_shutdown_timeout``, committing what was handled. A consumer that fails (the
broker went away, a dead-letter topic refused a message) is logged and started again,
waiting 1 s, then 2, 4... up to 10 s. With consumers declared or ``flyer_kafka_servers``
set, readiness reports ``kafka``: the broker answers and every consumer runs. Messages
sent while a request is served carry its request id, and the consumer binds it again;
with tracing on they carry its trace too (``traceparent``), and each message is handled in
a ``process`` span continuing it (see :mod:`fastkit.message._instrument`, which also lists
the Kafka metrics).

Settings: ``flyer_kafka_servers`` (``host:port[,host:port]``), and for secured clusters
``flyer_kafka_security_protocol`` and ``flyer_kafka_sasl_mechanism``, ``_username``,
``_password``. Declaring consumers without ``flyer_kafka_servers`` stops start-up.
Every Kafka client here times out: consumers and producers after aiokafka's
``request_timeout_ms`` (40 s, :mod:`fastkit.message`), the readiness check's after 1.5 s.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from fastflyer.exceptions import FastFlyerError
from fastkit.logging import logger
from fastkit.utils.threads import run_in_daemon_thread

if TYPE_CHECKING:
    from fastflyer.health import Readiness
    from fastflyer.lifespan import Lifecycle
    from fastflyer.settings import FlyerSettings
    from fastkit.message import AsyncConsumer, AsyncProducer, Handler, Message, Producer

__all__ = ["KafkaNotReady", "KafkaRouter", "Message", "default_async_producer", "default_producer",
           "kafka_options", "register_kafka"]

H = TypeVar("H", bound="Handler")
CHECK_TIMEOUT = 2.0
RESTART_BACKOFF = (1.0, 10.0)  # first wait, longest wait


def __getattr__(name: str) -> Any:
    if name == "Message":  # the type handlers take, without importing aiokafka here
        from fastkit.message import Message

        return Message
    raise AttributeError(f"module 'fastflyer.message' has no attribute {name!r}")


@dataclass(frozen=True)
class ConsumerSpec:
    """One declared consumer: what it reads, as which group, with which handler."""

    name: str
    topics: tuple[str, ...]
    group_id: str
    handler: Handler
    options: dict[str, Any] = field(default_factory=dict)


class KafkaRouter:
    """The Kafka consumers of one app, declared with :meth:`consumer`."""

    def __init__(self) -> None:
        self.consumers: list[ConsumerSpec] = []

    def consumer(self, topics: str | Sequence[str], group_id: str | None = None, *,
                 retries: int = 3, backoff: float = 0.5, dead_letter_topic: str | None = None,
                 **options: Any) -> Callable[[H], H]:
        """Decorator: call the function for every message of ``topics``.

        ``group_id`` defaults to the function's module and name, so every worker and
        instance of the service shares the partitions. ``retries``, ``backoff``,
        ``dead_letter_topic`` and other options are those of
        :class:`fastkit.message.AsyncConsumer`.
        """
        names = (topics,) if isinstance(topics, str) else tuple(topics)
        if not names or not all(isinstance(t, str) and t for t in names):
            raise ValueError(f"a consumer needs at least one topic name, got {topics!r}")

        def register(handler: H) -> H:
            name = f"{handler.__module__}.{handler.__qualname__}"
            self.consumers.append(ConsumerSpec(
                name, names, group_id or name, handler,
                {"retries": retries, "backoff": backoff,
                 "dead_letter_topic": dead_letter_topic, **options}))
            return handler

        return register


def kafka_options(settings: FlyerSettings) -> dict[str, Any]:
    """The connection options of the ``flyer_kafka_*`` settings, for aiokafka."""
    options: dict[str, Any] = {}
    protocol = settings.kafka_security_protocol
    if protocol != "PLAINTEXT":
        options["security_protocol"] = protocol
    if protocol.endswith("SSL"):
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context()
    if protocol.startswith("SASL"):
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                       sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password.get_secret_value())
    return options


def _servers(settings: FlyerSettings | None) -> tuple[str, dict[str, Any]]:
    if settings is None:  # the app the code runs for (fastflyer.app_context)
        from fastflyer.app_context import current_settings

        settings = current_settings()
    if not settings.kafka_servers:
        from fastkit.message import MessageError

        raise MessageError("no default Kafka: flyer_kafka_servers is not set")
    return settings.kafka_servers, kafka_options(settings)


_producers: dict[Any, Any] = {}
_producers_guard = threading.Lock()


def default_producer(settings: FlyerSettings | None = None) -> Producer:
    """The blocking :class:`~fastkit.message.Producer` for ``flyer_kafka_servers`` of
    ``settings`` (default: those of the app the code runs for,
    :func:`fastflyer.app_context.current_settings`), one per process and servers, closed
    when the app stops."""
    from fastkit.message import Producer

    servers, options = _servers(settings)
    with _producers_guard:
        producer = _producers.get(("sync", servers))
        if producer is None:
            producer = _producers[("sync", servers)] = Producer(servers, **options)
        return producer


def default_async_producer(settings: FlyerSettings | None = None) -> AsyncProducer:
    """The :class:`~fastkit.message.AsyncProducer` for ``flyer_kafka_servers`` of
    ``settings`` (default: those of the app the code runs for,
    :func:`fastflyer.app_context.current_settings`) on the running event loop, one per
    loop and servers, closed when the app stops."""
    from fastkit.message import AsyncProducer

    servers, options = _servers(settings)
    key = ("async", servers, asyncio.get_running_loop())
    with _producers_guard:
        producer = _producers.get(key)
        if producer is None:
            producer = _producers[key] = AsyncProducer(servers, **options)
        return producer


async def close_default_producers(timeout: float = 10) -> None:
    """Close the default producers made so far (this loop's async ones, the sync one),
    together, within ``timeout`` s whatever the broker does; what one could not deliver
    or close is logged, and the others close all the same."""
    loop = asyncio.get_running_loop()
    with _producers_guard:
        mine = [key for key in _producers if key[0] == "sync" or key[2] is loop]
        closing = [(key[0], _producers.pop(key)) for key in mine]

    async def close(kind: str, producer: Any) -> None:
        if kind == "async":
            await producer.close(timeout)
        else:  # on a daemon thread: a broker that never answers cannot hold up exit
            await asyncio.wait_for(run_in_daemon_thread(producer.close, timeout), timeout + 2)

    results = await asyncio.gather(*(close(kind, p) for kind, p in closing),
                                   return_exceptions=True)
    for (_, producer), result in zip(closing, results, strict=True):
        if isinstance(result, BaseException):
            logger.opt(exception=result).error("Kafka producer {!r} did not close cleanly: "
                                               "{}", producer, type(result).__name__)


class KafkaNotReady(FastFlyerError, RuntimeError):
    """The broker does not answer, or a declared consumer is not running."""


class _Supervised:
    """One declared consumer, running in its own task and started again if it fails."""

    def __init__(self, spec: ConsumerSpec, servers: str, options: dict[str, Any]) -> None:
        self.spec = spec
        self.servers = servers
        self.options = options
        self.consumer: AsyncConsumer | None = None
        self.task: asyncio.Task[None] | None = None
        self.failure: str | None = None
        self.stopping = asyncio.Event()

    def start(self) -> None:
        self.task = asyncio.create_task(self._supervise(), name=f"kafka {self.spec.name}")

    async def _supervise(self) -> None:
        from fastkit.message import AsyncConsumer

        wait = RESTART_BACKOFF[0]
        while not self.stopping.is_set():
            consumer = self.consumer = AsyncConsumer(
                self.servers, list(self.spec.topics), self.spec.group_id,
                **{**self.options, **self.spec.options})
            try:
                await consumer.run(self.spec.handler)  # returns once stopped
                return
            except Exception as exc:
                self.failure = f"{type(exc).__name__}: {exc}"
                logger.error("Kafka consumer {} failed ({}); starting again in {:g} s",
                             self.spec.name, self.failure, wait)
                await consumer.stop(timeout=0)  # bounded, never raises CancelledError
            try:
                await asyncio.wait_for(self.stopping.wait(), wait)
            except TimeoutError:
                wait = min(wait * 2, RESTART_BACKOFF[1])

    @property
    def state(self) -> str | None:
        """``None`` when running, else why not."""
        if self.task is None or self.task.done():
            return "not running"
        if self.consumer is not None and self.consumer.running:
            return None
        return f"restarting after {self.failure}" if self.failure else "starting"

    async def stop(self, timeout: float) -> None:
        """Let the message in hand finish, commit, leave the group: within ``timeout`` s
        (plus about a second when the broker must be given up on)."""
        deadline = time.monotonic() + timeout
        self.stopping.set()
        if self.consumer is not None:
            await self.consumer.stop(timeout)  # bounded, never raises CancelledError
        task = self.task
        if task is None:
            return
        await asyncio.wait({task}, timeout=max(deadline - time.monotonic(), 0.1))
        if not task.done():  # stuck connecting or in a handler: give up on it
            logger.warning("Kafka consumer {} did not stop within {:g} s; cancelled",
                           self.spec.name, timeout)
            task.cancel()
            await asyncio.wait({task}, timeout=1)
            if self.consumer is not None:
                await self.consumer.stop(0)
        if task.done() and not task.cancelled() and task.exception() is not None:
            logger.opt(exception=task.exception()).error("Kafka consumer {} stopped with "
                                                         "an error", self.spec.name)


class _Kafka:
    """The project's Kafka: its consumers, its readiness check, its producers' shutdown."""

    def __init__(self, settings: FlyerSettings) -> None:
        self.settings = settings
        self.specs: list[tuple[str, ConsumerSpec]] = []  # (app, spec)
        self.running: list[_Supervised] = []
        self._client: Any = None

    def include(self, app: str, router: KafkaRouter) -> None:
        self.specs.extend((app, spec) for spec in router.consumers)

    def check_configured(self) -> None:
        if self.specs and not self.settings.kafka_servers:
            from fastflyer.settings import SettingsError

            declared = ", ".join(sorted({f"{app}: {spec.name}" for app, spec in self.specs}))
            raise SettingsError([f"flyer_kafka_servers is not set, and Kafka consumers are "
                                 f"declared ({declared})"])

    async def start(self) -> None:
        if not self.specs:
            return
        servers, options = _servers(self.settings)
        for app, spec in self.specs:
            supervised = _Supervised(spec, servers, options)
            supervised.start()
            self.running.append(supervised)
            logger.info("Kafka consumer {} of app {} started: {} as group {!r}", spec.name,
                        app, ", ".join(spec.topics), spec.group_id)

    async def stop(self) -> None:
        """Stop the consumers, then close the producers and the readiness client, within
        ``flyer_shutdown_timeout`` whatever the broker does; each step runs whatever the
        one before it did (its trouble is logged)."""
        from fastkit.message._closing import settle

        deadline = time.monotonic() + self.settings.shutdown_timeout * 0.9

        def left() -> float:
            return max(deadline - time.monotonic(), 0.1)

        running, self.running = self.running, []
        try:
            # Consumers get 60 % of the time; the rest goes to the producers.
            timeout = self.settings.shutdown_timeout * 0.6
            results = await asyncio.gather(*(s.stop(timeout) for s in running),
                                           return_exceptions=True)
            for supervised, result in zip(running, results, strict=True):
                if isinstance(result, BaseException):
                    logger.opt(exception=result).error(
                        "Kafka consumer {} did not stop cleanly: {}", supervised.spec.name,
                        type(result).__name__)
            await close_default_producers(left())
        finally:
            client, self._client = self._client, None
            if client is not None:
                await settle(client.close(), left())

    async def ready(self) -> None:
        """Raises :class:`KafkaNotReady` unless the broker answers and every consumer runs."""
        problems = [f"consumer {s.spec.name} {s.state}" for s in self.running if s.state]
        try:
            await self._ping()
        except Exception as exc:
            problems.insert(0, f"broker {type(exc).__name__}: {exc}")
        if problems:
            raise KafkaNotReady("; ".join(problems))

    async def _ping(self) -> None:
        from aiokafka import AIOKafkaClient

        if self._client is not None:
            await self._client.fetch_all_metadata()
            return
        servers, options = _servers(self.settings)
        client = AIOKafkaClient(bootstrap_servers=servers, request_timeout_ms=1500, **options)
        try:
            await client.bootstrap()
        except BaseException:
            await client.close()
            raise
        self._client = client


def register_kafka(settings: FlyerSettings, readiness: Readiness,
                   lifecycle: Lifecycle) -> Callable[[str, KafkaRouter], None]:
    """Start the declared consumers with ``lifecycle``, report Kafka in ``readiness``;
    returns the function that takes an app's :class:`KafkaRouter`."""
    kafka = _Kafka(settings)
    lifecycle.add("kafka", start=kafka.start, stop=kafka.stop)

    def include(app: str, router: KafkaRouter) -> None:
        kafka.include(app, router)
        kafka.check_configured()
        readiness.register("kafka", kafka.ready, timeout=CHECK_TIMEOUT)

    if settings.kafka_servers:
        readiness.register("kafka", kafka.ready, timeout=CHECK_TIMEOUT)
    return include
