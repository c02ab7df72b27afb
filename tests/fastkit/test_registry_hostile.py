"""Discovery under the inputs a careless or hostile user (or a broken registrant) sends:
records that are no instance, odd service names, many instances, instances coming and
going while a client calls, cancellation, URLs with ports, userinfo, queries and
unicode, and a client used after its directory is closed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_registry_transport import Backend

from fastkit.etcd import EtcdClient
from fastkit.httpx import Client
from fastkit.registry import Instance, ServiceDirectory, ServiceTransport


@pytest.fixture
def backend() -> Iterator[Backend]:
    made = Backend("a")
    yield made
    made.stop()


def register(client: EtcdClient, namespace: str, service: str, port: int) -> Instance:
    instance = Instance(service=service, host="127.0.0.1", port=port, namespace=namespace)
    client.put(instance.key, instance.to_json())
    return instance


BAD_RECORDS: dict[str, Any] = {
    "not-json": "{not json",
    "array": [1, 2],
    "null": None,
    "number": 5,
    "negative-port": {"host": "127.0.0.1", "port": -5},
    "zero-port": {"host": "127.0.0.1", "port": 0},
    "big-port": {"host": "127.0.0.1", "port": 70000},
    "float-port": {"host": "127.0.0.1", "port": 80.5},
    "bool-port": {"host": "127.0.0.1", "port": True},
    "unicode-digit-port": {"host": "127.0.0.1", "port": "٨٠"},
    "no-host": {"port": 80},
    "slash-host": {"host": "a/b", "port": 80},
    "host-with-port": {"host": "evil.example:80", "port": 80},
    "newline-host": {"host": "a\nb", "port": 80},
    "tab-host": {"host": "a\tb", "port": 80},
    "metadata-list": {"host": "127.0.0.1", "port": 80, "metadata": [1]},
    "ftp-scheme": {"host": "127.0.0.1", "port": 80, "scheme": "ftp"},
    "url-scheme": {"host": "127.0.0.1", "port": 80, "scheme": "http://x"},
    "other-service": {"host": "127.0.0.1", "port": 80, "service": "other"},
}


def test_records_that_are_no_instance_are_skipped_with_a_warning(
        etcd_client: EtcdClient, namespace: str, directory: ServiceDirectory,
        backend: Backend, logs: Any) -> None:
    prefix = f"/{namespace}/svc/"
    for name, record in BAD_RECORDS.items():
        etcd_client.put(f"{prefix}{name}:1", record if isinstance(record, str)
                        else json.dumps(record))
    etcd_client.put(f"{prefix}sub/dir:1", json.dumps({"host": "127.0.0.1", "port": 80}))
    httpx.post(f"{etcd_client.endpoints[0]}/v3/kv/put", json={
        "key": base64.b64encode(f"{prefix}binary:1".encode()).decode(),
        "value": base64.b64encode(b'{"host": "\xff", "port": 80}').decode()},
        timeout=5).raise_for_status()
    etcd_client.put(f"{prefix}port-string:1",
                    json.dumps({"host": "127.0.0.1", "port": str(backend.port)}))
    etcd_client.put(f"{prefix}upper-scheme:1",
                    json.dumps({"host": "127.0.0.1", "port": 81, "scheme": "HTTP"}))
    found = directory.instances("svc")
    assert [(i.host, i.port, i.scheme) for i in found] == [
        ("127.0.0.1", backend.port, "http"), ("127.0.0.1", 81, "http")]
    warned = " ".join(r["message"] for r in logs.records if r["level"] == "WARNING")
    for name in [*BAD_RECORDS, "sub/dir", "binary"]:
        assert f"'{prefix}{name}:1'" in warned, name
    # Every call goes to the one good instance, never a bad record.
    etcd_client.delete(f"{prefix}upper-scheme:1")
    with directory.client("svc") as client:
        for _ in range(5):
            assert client.get("/x", retry=False).status_code == 200


def test_instance_refuses_what_no_url_can_hold() -> None:
    for kwargs in [{"port": True}, {"host": "evil.example:80"}, {"host": "a\nb"},
                   {"scheme": "ftp"}, {"scheme": "http://x"}]:
        with pytest.raises(ValueError, match=r"port|host|scheme"):
            Instance(**{"service": "svc", "host": "127.0.0.1", "port": 80, **kwargs})
    assert Instance("svc", "::1", 80).address == "http://[::1]:80"
    assert Instance("svc", "127.0.0.1", 80, scheme="HTTPS").address == "https://127.0.0.1:80"


@pytest.mark.parametrize("service", ["Orders", "orders.v2", "a-b_c", "_x", "-x"])
def test_odd_service_names_are_called(etcd_client: EtcdClient, namespace: str,
                                      directory: ServiceDirectory, backend: Backend,
                                      service: str) -> None:
    register(etcd_client, namespace, service, backend.port)
    with directory.client(service) as client:
        assert client.get("/x", retry=False).json()["path"] == "/x"


def test_the_url_keeps_path_and_query_and_loses_port_and_origin(
        etcd_client: EtcdClient, namespace: str, directory: ServiceDirectory,
        backend: Backend) -> None:
    register(etcd_client, namespace, "echo", backend.port)
    with Client(transport=ServiceTransport(directory)) as client:
        answer = client.get("http://user:pw@echo:99/ünï/a%2Fb?q=名前&x=%2F&x=2",
                            retry=False).json()
    assert answer["path"] == "/%C3%BCn%C3%AF/a%2Fb?q=%E5%90%8D%E5%89%8D&x=%2F&x=2"
    assert answer["host"] == f"127.0.0.1:{backend.port}"  # no userinfo, not the URL's port


def test_two_hundred_instances_take_turns(etcd_client: EtcdClient, namespace: str,
                                          directory: ServiceDirectory) -> None:
    for port in range(20000, 20200):
        register(etcd_client, namespace, "many", port)
    assert len(directory.instances("many")) == 200
    followed = directory.follow("many")
    assert len(followed.current()) == 200


def test_instances_coming_and_going_while_clients_call(
        etcd_client: EtcdClient, namespace: str, directory: ServiceDirectory) -> None:
    backends = [Backend(str(index)) for index in range(3)]
    stop = threading.Event()

    def churn() -> None:
        writer = EtcdClient(etcd_client.endpoints, timeout=3)
        always = backends[0]
        register(writer, namespace, "churn", always.port)
        while not stop.is_set():
            instance = Instance("churn", "127.0.0.1", random.choice(backends[1:]).port,
                                namespace=namespace)
            if random.random() < 0.5:
                writer.put(instance.key, instance.to_json())
            else:
                writer.delete(instance.key)

    churner = threading.Thread(target=churn, daemon=True)
    register(etcd_client, namespace, "churn", backends[0].port)
    churner.start()
    errors: list[BaseException] = []
    try:
        with directory.client("churn") as client:
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                try:
                    assert client.get("/x").status_code == 200
                except httpx.ConnectError as exc:  # documented: a removed instance's race
                    errors.append(exc)

        async def calls() -> None:
            async with directory.async_client("churn") as client:
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline:
                    answers = await asyncio.gather(*[client.get("/x") for _ in range(10)],
                                                   return_exceptions=True)
                    for answer in answers:
                        if isinstance(answer, BaseException):
                            assert isinstance(answer, httpx.ConnectError), answer
                # Cancelled mid-call: nothing breaks for the calls that follow.
                for _ in range(20):
                    task = asyncio.ensure_future(client.get("/x"))
                    await asyncio.sleep(random.random() * 0.005)
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                assert (await client.get("/x")).status_code == 200

        asyncio.run(calls())
    finally:
        stop.set()
        churner.join(10)
        for each in backends:
            each.stop()
    assert len(errors) < 5


def test_a_client_after_close_raises_runtime_error_and_no_thread_is_left(
        etcd_client: EtcdClient, namespace: str, backend: Backend) -> None:
    register(etcd_client, namespace, "late", backend.port)
    directory = ServiceDirectory(etcd_client, namespace, refresh=0.3)
    client = directory.client("late")
    assert client.get("/x").status_code == 200
    directory.close()
    assert not [t.name for t in threading.enumerate()
                if t.name.startswith(f"fastkit-registry:{namespace}/")]
    with pytest.raises(RuntimeError, match="closed"):
        client.get("/x")
    client.close()
