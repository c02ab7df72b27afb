"""413 for a request body over the configured size, answered in the envelope.

A declared ``Content-Length`` over the limit is refused before the body is read. A
chunked body is counted as it arrives; crossing the limit raises
``HTTPException(413)`` inside the app, which the error handlers answer.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastflyer.errors import ErrorRenderer

__all__ = ["BodyLimitMiddleware"]

_TOO_LARGE = 413


class BodyLimitMiddleware:
    """Refuse request bodies larger than ``max_size`` bytes."""

    def __init__(self, app: ASGIApp, max_size: int, renderer: ErrorRenderer) -> None:
        self.app = app
        self.max_size = max_size
        self.renderer = renderer

    def _message(self) -> str:
        return f"Request body is larger than {self.max_size} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        if length is None and not chunked:  # no body at all
            await self.app(scope, receive, send)
            return
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared > self.max_size:
                await self.renderer.send(scope, receive, send, _TOO_LARGE, self._message())
                return
            if declared >= 0:  # the server holds the body to the declared length
                await self.app(scope, receive, send)
                return
        received = 0
        limit = self.max_size

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(_TOO_LARGE, self._message())
            return message

        await self.app(scope, counted, send)
