"""The span processor masking secrets in the URL attributes of every span a provider starts.

Instrumentations copy a request's URL into its span as it came: FastAPI's server span has
``url.query`` with every query value (it masks four signature keys only), another library's
client span ``url.full`` with its user info. :class:`RedactingSpanProcessor` masks them the
way the logs do (:mod:`fastkit.logging.redact`) as the span starts, before any exporter
can see it. Imported only where tracing is set up (it needs OpenTelemetry's SDK).
"""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from fastkit.logging.redact import MASK, redact_query, redact_url

__all__ = ["URL_ATTRIBUTES", "RedactingSpanProcessor"]

#: The attributes masked, and how: the current HTTP conventions' and the older ones'.
URL_ATTRIBUTES: dict[str, Callable[[str], str]] = {
    "url.full": redact_url,
    "url.query": redact_query,
    "http.url": redact_url,
    "http.target": redact_url,
}


class RedactingSpanProcessor(SpanProcessor):
    """Mask the password of a URL's user info (the whole user info when it has no
    password) and the values of secret query keys in the span attributes of
    :data:`URL_ATTRIBUTES`, as each span starts. Exports nothing; add it to an SDK
    ``TracerProvider`` with ``add_span_processor``."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Mask the URL attributes ``span`` started with."""
        attributes = span.attributes
        if not attributes:
            return
        for name, redact in URL_ATTRIBUTES.items():
            value = attributes.get(name)
            if isinstance(value, str) and value:
                try:
                    masked = redact(value)
                except ValueError:  # not a URL urllib can read (``http://[::1``): all of it
                    masked = MASK
                if masked != value:
                    span.set_attribute(name, masked)

    def on_end(self, span: ReadableSpan) -> None:
        """Nothing: the attributes were masked at the start."""

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is held: True."""
        return True
