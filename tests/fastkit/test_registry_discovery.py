"""fastkit.registry discovery against a real etcd: listing a service's instances, watching
them change (through an etcd restart), following them on a thread, and closing."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from etcd_server import EtcdServer
from fastkit.etcd import EtcdClient, EtcdUnavailable
from fastkit.registry import Instance, ServiceDirectory
from redis_server import closed_port
from waiting import wait_for

REFRESH = 0.3  # the shared directory fixture's


@pytest.fixture
def client(etcd_client: EtcdClient) -> EtcdClient:
    """The client the shared ``directory`` fixture (tests/conftest.py: ``namespace``,
    refresh ``REFRESH``) reads through."""
    return etcd_client


def register(client: EtcdClient, namespace: str, service: str, port: int,
             host: str = "127.0.0.1") -> Instance:
    """Write an instance's record as the registration side does (without a lease)."""
    instance = Instance(service=service, host=host, port=port, namespace=namespace)
    client.put(instance.key, instance.to_json())
    return instance


def warnings_of(logs: Any, text: str) -> list[str]:
    return [r["message"] for r in logs.records
            if r["level"] == "WARNING" and text in r["message"]]


def collect(directory: ServiceDirectory, service: str,
            stop: threading.Event) -> tuple[list[list[Instance]], threading.Thread]:
    """Run ``directory.watch(service, stop=stop)`` on a thread; the lists it yields."""
    seen: list[list[Instance]] = []
    thread = threading.Thread(
        target=lambda: seen.extend(directory.watch(service, stop=stop)), daemon=True)
    thread.start()
    wait_for(lambda: seen, what="the watch's first list")
    return seen, thread


def test_instances_lists_what_is_registered_sorted_by_key(
        directory: ServiceDirectory, client: EtcdClient, namespace: str) -> None:
    second = register(client, namespace, "orders", 9002)
    first = register(client, namespace, "orders", 9001)
    register(client, namespace, "orders-v2", 9003)  # shares the text, not the prefix
    assert directory.instances("orders") == [first, second]
    assert directory.instances("orders")[0].address == "http://127.0.0.1:9001"


def test_an_unknown_service_has_no_instances(directory: ServiceDirectory) -> None:
    assert directory.instances("nobody") == []


async def test_ainstances_lists_the_same_without_blocking(
        directory: ServiceDirectory, client: EtcdClient, namespace: str) -> None:
    instance = register(client, namespace, "orders", 9001)
    assert await directory.ainstances("orders") == [instance]
    assert await directory.ainstances("nobody") == []


def test_a_bad_record_is_skipped_with_one_warning_naming_its_key(
        directory: ServiceDirectory, client: EtcdClient, namespace: str, logs: Any) -> None:
    good = register(client, namespace, "orders", 9001)
    bad_key = f"/{namespace}/orders/127.0.0.1:9002"
    client.put(bad_key, "not json")
    client.put(f"/{namespace}/orders/x", '{"host": "127.0.0.1", "port": 99999}')
    for _ in range(3):
        assert directory.instances("orders") == [good]
    assert len(warnings_of(logs, bad_key)) == 1
    assert len(warnings_of(logs, f"/{namespace}/orders/x")) == 1
    assert "not json" not in logs.text()  # the key is named, never the value
    client.put(bad_key, "[]")  # another bad value: news again, once
    for _ in range(2):
        assert directory.instances("orders") == [good]
    assert len(warnings_of(logs, bad_key)) == 2


def test_bad_names_and_refresh_are_refused(client: EtcdClient) -> None:
    with pytest.raises(ValueError, match="namespace"):
        ServiceDirectory(client, "a/b")
    for refresh in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="refresh"):
            ServiceDirectory(client, refresh=refresh)
    with pytest.raises(ValueError, match="service"):
        ServiceDirectory(client).instances("a/b")


def test_watch_yields_the_list_then_each_change(
        directory: ServiceDirectory, client: EtcdClient, namespace: str) -> None:
    stop = threading.Event()
    seen, thread = collect(directory, "orders", stop)
    assert seen == [[]]
    first = register(client, namespace, "orders", 9001)
    wait_for(lambda: seen[-1] == [first], what="the put")
    second = register(client, namespace, "orders", 9002)
    wait_for(lambda: seen[-1] == [first, second], what="the second put")
    client.delete(first.key)
    wait_for(lambda: seen[-1] == [second], what="the delete")
    register(client, namespace, "orders", 9002)  # the same record again: no new list
    register(client, namespace, "other", 9009)  # another service: no new list
    assert directory.instances("orders") == [second]
    stop.set()
    thread.join(REFRESH + 5)
    assert not thread.is_alive()
    assert seen == [[], [first], [first, second], [second]]


def test_watch_ends_within_refresh_once_stop_is_set(directory: ServiceDirectory) -> None:
    stop = threading.Event()
    _, thread = collect(directory, "orders", stop)
    started = time.monotonic()
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - started < REFRESH + 2


