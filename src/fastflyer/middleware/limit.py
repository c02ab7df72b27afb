"""Each worker's concurrency limit: ``flyer_worker_connections`` requests in flight at most.

The process counts the HTTP requests and websocket connections it is serving. One more
than ``limit`` is not queued: it is answered at once, so that a client (or the balancer in
front) can try another worker instead of waiting behind slow requests:

- an HTTP request gets ``503`` in the error envelope (``{"code": 503, "message": ...}``,
  rendered by the app's :class:`~fastflyer.errors.ErrorRenderer`, so
  ``flyer_always_http_200`` applies) with ``Retry-After: 1``;
- a websocket is accepted and closed at once with code ``1013`` (Try Again Later), its
  reason naming the request id when it fits.

A request counts from the moment it reaches this middleware until its handler returns
(a streamed response: until its last chunk is sent; a websocket: until it closes).
Liveness probes are answered before it (see
:class:`~fastflyer.middleware.RequestContextMiddleware`) and never refused.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from fastflyer.errors import ErrorRenderer
from fastkit.request_id import get_request_id

__all__ = ["ConcurrencyLimitMiddleware"]

_SERVICE_UNAVAILABLE = 503
_TRY_AGAIN_LATER = 1013  # RFC 6455 §7.4.1 (IANA registry): the server is overloaded
_RETRY_AFTER_SECONDS = 1
_MAX_REASON_BYTES = 123  # RFC 6455 §5.5: a control frame carries ≤ 125 bytes


class ConcurrencyLimitMiddleware:
    """Refuse HTTP requests and websockets beyond ``limit`` (≥ 1) in flight in this process.

    ``renderer`` renders the 503. ``in_flight`` is the count now (one event loop per
    process: no lock is needed).
    """

    def __init__(self, app: ASGIApp, limit: int, renderer: ErrorRenderer) -> None:
        if limit < 1:
            raise ValueError(f"limit must be ≥ 1, not {limit}")
        self.app = app
        self.limit = limit
        self.renderer = renderer
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":  # lifespan
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            if kind == "http":
                await self.renderer.send(
                    scope, receive, send, _SERVICE_UNAVAILABLE,
                    "Server busy; retry shortly",
                    headers={"Retry-After": str(_RETRY_AFTER_SECONDS)})
            else:
                await self._refuse_websocket(receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse_websocket(self, receive: Receive, send: Send) -> None:
        # A close before the accept is an HTTP 403 to the client; a close code needs the
        # handshake done first.
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        reason = "server busy; retry shortly"
        request_id = get_request_id()  # bound by WebSocketContextMiddleware
        if request_id and len(f"{reason}; request id {request_id}") <= _MAX_REASON_BYTES:
            reason = f"{reason}; request id {request_id}"  # ids are ASCII: chars = bytes
        await send({"type": "websocket.close", "code": _TRY_AGAIN_LATER, "reason": reason})
