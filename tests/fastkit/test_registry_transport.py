"""fastkit.registry's HTTP transports against a real etcd and real HTTP servers: calls by
service name go to each live instance in turn, fail over through FastKit's retries, and
follow the registry as it changes."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from fastkit.etcd import EtcdClient
from fastkit.httpx import AsyncClient, Client
from fastkit.registry import (
    AsyncServiceTransport,
    Instance,
    ServiceDirectory,
    ServiceTransport,
)
from redis_server import closed_port
from waiting import wait_for


class Backend(ThreadingHTTPServer):
    """One instance of a service: answers ``status`` (200 unless a test changes it) with
    its name, the path and the ``Host`` header it got, and counts its hits."""

    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.port = int(self.server_address[1])
        self.status = 200
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,),
                                       daemon=True, name=f"test-backend-{name}")
        self.thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(5)

    def count(self, method: str = "GET") -> int:
        with self.lock:
            return self.hits[method]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Backend

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        backend = self.server
        with backend.lock:
            backend.hits[self.command] += 1
        payload = json.dumps({"name": backend.name, "path": self.path,
                              "host": self.headers["Host"], "body": body.decode()}).encode()
        self.send_response(backend.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _handle


@pytest.fixture
def backends() -> Iterator[tuple[Backend, Backend]]:
    a, b = Backend("a"), Backend("b")
    yield a, b
    for backend in (a, b):
        if backend.thread.is_alive():
            backend.stop()


def register(client: EtcdClient, namespace: str, backend: Backend,
             service: str = "orders") -> Instance:
    instance = Instance(service=service, host="127.0.0.1", port=backend.port,
                        namespace=namespace)
    client.put(instance.key, instance.to_json())
    return instance


class Caller:
    """One FastKit client calling ``http://orders``, sync (``Client`` around a
    ``ServiceTransport``) or async (``AsyncClient`` around an ``AsyncServiceTransport``, on
    an event loop of its own), called from the test's code."""

    def __init__(self, kind: str, directory: ServiceDirectory) -> None:
        self.kind = kind
        self.loop = asyncio.new_event_loop()
        self.sync = Client(transport=ServiceTransport(directory))
        self.async_ = AsyncClient(transport=AsyncServiceTransport(directory))

    def __call__(self, method: str = "GET", path: str = "/", **kwargs: Any) -> httpx.Response:
        url = f"http://orders{path}"
        if self.kind == "sync":
            return self.sync.request(method, url, **kwargs)
        return self.loop.run_until_complete(self.async_.request(method, url, **kwargs))

    def many(self, count: int, path: str = "/") -> list[str]:
        """The names of the backends that answered ``count`` GETs."""
        return [self("GET", path).json()["name"] for _ in range(count)]

    def close(self) -> None:
        self.sync.close()
        self.loop.run_until_complete(self.async_.aclose())
        self.loop.close()


@pytest.fixture(params=["sync", "async"])
def call(request: Any, directory: ServiceDirectory) -> Iterator[Caller]:
    caller = Caller(request.param, directory)
    yield caller
    caller.close()


def test_calls_go_round_robin_with_the_instance_as_host(
        call: Caller, backends: tuple[Backend, Backend], etcd_client: EtcdClient,
        namespace: str) -> None:
    a, b = backends
    register(etcd_client, namespace, a)
    register(etcd_client, namespace, b)
    names = call.many(10, "/flyer/v1/items?page=2&q=x")
    assert Counter(names) == {"a": 5, "b": 5}
    assert names[:2] in (["a", "b"], ["b", "a"]) and names[2:4] == names[:2]
    answer = call("GET", "/flyer/v1/items?page=2&q=x").json()
    assert answer["path"] == "/flyer/v1/items?page=2&q=x"  # the origin only changes
    backend = a if answer["name"] == "a" else b
    assert answer["host"] == f"127.0.0.1:{backend.port}"


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_refused_instance_fails_over_to_the_other_and_rests(
        kind: str, method: str, backends: tuple[Backend, Backend],
        etcd_client: EtcdClient, namespace: str, logs: Any) -> None:
    a, b = backends
    register(etcd_client, namespace, a)
    register(etcd_client, namespace, b)
    b.stop()  # still registered; its port refuses connections
    with ServiceDirectory(etcd_client, namespace, refresh=30) as directory:
        call = Caller(kind, directory)
        try:
            for number in range(6):
                response = call(method, "/", json={"n": number})
                assert response.status_code == 200
                answer = response.json()
                assert (answer["name"], answer["host"]) == ("a", f"127.0.0.1:{a.port}")
                assert json.loads(answer["body"]) == {"n": number}
        finally:
            call.close()
    assert a.count(method) == 6  # each call reached the live one once
    # The refused one was tried once, then passed over while it rests (refresh seconds).
    retries = logs.retries()
    assert len(retries) == 1 and "ConnectError" in retries[0]


