"""Consumers against a real Kafka-protocol broker (tansu): at least once, dead letters,
rebalances, a member killed mid-stream, the blocking consumer."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from consumer_worker import FAST_GROUP

from fastkit.message import AsyncConsumer, AsyncProducer, ConsumeError, Consumer
from fastkit.request_id import bind_request_id, get_request_id
from redis_server import closed_port


async def produce(servers: str, topic: str, values: list, **headers: str) -> None:
    async with AsyncProducer(servers, topic=topic) as producer:
        await asyncio.gather(*(producer.send(value, key=str(value), headers=headers or None)
                               for value in values))


async def mark_every_partition(servers: str, topic: str, partitions: int = 4) -> list[str]:
    """Send ``marker-<n>`` to partition n of ``topic`` for each of its ``partitions``: a
    consumer that has handled every marker has read each partition to its end."""
    from aiokafka import AIOKafkaProducer

    markers = [f"marker-{partition}" for partition in range(partitions)]
    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        for partition, marker in enumerate(markers):
            await producer.send_and_wait(topic, marker.encode(), partition=partition)
    finally:
        await producer.stop()
    return markers


def group() -> str:
    return f"g-{uuid.uuid4().hex[:8]}"


def consumer_of(broker, topic, name=None, **options) -> AsyncConsumer:
    return AsyncConsumer(broker.servers, topic, group_id=name or group(),
                         **{**FAST_GROUP, **options})


async def wait_until(done, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not done():
            await asyncio.sleep(0.02)


def recording(handled: Counter, partitions: set[int], delay: float):
    """A handler counting messages by key and noting the partitions it was given."""
    async def handler(message):
        await asyncio.sleep(delay)
        handled[message.key] += 1
        partitions.add(message.partition)
    return handler


async def run_until(consumer: AsyncConsumer, handler, done, timeout: float = 30) -> None:
    task = asyncio.create_task(consumer.run(handler))
    try:
        await wait_until(lambda: done() or task.done(), timeout)
    finally:
        await consumer.stop()
        await task


def test_a_handler_sees_every_message_with_its_request_id(broker, topic):
    seen = []

    async def handler(message):
        seen.append((message.json(), get_request_id()))

    async def main():
        with bind_request_id("req-7"):
            await produce(broker.servers, topic, [{"n": i} for i in range(20)])
        await run_until(consumer_of(broker, topic), handler, lambda: len(seen) >= 20)

    asyncio.run(main())
    assert sorted(v["n"] for v, _ in seen) == list(range(20))
    assert {rid for _, rid in seen} == {"req-7"}


def test_a_sync_handler_runs_in_a_worker_thread_with_the_request_id(broker, topic):
    seen = []
    loop_thread = []

    def handler(message):
        time.sleep(0.01)  # blocking is fine: the event loop (heartbeats) is elsewhere
        seen.append((message.text(), get_request_id(), threading.get_ident()))

    async def main():
        loop_thread.append(threading.get_ident())
        with bind_request_id("sync-req"):
            await produce(broker.servers, topic, ["a", "b", "c"])
        await run_until(consumer_of(broker, topic), handler, lambda: len(seen) >= 3)

    asyncio.run(main())
    assert sorted(text for text, _, _ in seen) == ["a", "b", "c"]
    assert {rid for _, rid, _ in seen} == {"sync-req"}
    assert loop_thread[0] not in {thread for _, _, thread in seen}


def test_iteration_commits_what_was_handled_and_stop_keeps_it(broker, topic):
    name = group()

    async def main():
        await produce(broker.servers, topic, [f"m{i}" for i in range(10)])
        first = []
        async with consumer_of(broker, topic, name) as consumer:
            async for message in consumer:
                first.append(message.text())
                if len(first) == 10:
                    break  # the tenth was not finished: it comes again
        await produce(broker.servers, topic, ["m10"])
        # The partitions are four: m10 may come before the unfinished one. A marker at the
        # end of each partition: once all are handled, every partition was read through.
        markers = await mark_every_partition(broker.servers, topic)
        again = []
        await run_until(consumer_of(broker, topic, name), lambda m: again.append(m.text()),
                        lambda: all(marker in again for marker in markers))
        return first, again, markers

    first, again, markers = asyncio.run(main())
    assert sorted(first) == sorted(f"m{i}" for i in range(10))
    # only the unfinished one, once more
    assert sorted(again) == sorted([first[-1], "m10", *markers])


def test_stop_lets_the_message_in_hand_finish_and_commits_it(broker, topic):
    name = group()
    handled = []

    async def main():
        await produce(broker.servers, topic, ["slow"])
        consumer = consumer_of(broker, topic, name)
        began = asyncio.Event()

        async def handler(message):
            began.set()
            await asyncio.sleep(0.5)
            handled.append(message.text())

        task = asyncio.create_task(consumer.run(handler))
        await asyncio.wait_for(began.wait(), 30)
        await consumer.stop()  # while the handler sleeps
        await task
        assert handled == ["slow"]  # it finished; stop did not cut it off
        await produce(broker.servers, topic, ["next"])
        later = []
        await run_until(consumer_of(broker, topic, name), lambda m: later.append(m.text()),
                        lambda: "next" in later)
        return later

    assert asyncio.run(main()) == ["next"]  # "slow" was committed: not delivered again


def test_a_failing_handler_retries_then_sends_to_the_dead_letter_topic(broker, topic, logs):
    tries = Counter()

    def handler(message):
        tries[message.text()] += 1
        if message.text() == "poison":
            raise ValueError("cannot handle poison")

    async def main():
        await produce(broker.servers, topic, ["ok1", "poison", "ok2"], source="test")
        consumer = consumer_of(broker, topic, retries=2, backoff=0.01)
        await run_until(consumer, handler, lambda: tries["ok1"] and tries["ok2"] and
                        tries["poison"] == 3)
        dead = []
        await run_until(consumer_of(broker, f"{topic}.dlq"), dead.append, lambda: dead)
        return dead

    (dead,) = asyncio.run(main())
    assert tries == Counter({"ok1": 1, "ok2": 1, "poison": 3})
    assert dead.text() == "poison" and dead.key == b"poison"
    assert dead.header("x-error") == b"ValueError: cannot handle poison"
    assert dead.header("x-error-type") == b"ValueError"
    assert dead.header("x-original-topic") == topic.encode()
    assert dead.header("source") == b"test"  # the original headers travel along
    assert int(dead.header("x-original-offset")) >= 0
    assert "try 1 of 3" in logs.text() and "sent to" in logs.text()
    assert "Traceback" in logs.text()


def test_two_consumers_of_a_group_share_four_partitions_and_lose_nothing(broker, topic):
    handled = Counter()
    by_consumer: list[set[int]] = [set(), set()]

    async def main():
        await produce(broker.servers, topic, [str(i) for i in range(1000)])
        name = group()
        consumers = [consumer_of(broker, topic, name) for _ in range(2)]

        tasks = [asyncio.create_task(c.run(recording(handled, by_consumer[i], 0.002)))
                 for i, c in enumerate(consumers)]
        await wait_until(lambda: len(handled) >= 1000, 60)
        for consumer in consumers:
            await consumer.stop()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert len(handled) == 1000  # every message at least once
    assert by_consumer[0] and by_consumer[1]  # both took partitions


def test_a_member_joining_mid_stream_gets_no_message_the_first_finished(broker, topic):
    """Partitions move with their handled offsets committed: nothing is handled twice."""
    handled = Counter()
    owners: dict[int, set[int]] = {0: set(), 1: set()}

    async def main():
        await produce(broker.servers, topic, [str(i) for i in range(400)])
        name = group()

        first, second = consumer_of(broker, topic, name), consumer_of(broker, topic, name)
        one = asyncio.create_task(first.run(recording(handled, owners[0], 0.005)))
        await wait_until(lambda: len(handled) >= 20)
        two = asyncio.create_task(second.run(recording(handled, owners[1], 0.005)))
        await wait_until(lambda: len(handled) >= 400, 60)
        await first.stop()
        await second.stop()
        await asyncio.gather(one, two)

    asyncio.run(main())
    assert len(handled) == 400
    assert owners[1], "the second member never got a partition"
    assert max(handled.values()) == 1, [k for k, n in handled.items() if n > 1]


def test_a_member_killed_mid_stream_loses_nothing(broker, topic, tmp_path: Path):
    """SIGKILL one member: its partitions move to the other, which handles what the dead
    one had not committed. Every message is handled at least once."""
    name = group()
    record = tmp_path / "killed.txt"
    worker = Path(__file__).with_name("consumer_worker.py")
    survivor_saw: Counter = Counter()
    survivor_partitions: set[int] = set()

    def killed_handled() -> set[bytes]:
        lines = record.read_text().splitlines() if record.exists() else []
        return {line.split()[2].encode() for line in lines if len(line.split()) == 3}

    async def main():
        await produce(broker.servers, topic, [str(i) for i in range(1000)])
        process = subprocess.Popen(
            [sys.executable, str(worker), broker.servers, topic, name, str(record),
             "--delay", "0.02"], env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        try:
            await wait_until(lambda: len(killed_handled()) >= 5)
            survivor = consumer_of(broker, topic, name)

            async def handler(message):
                survivor_saw[message.key] += 1
                survivor_partitions.add(message.partition)
                if len(survivor_partitions) < 4:
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(survivor.run(handler))
            await wait_until(lambda: survivor_saw)  # both members hold partitions now
            before = len(killed_handled())
            await wait_until(lambda: len(killed_handled()) > before)  # still working
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            await wait_until(lambda: len(killed_handled() | set(survivor_saw)) >= 1000, 60)
            await survivor.stop()
            await task
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)

    asyncio.run(main())
    everything = killed_handled() | set(survivor_saw)
    assert everything == {str(i).encode() for i in range(1000)}
    assert survivor_partitions == {0, 1, 2, 3}  # the dead member's partitions moved
    assert killed_handled() - set(survivor_saw)  # the dead one's committed work stood


def test_the_blocking_consumer_iterates_and_runs(broker, topic):
    name = group()
    asyncio.run(produce(broker.servers, topic, [f"s{i}" for i in range(6)]))
    seen = []
    with Consumer(broker.servers, topic, group_id=name, **FAST_GROUP) as consumer:
        for message in consumer:
            seen.append(message.text())
            if len(seen) == 6:
                break
    assert sorted(seen) == sorted(f"s{i}" for i in range(6))

    asyncio.run(produce(broker.servers, topic, ["s6", "s7"]))
    ran = []
    consumer = Consumer(broker.servers, topic, group_id=name, **FAST_GROUP)
    with bind_request_id("outer"):
        runner = threading.Thread(target=consumer.run,
                                  args=(lambda m: ran.append((m.text(), get_request_id())),))
        runner.start()
    deadline = time.monotonic() + 30
    while len(ran) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    consumer.stop()
    runner.join(10)
    assert not runner.is_alive()
    # s5 (not finished when the loop broke) comes again, then the two new ones.
    assert sorted(text for text, _ in ran) == sorted([seen[-1], "s6", "s7"])
    assert {rid for _, rid in ran} != {"outer"}  # each message binds its own request id
    assert consumer.group_id == name and "Consumer(" in repr(consumer)


def test_a_dead_letter_topic_that_cannot_be_written_stops_the_run(broker, topic):
    async def main():
        await produce(broker.servers, topic, ["poison"])
        consumer = consumer_of(broker, topic, retries=0, dead_letter_topic="bad topic name!",
                               request_timeout_ms=2000)

        def handler(message):
            raise RuntimeError("no")

        with pytest.raises(ConsumeError, match="could not be sent to the dead-letter topic"):
            await asyncio.wait_for(consumer.run(handler), 60)
        await consumer.stop()

    asyncio.run(main())


def test_a_broker_that_is_down_raises_naming_it():
    with closed_port() as port:  # held: nothing can listen there during the test
        servers = f"127.0.0.1:{port}"

        async def main():
            consumer = AsyncConsumer(servers, "t", group_id="g", request_timeout_ms=2000)
            await consumer.run(lambda m: None)

        with pytest.raises(ConsumeError, match=f"cannot reach Kafka at {servers}"):
            asyncio.run(main())


def test_bad_arguments_are_refused(broker):
    with pytest.raises(ValueError, match="group_id"):
        AsyncConsumer(broker.servers, "t", group_id="")
    with pytest.raises(ValueError, match="at least one topic"):
        AsyncConsumer(broker.servers, [], group_id="g")
    with pytest.raises(ValueError, match="retries -1"):
        AsyncConsumer(broker.servers, "t", group_id="g", retries=-1)
    with pytest.raises(ValueError, match="backoff 'x'"):
        AsyncConsumer(broker.servers, "t", group_id="g", backoff="x")
    with pytest.raises(ValueError, match="enable_auto_commit"):
        AsyncConsumer(broker.servers, "t", group_id="g", enable_auto_commit=True)
    with pytest.raises(ValueError, match="no Kafka servers"):
        Consumer([], "t", group_id="g")
