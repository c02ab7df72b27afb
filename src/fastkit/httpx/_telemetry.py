"""Metrics and traces of outgoing calls, recorded by the retry engine for sync and async alike.

Off until :func:`fastkit.metrics.enable` / :func:`fastkit.tracing.enable`: the engine then
tests one flag for each and calls nothing here. Once on, per logical call (all its
attempts and waits):

Metrics (Prometheus; ``host`` is the URL's ``host[:port]``, a service's name for a call by
service name, never the user info; past :data:`fastkit.metrics.CARDINALITY_LIMIT` hosts in
a process, the others are ``_OTHER``; ``method`` is ``_OTHER`` outside the standard methods):

- ``http_client_requests_total{method,host,status}``: ``status`` is the final status code,
  or ``error`` when the call raised (refused, timed out, cancelled);
- ``http_client_request_duration_seconds{method,host}``: the whole call, retries and waits
  included;
- ``http_client_attempts_total{method,host}``: every attempt sent;
- ``http_client_retries_total{method,host,reason}``: every retry, ``reason`` being the
  status code or the error class the policy retried on (``503``, ``ConnectError``).

Traces (OpenTelemetry's HTTP client conventions): one ``CLIENT`` span per logical call
(not one per attempt), named after the method (``GET``; ``HTTP`` for another method),
child of the current span, or of the ``traceparent`` the caller put on the request.
Attributes: ``http.request.method``, ``url.full`` (password and secret query values
masked), ``server.address``, ``server.port``, ``http.response.status_code``,
``http.request.resend_count`` (retries made, when any) and ``error.type`` (the status code
>= 400, or the exception's class) with the span's status ``ERROR``. The request carries
the span's ``traceparent`` unless the caller set one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastkit import metrics, tracing
from fastkit.logging.redact import redact_url
from fastkit.tracing import record_failure

if TYPE_CHECKING:
    import httpx
    from opentelemetry.trace import Span

__all__ = ["end_span", "host_label", "method_label", "record_call", "record_retry",
           "start_span", "trace_id"]

#: The methods OpenTelemetry's HTTP conventions know; any other is ``_OTHER``.
KNOWN_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST",
                           "PUT", "TRACE"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_TRACE_HEADER = "traceparent"
_INJECTED = "fastkit.traceparent"  # request extension: the traceparent written here

_families: tuple[Any, Any, Any, Any] | None = None
_trace_api: Any = None


def method_label(method: str) -> str:
    """``method`` when it is a standard one, else ``_OTHER`` (a bounded label)."""
    return method if method in KNOWN_METHODS else "_OTHER"


def host_label(url: httpx.URL) -> str:
    """``host[:port]`` of ``url`` (the port only when the URL gives one)."""
    return url.netloc.decode("ascii", "replace")


def _metric_families() -> tuple[Any, Any, Any, Any]:
    global _families
    if _families is None:
        _families = (
            metrics.counter("http_client_requests_total",
                            "Outgoing HTTP calls (after retries), by final status code or "
                            "'error'.", ("method", "host", "status")),
            metrics.histogram("http_client_request_duration_seconds",
                              "Duration of outgoing HTTP calls, retries and waits included.",
                              ("method", "host")),
            metrics.counter("http_client_attempts_total",
                            "Attempts sent by outgoing HTTP calls (first tries and retries).",
                            ("method", "host")),
            metrics.counter("http_client_retries_total",
                            "Retries of outgoing HTTP calls, by the status code or error "
                            "class retried on.", ("method", "host", "reason")),
        )
    return _families


class _Series:
    """The metric children of one ``(method, host)``, so a call pays no label look-up."""

    __slots__ = ("attempts", "duration", "host", "method", "statuses")

    def __init__(self, method: str, host: str) -> None:
        _, duration, attempts, _ = _metric_families()
        self.method = method
        self.host = host
        self.duration = duration.labels(method, host)
        self.attempts = attempts.labels(method, host)
        self.statuses: dict[int | None, Any] = {}

    def requests(self, status: int | None) -> Any:
        child = self.statuses.get(status)
        if child is None:
            child = _metric_families()[0].labels(
                self.method, self.host, "error" if status is None else str(status))
            self.statuses[status] = child
        return child


_series: dict[tuple[str, bytes], _Series] = {}
_SERIES_CAP = 4096  # (method, host) pairs remembered; past it the cache starts again
_hosts = metrics.CardinalityLimit()  # the host label's values in this process


def _series_of(request: httpx.Request) -> _Series:
    url = request.url
    key = (request.method, url.netloc)
    found = _series.get(key)
    if found is None:
        if len(_series) >= _SERIES_CAP:
            _series.clear()
        found = _series[key] = _Series(method_label(request.method), _hosts(host_label(url)))
    return found


def record_call(request: httpx.Request, status: int | None, seconds: float,
                attempts: int) -> None:
    """Count one finished logical call: final ``status`` (``None``: it raised), its
    duration in ``seconds`` and the number of ``attempts`` sent."""
    series = _series_of(request)
    series.requests(status).inc()
    series.duration.observe(seconds)
    series.attempts.inc(attempts)


def record_retry(request: httpx.Request, reason: str) -> None:
    """Count one retry of ``request`` for ``reason`` (a status code or an error class)."""
    series = _series_of(request)
    _metric_families()[3].labels(series.method, series.host, reason).inc()


def _api() -> Any:
    global _trace_api
    if _trace_api is None:
        from opentelemetry import trace

        _trace_api = trace
    return _trace_api


def start_span(request: httpx.Request) -> Span | None:
    """Open the ``CLIENT`` span of ``request``'s logical call and put its ``traceparent``
    on the request, unless the caller put a valid one there: then that one is sent and
    the span continues its trace (one that holds no trace context, garbage or all zeros,
    is replaced by the span's). ``None`` when tracing is off.

    A redirect's next hop comes with the headers of the hop before, ours included: the
    request's extensions remember the ``traceparent`` written here, so the next hop's
    span replaces it rather than taking it for the caller's."""
    opened = tracing.tracer()
    if opened is None:
        return None
    trace = _api()
    method = request.method
    url = request.url
    known = method in KNOWN_METHODS
    attributes: dict[str, Any] = {
        "http.request.method": method if known else "_OTHER",
        "url.full": redact_url(str(url)),
        "server.address": url.host,
    }
    port = url.port or _DEFAULT_PORTS.get(url.scheme)
    if port is not None:
        attributes["server.port"] = port
    if not known:
        attributes["http.request.method_original"] = method
    headers = request.headers
    given = headers.get(_TRACE_HEADER)
    if given is not None and given == request.extensions.get(_INJECTED):
        given = None  # written here for the previous hop of a redirect
    parent = None if given is None else tracing.extract(headers)
    if parent is not None and not trace.get_current_span(parent).get_span_context().is_valid:
        given = parent = None  # not a trace context (garbage, all zeros): ours replaces it
    span = opened.start_span(method if known else "HTTP", kind=trace.SpanKind.CLIENT,
                             attributes=attributes, context=parent)
    if given is None:
        carrier: dict[str, str] = {}
        with trace.use_span(span, end_on_exit=False):
            tracing.inject(carrier)
        for name, value in carrier.items():
            if name == _TRACE_HEADER or name not in headers:
                headers[name] = value
        if _TRACE_HEADER in carrier:
            request.extensions[_INJECTED] = carrier[_TRACE_HEADER]
    return span


def end_span(span: Span, status: int | None, error: BaseException | None,
             attempts: int) -> None:
    """End the call's span: the final ``status`` (``None`` when it raised ``error``) and
    the retries made (``attempts - 1``)."""
    trace = _api()
    if attempts > 1:
        span.set_attribute("http.request.resend_count", attempts - 1)
    if status is not None:
        span.set_attribute("http.response.status_code", status)
        if status >= 400:
            span.set_attribute("error.type", str(status))
            span.set_status(trace.Status(trace.StatusCode.ERROR))
    if error is not None:  # the exception event without its traceback
        record_failure(span, error, stacktrace=False)
    span.end()


def trace_id(span: Span) -> str | None:
    """The span's trace id as logs write it (32 hex digits); ``None`` for an invalid one
    (a no-op tracer's)."""
    context = span.get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None
