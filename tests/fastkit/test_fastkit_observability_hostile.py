"""FastKit's metrics and traces against a careless or hostile caller, with real servers (the
local HTTP server, the Kafka broker, Redis-free schedulers):

- credentials in a client URL (``user:password@``, a token as the user name, secret query
  values) reach no metric label, span attribute, span event, log line or error message,
  whichever client makes the call;
- a ``traceparent`` the caller put on a call or a Kafka message that holds no trace context
  (garbage, all zeros, an unknown version, bytes that are not text) is replaced by the
  span's, so the next hop continues the call's trace; malformed trace context in consumed
  messages (bytes that are not UTF-8, two traceparents, junk tracestate and baggage) starts
  a new trace and the handler runs;
- an exception with secrets in its message, or whose ``str()`` itself raises, in a job or a
  Kafka handler: the span's event and status are masked, the exception is the one the code
  raised (never one of the instrumentation's), and the consumer keeps going;
- labels filled from the caller's data (hosts called, job ids, topics) stop growing at the
  cardinality limit (``_OTHER`` past it); a pool's label from a mistyped database URL holds
  no part of its password;
- a log format naming ``{extra[trace_id]}``/``{extra[span_id]}`` writes every line, tracing
  on or off, inside a span or not.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.trace import StatusCode
from prometheus_client.parser import text_string_to_metric_families

from fastkit import metrics
from fastkit.executor import Scheduler
from fastkit.executor import _instrument as job_instrument
from fastkit.httpx import AsyncClient, Client, RetryTransport, aiorequests, requests
from fastkit.httpx import _telemetry as client_telemetry
from fastkit.logging import logger
from fastkit.message import AsyncConsumer, AsyncProducer
from fastkit.message import _instrument as kafka_instrument
from tracing_helpers import span_text
from waiting import until

SECRETS = ("SECRETPW", "SECRETUSERTOKEN", "SECRETQUERY", "SECRETACCESS", "SECRETREFUSED")
FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 300}


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port of 127.0.0.1 bound but not listening: a connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def call(entry: str, url: str, **kwargs: Any) -> httpx.Response:
    """``GET url`` through FastKit's client ``entry`` (the async ones on a loop of their own)."""
    if entry == "requests":
        return requests.get(url, retry=False, **kwargs)
    if entry == "Client":
        with Client() as client:
            return client.get(url, retry=False, **kwargs)
    if entry == "httpx+RetryTransport":
        with httpx.Client(transport=RetryTransport()) as plain:
            return plain.get(url, extensions={"retry": False}, **kwargs)

    async def go() -> httpx.Response:
        if entry == "aiorequests":
            return await aiorequests.get(url, retry=False, **kwargs)
        async with AsyncClient() as client:
            return await client.get(url, retry=False, **kwargs)

    return asyncio.run(go())


ENTRIES = ["requests", "aiorequests", "Client", "AsyncClient", "httpx+RetryTransport"]


# --- credentials in a client URL -------------------------------------------------------------

@pytest.mark.parametrize("entry", ENTRIES)
def test_credentials_in_a_client_url_reach_no_label_span_log_or_error(
        entry: str, server: Any, key: str, closed_port: int, metrics_on: None,
        kit_spans: Any, logs: Any) -> None:
    port = server.url.rsplit(":", 1)[1]
    answered = [f"http://alice:SECRETPW@127.0.0.1:{port}/get?key={key}&token=SECRETQUERY&q=1",
                f"http://SECRETUSERTOKEN@127.0.0.1:{port}/get?key={key}&access_token=SECRETACCESS"]
    for url in answered:
        assert call(entry, url).status_code == 200
    with pytest.raises(httpx.ConnectError) as refused:
        call(entry, f"http://bob:SECRETREFUSED@127.0.0.1:{closed_port}/x?password=SECRETPW")
    assert server.hits(key) == 2

    spans = kit_spans.get_finished_spans()
    assert len(spans) == 3
    assert [span.attributes["url.full"] for span in spans] == [
        f"http://alice:***@127.0.0.1:{port}/get?key=***&token=***&q=1",  # ("key": a secret's)
        f"http://***@127.0.0.1:{port}/get?key=***&access_token=***",
        f"http://bob:***@127.0.0.1:{closed_port}/x?password=***"]
    assert spans[2].status.status_code == StatusCode.ERROR and spans[2].events
    exposition = metrics.exposition()[0].decode()
    assert f'host="127.0.0.1:{port}"' in exposition
    assert f'host="127.0.0.1:{closed_port}",method="GET",status="error"' in exposition
    error = "".join(traceback.format_exception_only(refused.value))  # message and notes
    assert "bob:***@" in error  # the call's note names it, masked
    written = {"metrics": exposition, "spans": " ".join(map(span_text, spans)),
               "logs": logs.text(), "error": error}
    for secret in SECRETS:
        assert {where for where, text in written.items() if secret in text} == set(), secret


