"""Per-request context: request id, timing headers, the access log; the liveness answer.

For every HTTP request:

- the request id is ``X-Request-ID`` when the client sent a sane one (1-128 of
  ``A-Za-z0-9._:-``), else a new one; it is bound for logs and FastKit clients
  (:mod:`fastkit.request_id`) while the request runs and echoed on the response;
- every response, errors included, carries ``X-Request-ID``, ``X-Lasting-Time``
  (milliseconds to the first byte of the response) and ``X-Content-Type-Options: nosniff``;
- ``GET``/``HEAD`` on a health path is answered by :class:`Liveness`, which the app
  calls before anything else (see :class:`fastflyer.FlyerAPI`), with the same headers and
  access-log line;
- an exception nothing else answered becomes a 500 envelope, and one that escapes after
  the response started is dropped (the error handler logged it already);
- one access-log line is written when the response ends (with the trace and span ids of
  FastAPI's span of the request while tracing is on: it is still the current span).
"""

from __future__ import annotations

import asyncio
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastflyer.errors import ErrorRenderer, loggable
from fastflyer.middleware.access_log import AccessLog
from fastkit.logging import logger
from fastkit.request_id import new_request_id, reset_request_id, set_request_id
from fastkit.tracing import current_ids

__all__ = ["HEALTH_BODY", "HEALTH_METHODS", "NOSNIFF", "Liveness", "RequestContextMiddleware",
           "request_id_of"]

HEALTH_BODY = b'{"code":200,"message":"success"}'
_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
NOSNIFF = (b"x-content-type-options", b"nosniff")
_HEALTH_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(HEALTH_BODY)).encode()),
    NOSNIFF,
]
HEALTH_METHODS = frozenset({"GET", "HEAD"})


def request_id_of(raw: bytes | None) -> tuple[str, bytes]:
    """The request id for a client's ``X-Request-ID`` value ``raw`` (``None``: none sent),
    as text and bytes: ``raw`` when sane (1-128 of ``A-Za-z0-9._:-``), else a new one."""
    if raw is not None and _SANE_ID.fullmatch(raw):
        return raw.decode("ascii"), raw
    request_id = new_request_id()
    return request_id, request_id.encode("ascii")


def _caller_headers(scope: Scope) -> tuple[bytes | None, bytes | None]:
    """The ``X-Request-ID`` and ``User-Agent`` values of an HTTP ``scope`` (``None``: not sent)."""
    raw_id: bytes | None = None
    user_agent: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            raw_id = value
        elif name == b"user-agent":
            user_agent = value
    return raw_id, user_agent


def _log_access(log: AccessLog | None, scope: Scope, status: int, started: float,
                request_id: str, user_agent: bytes | None) -> None:
    """One access-log line for the HTTP request of ``scope`` (``started``: its
    ``time.perf_counter()``), unless ``log`` is ``None`` or leaves its path out."""
    path: str = scope["path"]
    if log is not None and log.wanted(path):
        client = scope.get("client")
        ids = current_ids()  # None unless tracing is on (and the request has a span)
        log.write(scope["method"], path, scope.get("query_string", b""), status,
                  (time.perf_counter() - started) * 1000, client[0] if client else None,
                  request_id, user_agent.decode("latin-1") if user_agent is not None else None,
                  trace_id=ids[0] if ids else None, span_id=ids[1] if ids else None)


class Liveness:
    """The liveness answer, as an ASGI app: ``200 {"code":200,"message":"success"}`` to
    ``GET`` (``HEAD``: the same headers, no body), with ``X-Request-ID`` (the caller's
    when sane, else a new one), ``X-Lasting-Time`` and ``nosniff``, and one line in
    ``access_log`` (``None``: none). It reads no body and calls nothing else: no route,
    no auth, no user middleware."""

    def __init__(self, access_log: AccessLog | None = None) -> None:
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        raw_id, user_agent = _caller_headers(scope)
        request_id, id_bytes = request_id_of(raw_id)
        lasting = f"{(time.perf_counter() - started) * 1000:.2f}".encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*_HEALTH_HEADERS, (b"x-request-id", id_bytes),
                                (b"x-lasting-time", lasting)]})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else HEALTH_BODY})
        _log_access(self.access_log, scope, 200, started, request_id, user_agent)


class RequestContextMiddleware:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, *, renderer: ErrorRenderer,
                 access_log: AccessLog | None = None) -> None:
        self.app = app
        self.renderer = renderer
        self.access_log = access_log
        #: HTTP requests this process is serving now (health probes aside).
        self.in_flight = 0
        #: HTTP requests cut off by the server's stop (see ``__call__``).
        self.cut_off = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        raw_id, user_agent = _caller_headers(scope)
        request_id, id_bytes = request_id_of(raw_id)
        path: str = scope["path"]
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                lasting = f"{(time.perf_counter() - started) * 1000:.2f}".encode()
                message = {**message, "headers": [
                    *message.get("headers", ()), NOSNIFF, (b"x-request-id", id_bytes),
                    (b"x-lasting-time", lasting)]}
            await send(message)

        token = set_request_id(request_id)
        self.in_flight += 1
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            if status == 0:  # nothing answered yet: answer in the envelope
                await self.renderer.send_unanswered(scope, receive, send_with_headers, exc)
            # else: the app's error handler answered and logged it already
        except asyncio.CancelledError:
            # The server stopped before the request finished (its drain,
            # flyer_graceful_timeout, ran out). The request ends here, answered 503 if
            # nothing was sent yet; counted, so that the stop is not called clean.
            self.cut_off += 1
            logger.warning("{} {} cut off: the server stopped before it finished",
                           scope["method"], loggable(path))
            if status == 0:
                await self.renderer.send_stopping(scope, receive, send_with_headers)
        finally:
            self.in_flight -= 1
            reset_request_id(token)
        _log_access(self.access_log, scope, status, started, request_id, user_agent)
