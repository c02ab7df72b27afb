"""The log lines of outgoing calls: one per logical call, one WARNING per retry.

The per-call line is JSON: ``direction`` (``out``), ``method``, ``url`` (without
its query), ``params`` (the query), ``headers``, ``body`` (the request body),
``status``, ``latency_ms`` (all attempts and waits), ``attempts``, ``request_id``,
``trace_id`` while tracing is on (the trace of the call's span, :mod:`fastkit.tracing`),
``instance`` when a transport chose the server (a call by service name: the instance that
answered), and ``error`` when the call raised (with the notes a transport added). Params,
headers and bodies are capped in length and secrets redacted
(:mod:`fastkit.logging.redact`): headers and query keys, and in bodies the same key rules,
applied to JSON keys at any depth and to form fields (other bodies as free text). INFO
normally, WARNING when the final status is >= 400 or the call raised (then the response
body is included too, capped).
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from fastkit.httpx import _telemetry
from fastkit.httpx._engine import error_text
from fastkit.logging import logger
from fastkit.logging.redact import (
    MASK,
    is_secret_key,
    redact_headers,
    redact_query,
    redact_text,
    redact_url,
)

if TYPE_CHECKING:
    from fastkit.httpx._engine import Attempts

__all__ = ["CallLog"]

_ELLIPSIS = "…"


#: The response extension where a transport that picks the server (a service's instance,
#: :mod:`fastkit.registry`) puts the URL of the one that answered; the call's line logs it
#: as ``instance``.
INSTANCE_EXTENSION = "fastkit.instance"


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + _ELLIPSIS


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if value < 0:
        raise ValueError(f"{name}={raw!r} must be >= 0")
    return value


_PLAIN = re.compile(r'[^\x00-\x1f"\\]*')


def _dumps(value: object) -> str:
    """JSON of a scalar; strings needing no escape skip the encoder."""
    if value == "":
        return '""'
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return f'"{value}"'
    return json.dumps(value, ensure_ascii=False)


@functools.lru_cache(maxsize=512)
def _headers_json(raw: tuple[tuple[bytes, bytes], ...], limit: int) -> tuple[str, str]:
    """The redacted, capped JSON of a header list and the JSON of its ``X-Request-ID``
    (``null`` without one); the same few lists repeat, so both are computed once each."""
    pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]
    request_id = next((v for k, v in pairs if k.lower() == "x-request-id"), None)
    text = json.dumps(redact_headers(pairs), ensure_ascii=False)
    if len(text) > limit:
        text = json.dumps(_cap(text, limit), ensure_ascii=False)
    return text, _dumps(request_id)


def _masked(value: Any) -> Any:
    """A JSON value with the values of secret keys replaced by ``***``, at any depth."""
    if isinstance(value, dict):
        return {k: MASK if isinstance(k, str) and is_secret_key(k) else _masked(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def _redacted_body(text: str, content_type: str) -> str:
    """``text`` (a whole body) with secrets masked by the key rules: JSON keys at any depth,
    form fields by name, anything else as free text."""
    if "x-www-form-urlencoded" in content_type:
        return redact_query(text)
    if "json" in content_type or text[:1] in ("{", "["):
        if "\\u" not in text and not is_secret_key(text):
            return text  # no secret's name anywhere: nothing to mask
        try:
            parsed = json.loads(text)
        except ValueError:
            return redact_text(text)
        return json.dumps(_masked(parsed), ensure_ascii=False, separators=(",", ":"))
    return redact_text(text)


def _body(content: bytes, content_type: str, limit: int) -> str:
    """The body as logged: decoded, redacted, then capped at ``limit`` characters."""
    if not content:
        return ""
    text = _redacted_body(content.decode("utf-8", "replace"), content_type)
    return _cap(text, limit)


@dataclass(frozen=True)
class CallLog:
    """Writes the log lines of one client's outgoing calls."""

    enabled: bool = True
    max_body: int = 4096
    max_params: int = 2048
    max_headers: int = 2048

    @classmethod
    def from_env(cls, enabled: bool) -> CallLog:
        """Caps from ``flyer_max_body_log_length`` (4096), ``flyer_max_params_log_length``
        and ``flyer_max_headers_log_length`` (2048 each)."""
        return cls(
            enabled=enabled,
            max_body=_env_int("flyer_max_body_log_length", 4096),
            max_params=_env_int("flyer_max_params_log_length", 2048),
            max_headers=_env_int("flyer_max_headers_log_length", 2048),
        )

    def retrying(self, request: httpx.Request, attempts: Attempts, wait: float) -> None:
        """The WARNING before a retry: which attempt failed, why, and the wait."""
        if self.enabled:
            logger.warning(
                "retrying {} {} in {:.2f}s (attempt {} of {} failed: {})",
                request.method, self.url(request.url), wait, attempts.number - 1,
                attempts.policy.stop_max_attempt_number, attempts.reason,
            )

    def finished(self, request: httpx.Request, response: httpx.Response | None,
                 view: httpx.Response | None, error: BaseException | None,
                 attempts: Attempts) -> None:
        """The one line of a finished logical call; ``view`` is the response with its body
        read, when it was (the body is logged for a failed call)."""
        if not self.enabled:
            return
        elapsed = attempts.elapsed()
        url = request.url
        try:
            content = request.content
        except httpx.RequestNotRead:
            body = "<stream>"
        else:
            body = (_body(content, request.headers.get("content-type", ""), self.max_body)
                    if content else "")
        status = response.status_code if response is not None else None
        failed = error is not None or (status is not None and status >= 400)
        headers, request_id = _headers_json(tuple(request.headers.raw), self.max_headers)
        # Assembled from JSON fragments: this line is written for every call.
        message = (
            f'{{"direction": "out", "method": {_dumps(request.method)}, '
            f'"url": {_dumps(self.url(url))}, '
            f'"params": {_dumps(_cap(redact_query(url.query.decode("ascii", "replace")), self.max_params))}, '  # noqa: E501
            f'"headers": {headers}, '
            f'"body": {_dumps(body)}, '
            f'"status": {"null" if status is None else status}, '
            f'"latency_ms": {round(elapsed * 1000, 2)}, "attempts": {attempts.number}, '
            f'"request_id": {request_id}'
        )
        if attempts.span is not None:  # tracing is on: the trace the call's span is in
            trace_id = _telemetry.trace_id(attempts.span)
            if trace_id is not None:
                message += f', "trace_id": "{trace_id}"'
        if response is not None and INSTANCE_EXTENSION in response.extensions:
            # A transport that chose where the call went (a call by service name) says so.
            message += f', "instance": {_dumps(self.url(httpx.URL(response.extensions[INSTANCE_EXTENSION])))}'  # noqa: E501
        if error is not None:
            message += f', "error": {_dumps(redact_text(error_text(error)))}}}'
        elif failed and response is not None:
            if view is not None:
                shown = _body(view.content, view.headers.get("content-type", ""),
                              self.max_body)
            else:
                shown = "<stream>"
            message += f', "response_body": {_dumps(shown)}}}'
        else:
            message += "}"
        if failed:
            logger.warning(message)
        else:
            logger.info(message)

    @staticmethod
    def url(url: httpx.URL) -> str:
        """The URL without its query (logged apart, as ``params``), password masked."""
        return redact_url(str(url).partition("?")[0])