# --- a caller's traceparent that holds no trace context ----------------------------------------

BROKEN_TRACEPARENTS = {
    "garbage": "garbage",
    "all-zero-trace-id": "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    "version-ff": "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "overlong": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" + "-x" * 400,
    "not-utf-8": b"\xff\xfe\xc3\x28",
}


@pytest.mark.parametrize("entry", ["requests", "AsyncClient"])
@pytest.mark.parametrize("given", BROKEN_TRACEPARENTS.values(), ids=BROKEN_TRACEPARENTS)
def test_a_callers_traceparent_without_a_context_is_replaced_by_the_calls(
        entry: str, given: str | bytes, server: Any, key: str, kit_spans: Any) -> None:
    answer = call(entry, f"{server.url}/echo?key={key}", headers=[("traceparent", given)])
    assert answer.status_code == 200
    (span,) = kit_spans.get_finished_spans()
    assert span.parent is None  # nothing to continue: a trace of its own
    (sent,) = server.headers(key)
    context = span.get_span_context()
    assert sent["traceparent"].startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")


# --- failures with secrets, and exceptions whose str() raises ----------------------------------

class Unprintable(Exception):
    """An exception whose ``str()`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("str() of this exception fails")


FAILURES: dict[str, Callable[[], Exception]] = {
    "password": lambda: ValueError("cannot connect to db with password=hunter2"),
    "bearer": lambda: PermissionError("upstream said no to Authorization: Bearer abc.def.ghi"),
    "unprintable": Unprintable,
}


def assert_failure_recorded(span: Any, kind: str) -> None:
    """``span`` failed with the exception ``FAILURES[kind]`` makes, its secrets masked."""
    type_name = type(FAILURES[kind]()).__qualname__
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == type_name
    (event,) = span.events
    assert event.attributes["exception.type"] == type_name
    text = span_text(span)
    for secret in ("hunter2", "abc.def.ghi"):
        assert secret not in text
    if kind == "unprintable":
        assert event.attributes["exception.message"] == "<exception str() failed>"
        assert "str() of this exception fails" not in span.status.description
    else:
        assert "***" in event.attributes["exception.message"]


async def stop_scheduler(scheduler: Scheduler) -> None:
    if scheduler.scheduler_type == "asyncio":
        await scheduler.aclose(2)
    else:
        scheduler.shutdown(timeout=2)


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("kind", ["background", "asyncio"])
async def test_a_failing_job_records_its_own_exception_masked(kind: str, failure: str,
                                                             kit_spans: Any) -> None:
    job, logged = f"job-{uuid.uuid4().hex[:10]}", []

    def body() -> None:
        raise FAILURES[failure]()

    if kind == "background":
        def function() -> None:
            body()
    else:
        async def function() -> None:  # type: ignore[misc]
            body()

    handler = logger.add(lambda message: logged.append(message.record["message"]),
                         level="ERROR")
    scheduler = Scheduler("hostile", kind)  # type: ignore[arg-type]
    scheduler.add_job(function, "interval", seconds=3600, id=job)
    scheduler.start()
    try:
        scheduler.run_job(job)
        await until(lambda: any(s.name == f"job {job}" for s in kit_spans.get_finished_spans())
                    and logged, what="the job's span and failure line")
    finally:
        await stop_scheduler(scheduler)
        logger.remove(handler)
    (span,) = [s for s in kit_spans.get_finished_spans() if s.name == f"job {job}"]
    assert_failure_recorded(span, failure)
    type_name = type(FAILURES[failure]()).__qualname__
    assert any(type_name in line for line in logged), logged  # the job's own exception
    assert not any("str() of this exception fails" in line for line in logged)
    assert not any("hunter2" in line or "abc.def.ghi" in line for line in logged)


async def consume_until(broker: Any, topic: str, handler: Any, done: Callable[[], object],
                        **options: Any) -> None:
    """Run a consumer of ``topic`` in a fresh group with ``handler`` until ``done()``;
    fails if ``run()`` ends first (it raised)."""
    consumer = AsyncConsumer(broker.servers, topic, group_id=f"g-{uuid.uuid4().hex[:8]}",
                             **{**FAST_GROUP, **options})
    running = asyncio.create_task(consumer.run(handler))
    try:
        await until(lambda: done() or running.done(), timeout=30, what="the messages handled")
    finally:
        await consumer.stop()
        await running  # raises what run() raised


def handler_of(kind: str, body: Callable[[Any], None]) -> Callable[[Any], Any]:
    if kind == "sync":
        return body

    async def handler(message: Any) -> None:
        body(message)

    return handler


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_failing_kafka_handler_is_recorded_masked_and_consumption_goes_on(
        kind: str, failure: str, broker: Any, topic: str, kit_spans: Any) -> None:
    seen: list[bytes] = []

    def body(message: Any) -> None:
        seen.append(message.value)
        if message.value == b"poison":
            raise FAILURES[failure]()

    async with AsyncProducer(broker.servers, topic=topic) as producer:
        await producer.send("poison", key="same")
        await producer.send("fine", key="same")  # same partition: after the poison
    dead: list[Any] = []
    await consume_until(broker, topic, handler_of(kind, body), lambda: b"fine" in seen,
                        retries=0)
    await consume_until(broker, f"{topic}.dlq", handler_of("async", dead.append),
                        lambda: dead)
    processed = [s for s in kit_spans.get_finished_spans() if s.name == f"process {topic}"]
    (poisoned,) = [s for s in processed if s.status.status_code == StatusCode.ERROR]
    assert_failure_recorded(poisoned, failure)
    assert len(processed) == 2  # and the next message was handled
    header = dead[0].header("x-error").decode()
    assert header.startswith(type(FAILURES[failure]()).__qualname__ + ": ")
    assert "hunter2" not in header and "abc.def.ghi" not in header


VALID = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
MALFORMED_HEADERS = {
    "not-utf-8": [("traceparent", b"\xff\xfe\xc3\x28")],
    "all-zero": [("traceparent", b"00-00000000000000000000000000000000-00f067aa0ba902b7-01")],
    "two-traceparents": [("traceparent", VALID), ("TraceParent", b"\x80garbage")],
    "junk-state-and-baggage": [("traceparent", b"garbage"), ("tracestate", b"\xff=\xfe,,=="),
                               ("baggage", b"k=%zz;\xff," + b"a=b," * 300)],
}


@pytest.mark.parametrize("headers", MALFORMED_HEADERS.values(), ids=MALFORMED_HEADERS)
async def test_malformed_trace_context_in_a_message_starts_a_new_trace(
        headers: list[tuple[str, bytes]], broker: Any, topic: str, kit_spans: Any) -> None:
    from aiokafka import AIOKafkaProducer

    plain = AIOKafkaProducer(bootstrap_servers=broker.servers)  # the headers as they are
    await plain.start()
    try:
        await plain.send_and_wait(topic, b'"hostile"', key=b"k", headers=headers)
    finally:
        await plain.stop()
    seen: list[Any] = []
    await consume_until(broker, topic, seen.append, lambda: seen, retries=0)
    (span,) = [s for s in kit_spans.get_finished_spans() if s.name == f"process {topic}"]
    assert span.status.status_code == StatusCode.UNSET  # handled
    assert span.parent is None  # a trace of its own
    assert span.context.trace_id not in (0, 0x4bf92f3577b34da6a3ce929d0e0e4736)


async def test_a_send_replaces_a_traceparent_that_holds_no_context(
        broker: Any, topic: str, kit_spans: Any) -> None:
    async with AsyncProducer(broker.servers, topic=topic) as producer:
        await producer.send("x", headers=[("traceparent", b"\xff garbage"), ("source", b"t")])
    seen: list[Any] = []
    await consume_until(broker, topic, seen.append, lambda: seen, retries=0)
    (send,) = [s for s in kit_spans.get_finished_spans() if s.name == f"send {topic}"]
    (process,) = [s for s in kit_spans.get_finished_spans() if s.name == f"process {topic}"]
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert [name for name, _ in seen[0].headers].count("traceparent") == 1
    assert seen[0].header("source") == b"t"


# --- labels filled from the caller's data stay bounded --------------------------------------

def samples(name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample ``name`` of this process's exposition, by its labels."""
    text = metrics.exposition()[0].decode()
    return {tuple(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name == name}


def grown(before: dict[Any, float], after: dict[Any, float]) -> dict[Any, float]:
    return {labels: value - before.get(labels, 0.0) for labels, value in after.items()
            if value != before.get(labels, 0.0)}


def test_the_limit_passes_exactly_its_first_values_under_contention() -> None:
    limit = metrics.CardinalityLimit(50)
    barrier = threading.Barrier(8)
    passed: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        barrier.wait(10)
        for i in range(100):
            value = limit(f"v{n}-{i}")
            if value != metrics.OVERFLOW:
                with lock:
                    passed.append(value)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(passed) == len(set(passed)) == 50
    assert all(limit(value) == value for value in passed)  # seen values stay themselves
    assert limit("new") == metrics.OVERFLOW


def test_client_hosts_past_the_limit_are_one_series(monkeypatch: pytest.MonkeyPatch,
                                                    closed_port: int, metrics_on: None) -> None:
    monkeypatch.setattr(client_telemetry, "_hosts", metrics.CardinalityLimit(2))
    monkeypatch.setattr(client_telemetry, "_series", {})
    before = samples("http_client_requests_total")
    hosts = [f"127.0.0.{n}:{closed_port}" for n in range(1, 6)]  # refused: no answer needed
    for host in hosts:
        with pytest.raises(httpx.ConnectError):
            requests.get(f"http://{host}/", retry=False)
    changed = grown(before, samples("http_client_requests_total"))
    assert changed == {
        (("host", hosts[0]), ("method", "GET"), ("status", "error")): 1.0,
        (("host", hosts[1]), ("method", "GET"), ("status", "error")): 1.0,
        (("host", "_OTHER"), ("method", "GET"), ("status", "error")): 3.0}


async def test_job_ids_past_the_limit_are_one_series(monkeypatch: pytest.MonkeyPatch,
                                                     metrics_on: None) -> None:
    monkeypatch.setattr(job_instrument, "_jobs", metrics.CardinalityLimit(2))
    before = samples("scheduler_job_runs_total")
    ran: list[str] = []
    scheduler = Scheduler("bounded", "asyncio")
    jobs = [f"order-{uuid.uuid4().hex[:8]}" for _ in range(4)]  # a job per order: unbounded
    for job in jobs:
        async def run(job: str = job) -> None:
            ran.append(job)
        scheduler.add_job(run, "interval", seconds=3600, id=job)
    scheduler.start()
    try:
        for job in jobs:
            scheduler.run_job(job)
        await until(lambda: len(ran) == 4 and len(grown(
            before, samples("scheduler_job_runs_total"))) == 3, what="the runs counted")
    finally:
        await scheduler.aclose(2)
    assert grown(before, samples("scheduler_job_runs_total")) == {
        (("job", jobs[0]), ("result", "success")): 1.0,
        (("job", jobs[1]), ("result", "success")): 1.0,
        (("job", "_OTHER"), ("result", "success")): 2.0}


async def test_topics_past_the_limit_are_one_series(monkeypatch: pytest.MonkeyPatch,
                                                    broker: Any, metrics_on: None) -> None:
    from kafka_broker import create_topic

    monkeypatch.setattr(kafka_instrument, "_topics", metrics.CardinalityLimit(1))
    topics = [await asyncio.to_thread(create_topic, broker.servers,
                                      f"t-{uuid.uuid4().hex[:10]}", 1) for _ in range(3)]
    before = samples("kafka_producer_messages_total")
    async with AsyncProducer(broker.servers) as producer:
        for topic in topics:
            await producer.send("x", topic=topic)
    assert grown(before, samples("kafka_producer_messages_total")) == {
        (("result", "success"), ("topic", topics[0])): 1.0,
        (("result", "success"), ("topic", "_OTHER")): 2.0}


# --- a log format naming the trace ids ----------------------------------------------------------

def test_a_log_format_naming_the_trace_ids_writes_every_line(tmp_path: Path) -> None:
    code = """
import json
from opentelemetry.sdk.trace import TracerProvider
from fastkit import tracing
from fastkit.logging import get_logger

log = get_logger("custom", log_path="logs", console_log_level="info", log_format=(
    "{level} | {extra[request_id]} | {extra[trace_id]:>32} {extra[span_id]!s} | {message}"))
log.info("tracing off")
tracing.enable(TracerProvider())
log.info("outside a span")
with tracing.span("work"):
    log.info("inside a span")
    print(json.dumps(tracing.current_ids()))
"""
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("flyer_")}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    trace_id, span_id = json.loads(done.stdout.splitlines()[-1])
    assert "Logging error" not in done.stderr and "KeyError" not in done.stderr, done.stderr
    lines = (tmp_path / "logs" / "custom.log").read_text().splitlines()
    assert lines == ["INFO | - | - - | tracing off",
                     "INFO | - | - - | outside a span",
                     f"INFO | - | {trace_id} {span_id} | inside a span"]
    assert "INFO | - | - - | tracing off" in done.stderr  # the console too


# --- a pool's label from a mistyped URL -----------------------------------------------------------

@pytest.mark.parametrize(("url", "label"), [
    ("mysql+pymysql://u:se@cret@127.0.0.1:3306/test", "127.0.0.1:3306/test"),  # unescaped @
    ("mysql+pymysql://u:p%40ss@127.0.0.1:3306/test", "127.0.0.1:3306/test"),
    ("sqlite:////tmp/app.db?mode=ro&uri=true&password=nope", "/tmp/app.db"),
])
def test_a_pools_label_holds_no_part_of_a_password(url: str, label: str) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from fastkit.database._metrics import watch_engine

    engine = create_engine(url)  # nothing connects until a checkout
    try:
        usage = watch_engine(engine, make_url(url), {})
    finally:
        engine.dispose()
    assert usage.name == label