def test_the_directory_builds_clients_calling_the_service(
        directory: ServiceDirectory, backends: tuple[Backend, Backend],
        etcd_client: EtcdClient, namespace: str) -> None:
    a, b = backends
    register(etcd_client, namespace, a)
    register(etcd_client, namespace, b)
    with directory.client("orders", stop_max_attempt_number=2, timeout=3) as client:
        assert client.retry_policy.stop_max_attempt_number == 2
        assert Counter(client.get("/x").json()["name"] for _ in range(4)) == {"a": 2, "b": 2}

    async def calls() -> Counter[str]:
        async with directory.async_client("orders") as client:
            return Counter([(await client.get("/x")).json()["name"] for _ in range(4)])

    assert asyncio.run(calls()) == {"a": 2, "b": 2}


def test_a_503_is_retried_on_the_other_instance(
        call: Caller, backends: tuple[Backend, Backend], etcd_client: EtcdClient,
        namespace: str) -> None:
    a, b = backends
    register(etcd_client, namespace, a)
    register(etcd_client, namespace, b)
    a.status = 503
    for _ in range(4):
        response = call("GET", "/")
        assert (response.status_code, response.json()["name"]) == (200, "b")
    assert b.count() == 4 and a.count() >= 1


def test_a_503_to_a_post_is_returned_as_it_came(
        call: Caller, backends: tuple[Backend, Backend], etcd_client: EtcdClient,
        namespace: str) -> None:
    a, _ = backends
    register(etcd_client, namespace, a)
    a.status = 503
    response = call("POST", "/", json={})
    assert (response.status_code, response.json()["name"]) == (503, "a")
    assert a.count("POST") == 1  # not idempotent: the default policy does not resend it


def test_registry_changes_reach_a_running_client_within_refresh(
        call: Caller, backends: tuple[Backend, Backend], etcd_client: EtcdClient,
        namespace: str, directory: ServiceDirectory) -> None:
    a, b = backends
    refresh = directory.refresh  # the directory the caller follows the registry with
    first = register(etcd_client, namespace, a)
    assert set(call.many(4)) == {"a"}
    register(etcd_client, namespace, b)
    wait_for(lambda: "b" in call.many(2), timeout=refresh + 5, what="the new instance used")
    etcd_client.delete(first.key)
    wait_for(lambda: call.many(4) == ["b"] * 4, timeout=refresh + 5,
             what="the deleted instance no longer used")


def test_no_live_instance_raises_connect_error_naming_the_service(
        call: Caller, namespace: str) -> None:
    with pytest.raises(httpx.ConnectError,
                       match=f"no live instance of service 'orders' in namespace '{namespace}'"):
        call("GET", "/")


def test_a_host_that_is_no_service_name_is_refused(directory: ServiceDirectory) -> None:
    with Client(transport=ServiceTransport(directory)) as client, \
            pytest.raises(httpx.UnsupportedProtocol, match="not a service name"):
        client.get("http://[::1]/")


def test_a_mixed_case_service_name_is_kept_by_the_directory_client(
        directory: ServiceDirectory, backends: tuple[Backend, Backend],
        etcd_client: EtcdClient, namespace: str) -> None:
    a, _ = backends
    register(etcd_client, namespace, a, service="Orders")
    with directory.client("Orders") as client:
        assert client.get("/").json()["name"] == "a"


def test_an_unreachable_registry_is_a_connect_error() -> None:
    with closed_port() as port, EtcdClient(f"http://127.0.0.1:{port}", timeout=1) as client, \
            ServiceDirectory(client, "ns", refresh=0.3) as directory, \
            Client(transport=ServiceTransport(directory)) as http, \
            pytest.raises(httpx.ConnectError, match="cannot look up service 'orders'"):
        http.get("http://orders/")


def test_the_directory_client_refuses_a_base_url(directory: ServiceDirectory) -> None:
    with pytest.raises(TypeError, match="base_url"):
        directory.client("orders", base_url="http://elsewhere")


def test_the_call_log_names_the_instance_that_answered_and_the_one_that_refused(
        call: Caller, backends: tuple[Backend, Backend], etcd_client: EtcdClient,
        namespace: str, logs: Any) -> None:
    a, b = backends
    register(etcd_client, namespace, a)
    register(etcd_client, namespace, b)
    b.stop()  # refused: the call goes on to the other instance
    names = call.many(4)
    assert names == ["a"] * 4
    lines = [json.loads(record["message"]) for record in logs.records
             if record["message"].startswith('{"direction": "out"')]
    assert len(lines) == 4
    assert {line["instance"] for line in lines} == {f"http://127.0.0.1:{a.port}"}
    assert all(line["url"] == "http://orders/" for line in lines)  # as the caller wrote it
    retried = [record["message"] for record in logs.records if "retrying" in
               record["message"].lower() or "retry" in record["message"].lower()]
    assert retried, "the refused attempt was retried"
