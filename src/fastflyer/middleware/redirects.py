"""Redirects never take their host from the request: an absolute ``Location`` that points
back at the request's own origin goes out relative.

Starlette builds the redirects it makes itself from the request's ``Host`` header: the
router's slash redirect (``GET /flyer/docs/`` → ``http://<Host>/flyer/docs``, ``GET
/flyer/static`` → ``http://<Host>/flyer/static/``), ``StaticFiles(html=True)``'s
directory redirect, and every ``request.url_for(...)`` an endpoint redirects to. A forged
``Host`` (``evil.example``) then comes back as the redirect's target, and a cache in front
keeps it for everyone. Each of these sources would need its own fix (and a user's
``url_for`` none could reach), so this layer fixes the kind: a 3xx whose ``Location`` is
``<scheme>://<Host>/...`` with the request's own scheme and ``Host`` leaves as the path
and query alone (``/flyer/docs``), which a client resolves to the very same URL. A
``Location`` to another origin, or to the same host under another scheme (an upgrade to
``https``), is left alone. A path that would read as another host (``//evil.example``,
``/\\evil.example``) keeps a single leading slash.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RelativeRedirectMiddleware", "relative_location"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(scope: Scope) -> bytes | None:
    """``<scheme>://<authority>`` as Starlette builds it from ``scope`` (lower case)."""
    scheme: str = scope.get("scheme", "http")
    for name, value in scope["headers"]:
        if name == b"host":
            given: bytes = value
            return f"{scheme}://".encode() + given.lower()
    server = scope.get("server")
    if not server:
        return None
    host, port = server[0], server[1]
    authority = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return f"{scheme}://{authority}".lower().encode("latin-1")


def relative_location(location: bytes, scope: Scope) -> bytes:
    """``location`` (a ``Location`` header value) made relative when it points at the
    origin ``scope`` (an HTTP scope) was requested at; else unchanged."""
    origin = _origin(scope)
    if origin is None or location[:len(origin)].lower() != origin:
        return location
    rest = location[len(origin):]
    if rest[:1] not in (b"", b"/", b"?", b"#"):  # another host sharing the prefix
        return location
    if not rest.startswith(b"/"):
        rest = b"/" + rest
    if rest[1:2] in (b"/", b"\\"):  # would read as a network-path reference
        rest = b"/" + rest.lstrip(b"/\\")
    return rest


class RelativeRedirectMiddleware:
    """Make redirects to the request's own origin relative (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_relative(message: Message) -> None:
            if message["type"] == "http.response.start" and 300 <= message["status"] < 400:
                headers = [(name, relative_location(value, scope) if name.lower() == b"location"
                            else value) for name, value in message.get("headers", ())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_relative)
