"""Errors nothing answered, answered inside the layers that add headers to every answer.

:class:`~fastflyer.middleware.RequestContextMiddleware` has the last word on errors: an
exception that escapes before any answer started becomes a 500, and a request the
server's stop cuts off becomes a 503. It is the outermost layer, though, so those answers
would miss what the layers inside it add, CORS above all (a browser then reports a CORS
error instead of the 500). :class:`UnansweredErrorMiddleware` sits just inside those
layers and gives the same answers there:

- an ``Exception`` escaping with no answer started: logged (:func:`~fastflyer.errors.
  log_unhandled`) and answered 500 in the error envelope;
- ``asyncio.CancelledError`` (the server's drain ran out) with no answer started:
  answered 503 with ``Retry-After: 1``.

Either is raised again after the answer, so that the context layer still counts and logs
the request as it does without this layer (it sends nothing more once an answer started).
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastflyer.errors import ErrorRenderer

__all__ = ["UnansweredErrorMiddleware"]


class UnansweredErrorMiddleware:
    """See the module docstring. ``renderer`` renders the 500 and the 503."""

    def __init__(self, app: ASGIApp, renderer: ErrorRenderer) -> None:
        self.app = app
        self.renderer = renderer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if not started:
                await self.renderer.send_unanswered(scope, receive, send, exc)
            raise
        except asyncio.CancelledError:
            if not started:
                await self.renderer.send_stopping(scope, receive, send)
            raise
