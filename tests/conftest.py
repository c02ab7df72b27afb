"""Shared fixtures: a real HTTP server on 127.0.0.1 and captured log records.

The server is the stdlib's threading HTTP server with a scriptable handler, so
tests can make it fail in the ways real servers fail (statuses, Retry-After,
dropped connections, slow answers) and count what reached it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from loguru import logger

from fastkit.httpx import set_testing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: Counter[str] = Counter()
        self.bodies: dict[str, list[bytes]] = {}
        self.headers: dict[str, list[dict[str, str]]] = {}
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # dropped connections are deliberate here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None,
              raw: bytes | None = None) -> None:
        body = raw if raw is not None else json.dumps({} if payload is None else payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if "Content-Type" not in (headers or {}):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        parts = [p for p in split.path.split("/") if p]
        body = self._body()
        key = query.get("key", "")
        with self.server.lock:
            if key:
                self.server.hits[key] += 1
                self.server.bodies.setdefault(key, []).append(body)
                self.server.headers.setdefault(key, []).append(
                    {k.lower(): v for k, v in self.headers.items()})
            hit = self.server.hits[key] if key else 1
        fail = int(query.get("fail", "0"))
        failing = hit <= fail
        kind = parts[0] if parts else ""

        if kind in ("get", "post", "put", "patch", "delete", "anything", "echo"):
            try:
                as_json = json.loads(body) if body else None
            except ValueError:
                as_json = None
            self._send(200, {
                "method": self.command,
                "url": f"http://{self.headers['Host']}{self.path}",
                "args": query,
                "headers": dict(self.headers.items()),
                "data": body.decode("utf-8", "replace"),
                "json": as_json,
                "hit": hit,
            })
        elif kind == "status":
            self._send(int(parts[1]), {"status": int(parts[1])})
        elif kind == "flaky":  # ?fail=N&status=503[&retry_after=..]: N failures, then 200
            headers = {}
            if failing and "retry_after" in query:
                headers["Retry-After"] = query["retry_after"]
            if failing:
                self._send(int(query.get("status", "503")), {"hit": hit, "error": "flaky"},
                           headers)
            else:
                self._send(200, {"hit": hit})
        elif kind == "drop":  # ?fail=N: close the connection without answering N times
            if failing:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self._send(200, {"hit": hit})
        elif kind == "slow":  # ?fail=N&delay=S: answer late N times
            if failing:
                time.sleep(float(query.get("delay", "1")))
            self._send(200, {"hit": hit})
        elif kind == "cookie":  # ?name=N&value=V: sets a cookie
            self._send(200, {}, {"Set-Cookie": f"{query['name']}={query['value']}; Path=/"})
        elif kind == "redirect":
            self._send(302, {}, {"Location": "/get?redirected=1"})
        elif kind == "hits":
            self._send(200, {"hits": self.server.hits[parts[1]]})
        elif kind == "stream":  # chunked body
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(int(query.get("chunks", "3"))):
                chunk = f"chunk{i}\n".encode()
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._send(404, {"error": "not found"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class LocalServer:
    """Handle on the running server for tests."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}"

    def hits(self, key: str) -> int:
        with self._server.lock:
            return self._server.hits[key]

    def headers(self, key: str) -> list[dict[str, str]]:
        """The request headers of each hit on ``key`` (names lower-cased)."""
        with self._server.lock:
            return list(self._server.headers.get(key, []))

    def bodies(self, key: str) -> list[bytes]:
        with self._server.lock:
            return list(self._server.bodies.get(key, []))


@pytest.fixture(scope="session")
def server() -> Iterator[LocalServer]:
    httpd = _Server()
    thread = threading.Thread(target=httpd.serve_forever, name="test-http-server", daemon=True)
    thread.start()
    try:
        yield LocalServer(httpd)
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def key() -> str:
    """A fresh key, so each test counts its own hits on the server."""
    return uuid.uuid4().hex


@pytest.fixture(scope="module")
def refused_port() -> Iterator[int]:
    """A port bound and held for the module, never listening: connections are refused."""
    from redis_server import closed_port

    with closed_port() as port:
        yield port


@pytest.fixture(autouse=True)
def _instant_retries() -> Iterator[None]:
    """Retry waits are instant in tests (computed, checked and logged all the same)."""
    set_testing(True)
    yield
    set_testing(False)


