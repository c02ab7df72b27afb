"""Stopping clients whose broker died (killed, not stopped): ``stop()``/``close()`` return
within their timeout, never raise ``CancelledError`` into the caller, and log what they
could not finish. Lazy starts happen once under concurrent first use, and ``close()``
leaves no connection, thread or loop behind."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from consumer_worker import FAST_GROUP

from fastkit.message import AsyncConsumer, AsyncProducer, Consumer, Producer
from kafka_broker import KafkaBroker, connections_to, create_topic
from waiting import wait_for

BOUND = 2.0  # seconds a stop may take beyond its timeout


@pytest.fixture
def own_broker() -> Iterator[KafkaBroker]:
    """A private broker, killed (SIGKILL) by the tests."""
    broker = KafkaBroker()
    broker.start()
    try:
        yield broker
    finally:
        if broker.process is not None:
            broker.process.send_signal(signal.SIGCONT)  # a frozen one, to end it
        broker.stop()


def kill(broker: KafkaBroker) -> None:
    assert broker.process is not None
    broker.process.send_signal(signal.SIGKILL)
    broker.process.wait(10)
    broker.process = None


def freeze(broker: KafkaBroker) -> None:
    """The broker stops answering, its connections open (SIGSTOP; the fixture ends it).

    Returns once every thread of it is stopped: ``kill()`` returns before the kernel has
    stopped them all, and a thread still running (milliseconds, more on a loaded machine)
    answers a request sent meanwhile."""
    process = broker.process
    assert process is not None
    process.send_signal(signal.SIGSTOP)
    poll(lambda: stopped(process.pid), 10)


def stopped(pid: int) -> bool:
    """Whether every thread of process ``pid`` is stopped (state T in /proc)."""
    states = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as stat:
                states.append(stat.read().rsplit(")", 1)[1].split()[0])
        except OSError:  # a thread that has just ended
            continue
    return bool(states) and all(state in "Tt" for state in states)


@pytest.fixture(params=["killed", "frozen"])
def end(request: pytest.FixtureRequest) -> Any:
    """What happens to the broker: killed, or frozen (it accepts, never answers)."""
    return kill if request.param == "killed" else freeze


def poll(condition: Any, timeout: float = 15) -> None:
    wait_for(condition, timeout, str(condition))


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    """The blocking producers and consumers a test makes, closed when it ends whatever
    happened (each within a few seconds; closing again is a no-op): a failed test leaves
    no loop thread or connection behind."""
    clients: list[Any] = []
    yield clients
    for client in clients:
        client.close(timeout=2)


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> Callable[[], threading.Event]:
    """``queued()`` (called once the test's first message is sent): an event set when
    aiokafka has queued the next message (its ``send`` returned the delivery future)."""
    import aiokafka

    def patch() -> threading.Event:
        event = threading.Event()
        original = aiokafka.AIOKafkaProducer.send

        async def send(self: Any, *args: Any, **kwargs: Any) -> Any:
            delivery = await original(self, *args, **kwargs)
            event.set()
            return delivery

        monkeypatch.setattr(aiokafka.AIOKafkaProducer, "send", send)
        return event

    return patch


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_a_consumer_stops_within_its_timeout_whatever_the_broker_does(own_broker, end, kind,
                                                                     logs, kafka_threads,
                                                                     closing):
    topic = create_topic(own_broker.servers, f"t-{uuid.uuid4().hex[:10]}", partitions=1)
    handled: list[Any] = []
    outcome: dict[str, Any] = {}

    async def produce() -> None:
        async with AsyncProducer(own_broker.servers, topic=topic) as producer:
            await producer.send("one")

    asyncio.run(produce())
    options = {"group_id": f"g-{uuid.uuid4().hex[:8]}", "request_timeout_ms": 30000,
               **FAST_GROUP}

    if kind == "async":
        async def main() -> None:
            consumer = AsyncConsumer(own_broker.servers, topic, **options)
            task = asyncio.create_task(consumer.run(handled.append))
            try:
                async with asyncio.timeout(30):
                    while not handled:
                        await asyncio.sleep(0.02)
                end(own_broker)
                began = time.monotonic()
                try:
                    await consumer.stop(timeout=3)
                except BaseException as exc:  # CancelledError included
                    outcome["raised"] = exc
                outcome["took"] = time.monotonic() - began
                await asyncio.wait({task}, timeout=BOUND)
                outcome["task_done"] = task.done()
            finally:
                await consumer.stop(timeout=2)  # a no-op once stopped
                task.cancel()
                await asyncio.wait({task}, timeout=BOUND)

        asyncio.run(main())
    else:
        consumer = Consumer(own_broker.servers, topic, **options)
        closing.append(consumer)
        runner = threading.Thread(target=lambda: consumer.run(handled.append), daemon=True)
        runner.start()
        poll(lambda: bool(handled), 30)
        end(own_broker)
        began = time.monotonic()
        try:
            consumer.stop(timeout=3)
        except BaseException as exc:
            outcome["raised"] = exc
        outcome["took"] = time.monotonic() - began
        runner.join(BOUND)
        outcome["task_done"] = not runner.is_alive()
        poll(lambda: not kafka_threads(), 5)

    assert "raised" not in outcome, outcome
    assert outcome["took"] < 3 + BOUND, outcome
    assert outcome["task_done"]
    assert not connections_to(own_broker.port)
    if end is kill:  # aiokafka's own stop fails: what was cut short is logged
        assert "connections were closed" in logs.text(), logs.text()


@pytest.mark.parametrize("kind", ["async", "sync"])
@pytest.mark.parametrize("pending", [False, True])
def test_a_producer_closes_within_its_timeout_whatever_the_broker_does(own_broker, end, kind,
                                                                       pending, logs, queued,
                                                                       kafka_threads, closing):
    topic = create_topic(own_broker.servers, f"t-{uuid.uuid4().hex[:10]}", partitions=1)
    outcome: dict[str, Any] = {}

    if kind == "async":
        async def main() -> None:
            producer = AsyncProducer(own_broker.servers, topic=topic, request_timeout_ms=30000)
            sending = None
            try:
                await producer.send("one")
                lost = queued()
                end(own_broker)
                if pending:  # queued, waiting for its acknowledgement
                    sending = asyncio.ensure_future(producer.send("lost", timeout=30))
                    async with asyncio.timeout(10):
                        while not lost.is_set() and not sending.done():
                            await asyncio.sleep(0.01)
                began = time.monotonic()
                try:
                    await producer.close(timeout=3)
                except BaseException as exc:
                    outcome["raised"] = exc
                outcome["took"] = time.monotonic() - began
                if sending is not None:
                    done, _ = await asyncio.wait({sending}, timeout=BOUND)
                    outcome["send"] = (sending.exception() or sending.result()) if done \
                        else "still waiting"
            finally:
                await producer.close(timeout=2)  # a no-op once closed
                if sending is not None:
                    sending.cancel()

        asyncio.run(main())
    else:
        producer = Producer(own_broker.servers, topic=topic, request_timeout_ms=30000)
        closing.append(producer)
        producer.send("one")
        lost = queued()
        end(own_broker)
        sender = None
        if pending:
            def send() -> None:
                try:
                    outcome["send"] = producer.send("lost", timeout=30)  # must not succeed
                except BaseException as exc:
                    outcome["send"] = exc
                finally:
                    lost.set()  # over before it was queued: the assertions say why

            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            assert lost.wait(10), "the message was not queued within 10 s"
        began = time.monotonic()
        try:
            producer.close(timeout=3)
        except BaseException as exc:
            outcome["raised"] = exc
        outcome["took"] = time.monotonic() - began
        if sender is not None:
            sender.join(BOUND)
            assert not sender.is_alive()
        poll(lambda: not kafka_threads(), 5)

    assert "raised" not in outcome, outcome
    assert outcome["took"] < 3 + BOUND, outcome
    if pending:
        assert type(outcome["send"]).__name__ == "ProduceError", outcome
    assert not connections_to(own_broker.port)


def test_fifty_tasks_first_sending_at_once_start_one_producer(broker, topic, monkeypatch):
    import aiokafka

    made: list[Any] = []
    original = aiokafka.AIOKafkaProducer.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(aiokafka.AIOKafkaProducer, "__init__", counting)
    port = int(broker.servers.rsplit(":", 1)[1])

    async def main() -> None:
        producer = AsyncProducer(broker.servers, topic=topic, enable_idempotence=False)
        try:
            sent = await asyncio.gather(*(producer.send({"n": i}) for i in range(50)))
            assert len(sent) == 50
        finally:
            await producer.close(timeout=5)

    asyncio.run(main())
    assert len(made) == 1
    poll(lambda: not connections_to(port), 5)


def test_sixteen_threads_first_sending_at_once_start_one_producer(broker, topic, monkeypatch,
                                                                  kafka_threads, closing):
    import aiokafka

    made: list[Any] = []
    original = aiokafka.AIOKafkaProducer.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(aiokafka.AIOKafkaProducer, "__init__", counting)
    port = int(broker.servers.rsplit(":", 1)[1])
    producer = Producer(broker.servers, topic=topic, enable_idempotence=False)
    closing.append(producer)
    gate = threading.Barrier(16)
    errors: list[BaseException] = []

    def send(i: int) -> None:
        try:
            gate.wait(30)
            producer.send({"n": i})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    producer.close()
    assert len(made) == 1
    poll(lambda: not connections_to(port), 5)
    poll(lambda: not kafka_threads(), 5)


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_a_consumer_stopped_while_connecting_to_a_frozen_broker_stops_in_time(own_broker, kind,
                                                                            kafka_threads,
                                                                            closing):
    freeze(own_broker)  # accepts connections, never answers
    outcome: dict[str, Any] = {}
    options = {"group_id": "g-frozen", "request_timeout_ms": 30000, **FAST_GROUP}

    if kind == "async":
        async def main() -> None:
            consumer = AsyncConsumer(own_broker.servers, "never", **options)
            task = asyncio.create_task(consumer.run(lambda message: None))
            try:
                async with asyncio.timeout(10):
                    while not connections_to(own_broker.port):
                        await asyncio.sleep(0.02)
                began = time.monotonic()
                try:
                    await consumer.stop(timeout=2)
                except BaseException as exc:
                    outcome["raised"] = exc
                outcome["took"] = time.monotonic() - began
                done, _ = await asyncio.wait({task}, timeout=BOUND)
                outcome["run"] = (task.exception() or "returned") if done else "still running"
            finally:
                await consumer.stop(timeout=2)  # a no-op once stopped
                task.cancel()
                await asyncio.wait({task}, timeout=BOUND)

        asyncio.run(main())
    else:
        consumer = Consumer(own_broker.servers, "never", **options)
        closing.append(consumer)

        def run() -> None:
            try:
                consumer.run(lambda message: None)
                outcome["run"] = "returned"
            except BaseException as exc:
                outcome["run"] = exc

        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        poll(lambda: bool(connections_to(own_broker.port)), 10)
        began = time.monotonic()
        try:
            consumer.stop(timeout=2)
        except BaseException as exc:
            outcome["raised"] = exc
        outcome["took"] = time.monotonic() - began
        runner.join(BOUND)
        poll(lambda: not kafka_threads(), 5)

    assert "raised" not in outcome, outcome
    assert outcome["took"] < 2 + BOUND, outcome
    assert outcome["run"] == "returned", outcome
    assert not connections_to(own_broker.port)


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_a_producer_closed_while_its_first_send_connects_fails_that_send(own_broker, kind,
                                                                         kafka_threads, closing):
    freeze(own_broker)
    outcome: dict[str, Any] = {}

    if kind == "async":
        async def main() -> None:
            producer = AsyncProducer(own_broker.servers, topic="never", request_timeout_ms=30000)
            sending = asyncio.ensure_future(producer.send("x", timeout=30))
            try:
                async with asyncio.timeout(10):
                    while not connections_to(own_broker.port):
                        await asyncio.sleep(0.02)
                began = time.monotonic()
                await producer.close(timeout=2)
                outcome["took"] = time.monotonic() - began
                done, _ = await asyncio.wait({sending}, timeout=BOUND)
                outcome["send"] = sending.exception() if done else "still waiting"
            finally:
                await producer.close(timeout=2)  # a no-op once closed
                sending.cancel()

        asyncio.run(main())
    else:
        producer = Producer(own_broker.servers, topic="never", request_timeout_ms=30000)
        closing.append(producer)

        def send() -> None:
            try:
                producer.send("x", timeout=30)
            except BaseException as exc:
                outcome["send"] = exc

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        poll(lambda: bool(connections_to(own_broker.port)), 10)
        began = time.monotonic()
        producer.close(timeout=2)
        outcome["took"] = time.monotonic() - began
        sender.join(BOUND)
        poll(lambda: not kafka_threads(), 5)

    assert outcome["took"] < 2 + BOUND, outcome
    assert type(outcome.get("send")).__name__ == "ProduceError", outcome
    assert "closed" in str(outcome["send"])
    assert not connections_to(own_broker.port)
