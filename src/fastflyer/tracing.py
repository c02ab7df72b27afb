"""Traces of a FastFlyer app (``flyer_opentelemetry_enabled=1``): where they start and stop.

Each process that serves (``fastflyer run``, each worker of ``fastflyer serve``) sets up
OpenTelemetry's SDK in its own lifespan, before its first request and after any fork:
:func:`fastkit.tracing.configure` with the app's service name (``OTEL_SERVICE_NAME``
wins), exporters and sampler from the ``OTEL_*`` variables (checked with the settings).
Tracing starts before the app's components and stops after them: its stop hook exports
the spans ended so far, waiting at most :data:`FLUSH_TIMEOUT` seconds (and never more than
half of ``flyer_shutdown_timeout``), then turns FastKit's tracing off.

The span of each request is FastAPI's own (its native telemetry, on when a tracer
provider is set): ``{method} {route template}``, kind ``SERVER``, with ``http.route`` and
the status, continuing the caller's ``traceparent``; its ``url.query`` has secret values
masked (:func:`fastkit.tracing.redact_spans`). FastAPI's operation spans (one each for the
dependencies, the endpoint and the serialization of every request) are off
(:data:`FASTAPI_TELEMETRY`): they cost as much again as the request's span. An app passes
``FlyerAPI(telemetry={"operation_spans": True})`` to have them. FastAPI's OpenTelemetry
logs are off too: with a logger provider set (the program's, or FastAPI's own
``FASTAPI_OTEL_AUTO_CONFIGURE``), they would carry an unhandled exception's message and
stack trace as they are, secrets included; the framework's log lines (masked, with the
trace and span ids) say the same.

With ``flyer_opentelemetry_enabled=0`` nothing here runs and OpenTelemetry is not imported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastkit import tracing
from fastkit.logging import logger
from fastkit.utils.threads import run_in_daemon_thread

if TYPE_CHECKING:
    from fastflyer.lifespan import Lifecycle
    from fastflyer.settings import FlyerSettings

__all__ = ["FASTAPI_TELEMETRY", "FLUSH_TIMEOUT", "register_tracing"]

#: The longest the stop waits for the spans to be exported, in seconds.
FLUSH_TIMEOUT = 3.0

#: FastAPI's telemetry options with tracing on (an app's own ``telemetry`` keys win): no
#: operation spans, no OpenTelemetry logs (they copy exception messages unmasked).
FASTAPI_TELEMETRY: dict[str, Any] = {"operation_spans": False, "logs": False}


def register_tracing(settings: FlyerSettings, lifecycle: Lifecycle,
                     service_name: Callable[[], str]) -> None:
    """Add the ``tracing`` component to ``lifecycle`` when ``settings`` turn tracing on
    (else do nothing): its start sets up the SDK (:func:`fastkit.tracing.configure`,
    ``service_name()`` naming the service), its stop exports what is left. Register it
    before the other components: it then starts first and stops last."""
    if not settings.opentelemetry_enabled:
        return
    timeout = min(FLUSH_TIMEOUT, lifecycle.shutdown_timeout / 2)

    def start() -> None:
        # Raises TracingConfigError, which the settings' check has ruled out already.
        tracing.configure(service_name())

    async def stop() -> None:
        try:
            flushed = await asyncio.wait_for(run_in_daemon_thread(tracing.flush, timeout),
                                             timeout)
        except TimeoutError:
            flushed = False
        finally:
            tracing.disable()
        if not flushed:
            logger.warning("tracing: the last spans were not all exported within {:g} s; "
                           "those left are dropped", timeout)

    lifecycle.add("tracing", start=start, stop=stop)
