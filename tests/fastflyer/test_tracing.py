"""Traces of a FastFlyer app (``flyer_opentelemetry_enabled=1``): FastAPI's span of each
request continues the caller's ``traceparent`` and is named after the route template, with
the fast path on or off; the endpoint's log lines and the access line carry its trace and
span ids; the lifespan sets the SDK up and exports what is left at the stop; off, nothing
is set up. In-process tests use the ``spans`` fixture (tests/conftest.py); the last test
runs ``fastflyer run`` and ``fastflyer serve`` with the console exporter.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.telemetry import get_telemetry_data
from opentelemetry.trace import SpanKind
from pydantic import BaseModel
from starlette.middleware import Middleware
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send
from test_launch import FASTFLYER, env_for, generate_project, healthy_address, started
from test_routing import fastapi_handler_calls

from fastflyer import APIRouter, FlyerAPI
from fastflyer.settings import SettingsError, load_settings
from fastkit import tracing
from fastkit.logging import logger

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
ROUTE = "/flyer/items/{item_id}"


def items_router() -> APIRouter:
    router = APIRouter()

    @router.get("/items/{item_id}")
    async def item(item_id: int, q: str = "") -> dict[str, Any]:
        logger.info("looking up item {}", item_id)
        return {"code": 200, "message": "success", "data": {"id": item_id, "q": q}}

    return router


@pytest.fixture
def shop(build: Callable[..., FlyerAPI], tmp_path: Path) -> Callable[..., FlyerAPI]:
    """An app with one path-parameter route, ``GET /flyer/items/{item_id}``, whose endpoint
    logs a line; the access log in ``tmp_path/access.log``."""

    def _shop(**env: object) -> FlyerAPI:
        settings = {"opentelemetry_enabled": 1, "access_log": 1,
                    "access_logfile": tmp_path / "access.log", **env}
        app = build(app_path=None, **settings)
        app.include_app("shop", items_router())
        return app

    return _shop


def access_lines(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "access.log").read_text().splitlines()]


def server_spans(exporter: Any) -> list[Any]:
    return [span for span in exporter.get_finished_spans() if span.kind is SpanKind.SERVER]


# --- the request's span ---------------------------------------------------------------------

@pytest.mark.parametrize("fast_path", [1, 0], ids=["fast-path", "fastapi-handler"])
def test_a_request_continues_the_callers_trace_under_the_route_template(
        shop: Callable[..., FlyerAPI], spans: Any, fast_path: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = shop(fast_path=fast_path)
    calls = fastapi_handler_calls(monkeypatch)
    with TestClient(app) as client:
        answer = client.get("/flyer/items/7", params={"q": "x"},
                            headers={"traceparent": TRACEPARENT})
    assert answer.status_code == 200, answer.text
    assert len(calls) == (0 if fast_path else 1)  # the planned handler, or FastAPI's
    [span] = server_spans(spans)
    assert span.name == f"GET {ROUTE}"
    assert span.attributes["http.route"] == ROUTE
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["url.path"] == "/flyer/items/7"
    context = span.get_span_context()
    assert f"{context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and span.parent.is_remote
    assert f"{span.parent.span_id:016x}" == PARENT_ID


def test_a_request_without_traceparent_starts_a_trace(shop: Callable[..., FlyerAPI],
                                                      spans: Any) -> None:
    with TestClient(shop()) as client:
        assert client.get("/flyer/items/1").status_code == 200
        assert client.get("/flyer/items/2").status_code == 200
    first, second = server_spans(spans)
    assert first.parent is None and second.parent is None
    assert first.context.trace_id != second.context.trace_id
    assert first.name == second.name == f"GET {ROUTE}"


def test_an_unmatched_path_is_a_span_without_a_route(shop: Callable[..., FlyerAPI],
                                                     spans: Any) -> None:
    with TestClient(shop()) as client:
        assert client.get("/flyer/nowhere").status_code == 404
    [span] = server_spans(spans)
    assert span.name == "GET" and "http.route" not in span.attributes
    assert span.attributes["http.response.status_code"] == 404


def test_fastapi_operation_spans_are_off_unless_the_app_asks(
        shop: Callable[..., FlyerAPI], spans: Any) -> None:
    app = shop()
    assert app._telemetry["operation_spans"] is False
    with TestClient(app) as client:
        assert client.get("/flyer/items/1").status_code == 200
    assert [span.name for span in spans.get_finished_spans()] == [f"GET {ROUTE}"]
    spans.clear()

    asked = FlyerAPI(telemetry={"operation_spans": True})
    asked.include_app("shop", items_router())
    with TestClient(asked) as client:
        assert client.get("/flyer/items/1").status_code == 200
    names = [span.name for span in spans.get_finished_spans()]
    assert names[-1] == f"GET {ROUTE}"
    assert {"fastapi.dependencies", "fastapi.endpoint", "fastapi.serialization"} <= set(names)


class Order(BaseModel):
    qty: int


def orders_router() -> APIRouter:
    router = APIRouter()

    @router.post("/orders/{order_id}")
    async def order(order_id: int, order: Order, q: str = "") -> dict[str, Any]:
        return {"code": 200, "message": "success", "data": {"id": order_id, "qty": order.qty}}

    return router


class TelemetryCapture:
    """User middleware keeping what FastAPI's telemetry data holds once the route answered
    (read as a synchronous span processor would)."""

    def __init__(self, app: ASGIApp, captured: list[dict[str, Any]]) -> None:
        self.app = app
        self.captured = captured

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        data = get_telemetry_data()
        if scope["type"] == "http" and data is not None:
            self.captured.append({
                "request": data.request is not None and data.request.url.path,
                "body": data.body, "values": data.values, "errors": data.errors})


def test_the_fast_path_serves_traced_requests_with_fastapis_telemetry_data(
        spans: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # With operation spans off, a traced request is served by the planned handler, which
    # leaves FastAPI's telemetry data (and the span) as FastAPI's own handler does.
    requests = [("/flyer/orders/3?q=a", {"qty": 2}), ("/flyer/orders/3", {"qty": "many"}),
                ("/flyer/orders/x", {"qty": 2})]
    seen: dict[int, list[Any]] = {}
    calls = fastapi_handler_calls(monkeypatch)
    for fast_path in (1, 0):
        captured: list[dict[str, Any]] = []
        monkeypatch.setenv("flyer_fast_path", str(fast_path))
        app = FlyerAPI(telemetry={"operation_spans": False},
                       middleware=[Middleware(TelemetryCapture, captured=captured)],
                       settings=load_settings(opentelemetry_enabled=True, fast_path=fast_path,
                                              warn_unknown=False))
        app.include_app("shop", orders_router())
        spans.clear()
        calls.clear()
        with TestClient(app) as client:
            answers = [client.post(path, json=body) for path, body in requests]
        assert [answer.status_code for answer in answers] == [200, 422, 422]
        assert len(calls) == (0 if fast_path else 3)
        seen[fast_path] = [captured, [answer.json() for answer in answers],
                           [(span.name, dict(span.attributes))
                            for span in server_spans(spans)]]
    assert seen[1] == seen[0]
    captured = seen[1][0]
    assert captured[0] == {"request": "/flyer/orders/3", "body": {"qty": 2}, "errors": [],
                           "values": {"order_id": 3, "q": "a", "order": Order(qty=2)}}
    assert captured[1]["errors"][0]["loc"] == ("body", "qty")
    assert captured[2]["errors"][0]["loc"] == ("path", "order_id")


def test_operation_spans_send_traced_requests_to_fastapis_handler(
        spans: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    app = FlyerAPI(telemetry={"operation_spans": True},
                   settings=load_settings(opentelemetry_enabled=True, warn_unknown=False))
    app.include_app("shop", orders_router())
    calls = fastapi_handler_calls(monkeypatch)
    with TestClient(app) as client:
        assert client.post("/flyer/orders/3", json={"qty": 1}).status_code == 200
    assert len(calls) == 1
    assert "fastapi.endpoint" in [span.name for span in spans.get_finished_spans()]


# --- log lines and the access line ----------------------------------------------------------

@pytest.mark.parametrize("fast_path", [1, 0], ids=["fast-path", "fastapi-handler"])
def test_the_endpoints_log_lines_carry_the_spans_ids(
        shop: Callable[..., FlyerAPI], spans: Any, logs: Any, fast_path: int) -> None:
    with TestClient(shop(fast_path=fast_path)) as client:
        answer = client.get("/flyer/items/7", headers={"traceparent": TRACEPARENT,
                                                       "x-request-id": "req-7"})
    assert answer.status_code == 200
    [span] = server_spans(spans)
    [line] = [r for r in logs.records if r["message"] == "looking up item 7"]
    assert line["extra"]["request_id"] == "req-7"
    assert line["extra"]["trace_id"] == TRACE_ID
    assert line["extra"]["span_id"] == f"{span.context.span_id:016x}"


def test_the_access_line_carries_the_request_spans_ids(
        shop: Callable[..., FlyerAPI], spans: Any, tmp_path: Path) -> None:
    with TestClient(shop()) as client:
        assert client.get("/flyer/items/7", headers={"traceparent": TRACEPARENT}).status_code \
            == 200
    [span] = server_spans(spans)
    [line] = access_lines(tmp_path)
    assert line["path"] == "/flyer/items/7"
    assert line["trace_id"] == TRACE_ID
    assert line["span_id"] == f"{span.context.span_id:016x}"
    assert list(line).index("trace_id") == list(line).index("request_id") + 1


def test_a_liveness_probe_has_no_span_nor_ids(shop: Callable[..., FlyerAPI], spans: Any,
                                             tmp_path: Path) -> None:
    # Answered before FastAPI (and its telemetry): nothing to trace.
    with TestClient(shop()) as client:
        assert client.get("/health_check", headers={"traceparent": TRACEPARENT}) \
            .status_code == 200
    assert server_spans(spans) == []
    [line] = access_lines(tmp_path)
    assert "trace_id" not in line and "span_id" not in line


# --- start and stop ---------------------------------------------------------------------------

def test_the_lifespan_sets_tracing_up_first_and_turns_it_off_last(
        shop: Callable[..., FlyerAPI], spans: Any) -> None:
    tracing.disable()  # as in a worker before its lifespan starts
    app = shop()
    assert app.lifecycle.names[:2] == ["thread pool", "tracing"]
    with TestClient(app):
        assert tracing.enabled()
        with tracing.span("inside") as opened:
            assert opened is not None
    assert not tracing.enabled()  # the stop hook turned it off, after the flush
    assert [span.name for span in spans.get_finished_spans()] == ["inside"]


def test_the_stop_exports_what_is_left_within_its_bound(
        shop: Callable[..., FlyerAPI], spans: Any, logs: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # An export that never returns (a collector that never answers): the stop gives up
    # after its bound, says so, and the stop is still clean.
    import fastflyer.tracing

    flushed: list[float] = []
    release = threading.Event()

    def stuck(timeout: float) -> bool:
        flushed.append(timeout)
        release.wait(60)  # on the stop's daemon thread, until the test is over
        return True

    monkeypatch.setattr(fastflyer.tracing, "FLUSH_TIMEOUT", 0.2)
    monkeypatch.setattr(tracing, "flush", stuck)
    app = shop()
    try:
        began = time.monotonic()
        with TestClient(app):
            pass
        took = time.monotonic() - began
    finally:
        release.set()
    assert flushed == [0.2]
    assert took < 5
    assert app.lifecycle.stop_problems == []
    assert not tracing.enabled()
    assert any(r["level"] == "WARNING" and "not all exported within 0.2 s" in r["message"]
               for r in logs.records)


def test_tracing_off_adds_no_component_no_field_and_no_sdk(tmp_path: Path) -> None:
    # In a fresh process: OpenTelemetry's tracing SDK is not imported (redis's client
    # imports the metrics SDK itself), no provider is set, no line has trace fields,
    # FastAPI's telemetry is off.
    script = f"""
