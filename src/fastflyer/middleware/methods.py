"""HTTP method semantics as RFC 9110 (§9.1, §9.3.2, §9.3.7, §15.5.6) has them.

FastAPI's routes answer only the methods they declare, and Starlette's router answers a
method a path lacks with the ``Allow`` of the first route it tried. FastFlyer completes
that, for every route however it was added (apps, the framework's docs, the task API):

- ``HEAD`` is answered wherever ``GET`` is and no route declares ``HEAD`` itself: the
  request runs as ``GET`` (:class:`HeadAsGetMiddleware`, before routing) and the answer
  goes out with the same status and headers (``Content-Length`` and ``Content-Type``
  included) and no body;
- a ``405`` lists in ``Allow`` every method of every route at that path, plus ``HEAD``
  where ``GET`` is and ``OPTIONS`` (:func:`method_not_allowed`, the app's 405 handler);
- ``OPTIONS`` on a path no route serves it on answers ``204`` with that ``Allow``; a CORS
  preflight never gets here when CORS is on (its middleware answers it first).

The methods of a path are read from the live route table at the request, not at build
time: only ``HEAD``, ``OPTIONS`` and 405s pay for it. A mount of static files serves
``GET`` and ``HEAD``; a mount of another application answers for itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastflyer.errors import ErrorRenderer

try:  # FastAPI ≥ 0.16x keeps included routers whole; walk their routes
    from fastapi.routing import iter_route_contexts as _iter_route_contexts
except ImportError:  # older FastAPI copies included routes into the app's list
    def _iter_route_contexts(routes: Sequence[Any]) -> Any:  # type: ignore[misc]
        return iter(routes)

__all__ = ["HeadAsGetMiddleware", "allowed_methods", "declared_methods", "head_runs_as_get",
           "method_not_allowed"]

_METHOD_NOT_ALLOWED = 405
_STATIC_METHODS = frozenset({"GET", "HEAD"})
# The keys routing adds to a request's scope naming what serves it.
_ROUTING_KEYS = ("route", "endpoint")


def declared_methods(routes: Iterable[Any], scope: Scope) -> frozenset[str] | None:
    """The methods the HTTP ``routes`` (an app's ``router.routes``) declare for the path
    of ``scope`` (an HTTP scope; its method does not matter). Empty: no route has that
    path. ``None``: a mount of an application other than static files has it, and that
    application alone knows its methods."""
    probe = {"type": "http", "method": "GET", "path": scope["path"],
             "root_path": scope.get("app_root_path", scope.get("root_path", ""))}
    found: set[str] = set()
    for route in _iter_route_contexts(list(routes)):
        match, _ = route.matches(probe)
        if match is Match.NONE:
            continue
        methods = getattr(route, "methods", None)
        if methods:
            found.update(methods)
        elif isinstance(getattr(route, "original_route", route), Mount):
            if not isinstance(route.app, StaticFiles):
                return None
            found.update(_STATIC_METHODS)
    return frozenset(found)


def head_runs_as_get(routes: Iterable[Any], scope: Scope) -> bool:
    """Whether a ``HEAD`` for the path of ``scope`` (an HTTP scope) runs as ``GET``: a
    route serves ``GET`` there, no route declares ``HEAD`` there, and no mount takes the
    path before that route. Routing order decides, as in Starlette's router: a catch-all
    mount after the routes (``StaticFiles`` at ``/``) answers every ``HEAD`` routing
    hands it, and must not shadow the ``GET`` routes before it."""
    root_path = scope.get("app_root_path", scope.get("root_path", ""))
    head, get = ({"type": "http", "method": method, "path": scope["path"],
                  "root_path": root_path} for method in ("HEAD", "GET"))
    served = False
    for route in _iter_route_contexts(list(routes)):
        if route.matches(head)[0] is Match.FULL:
            if getattr(route, "methods", None) or not served:
                return False  # a route of its own for HEAD, or a mount before the GET
        elif not served and route.matches(get)[0] is Match.FULL:
            served = True
    return served


def allowed_methods(declared: frozenset[str]) -> frozenset[str]:
    """What ``Allow`` lists for a path whose routes declare ``declared`` (not empty):
    those, ``HEAD`` where ``GET`` is, and ``OPTIONS``."""
    head = {"HEAD"} if "GET" in declared else set()
    return declared | head | {"OPTIONS"}


class HeadAsGetMiddleware:
    """Answer ``HEAD`` as ``GET`` without the body where no route declares ``HEAD``.

    ``routes``: a callable returning the app's current routes (its ``router.routes``).
    Other methods pass untouched, at the cost of one comparison.
    """

    def __init__(self, app: ASGIApp, routes: Callable[[], Iterable[Any]]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        if not head_runs_as_get(self.routes(), scope):
            await self.app(scope, receive, send)  # served as declared, or refused: 405
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("body"):
                    message = {**message, "body": b""}
            elif message["type"] == "http.response.pathsend":
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        # A copy: the server keeps its own scope, which still says HEAD.
        as_get = {**scope, "method": "GET"}
        try:
            await self.app(as_get, receive, without_body)
        finally:
            # What routing chose, for the layers outside (the HTTP metrics' route label).
            for key in _ROUTING_KEYS:
                if key in as_get:
                    scope[key] = as_get[key]


def method_not_allowed(
    renderer: ErrorRenderer,
) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The app's handler for ``HTTPException(405)``: when routing refused the method,
    ``Allow`` lists every method of the path (see the module docstring) and ``OPTIONS``
    answers ``204`` with it; a 405 the endpoint raised itself keeps its own headers.
    Answers go through ``renderer`` (the error envelope)."""

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        router = request.scope.get("router") or request.app.router
        declared = declared_methods(router.routes, request.scope)
        if declared and request.method not in declared:  # routing's refusal
            allow = ", ".join(sorted(allowed_methods(declared)))
            if request.method == "OPTIONS":
                return Response(status_code=204, headers={"Allow": allow})
            exc = HTTPException(_METHOD_NOT_ALLOWED, exc.detail,
                                {**(exc.headers or {}), "Allow": allow})
        return await renderer.http_exception(request, exc)

    return handler
