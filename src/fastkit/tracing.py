"""OpenTelemetry traces: FastKit's spans, and the W3C trace context on the wire.

Off until :func:`enable` (or :func:`configure`) is called; FastFlyer does it when
``flyer_opentelemetry_enabled=1``. While off, each instrumented call pays one ``None``
test and nothing is imported. Once on, FastKit opens a span around each HTTP client call
(``CLIENT``), Kafka send (``PRODUCER``), Kafka message handled (``CONSUMER``) and
scheduled job run (``INTERNAL``); outgoing HTTP requests and Kafka messages carry
``traceparent`` (W3C Trace Context, through OpenTelemetry's configured propagators,
``OTEL_PROPAGATORS``); and every log line carries ``trace_id`` and ``span_id``.

    >>> from fastkit import tracing
    >>> provider = tracing.configure("orders")        # the SDK, from OTEL_* variables
    >>> with tracing.span("reindex") as current:
    ...     ids = tracing.current_ids()                # (trace id, span id), hex

:func:`configure` needs the OpenTelemetry SDK (``pip install 'fastflyer[otel]'``);
:func:`enable` alone works with any provider a program set up itself; :func:`check` finds
what :func:`configure` would refuse without setting anything up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from fastkit._version import __version__
from fastkit.exceptions import FastKitError

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, SpanKind, Tracer, TracerProvider

__all__ = [
    "TracingConfigError",
    "check",
    "configure",
    "current_ids",
    "disable",
    "enable",
    "enabled",
    "extract",
    "flush",
    "inject",
    "record_failure",
    "span",
    "tracer",
]

_tracer: Tracer | None = None
_owned: Any = None  # the SDK provider configure() set up in this process


class TracingConfigError(FastKitError, ValueError):
    """The ``OTEL_*`` configuration asks for what cannot be had (an unknown exporter,
    or an exporter whose package is not installed); the message names the variable."""


def enable(provider: TracerProvider | None = None) -> None:
    """Trace FastKit's work from now on, with ``provider``'s tracer (``None``: the
    global provider OpenTelemetry has, as ``trace.set_tracer_provider`` set it)."""
    global _tracer
    from opentelemetry import trace

    _tracer = (provider or trace.get_tracer_provider()).get_tracer("fastkit", __version__)


def disable() -> None:
    """Stop tracing FastKit's work (spans already open end as usual)."""
    global _tracer
    _tracer = None


def enabled() -> bool:
    """True while FastKit traces its work."""
    return _tracer is not None


def tracer() -> Tracer | None:
    """FastKit's tracer, or ``None`` while tracing is off."""
    return _tracer


@contextmanager
def span(name: str, *, kind: SpanKind | None = None, attributes: Mapping[str, Any] | None = None,
         context: Context | None = None) -> Iterator[Span | None]:
    """A span named ``name`` (OpenTelemetry's semantic conventions name it), current in
    the ``with`` block, child of ``context`` (``None``: the current span); yields
    ``None`` while tracing is off. An exception escaping the block (``GeneratorExit``
    aside) is recorded by :func:`record_failure` and raised on."""
    current = _tracer
    if current is None:
        yield None
        return
    from opentelemetry.trace import SpanKind

    with current.start_as_current_span(
            name, context=context, kind=kind if kind is not None else SpanKind.INTERNAL,
            attributes=dict(attributes) if attributes else None, record_exception=False,
            set_status_on_exception=False) as opened:
        try:
            yield opened
        except GeneratorExit:
            raise
        except BaseException as exc:
            record_failure(opened, exc)
            raise


def record_failure(span: Span, error: BaseException, *, stacktrace: bool = True) -> None:
    """Mark ``span`` failed by ``error`` as the log lines write it: ``error.type`` (its
    class name), status ``ERROR`` and an ``exception`` event whose message (and stack
    trace, unless ``stacktrace`` is false) have secrets masked
    (:func:`fastkit.logging.redact.redact_text`); OpenTelemetry's own recording would
    copy them unmasked."""
    import traceback

    from opentelemetry.trace import Status, StatusCode

    from fastkit.logging.redact import redact_text

    kind = type(error).__qualname__
    message = redact_text(str(error))
    event = {"exception.type": kind, "exception.message": message}
    if stacktrace:
        event["exception.stacktrace"] = redact_text("".join(traceback.format_exception(error)))
    span.set_attribute("error.type", kind)
    span.add_event("exception", event)
    span.set_status(Status(StatusCode.ERROR, f"{kind}: {message}"))


def inject(carrier: MutableMapping[str, str]) -> None:
    """Write the current trace context into ``carrier`` (HTTP or message headers):
    ``traceparent`` (and ``tracestate``, baggage) by the configured propagators. No-op
    while tracing is off or outside any span."""
    if _tracer is None:
        return
    from opentelemetry import propagate

    propagate.inject(carrier)


