"""The project's default producers start once under concurrent first use (from tasks and
from threads), and once closed (by close_default_producers or the app's shutdown) leave
no connection to the broker, no thread and no loop behind."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from fastflyer import FlyerAPI
from fastflyer.message import close_default_producers, default_async_producer, default_producer
from fastflyer.settings import load_settings
from kafka_broker import KafkaBroker, connections_to, create_topic
from waiting import wait_for


@pytest.fixture
def own_broker() -> Iterator[KafkaBroker]:
    broker = KafkaBroker()  # its own: connections to it are this test's alone
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every aiokafka producer started (connected) during the test. (Against tansu, which
    refuses idempotent producing, a first start also makes one that fails to start.)"""
    import aiokafka

    started: list[Any] = []
    original = aiokafka.AIOKafkaProducer.start

    async def counting(self: Any) -> None:
        await original(self)
        started.append(self)

    monkeypatch.setattr(aiokafka.AIOKafkaProducer, "start", counting)
    return started


@pytest.fixture
def closing_defaults() -> Iterator[None]:
    """Whatever happens, the test leaves no default producer open: the sync one (and any
    async one of a loop still running) is closed at its end, within a few seconds."""
    yield
    asyncio.run(close_default_producers(timeout=3))




def test_fifty_tasks_first_sending_share_one_default_async_producer(own_broker, counted,
                                                                   closing_defaults):
    topic = create_topic(own_broker.servers, "fifty", partitions=2)
    settings = load_settings(kafka_servers=own_broker.servers)

    async def main() -> None:
        async def send(n: int) -> Any:
            return await default_async_producer(settings).send({"n": n}, topic=topic)

        try:
            sent = await asyncio.gather(*(send(n) for n in range(50)))
            assert len(sent) == 50
            assert connections_to(own_broker.port)
        finally:
            await close_default_producers(timeout=5)

    asyncio.run(main())
    assert len(counted) == 1
    wait_for(lambda: not connections_to(own_broker.port))


def test_sixteen_threads_first_sending_share_one_default_producer(own_broker, counted,
                                                                  kafka_threads,
                                                                  closing_defaults):
    topic = create_topic(own_broker.servers, "sixteen", partitions=2)
    settings = load_settings(kafka_servers=own_broker.servers)
    gate = threading.Barrier(16)
    producers: set[int] = set()
    errors: list[BaseException] = []

    def send(n: int) -> None:
        try:
            gate.wait(30)
            producer = default_producer(settings)
            producers.add(id(producer))
            producer.send({"n": n}, topic=topic)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert len(producers) == 1 and len(counted) == 1
    assert kafka_threads()
    asyncio.run(close_default_producers())
    wait_for(lambda: not connections_to(own_broker.port))
    wait_for(lambda: not kafka_threads())


def test_an_app_s_shutdown_leaves_nothing_of_kafka_open(own_broker, counted, monkeypatch,
                                                       kafka_threads, closing_defaults):
    topic = create_topic(own_broker.servers, "app", partitions=2)
    monkeypatch.setenv("flyer_kafka_servers", own_broker.servers)
    app = FlyerAPI()

    @app.post("/send")
    async def send() -> dict[str, int]:
        sent = await default_async_producer().send({"from": "route"}, topic=topic)
        return {"offset": sent.offset}

    with TestClient(app) as client:
        assert client.get("/health_check/ready").status_code == 200  # its own client
        gate = threading.Barrier(16)
        errors: list[BaseException] = []

        def send_sync(n: int) -> None:
            try:
                gate.wait(30)
                default_producer().send({"n": n}, topic=topic)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=send_sync, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors
        assert client.post("/send").status_code == 200
        assert connections_to(own_broker.port)
    assert len(counted) == 2  # the sync producer's and the app loop's async one
    wait_for(lambda: not connections_to(own_broker.port))
    wait_for(lambda: not kafka_threads())
    assert not app.lifecycle.stop_problems


def test_an_app_whose_broker_was_killed_shuts_down_within_its_timeout(own_broker, monkeypatch,
                                                                     kafka_threads,
                                                                     closing_defaults):
    from fastflyer import background_scheduler
    from fastflyer.message import KafkaRouter

    topic = create_topic(own_broker.servers, "killed", partitions=1)
    seen: list[str] = []
    kafka = KafkaRouter()

    @kafka.consumer(topic, group_id="killed-group", session_timeout_ms=2000,
                    heartbeat_interval_ms=300, request_timeout_ms=30000)
    async def on_message(message: Any) -> None:
        seen.append(message.text())

    monkeypatch.setenv("flyer_kafka_servers", own_broker.servers)
    monkeypatch.setenv("flyer_shutdown_timeout", "3")
    app = FlyerAPI()
    app.include_kafka(kafka)
    scheduler_was_running = background_scheduler.running
    with TestClient(app):
        with default_producer() as producer:
            producer.send("one", topic=topic)
        wait_for(lambda: seen == ["one"], 30)
        assert own_broker.process is not None
        own_broker.process.kill()
        own_broker.process.wait(10)
        own_broker.process = None
        began = time.monotonic()
    assert time.monotonic() - began < 3 + 2
    if not scheduler_was_running:
        assert not background_scheduler.running  # the hooks after kafka's still ran
    assert app.lifecycle.stopped
    wait_for(lambda: not connections_to(own_broker.port), 5)
    wait_for(lambda: not kafka_threads(), 5)