import json, sys
from opentelemetry import trace
from starlette.testclient import TestClient
from fastflyer import FlyerAPI
from fastkit import tracing
from fastkit.logging import logger

records = []
logger.add(lambda message: records.append(dict(message.record["extra"])), level="DEBUG")
app = FlyerAPI(app_path={str(Path(__file__).parent / "demo_project")!r})
with TestClient(app) as client:
    assert client.get("/flyer/demo", params={{"id": 1}},
                      headers={{"traceparent": {TRACEPARENT!r}}}).status_code == 200
    logger.info("a line")
print(json.dumps({{
    "sdk": sorted(name for name in sys.modules if name.startswith(
        ("opentelemetry.sdk.trace", "opentelemetry.exporter"))),
    "provider": type(trace.get_tracer_provider()).__name__,
    "enabled": tracing.enabled(), "components": app.lifecycle.names,
    "telemetry": app._telemetry["tracing"],
    "traced": [r for r in records if "trace_id" in r or "span_id" in r],
    "access": open({str(tmp_path / "access.log")!r}).read()}}))
"""
    env = env_for(tmp_path, flyer_access_log="1", flyer_access_logfile=str(tmp_path / "access.log"),
                  flyer_log_path=str(tmp_path / "logs"), OTEL_TRACES_EXPORTER="console")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["sdk"] == []
    assert found["provider"] == "ProxyTracerProvider"
    assert found["enabled"] is False and "tracing" not in found["components"]
    assert found["telemetry"] is False
    assert found["traced"] == []
    access = json.loads(found["access"])
    assert access["path"] == "/flyer/demo" and "trace_id" not in access


# --- settings ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "unknown"), [("zipkin", "zipkin"),
                                                ("console,jaeger", "jaeger")])
def test_an_unknown_exporter_stops_start_up_with_one_line_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, value: str, unknown: str) -> None:
    monkeypatch.setenv("flyer_opentelemetry_enabled", "1")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
    with pytest.raises(SettingsError) as caught:
        load_settings(warn_unknown=False)
    assert str(caught.value) == (f"OTEL_TRACES_EXPORTER={value!r}: {unknown} is not one of "
                                 "otlp, console, none")


def test_the_exporter_is_not_checked_while_tracing_is_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    assert load_settings(warn_unknown=False).opentelemetry_enabled is False


@pytest.mark.parametrize("exporter", ["otlp", "console", "none", "console,otlp", ""])
def test_the_exporters_the_sdk_is_set_up_with_pass(monkeypatch: pytest.MonkeyPatch,
                                                   exporter: str) -> None:
    monkeypatch.setenv("flyer_opentelemetry_enabled", "1")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", exporter)
    assert load_settings(warn_unknown=False).opentelemetry_enabled is True


def test_otlp_without_its_exporter_package_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http", None)
    monkeypatch.setenv("flyer_opentelemetry_enabled", "1")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    with pytest.raises(SettingsError) as caught:
        load_settings(warn_unknown=False)
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith("OTEL_TRACES_EXPORTER=otlp")
    assert "pip install 'fastflyer[otel]'" in line
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")  # needs no more than the SDK
    assert load_settings(warn_unknown=False).opentelemetry_enabled is True


# --- a real server ----------------------------------------------------------------------------

@pytest.fixture
def project(tmp_path: Path) -> Path:
    return generate_project(tmp_path)


@pytest.mark.parametrize("command", [["run"], ["serve", "--workers", "2"]],
                         ids=["run", "serve"])
def test_the_server_exports_the_callers_trace_and_stops_cleanly(
        tmp_path: Path, project: Path, command: list[str]) -> None:
    # serve: the SDK is set up in each worker after the fork (the master has none).
    log = tmp_path / "server.log"
    env = env_for(tmp_path, flyer_host="127.0.0.1", flyer_log_path=str(tmp_path / "logs"),
                  flyer_opentelemetry_enabled="1", flyer_shutdown_timeout="4",
                  OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="shop-traces",
                  OTEL_BSP_SCHEDULE_DELAY="60000")  # exported by the stop's flush
    with started([FASTFLYER, *command, "--port", "0"], project, env, log) as process:
        url = healthy_address(process, log)
        answer = httpx.get(f"{url}/flyer/items/1", timeout=10,
                           headers={"traceparent": TRACEPARENT})
        assert answer.status_code in (200, 404), answer.text  # an item, or none yet
        assert _console_spans(log.read_text()) == []  # not yet exported: batched
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        took = time.monotonic() - began
    output = log.read_text()
    assert process.returncode == 0, output
    assert "Traceback" not in output
    assert took < 4 + 5, output  # the shutdown budget and a margin
    spans = [json.loads(block) for block in _console_spans(output)]
    [span] = [s for s in spans if s["kind"] == "SpanKind.SERVER"]
    assert span["context"]["trace_id"] == f"0x{TRACE_ID}"
    assert span["parent_id"] == f"0x{PARENT_ID}"
    assert span["name"] == "GET /flyer/items/{item_id}"
    assert span["resource"]["attributes"]["service.name"] == "shop-traces"
    # The access line (on standard output here) has the span's ids too.
    [access] = [json.loads(line) for line in output.splitlines()
                if line.startswith('{"time"') and '"/flyer/items/1"' in line]
    assert access["trace_id"] == TRACE_ID
    assert f"0x{access['span_id']}" == span["context"]["span_id"]


def _console_spans(output: str) -> list[str]:
    """The JSON objects the console exporter printed (each spans lines, from ``{`` at the
    start of a line to the ``}`` that closes it there)."""
    blocks, current = [], None
    for line in output.splitlines():
        if current is None and line == "{":
            current = [line]
        elif current is not None:
            current.append(line)
            if line == "}":
                blocks.append("\n".join(current))
                current = None
    return blocks
