"""Per-connection context of websockets: the request id, and refusals that say why.

For every websocket handshake:

- the request id is ``X-Request-ID`` when the client sent a sane one (as for HTTP, see
  :mod:`fastflyer.middleware.context`), else a new one; it is bound for logs and FastKit
  clients while the connection lives;
- an accepted websocket's handshake answer (``101``) carries ``X-Request-ID``;
- a websocket refused before the accept (no websocket route at the path, or an endpoint
  that closes first) is answered, where the server offers ASGI's
  ``websocket.http.response`` extension (uvicorn, hypercorn and Starlette's test client
  do), with a ``403`` in the error envelope, ``{"code": 403, "message": <why>}``, carrying
  ``X-Request-ID`` and ``nosniff``; the message is the close reason the app gave, else
  what routing found. Without the extension the server answers its own bare ``403``.

A refusal after the accept (the concurrency limit's ``1013``) is a close code and reason:
its handshake answer carries the id, and the limit puts it in the reason too.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastflyer.errors import error_body
from fastflyer.middleware.context import NOSNIFF, request_id_of
from fastkit.request_id import reset_request_id, set_request_id

__all__ = ["WebSocketContextMiddleware"]

_DENIAL = "websocket.http.response"
_FORBIDDEN = 403
_NO_ROUTE = "Forbidden: no websocket route at this path"
_REFUSED = "Forbidden: the websocket was refused"


class WebSocketContextMiddleware:
    """See the module docstring. HTTP and lifespan scopes pass untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        raw_id: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                raw_id = value
        request_id, id_bytes = request_id_of(raw_id)
        id_header = (b"x-request-id", id_bytes)
        can_deny = _DENIAL in (scope.get("extensions") or {})
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal answered
            kind = message["type"]
            if kind == "websocket.accept" or kind == f"{_DENIAL}.start":
                answered = True
                message = {**message, "headers": [*message.get("headers", ()), id_header,
                                                  NOSNIFF]}
            elif kind == "websocket.close" and not answered and can_deny:
                answered = True
                reason = message.get("reason") or (_REFUSED if "route" in scope else _NO_ROUTE)
                await _deny(send, reason, id_header)
                return
            await send(message)

        token = set_request_id(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            reset_request_id(token)


async def _deny(send: Send, reason: str, id_header: tuple[bytes, bytes]) -> None:
    """Refuse the handshake with a 403 in the error envelope."""
    body = error_body(_FORBIDDEN, reason)
    await send({"type": f"{_DENIAL}.start", "status": _FORBIDDEN, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        NOSNIFF, id_header]})
    await send({"type": f"{_DENIAL}.body", "body": body})
