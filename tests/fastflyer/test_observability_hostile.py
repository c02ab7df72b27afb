"""A FastFlyer app's metrics and traces against a hostile client or a careless operator:

- malformed trace context on a request (garbage, all zeros, version ff, overlong, two
  traceparents, bytes that are not UTF-8 in traceparent, tracestate or baggage) is served
  (a real uvicorn server, raw requests) and starts a trace of its own;
- secret query values never reach the request's span (FastAPI copies ``url.query`` as it
  came), and an endpoint's exception never reaches FastAPI's OpenTelemetry logs unmasked;
- a scrape with an ``Accept`` prometheus-client cannot read is served, ``HEAD`` and ``POST``
  of the metrics path answer as routing does;
- a ``PROMETHEUS_MULTIPROC_DIR`` that cannot be used stops ``fastflyer run``/``serve`` (and
  the app's build) with one line, a missing one is made; a metrics path longer than the
  server reads is refused;
- bad ``OTEL_*`` variables (propagators, sampler, its ratio, exporters, batching, endpoint)
  stop start-up with one line naming the variable, and a collector that refuses
  connections, or ``OTEL_SDK_DISABLED=true``, leaves start and stop bounded.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from test_every_setting import served
from test_launch import FASTFLYER, env_for, generate_project, healthy_address, started

from fastflyer import APIRouter, FlyerAPI
from fastflyer.settings import SettingsError, load_settings
from tracing_helpers import span_text

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
VALID = f"00-{TRACE_ID}-00f067aa0ba902b7-01".encode()


def shop_router() -> APIRouter:
    """``GET /items/{item_id}`` (sync), ``GET /async-items/{item_id}``, and two endpoints
    failing with secrets in their message, sync and async."""
    router = APIRouter()

    @router.get("/items/{item_id}")
    def item(item_id: int, q: str = "") -> dict[str, Any]:
        return {"code": 200, "message": "success", "data": {"id": item_id}}

    @router.get("/async-items/{item_id}")
    async def async_item(item_id: int, q: str = "") -> dict[str, Any]:
        return {"code": 200, "message": "success", "data": {"id": item_id}}

    @router.get("/fail")
    def fail() -> None:
        raise RuntimeError("db refused password=hunter2, Authorization: Bearer abc.def.ghi")

    @router.get("/async-fail")
    async def async_fail() -> None:
        raise RuntimeError("db refused password=hunter2, Authorization: Bearer abc.def.ghi")

    return router


@pytest.fixture
def shop(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., FlyerAPI]:
    """An app of :func:`shop_router` under ``/flyer``, tracing on (with the ``spans``
    fixture), its access log in ``tmp_path/access.log``; keywords are ``flyer_*``
    variables, ``telemetry`` FastAPI's."""

    def _shop(telemetry: dict[str, Any] | None = None, **env: object) -> FlyerAPI:
        settings = {"opentelemetry_enabled": 1, "access_log": 1,
                    "access_logfile": tmp_path / "access.log", **env}
        for name, value in settings.items():
            monkeypatch.setenv(f"flyer_{name}", str(value))
        app = FlyerAPI(app_path=None, **({"telemetry": telemetry} if telemetry else {}))
        app.include_app("shop", shop_router())
        return app

    return _shop


def server_spans(exporter: Any) -> list[Any]:
    return [span for span in exporter.get_finished_spans() if span.kind is SpanKind.SERVER]


