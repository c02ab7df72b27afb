"""What the tests read of finished spans."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["span_text"]


def span_text(span: Any) -> str:
    """Everything of ``span`` an exporter sends: name, attributes, events, status."""
    parts = [span.name, json.dumps(dict(span.attributes), default=str),
             span.status.description or ""]
    parts += [f"{event.name} {json.dumps(dict(event.attributes), default=str)}"
              for event in span.events]
    return " ".join(parts)
