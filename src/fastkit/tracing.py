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
    "check_propagators",
    "configure",
    "current_ids",
    "disable",
    "enable",
    "enabled",
    "extract",
    "flush",
    "inject",
    "record_failure",
    "redact_spans",
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
    copy them unmasked. Never raises, even for an exception whose ``str()`` does (its
    message is then ``<exception str() failed>``, as tracebacks write it)."""
    import traceback

    from opentelemetry.trace import Status, StatusCode

    from fastkit.logging.redact import redact_exception, redact_text

    kind = type(error).__qualname__
    message = redact_exception(error)  # the caller's exception goes on, never one of ours
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
    importing nothing: the propagators (:func:`check_propagators`); unless
    ``OTEL_SDK_DISABLED=true``, the exporters ``OTEL_TRACES_EXPORTER`` names and the
    packages they need, the sampler (``OTEL_TRACES_SAMPLER``: one of the SDK's, and for a
    ratio sampler an ``OTEL_TRACES_SAMPLER_ARG`` between 0 and 1), the batching
    (``OTEL_BSP_*``: whole numbers above 0, the batch no larger than the queue), the
    OTLP endpoint (an ``http://`` or ``https://`` URL) and protocol (``http/protobuf``).

    Raises :class:`TracingConfigError`, one line naming the variable and its value
    (passwords in a URL masked), for what :func:`configure` would refuse, or the SDK would
    replace by its default with a warning or a stack trace at each start."""
    check_propagators()
    if _sdk_disabled():
        return
    if not _importable("opentelemetry.sdk.trace"):
        raise TracingConfigError(_NO_SDK)
    names = _exporter_names()
    if "otlp" in names:
        if not _importable("opentelemetry.exporter.otlp.proto.http.trace_exporter"):
            raise TracingConfigError(_NO_OTLP)
        _check_endpoint()
        _check_protocol()
    _check_sampler()
    if any(name != "none" for name in names):
        _check_batching()


#: The samplers ``OTEL_TRACES_SAMPLER`` may name (the SDK's own, any case).
_SAMPLERS = ("parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio",
            "always_on", "always_off", "traceidratio")
_RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")
# The batch span processor's variables and their defaults (OpenTelemetry's specification).
_BATCHING = {"OTEL_BSP_SCHEDULE_DELAY": 5000, "OTEL_BSP_EXPORT_TIMEOUT": 30000,
             "OTEL_BSP_MAX_QUEUE_SIZE": 2048, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": 512}


def _set(name: str) -> str | None:
    """The variable ``name``, ``None`` when unset or blank (a blank one counts as unset)."""
    value = os.environ.get(name)
    return value if value is not None and value.strip() else None


def _check_sampler() -> None:
    raw = _set("OTEL_TRACES_SAMPLER")
    sampler = raw.lower() if raw is not None else "parentbased_always_on"  # as the SDK reads it
    if sampler not in _SAMPLERS:
        raise TracingConfigError(f"OTEL_TRACES_SAMPLER={raw!r} is not allowed: one of "
                                 f"{', '.join(_SAMPLERS)}")
    argument = _set("OTEL_TRACES_SAMPLER_ARG")
    if sampler in _RATIO_SAMPLERS and argument is not None:
        try:
            ratio = float(argument)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:  # NaN too
            raise TracingConfigError(
                f"OTEL_TRACES_SAMPLER_ARG={argument!r} is not allowed: the ratio of traces "
                f"{sampler} samples, a number from 0 to 1, such as 0.1")


def _check_batching() -> None:
    values: dict[str, int] = {}
    for name, default in _BATCHING.items():
        raw = _set(name)
        try:
            values[name] = default if raw is None else int(raw)
        except ValueError:
            values[name] = 0
        if values[name] <= 0:
            unit = "milliseconds" if name.endswith(("DELAY", "TIMEOUT")) else "spans"
            raise TracingConfigError(f"{name}={raw!r} is not allowed: a whole number of "
                                     f"{unit} above 0")
    batch, queue = values["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"], values["OTEL_BSP_MAX_QUEUE_SIZE"]
    if batch > queue:
        raise TracingConfigError(
            f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE={batch} is not allowed: at most "
            f"OTEL_BSP_MAX_QUEUE_SIZE ({queue})")


def _check_endpoint() -> None:
    from urllib.parse import urlsplit

    from fastkit.logging.redact import redact_text

    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        raw = _set(name)
        if raw is None:
            continue
        try:
            split = urlsplit(raw.strip())
            good = split.scheme in ("http", "https") and bool(split.hostname)
            split.port  # noqa: B018  (a port out of range or not a number raises)
        except ValueError:
            good = False
        if not good:
            raise TracingConfigError(f"{name}={redact_text(raw)!r} is not allowed: the "
                                     "collector's http:// or https:// URL, such as "
                                     "http://collector:4318")
        return  # the traces' own endpoint wins over the general one


def _check_protocol() -> None:
    # The exporter here is OTLP over HTTP/protobuf; it would ignore another protocol and
    # send to a gRPC collector's port (4317) what it cannot read, with nothing said.
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        raw = _set(name)
        if raw is None:
            continue
        if raw.strip().lower() != "http/protobuf":
            raise TracingConfigError(
                f"{name}={raw!r} is not allowed: the OTLP exporter sends http/protobuf "
                "(a collector's port 4318); grpc and http/json are not supported")
        return  # the traces' own protocol wins over the general one


def check_propagators() -> None:
    """Check ``OTEL_PROPAGATORS``: each name one OpenTelemetry can load (``tracecontext``,
    ``baggage``, those of installed packages; ``none``). OpenTelemetry's API reads it when
    it is first imported, and raises there for a name it cannot load (FastAPI imports it
    with itself), so this holds whether tracing is on or not. Raises
    :class:`TracingConfigError` (one line) for a name it cannot load."""
    raw = _set("OTEL_PROPAGATORS")
    if raw is None:
        return
    from importlib.metadata import entry_points

    names = [name.strip() for name in raw.split(",")]
    if any(name.lower() == "none" for name in names):
        return  # no propagation at all, whatever else is named
    for name in names:
        if not name or not entry_points(group="opentelemetry_propagator", name=name):
            raise TracingConfigError(
                f"OTEL_PROPAGATORS={raw!r} is not allowed: {name!r} is no propagator "
                "installed; a comma list of tracecontext, baggage (the default), none, or "
                "one an installed package provides")


def configure(service_name: str | None = None) -> TracerProvider | None:
    """Set up OpenTelemetry's SDK from the standard ``OTEL_*`` variables, make it the
    global provider and :func:`enable` FastKit's tracing; returns the provider.

    - ``OTEL_SDK_DISABLED=true``: nothing is set up; returns ``None``.
    - A provider the program set already (an SDK or vendor one) is kept and used.
    - ``OTEL_SERVICE_NAME`` (else ``service_name``), ``OTEL_RESOURCE_ATTRIBUTES``,
      ``OTEL_TRACES_SAMPLER`` and ``OTEL_BSP_*`` are the SDK's own.
    - ``OTEL_TRACES_EXPORTER``: a comma list of ``otlp`` (the default: OTLP over
      HTTP/protobuf, ``OTEL_EXPORTER_OTLP_*``), ``console`` and ``none``.

    Either way the provider masks secrets in the spans' URL attributes
    (:func:`redact_spans`). Called again in the same process, it returns the provider it
    set up. Raises :class:`TracingConfigError` for what :func:`check` refuses: an unknown
    exporter, sampler or propagator, a bad ``OTEL_BSP_*`` or endpoint, a missing package
    (the SDK, or the OTLP exporter: ``pip install 'fastflyer[otel]'``)."""
    global _owned
    if _sdk_disabled():
        return None
    from opentelemetry import trace

    if _owned is not None:
        enable(_owned)
        return _owned  # type: ignore[no-any-return]
    current = trace.get_tracer_provider()
    if type(current).__name__ != "ProxyTracerProvider":  # the program set one: keep it
        redact_spans(current)
        enable(current)
        return current
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise TracingConfigError(_NO_SDK) from None
    check()
    exporters = _exporters()
    attributes = {}
    if service_name and not os.environ.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = service_name
    provider = SdkTracerProvider(resource=Resource.create(attributes))
    redact_spans(provider)  # first: the exporters' processors see the masked attributes
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _owned = provider
    enable(provider)
    return provider


_redacted: list[Any] = []  # the providers redact_spans() added its processor to


def redact_spans(provider: TracerProvider) -> bool:
    """Mask secrets in the URL attributes of every span ``provider`` starts from now on
    (``url.full``, ``url.query`` and the older ``http.url``, ``http.target``: a URL's
    password, or its whole user info when it has no password, and the values of secret
    query keys, as the logs mask them), whoever starts the span: FastAPI's server span
    copies a request's query string as it came. :func:`configure` does it for the provider
    it sets up or keeps. Adds a span processor, once per provider; False (nothing done)
    for a provider without ``add_span_processor`` (not the SDK's)."""
    add = getattr(provider, "add_span_processor", None)
    if add is None:
        return False
    from fastkit._span_redaction import RedactingSpanProcessor

    if not any(known is provider for known in _redacted):  # a global: one or two a process
        add(RedactingSpanProcessor())
        _redacted.append(provider)
    return True


def _exporter_names() -> list[str]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names; :class:`TracingConfigError` for an
    unknown one."""
    raw = os.environ.get("OTEL_TRACES_EXPORTER", "otlp")
    if not raw.strip():  # blank: unset
        return ["otlp"]
    names = [name.strip().lower() for name in raw.split(",")]
    unknown = [name or "''" for name in names if name not in _EXPORTERS]
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