def extract(carrier: Mapping[str, str]) -> Context | None:
    """The trace context ``carrier``'s headers continue (``None`` while tracing is off);
    pass it as ``context`` to :func:`span`. Headers that hold none give a context whose
    spans start a new trace."""
    if _tracer is None:
        return None
    from opentelemetry import propagate

    return propagate.extract(carrier)


def current_ids() -> tuple[str, str] | None:
    """The current span's trace id (32 hex digits) and span id (16 hex digits), as
    logs and ``traceparent`` write them; ``None`` while tracing is off or outside a span."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


_EXPORTERS = ("otlp", "console", "none")
_NO_SDK = ("tracing needs the OpenTelemetry SDK (opentelemetry-sdk), which is not "
           "installed: pip install 'fastflyer[otel]'")
_NO_OTLP = ("OTEL_TRACES_EXPORTER=otlp (the default) needs the OTLP exporter "
            "(opentelemetry-exporter-otlp-proto-http), which is not installed: "
            "pip install 'fastflyer[otel]', or set OTEL_TRACES_EXPORTER=console or none")


def _sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def _importable(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (``sys.modules[module] =
    None`` blocks it, as for ``import``)."""
    import importlib.util
    import sys

    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing or blocked
        return False


def check() -> None:
    """Check the ``OTEL_*`` configuration :func:`configure` would set up, building and
    importing nothing: the exporters ``OTEL_TRACES_EXPORTER`` names, and the packages
    they need. Nothing to check under ``OTEL_SDK_DISABLED=true``.

    Raises :class:`TracingConfigError`, one line naming the variable, where
    :func:`configure` would: for an unknown exporter, or a missing package (the SDK, or
    the OTLP exporter for ``otlp``)."""
    if _sdk_disabled():
        return
    if not _importable("opentelemetry.sdk.trace"):
        raise TracingConfigError(_NO_SDK)
    if "otlp" in _exporter_names() and not _importable(
            "opentelemetry.exporter.otlp.proto.http.trace_exporter"):
        raise TracingConfigError(_NO_OTLP)


def configure(service_name: str | None = None) -> TracerProvider | None:
    """Set up OpenTelemetry's SDK from the standard ``OTEL_*`` variables, make it the
    global provider and :func:`enable` FastKit's tracing; returns the provider.

    - ``OTEL_SDK_DISABLED=true``: nothing is set up; returns ``None``.
    - A provider the program set already (an SDK or vendor one) is kept and used.
    - ``OTEL_SERVICE_NAME`` (else ``service_name``), ``OTEL_RESOURCE_ATTRIBUTES``,
      ``OTEL_TRACES_SAMPLER`` and ``OTEL_BSP_*`` are the SDK's own.
    - ``OTEL_TRACES_EXPORTER``: a comma list of ``otlp`` (the default: OTLP over
      HTTP/protobuf, ``OTEL_EXPORTER_OTLP_*``), ``console`` and ``none``.

    Called again in the same process, it returns the provider it set up. Raises
    :class:`TracingConfigError` for an unknown exporter or a missing package (the SDK,
    or the OTLP exporter: ``pip install 'fastflyer[otel]'``)."""
    global _owned
    if _sdk_disabled():
        return None
    from opentelemetry import trace

    if _owned is not None:
        enable(_owned)
        return _owned  # type: ignore[no-any-return]
    current = trace.get_tracer_provider()
    if type(current).__name__ != "ProxyTracerProvider":  # the program set one: keep it
        enable(current)
        return current
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise TracingConfigError(_NO_SDK) from None
    exporters = _exporters()
    attributes = {}
    if service_name and not os.environ.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = service_name
    provider = SdkTracerProvider(resource=Resource.create(attributes))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _owned = provider
    enable(provider)
    return provider


def _exporter_names() -> list[str]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names; :class:`TracingConfigError` for an
    unknown one."""
    raw = os.environ.get("OTEL_TRACES_EXPORTER", "otlp")
    names = [name.strip().lower() for name in raw.split(",") if name.strip()] or ["otlp"]
    unknown = [name for name in names if name not in _EXPORTERS]
    if unknown:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={raw!r}: {', '.join(unknown)} is not one of "
            f"{', '.join(_EXPORTERS)}")
    return names


def _exporters() -> list[Any]:
    names = _exporter_names()
    found: list[Any] = []
    if "otlp" in names:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise TracingConfigError(_NO_OTLP) from None
        found.append(OTLPSpanExporter())
    if "console" in names:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        found.append(ConsoleSpanExporter())
    return found


def flush(timeout: float = 5.0) -> bool:
    """Export the spans ended so far, waiting at most ``timeout`` seconds; False when
    the wait ran out. No-op (True) unless :func:`configure` set up the provider."""
    if _owned is None:
        return True
    return bool(_owned.force_flush(int(timeout * 1000)))
