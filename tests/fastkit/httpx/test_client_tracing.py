"""Client traces against a real local server: one ``CLIENT`` span per logical call, its
attributes, and the ``traceparent`` the server received; the trace id in the call's line.

Spans go to an in-memory exporter of the test's own provider (``kit_spans``); the global
provider is left alone. Every test runs over the entry points: the shared ``requests``
and ``aiorequests``, a ``Client``, an ``AsyncClient``, and a plain ``httpx.Client`` over
a ``RetryTransport``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from client_entries import ENTRIES, call
from opentelemetry.trace import SpanKind, StatusCode

from fastkit import tracing
from fastkit.httpx import AsyncClient, Client
from fastkit.request_id import bind_request_id


def client_span(exporter: Any) -> Any:
    (span,) = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
    return span


def traceparent(trace_id: int, span_id: int) -> tuple[str, str]:
    return f"{trace_id:032x}", f"{span_id:016x}"


def received(header: str) -> tuple[str, str]:
    """(trace id, parent span id) of a ``traceparent`` header."""
    version, trace_id, span_id, _flags = header.split("-")
    assert version == "00"
    return trace_id, span_id


@pytest.mark.parametrize("entry", ENTRIES)
def test_one_client_span_child_of_the_current_one(entry, server, key, kit_spans, logs):
    with bind_request_id("rid-trace"), tracing.span("work") as parent:
        response = call(entry, "GET", f"{server.url}/get?key={key}&token=hush&q=1")
    assert response.status_code == 200
    span = client_span(kit_spans)
    assert span.name == "GET"
    assert span.parent is not None
    assert span.parent.span_id == parent.get_span_context().span_id
    assert span.context.trace_id == parent.get_span_context().trace_id
    port = int(server.url.rsplit(":", 1)[1])
    assert dict(span.attributes) == {
        "http.request.method": "GET",
        "url.full": f"{server.url}/get?key=***&token=***&q=1",
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 200,
    }
    assert span.status.status_code == StatusCode.UNSET
    # The server received the client span's context, and the request id as before.
    (headers,) = server.headers(key)
    assert received(headers["traceparent"]) == traceparent(span.context.trace_id,
                                                           span.context.span_id)
    assert headers["x-request-id"] == "rid-trace"
    (line,) = logs.calls()
    assert line["trace_id"] == f"{span.context.trace_id:032x}"
    assert line["request_id"] == "rid-trace"


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_retried_call_is_one_span_with_its_resend_count(entry, server, key, kit_spans):
    response = call(entry, "GET", f"{server.url}/flaky?key={key}&fail=1&status=503")
    assert response.status_code == 200
    span = client_span(kit_spans)
    assert span.parent is None  # no span was current: a trace of its own
    assert span.attributes["http.request.resend_count"] == 1
    assert span.attributes["http.response.status_code"] == 200
    assert "error.type" not in span.attributes
    expected = traceparent(span.context.trace_id, span.context.span_id)
    assert [received(h["traceparent"]) for h in server.headers(key)] == [expected, expected]


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_refused_connection_is_an_error_span(entry, refused_port, kit_spans, logs):
    with pytest.raises(httpx.ConnectError):
        call(entry, "GET", f"http://user:pw-secret@127.0.0.1:{refused_port}/x?password=p1")
    span = client_span(kit_spans)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "ConnectError"
    assert span.attributes["http.request.resend_count"] == 2
    assert span.attributes["url.full"] == f"http://user:***@127.0.0.1:{refused_port}/x?password=***"
    assert "http.response.status_code" not in span.attributes
    assert "pw-secret" not in repr(span.to_json()) and "p1" not in span.to_json()
    (line,) = logs.calls()
    assert line["trace_id"] == f"{span.context.trace_id:032x}"


@pytest.mark.parametrize("entry", ["Client", "AsyncClient"])
def test_an_error_status_marks_the_span(entry, server, key, kit_spans):
    call(entry, "POST", f"{server.url}/status/404?key={key}")
    span = client_span(kit_spans)
    assert span.name == "POST"
    assert span.attributes["http.response.status_code"] == 404
    assert span.attributes["error.type"] == "404"
    assert span.status.status_code == StatusCode.ERROR


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_traceparent_the_caller_set_wins(entry, server, key, kit_spans):
    given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    call(entry, "GET", f"{server.url}/get?key={key}", headers={"traceparent": given})
    (headers,) = server.headers(key)
    assert headers["traceparent"] == given
    span = client_span(kit_spans)  # the span continues the caller's trace
    assert f"{span.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert f"{span.parent.span_id:016x}" == "b7ad6b7169203331"


@pytest.mark.parametrize("entry", ENTRIES)
def test_each_redirect_hop_sends_its_own_span(entry, server, kit_spans):
    with tracing.span("work") as parent:
        response = call(entry, "GET", f"{server.url}/redirect", follow_redirects=True)
    assert response.json()["url"].endswith("/get?redirected=1")
    first, second = sorted((s for s in kit_spans.get_finished_spans()
                            if s.kind == SpanKind.CLIENT), key=lambda s: s.start_time)
    assert first.attributes["http.response.status_code"] == 302
    assert second.attributes["http.response.status_code"] == 200
    assert first.parent.span_id == second.parent.span_id == parent.get_span_context().span_id
    sent = {k.lower(): v for k, v in response.json()["headers"].items()}  # as hop 2 got them
    assert received(sent["traceparent"]) == traceparent(second.context.trace_id,
                                                        second.context.span_id)


def test_another_method_is_named_http(server, key, kit_spans):
    with Client() as client:
        client.request("PURGE", f"{server.url}/get?key={key}")
    span = client_span(kit_spans)
    assert span.name == "HTTP"
    assert span.attributes["http.request.method"] == "_OTHER"
    assert span.attributes["http.request.method_original"] == "PURGE"


async def test_a_cancelled_call_ends_its_span(server, key, kit_spans):
    """A call cancelled mid-flight (its task's deadline passed) still ends its span."""
    async with AsyncClient() as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await client.get(f"{server.url}/slow?key={key}&fail=1&delay=2")
    span = client_span(kit_spans)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "CancelledError"


@pytest.mark.parametrize("entry", ENTRIES)
def test_nothing_while_tracing_is_off(entry, server, key, logs):
    assert not tracing.enabled()
    with bind_request_id("rid-off"):
        call(entry, "GET", f"{server.url}/get?key={key}")
    (headers,) = server.headers(key)
    assert "traceparent" not in headers
    assert headers["x-request-id"] == "rid-off"
    (line,) = logs.calls()
    assert "trace_id" not in line
