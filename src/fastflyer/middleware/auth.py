"""HTTP Basic authentication as a pure-ASGI guard, before routing and body parsing.

With ``flyer_auth_enable=1``, :class:`BasicAuthMiddleware` checks the ``Authorization``
header of every HTTP request and WebSocket handshake to a protected path before the
app routes it or reads its body: an app mounted by discovery, ``include_app`` or
``include_router``, a route added at the root, the task API, the docs, the schema and
their assets all sit behind it. What stays open is :func:`is_protected`'s only
exception: the health checks (``/health_check``, ``{base_url}/health_check`` and what
is under them), which probes call without credentials.

A refused HTTP request gets 401 in the envelope (through the app's
:class:`~fastflyer.errors.ErrorRenderer`: the request id, ``flyer_always_http_200``)
with ``WWW-Authenticate: Basic realm="..."``; its body is never read. A refused
WebSocket handshake gets the same 401 where the server offers ASGI's
``websocket.http.response`` extension (uvicorn, hypercorn, Starlette's test client do),
else a close with 1008 (policy violation), which the server answers with a bare 403.
The user name and the password are both compared in constant time
(:func:`secrets.compare_digest`), whichever fails first.

A CORS preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) passes
when ``preflight_passes`` is set (the app has CORS): browsers never send credentials on a
preflight, and Starlette's CORS middleware answers it without reaching a route.
"""

from __future__ import annotations

import binascii
import secrets
from base64 import b64decode

from starlette.types import ASGIApp, Receive, Scope, Send

from fastflyer.errors import ErrorRenderer

__all__ = ["REALM", "BasicAuthMiddleware", "is_protected"]

REALM = "fastflyer"
_UNAUTHORIZED = 401
_POLICY_VIOLATION = 1008  # WebSocket close code
_DENIAL = "websocket.http.response"  # the ASGI extension for answering a handshake
_REQUIRED = "Authentication required"


def is_protected(path: str, base_url: str) -> bool:
    """Whether ``path`` (a request path without the root path) needs credentials when
    auth is on: every path but the health checks (``/health_check``,
    ``{base_url}/health_check`` and the paths under them, readiness included).

    A path with a dot segment (``.``, ``..``) or a backslash is protected whatever it
    starts with: ``/health_check/../secret.txt`` names no health check, and what serves
    files (``StaticFiles``, a ``{path:path}`` route) resolves it to ``/secret.txt``."""
    if "\\" in path or any(segment in (".", "..") for segment in path.split("/")):
        return True
    for open_path in ("/health_check", f"{base_url}/health_check"):
        if path == open_path or path.startswith(f"{open_path}/"):
            return False
    return True


def basic_credentials(authorization: bytes) -> tuple[bytes, bytes] | None:
    """``(user, password)`` of an ``Authorization: Basic <base64 of user:password>``
    header value, else ``None`` (another scheme, bad base64, no ``:``)."""
    scheme, _, token = authorization.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None


class BasicAuthMiddleware:
    """Refuse requests to protected paths without the configured Basic credentials.

    ``user``/``password``: the expected credentials (``flyer_auth_user`` and
    ``flyer_auth_pass``, compared as UTF-8 bytes); ``base_url``: the app's base URL, for
    :func:`is_protected`; ``renderer``: answers the 401; ``realm``: named in the
    challenge; ``preflight_passes``: let CORS preflights through (see the module).
    """

    def __init__(self, app: ASGIApp, *, user: str, password: str, base_url: str,
                 renderer: ErrorRenderer, realm: str = REALM,
                 preflight_passes: bool = False) -> None:
        self.app = app
        self._user = user.encode()
        self._password = password.encode()
        self.base_url = base_url
        self.renderer = renderer
        self.challenge = {"WWW-Authenticate": f'Basic realm="{realm}"'}
        self.preflight_passes = preflight_passes

    def authenticated(self, scope: Scope) -> bool:
        """Whether the request's ``Authorization`` header holds the right credentials."""
        for name, value in scope["headers"]:
            if name == b"authorization":
                found = basic_credentials(value)
                if found is None:
                    return False
                user_ok = secrets.compare_digest(found[0], self._user)
                password_ok = secrets.compare_digest(found[1], self._password)
                return user_ok and password_ok
        return False

    def _exempt(self, scope: Scope) -> bool:
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        if not is_protected(path, self.base_url):
            return True
        if not (self.preflight_passes and scope["type"] == "http"
                and scope["method"] == "OPTIONS"):
            return False
        # A preflight is what Starlette's CORS middleware answers itself: an Origin and an
        # Access-Control-Request-Method. Without the Origin it passes the request on, and
        # an OPTIONS route (or a mounted app) would run without credentials.
        names = {name for name, _ in scope["headers"]}
        return b"origin" in names and b"access-control-request-method" in names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._exempt(scope) \
                or self.authenticated(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            if _DENIAL not in (scope.get("extensions") or {}):
                await send({"type": "websocket.close", "code": _POLICY_VIOLATION,
                            "reason": _REQUIRED})
                return
            # A handshake is refused with a real 401, whatever flyer_always_http_200 says.
            denial = self.renderer.response(_UNAUTHORIZED, _UNAUTHORIZED, _REQUIRED,
                                            headers=self.challenge)
            denial.status_code = _UNAUTHORIZED
            await denial(scope, receive, send)
            return
        await self.renderer.send(scope, receive, send, _UNAUTHORIZED, _REQUIRED,
                                 headers=self.challenge)
