"""The log lines of outgoing calls: one per logical call, one WARNING per retry.

The per-call line is JSON: ``direction`` (``out``), ``method``, ``url`` (without
its query), ``params`` (the query), ``headers``, ``body`` (the request body),
``status``, ``latency_ms`` (all attempts and waits), ``attempts``, ``request_id``,
and ``error`` when the call raised. Params, headers and bodies are capped in
length and secrets redacted (:mod:`fastkit.logging.redact`). INFO normally,
WARNING when the final status is >= 400 or the call raised (then the response
body is included too, capped).
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass

import httpx

from fastkit.httpx._engine import Attempts
from fastkit.logging import logger
from fastkit.logging.redact import redact_headers, redact_query, redact_url

__all__ = ["CallLog"]

_ELLIPSIS = "…"


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
def _headers_json(raw: tuple[tuple[bytes, bytes], ...], limit: int) -> str:
    """The redacted, capped JSON of a header list (the same few lists repeat)."""
    headers = redact_headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in raw)
    text = json.dumps(headers, ensure_ascii=False)
    return text if len(text) <= limit else json.dumps(_cap(text, limit), ensure_ascii=False)


def _body(content: bytes, limit: int) -> str:
    if not content:
        return ""
    text = content[:limit].decode("utf-8", "replace")
    return text + _ELLIPSIS if len(content) > limit else text


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
                request.method, self._url(request.url), wait, attempts.number - 1,
                attempts.policy.stop_max_attempt_number, attempts.reason,
            )

    def finished(self, request: httpx.Request, response: httpx.Response | None,
                 error: BaseException | None, attempts: Attempts) -> None:
        """The one line of a finished logical call."""
        if not self.enabled:
            return
        elapsed = attempts.elapsed()
        url = request.url
        try:
            body = _body(request.content, self.max_body)
        except httpx.RequestNotRead:
            body = "<stream>"
        status = response.status_code if response is not None else None
        failed = error is not None or (status is not None and status >= 400)
        # Assembled from JSON fragments: this line is written for every call.
        message = (
            f'{{"direction": "out", "method": {_dumps(request.method)}, '
            f'"url": {_dumps(self._url(url))}, '
            f'"params": {_dumps(_cap(redact_query(url.query.decode("ascii", "replace")), self.max_params))}, '  # noqa: E501
            f'"headers": {_headers_json(tuple(request.headers.raw), self.max_headers)}, '
            f'"body": {_dumps(body)}, '
            f'"status": {"null" if status is None else status}, '
            f'"latency_ms": {round(elapsed * 1000, 2)}, "attempts": {attempts.number}, '
            f'"request_id": {_dumps(request.headers.get("x-request-id"))}'
        )
        if error is not None:
            message += f', "error": {_dumps(f"{type(error).__name__}: {error}")}}}'
        elif failed and response is not None:
            try:
                shown = _body(response.content, self.max_body)
            except httpx.ResponseNotRead:
                shown = "<stream>"
            message += f', "response_body": {_dumps(shown)}}}'
        else:
            message += "}"
        if failed:
            logger.warning(message)
        else:
            logger.info(message)

    @staticmethod
    def _url(url: httpx.URL) -> str:
        """The URL without its query (logged apart, as ``params``), password masked."""
        return redact_url(str(url).partition("?")[0])