def raw_request(address: tuple[str, int], method: bytes, target: bytes,
                headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """Send one request with ``headers`` exactly as given (any bytes); its status and the
    raw answer."""
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(method + b" " + target + b" HTTP/1.1\r\nHost: shop\r\n" + head
                     + b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


# --- malformed trace context on a request -----------------------------------------------------

MALFORMED = {
    "garbage": [(b"traceparent", b"garbage")],
    "all-zero-trace-id": [(b"traceparent", b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01")],
    "version-ff": [(b"traceparent", b"ff" + VALID[2:])],
    "overlong": [(b"traceparent", VALID + b"-" + b"x" * 6000)],
    "two-traceparents": [(b"traceparent", VALID), (b"traceparent", VALID.replace(b"4b", b"5c"))],
    "not-utf-8-traceparent": [(b"traceparent", b"\xff\xfe\xc3\x28")],
    "not-utf-8-state-and-baggage": [(b"traceparent", b"00-\xff" + VALID[4:]),
                                    (b"tracestate", b"\xff=\xfe,,=="),
                                    (b"baggage", b"k=\xff;%zz," + b"a=b," * 300)],
}


@pytest.mark.parametrize("path", ["/flyer/items/7", "/flyer/async-items/7"],
                         ids=["sync", "async"])
@pytest.mark.parametrize("headers", MALFORMED.values(), ids=MALFORMED)
def test_malformed_trace_context_is_served_and_starts_a_trace(
        headers: list[tuple[bytes, bytes]], path: str, shop: Callable[..., FlyerAPI],
        spans: Any, tmp_path: Path) -> None:
    with served(shop(), lifespan="on") as address:
        status, answer = raw_request(address, b"GET", path.encode(), headers)
    assert status == 200, answer
    (span,) = server_spans(spans)
    if headers[0][1] == VALID:  # OpenTelemetry's propagator reads the first of several
        assert span.parent is not None and f"{span.parent.trace_id:032x}" == TRACE_ID
    else:
        assert span.parent is None  # nothing to continue: a trace of its own
        assert f"{span.context.trace_id:032x}" not in (TRACE_ID, "0" * 32)
    (line,) = [json.loads(text) for text in (tmp_path / "access.log").read_text().splitlines()]
    assert line["status"] == 200 and line["trace_id"] == f"{span.context.trace_id:032x}"


# --- secrets in the request's span and in FastAPI's logs --------------------------------------

@pytest.mark.parametrize("path", ["/flyer/items/7", "/flyer/async-items/7"],
                         ids=["sync", "async"])
@pytest.mark.parametrize("fast_path", [1, 0], ids=["fast-path", "fastapi-handler"])
def test_secret_query_values_are_masked_in_the_requests_span(
        path: str, fast_path: int, shop: Callable[..., FlyerAPI], spans: Any) -> None:
    query = "token=SECRETQ1&pass%77ord=SECRETQ2&q=1&sig=SECRETQ3&X-Amz-Signature=SECRETQ4"
    with TestClient(shop(fast_path=fast_path)) as client:
        assert client.get(f"{path}?{query}").status_code == 200
    (span,) = server_spans(spans)
    assert span.attributes["url.query"] == \
        "token=***&password=***&q=1&sig=***&X-Amz-Signature=***"  # FastAPI decodes it
    assert "SECRETQ" not in span_text(span)


@pytest.fixture
def otel_logs() -> Iterator[Any]:
    """An SDK logger provider of the test's own into an in-memory exporter; yields
    ``(provider, exporter)``."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.mark.parametrize("path", ["/flyer/fail", "/flyer/async-fail"], ids=["sync", "async"])
def test_an_endpoints_exception_reaches_no_otel_log_and_no_span_unmasked(
        path: str, shop: Callable[..., FlyerAPI], spans: Any, otel_logs: Any) -> None:
    provider, exporter = otel_logs
    # A logger provider FastAPI would record with (the program's, or its own from
    # FASTAPI_OTEL_AUTO_CONFIGURE): FastFlyer turns FastAPI's logs off.
    with TestClient(shop(telemetry={"logger_provider": provider}),
                    raise_server_exceptions=False) as client:
        answer = client.get(path)
    assert answer.status_code == 500 and "hunter2" not in answer.text
    assert exporter.get_finished_logs() == ()
    (span,) = server_spans(spans)
    assert span.attributes["error.type"] == "RuntimeError"
    assert "hunter2" not in span_text(span) and "abc.def.ghi" not in span_text(span)

    # The app's own telemetry keys win (documented): asked for, FastAPI's logs are there.
    with TestClient(shop(telemetry={"logger_provider": provider, "logs": True}),
                    raise_server_exceptions=False) as client:
        assert client.get(path).status_code == 500
    assert [record.log_record.body for record in exporter.get_finished_logs()] == [
        "Unhandled exception in FastAPI request"]


# --- /metrics against odd scrapes ----------------------------------------------------------------

@pytest.mark.parametrize("accept", [
    b"application/openmetrics-text; version=abc",
    b"text/plain; version=1.0.x",
    b"application/openmetrics-text; version=1.a.0, text/plain",
    b"application/openmetrics-text; version=\xff\xfe",
], ids=["version-abc", "text-version-x", "list", "not-utf-8"])
def test_a_scrape_whose_accept_cannot_be_read_gets_the_text_format(
        accept: bytes, shop: Callable[..., FlyerAPI]) -> None:
    with served(shop(opentelemetry_enabled=0), lifespan="on") as address:
        status, answer = raw_request(address, b"GET", b"/metrics", [(b"Accept", accept)])
    assert status == 200, answer
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: text/plain; version=0.0.4; charset=utf-8" in head.lower()
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert "http_server_requests" in names


def test_head_and_post_of_the_metrics_path(shop: Callable[..., FlyerAPI]) -> None:
    with TestClient(shop(opentelemetry_enabled=0)) as client:
        head = client.head("/metrics")
        post = client.post("/metrics", content=b"x")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"].startswith("text/plain")
    assert post.status_code == 405
    assert post.json() == {"code": 405, "message": "Method Not Allowed"}
    assert set(post.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "OPTIONS"}


# --- the multiprocess directory and the metrics path ------------------------------------------

@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_project(tmp_path_factory.mktemp("observability"))


def stop(process: subprocess.Popen[bytes], log: Path, within: float) -> float:
    """SIGTERM ``process``; the seconds it took to exit with status 0 (at most ``within``)."""
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(within) == 0, log.read_text()
    return time.monotonic() - began


@pytest.mark.parametrize("command", ["run", "serve"])
@pytest.mark.parametrize("where", ["a-file", "a-file/below"])
def test_a_multiproc_directory_that_cannot_be_one_stops_the_server_in_one_line(
        command: str, where: str, tmp_path: Path, project: Path) -> None:
    (tmp_path / "a-file").write_text("")
    directory = tmp_path / where
    env = env_for(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(directory))
    done = subprocess.run([FASTFLYER, command, "--host", "127.0.0.1", "--port", "0"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"PROMETHEUS_MULTIPROC_DIR='{directory}' is not allowed: "
                                  "a directory this process can create or write ("), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr + done.stdout


def test_a_multiproc_directory_that_cannot_be_one_stops_the_build(
        build: Callable[..., FlyerAPI], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "a-file"))
    with pytest.raises(SettingsError, match=r"^PROMETHEUS_MULTIPROC_DIR='.*/a-file' is not "
                                            r"allowed: a directory this process can create "
                                            r"or write \(File exists\)$"):
        build(None)


def test_a_missing_multiproc_directory_is_made_and_run_serves(tmp_path: Path,
                                                              project: Path) -> None:
    directory = tmp_path / "metrics" / "here"
    log = tmp_path / "run.log"
    env = env_for(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(directory))
    with started([FASTFLYER, "run", "--host", "127.0.0.1", "--port", "0"], project, env,
                 log) as process:
        url = healthy_address(process, log)
        assert httpx.get(f"{url}/flyer/no-such-page", timeout=10).status_code == 404
        scraped = httpx.get(f"{url}/metrics", timeout=10)
        stop(process, log, 30)
    assert scraped.status_code == 200
    assert 'http_server_requests_total{method="GET",route="",status="404"} 1.0' in scraped.text
    assert any(directory.glob("counter_*.db"))
    assert "Traceback" not in log.read_text()


def test_a_metrics_path_longer_than_the_server_reads_is_refused(
        build: Callable[..., FlyerAPI]) -> None:
    with pytest.raises(SettingsError) as caught:
        build(None, max_url_length=64, metrics_path="/" + "m" * 80)
    message = str(caught.value)
    assert message.count("\n") == 0
    assert message.startswith("flyer_metrics_path='/mmm")
    assert "is not allowed: a path of at most flyer_max_url_length=64 characters" in message
    app = build(None, max_url_length=64, metrics_path="/" + "m" * 63)  # at the limit: served
    with TestClient(app) as client:
        assert client.get("/" + "m" * 63).status_code == 200


# --- OTEL_* variables ---------------------------------------------------------------------------

BAD_OTEL = [
    ({"OTEL_PROPAGATORS": "tracecontext,b3x"}, "OTEL_PROPAGATORS='tracecontext,b3x'"),
    ({"OTEL_PROPAGATORS": " , "}, "OTEL_PROPAGATORS=' , '"),
    ({"OTEL_TRACES_SAMPLER": "garbage"}, "OTEL_TRACES_SAMPLER='garbage'"),
    ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "abc"},
     "OTEL_TRACES_SAMPLER_ARG='abc'"),
    ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "5"},
     "OTEL_TRACES_SAMPLER_ARG='5'"),
    ({"OTEL_TRACES_EXPORTER": " , "}, "OTEL_TRACES_EXPORTER=' , '"),
    ({"OTEL_TRACES_EXPORTER": "console,"}, "OTEL_TRACES_EXPORTER='console,'"),
    ({"OTEL_BSP_MAX_QUEUE_SIZE": "-1"}, "OTEL_BSP_MAX_QUEUE_SIZE='-1'"),
    ({"OTEL_BSP_SCHEDULE_DELAY": "abc"}, "OTEL_BSP_SCHEDULE_DELAY='abc'"),
    ({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "5000"}, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=5000"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318", "OTEL_TRACES_EXPORTER": "otlp"},
     "OTEL_EXPORTER_OTLP_ENDPOINT='collector:4318'"),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://ann:SECRET@[zz",
      "OTEL_TRACES_EXPORTER": "otlp"},
     "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT='https://ann:***@[zz'"),
    # The exporter sends http/protobuf: grpc would be ignored, to a port that cannot read it.
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_EXPORTER": "otlp"},
     "OTEL_EXPORTER_OTLP_PROTOCOL='grpc'"),
    ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL":
      "http/protobuf", "OTEL_TRACES_EXPORTER": "otlp"},
     "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='http/json'"),
]


@pytest.mark.parametrize(("variables", "named"), BAD_OTEL, ids=[n for _, n in BAD_OTEL])
def test_bad_otel_variables_stop_start_up_in_one_line(
        variables: dict[str, str], named: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")  # batched: OTEL_BSP_* apply
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(opentelemetry_enabled=True)
    message = str(caught.value)
    assert message.startswith((f"{named} is not allowed: ", f"{named}: "))
    assert message.count("\n") == 0 and "SECRET" not in message


def test_good_otel_variables_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"OTEL_PROPAGATORS": "tracecontext, baggage", "OTEL_TRACES_EXPORTER":
                        "console , none", "OTEL_TRACES_SAMPLER": "ParentBased_TraceIdRatio",
                        "OTEL_TRACES_SAMPLER_ARG": "0.25", "OTEL_BSP_SCHEDULE_DELAY": "200",
                        "OTEL_BSP_MAX_QUEUE_SIZE": "100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE":
                        "100", "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318",
                        "OTEL_EXPORTER_OTLP_PROTOCOL": "HTTP/protobuf"}.items():
        monkeypatch.setenv(name, value)
    assert load_settings(opentelemetry_enabled=True).opentelemetry_enabled


def test_a_bad_propagator_stops_run_in_one_line_with_tracing_off(tmp_path: Path,
                                                                 project: Path) -> None:
    # OpenTelemetry's API raises for it when FastAPI imports it, tracing on or not.
    env = env_for(tmp_path, OTEL_PROPAGATORS="tracecontext,garbage")
    done = subprocess.run([FASTFLYER, "run", "--host", "127.0.0.1", "--port", "0"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert re.fullmatch(r"OTEL_PROPAGATORS='tracecontext,garbage' is not allowed: 'garbage' "
                        r"is no propagator installed; [^\n]*\n", done.stderr), done.stderr


@pytest.mark.parametrize("case", ["collector-refuses", "sdk-disabled"])
def test_start_and_stop_stay_bounded_whatever_the_collector(
        case: str, tmp_path: Path, project: Path, closed_port: int) -> None:
    variables = {"flyer_opentelemetry_enabled": "1", "OTEL_TRACES_EXPORTER": "otlp",
                 "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port}",
                 "OTEL_EXPORTER_OTLP_TIMEOUT": "2", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    if case == "sdk-disabled":
        variables["OTEL_SDK_DISABLED"] = "true"
    log = tmp_path / "run.log"
    with started([FASTFLYER, "run", "--host", "127.0.0.1", "--port", "0"], project,
                 env_for(tmp_path, **variables), log) as process:
        began = time.monotonic()
        url = healthy_address(process, log)
        assert time.monotonic() - began < 30  # start never waits for the collector
        for number in range(5):
            assert httpx.get(f"{url}/flyer/no-such-page/{number}", timeout=10).status_code == 404
        # The spans' flush waits at most 3 s, an export under way at most its 2 s timeout.
        took = stop(process, log, 3 + 2 + 10)
    output = log.read_text()
    assert "Traceback" not in output and took < 3 + 2 + 5, (took, output)
    if case == "sdk-disabled":  # nothing set up: no trace columns, no export tried
        assert "| - - |" not in output and f":{closed_port}" not in output


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port of 127.0.0.1 bound but not listening: a connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