async def test_awatch_yields_the_list_then_each_change(
        directory: ServiceDirectory, client: EtcdClient, namespace: str) -> None:
    watch = directory.awatch("orders")
    assert await anext(watch) == []
    first = register(client, namespace, "orders", 9001)
    assert await asyncio.wait_for(anext(watch), 10) == [first]
    client.delete(first.key)
    assert await asyncio.wait_for(anext(watch), 10) == []
    await watch.aclose()


async def test_awatch_is_cancelled_at_once(directory: ServiceDirectory) -> None:
    slow = ServiceDirectory(directory.etcd, directory.namespace, refresh=30)
    seen: list[list[Instance]] = []

    async def follow() -> None:
        async for instances in slow.awatch("orders"):
            seen.append(instances)

    task = asyncio.create_task(follow())
    deadline = time.monotonic() + 10
    while not seen:  # the first list, then it waits up to 30 s for a change
        assert time.monotonic() < deadline, "no first list within 10 s"
        await asyncio.sleep(0.02)  # polling, to the deadline above
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1


def test_watch_survives_an_etcd_restart(logs: Any) -> None:
    private = EtcdServer()
    private.start()
    try:
        with EtcdClient(private.url, timeout=1) as client, \
                ServiceDirectory(client, "ns", refresh=REFRESH) as directory:
            first = register(client, "ns", "orders", 9001)
            stop = threading.Event()
            seen, thread = collect(directory, "orders", stop)
            assert seen == [[first]]
            private.stop()
            wait_for(lambda: warnings_of(logs, "cannot read service 'orders'"),
                     what="the outage's warning")
            private.start()
            wait_for(lambda: any(r["level"] == "INFO" and "answers again" in r["message"]
                                 for r in logs.records), what="etcd back")
            second = register(client, "ns", "orders", 9002)
            wait_for(lambda: seen[-1] == [first, second], what="the change after the restart")
            stop.set()
            thread.join(REFRESH + 5)
            assert seen == [[first], [first, second]]  # the outage kept the last list
            assert len(warnings_of(logs, "cannot read service 'orders'")) == 1
    finally:
        private.close()


def test_follow_keeps_the_list_in_memory_and_close_stops_its_thread(
        client: EtcdClient, namespace: str) -> None:
    directory = ServiceDirectory(client, namespace, refresh=REFRESH)
    first = register(client, namespace, "orders", 9001)
    followed = directory.follow("orders")
    assert directory.follow("orders") is followed  # one per directory and service
    assert followed.current() == [first]
    name = f"fastkit-registry:{namespace}/orders"
    assert [t for t in threading.enumerate() if t.name == name]
    second = register(client, namespace, "orders", 9002)
    wait_for(lambda: followed.current() == [first, second], timeout=REFRESH + 5,
             what="the follower's update")
    client.delete(first.key)
    wait_for(lambda: followed.current() == [second], timeout=REFRESH + 5,
             what="the follower's update")
    started = time.monotonic()
    directory.close()
    assert time.monotonic() - started < REFRESH + 1.5
    assert not [t for t in threading.enumerate() if t.name == name]
    assert not followed.running
    with pytest.raises(RuntimeError, match="closed"):
        directory.follow("orders")
    assert directory.instances("orders") == [second]  # reading still works


def test_close_is_prompt_even_with_a_long_refresh(client: EtcdClient, namespace: str) -> None:
    directory = ServiceDirectory(client, namespace, refresh=30)
    directory.follow("orders")
    directory.follow("payments")
    started = time.monotonic()
    directory.close()
    assert time.monotonic() - started < 2.5  # a wait lasts one slice, not the refresh
    assert not [t for t in threading.enumerate()
                if t.name.startswith(f"fastkit-registry:{namespace}/")]


async def test_afollow_reads_on_a_worker_thread(
        directory: ServiceDirectory, client: EtcdClient, namespace: str) -> None:
    instance = register(client, namespace, "orders", 9001)
    followed = await directory.afollow("orders")
    assert followed.current() == [instance]
    assert await directory.afollow("orders") is followed


def test_follow_raises_when_the_first_read_fails_and_starts_nothing() -> None:
    with closed_port() as port, EtcdClient(f"http://127.0.0.1:{port}", timeout=1) as client:
        directory = ServiceDirectory(client, "ns", refresh=REFRESH)
        with pytest.raises(EtcdUnavailable, match="connection refused"):
            directory.follow("orders")
        assert not [t for t in threading.enumerate()
                    if t.name == "fastkit-registry:ns/orders"]
        with pytest.raises(EtcdUnavailable):  # the next use tries again
            directory.follow("orders")
        with pytest.raises(EtcdUnavailable):
            next(directory.watch("orders"))
        directory.close()