class Logs:
    """Loguru records captured during a test."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def sink(self, message: Any) -> None:
        record = message.record
        self.records.append({
            "level": record["level"].name,
            "message": record["message"],
            "extra": dict(record["extra"]),
            "text": str(message),
        })

    def calls(self) -> list[dict[str, Any]]:
        """The JSON payloads of outgoing-call lines."""
        out = []
        for r in self.records:
            if r["message"].startswith('{"direction": "out"'):
                payload = json.loads(r["message"])
                payload["_level"] = r["level"]
                out.append(payload)
        return out

    def retries(self) -> list[str]:
        return [r["message"] for r in self.records if r["message"].startswith("retrying ")]

    def text(self) -> str:
        return "".join(r["text"] for r in self.records)


@pytest.fixture
def logs() -> Iterator[Logs]:
    captured = Logs()
    handler_id = logger.add(captured.sink, level="DEBUG", format="{extra[request_id]} {message}")
    yield captured
    logger.remove(handler_id)


_span_store: dict[str, Any] = {}


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Traces on for one test: OpenTelemetry's SDK is the global tracer provider (one for
    the session, a ``SimpleSpanProcessor`` into an ``InMemorySpanExporter``: each span is
    there as it ends) and FastKit's tracing is on; yields the exporter, emptied.

    ``fastkit.tracing.configure()`` (an app's lifespan with flyer_opentelemetry_enabled=1)
    keeps that provider, as it keeps any a program set. OpenTelemetry sets its global
    provider once per process and has no public way back, so the test swaps the API's
    global in and out (as OpenTelemetry's own test utilities do): after the test no
    provider is set again, and the FastAPI apps of other tests are not instrumented."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.util._once import Once

    from fastkit import tracing

    if not _span_store:
        exporter = InMemorySpanExporter()
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        _span_store.update(exporter=exporter, provider=provider)
    exporter, provider = _span_store["exporter"], _span_store["provider"]
    done = Once()
    done.do_once(lambda: None)  # set: a set_tracer_provider() during the test is refused
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", done)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    monkeypatch.setattr(tracing, "_owned", None)  # what an earlier configure() set up
    exporter.clear()
    tracing.enable()
    yield exporter
    tracing.disable()
    exporter.clear()


@pytest.fixture
def kit_spans() -> Iterator[Any]:
    """FastKit's tracing on for one test, with an SDK provider of the test's own (the
    global one is left alone): ``fastkit.tracing.enable(provider)``, a
    ``SimpleSpanProcessor`` into an ``InMemorySpanExporter``; yields the exporter, whose
    ``get_finished_spans()`` holds each span as it ends."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from fastkit import tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    yield exporter
    tracing.disable()
    provider.shutdown()


@pytest.fixture
def metrics_on() -> Iterator[None]:
    """FastKit's metrics recorded (in ``prometheus_client``'s default registry) for one
    test; read them with ``REGISTRY.get_sample_value`` and compare deltas."""
    from fastkit import metrics

    metrics.enable()
    yield
    metrics.disable()


@pytest.fixture(scope="session")
def broker() -> Iterator[Any]:
    """One real Kafka-protocol broker (tansu) on a free loopback port, for the session."""
    from kafka_broker import KafkaBroker

    started = KafkaBroker()
    started.start()
    yield started
    started.stop()


@pytest.fixture(scope="session")
def etcd() -> Iterator[Any]:
    """One real etcd (Debian's etcd-server) on reserved loopback ports, for the session;
    tests use keys of their own (``key``). Tests that stop etcd or turn its
    authentication on start their own ``EtcdServer``."""
    from etcd_server import EtcdServer

    started = EtcdServer()
    started.start()
    yield started
    started.close()


@pytest.fixture(scope="session")
def rsyslog() -> Iterator[Any]:
    """One real rsyslogd (Debian's rsyslog) receiving syslog on UDP and TCP on reserved
    loopback ports, for the session; tests tell their messages apart by APP-NAME. Tests
    that stop the collector start their own ``RsyslogServer``."""
    from rsyslog_server import RsyslogServer

    started = RsyslogServer()
    started.start()
    yield started
    started.close()


@pytest.fixture
def namespace() -> str:
    """A fresh service registry namespace on the session's etcd."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def etcd_client(etcd: Any) -> Iterator[Any]:
    """A FastKit client of the session's etcd."""
    from fastkit.etcd import EtcdClient

    with EtcdClient(etcd.url, timeout=3) as made:
        yield made


@pytest.fixture
def directory(etcd_client: Any, namespace: str) -> Iterator[Any]:
    """The registry directory of ``namespace``, following changes within 0.3 s."""
    from fastkit.registry import ServiceDirectory

    with ServiceDirectory(etcd_client, namespace, refresh=0.3) as made:
        yield made


@pytest.fixture
def topic(broker: Any) -> str:
    """A fresh topic with four partitions."""
    from kafka_broker import create_topic

    return create_topic(broker.servers, f"t-{uuid.uuid4().hex[:10]}", partitions=4)


@pytest.fixture
def kafka_threads() -> Callable[[], list[threading.Thread]]:
    """The Kafka loop threads started during this test and still alive (those left by
    another test do not count)."""
    before = set(threading.enumerate())

    def started() -> list[threading.Thread]:
        return [thread for thread in threading.enumerate()
                if thread not in before and thread.name.startswith("fastkit-kafka")]

    return started
