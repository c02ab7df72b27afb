"""The HTTP server's Prometheus metrics, and the route that serves every metric.

With ``flyer_metrics_enabled=1`` (the default) a :class:`~fastflyer.FlyerAPI` records, for
each HTTP request (the health checks and the metrics path itself aside):

- ``http_server_requests_total{method, route, status}``: a counter of answered requests;
- ``http_server_request_duration_seconds{method, route}``: a histogram of the seconds from
  the request reaching the app to the end of its response (prometheus-client's default
  buckets, 5 ms to 10 s);
- ``http_server_active_requests{method}``: a gauge of the requests in flight.

``route`` is the template of the route that took the request, with every prefix it is
mounted under (``/flyer/items/{item_id}``), never the raw path, so a label has as many
values as the app has routes. A request no route took has ``route=""``: a 404 of routing,
or one refused before routing (401 from auth, 413, the concurrency limit's 503).
``method`` is the request's when it is a standard one (RFC 9110's and ``PATCH``), else
``_OTHER``; ``status`` the status code answered (500 when the app raised before answering).

:func:`metrics_route` serves ``GET flyer_metrics_path`` (default ``/metrics``) with
:func:`fastkit.metrics.exposition`: these, FastKit's own (clients, pools, schedulers,
Kafka), the application's own ``prometheus_client`` metrics, and under
``fastflyer serve`` every worker's (see :mod:`fastkit.metrics`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastflyer.settings import SettingsError, variable_name
from fastkit import metrics

try:  # FastAPI ≥ 0.16x keeps included routers whole; walk their routes
    from fastapi.routing import iter_route_contexts as _iter_route_contexts
except ImportError:  # older FastAPI copies included routes into the app's list
    def _iter_route_contexts(routes: Sequence[Any]) -> Any:  # type: ignore[misc]
        return iter(routes)

__all__ = ["ACTIVE_REQUESTS", "METHODS", "REQUESTS", "REQUEST_DURATION",
           "HTTPMetricsMiddleware", "RouteTemplates", "check_metrics_path", "metrics_route"]

REQUESTS = "http_server_requests_total"
REQUEST_DURATION = "http_server_request_duration_seconds"
ACTIVE_REQUESTS = "http_server_active_requests"

#: The methods a ``method`` label names; any other is ``_OTHER`` (a bounded label).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
                     "PATCH"})
_OTHER = "_OTHER"
# Routes of a sub-application (a mount) remembered apart, at most this many.
_ELSEWHERE_MAX = 1024

# (pattern the route path must match, template); a str when only one template can be.
_Candidates = tuple[tuple[re.Pattern[str], str], ...]
_Found = tuple[object, "str | _Candidates"]


def _keys(route: Any) -> list[object]:
    """What a request's scope holds when ``route`` (an app's route, as its router keeps
    it) takes the request: FastAPI puts its own routes in ``scope["route"]``; Starlette's
    routing puts only the endpoint in ``scope["endpoint"]`` (a ``Route``'s function, a
    ``Mount``'s application)."""
    keys: list[object] = [route]
    endpoint = route.app if isinstance(route, Mount) else getattr(route, "endpoint", None)
    if endpoint is not None:
        keys.append(endpoint)
    return keys


class RouteTemplates:
    """The route template of a request, from what routing left in its scope.

    ``routes``: a callable returning the app's current routes (its ``router.routes``).
    The table, from FastAPI's :func:`~fastapi.routing.iter_route_contexts` (each route
    with the prefixes it is included under), is built at the first request and again
    when a request names a route it lacks (one added since). A route included under
    several prefixes has a template per prefix: the one whose pattern matches the path.
    A route of an application mounted in the app (``app.mount``) is the mount's prefix
    followed by the route's own template; a mount without routes, the mount's template
    (``/static/{path}``).
    """

    def __init__(self, routes: Callable[[], Iterable[BaseRoute]]) -> None:
        self._routes = routes
        self._found: dict[int, _Found] = {}
        self._elsewhere: dict[int, _Found] = {}
        self._mounts: list[tuple[re.Pattern[str], str]] = []

    def template(self, scope: Scope, path: str) -> str:
        """The template of the route that took the request of ``scope``, once the app has
        answered it; ``""`` when no route did. ``path``: the request's path without the
        root path, as it was when the request came in."""
        key = scope.get("route")
        if key is None:
            key = scope.get("endpoint")
            if key is None:
                return ""
        found = self._found.get(id(key)) or self._elsewhere.get(id(key)) or self._missed(key)
        templates = found[1]
        if isinstance(templates, str):
            return templates
        for pattern, template in templates:
            if pattern.match(path):
                return template
        return ""

    def _build(self) -> None:
        candidates: dict[int, tuple[object, list[tuple[re.Pattern[str], str]]]] = {}
        mounts = []
        for context in _iter_route_contexts(list(self._routes())):
            route = getattr(context, "original_route", context)
            template = getattr(context, "path_format", None)
            pattern = getattr(context, "path_regex", None)
            if not isinstance(template, str) or pattern is None:
                continue
            for key in _keys(route):
                candidates.setdefault(id(key), (key, []))[1].append((pattern, template))
            if isinstance(route, Mount):
                mounts.append((pattern, template))
        self._found = {ident: (key, _shortest(found))
                       for ident, (key, found) in candidates.items()}
        self._mounts = mounts

    def _missed(self, key: object) -> _Found:
        self._build()  # a route added since the table was built?
        found = self._found.get(id(key))
        if found is not None:
            return found
        # Not a route of the app's: one of an application mounted in it.
        own = getattr(key, "path_format", None)
        templates = tuple(
            (pattern, mount.removesuffix("/{path}") + own if isinstance(own, str) else mount)
            for pattern, mount in self._mounts)
        found = (key, _shortest(list(templates)))
        if len(self._elsewhere) < _ELSEWHERE_MAX:  # held: its id stays its own
            self._elsewhere[id(key)] = found
        return found


def _shortest(candidates: list[tuple[re.Pattern[str], str]]) -> str | _Candidates:
    """One template when the candidates agree (or there is none: ``""``), else them all."""
    templates = {template for _, template in candidates}
    if len(templates) <= 1:
        return templates.pop() if templates else ""
    return tuple(candidates)


class HTTPMetricsMiddleware:
    """Record the metrics of each HTTP request (see the module docstring); a pure-ASGI
    layer, outside every other one of the app's, so that every answer is counted,
    those of the layers that answer by themselves (401, 413, 503) included.

    ``routes``: a callable returning the app's current routes; ``skip``: the request paths
    (without the root path) not recorded, such as the health checks and the metrics path.
    The metric families are created (in the default registry) when it is built.
    """

    def __init__(self, app: ASGIApp, routes: Callable[[], Iterable[BaseRoute]],
                 skip: Iterable[str] = ()) -> None:
        self.app = app
        self.skip = frozenset(skip)
        self.templates = RouteTemplates(routes)
        self._requests = metrics.counter(
            REQUESTS, "HTTP requests answered by the server.", ("method", "route", "status"))
        self._duration = metrics.histogram(
            REQUEST_DURATION, "Seconds from an HTTP request reaching the app to the end of "
            "its response.", ("method", "route"))
        self._active = metrics.gauge(ACTIVE_REQUESTS, "HTTP requests in flight.", ("method",))
        # Label children, created once each: a request pays dictionary lookups only.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._in_flight: dict[str, Any] = {}

    def _children_of(self, key: tuple[str, str, int]) -> tuple[Any, Any]:
        method, route, status = key
        children = (self._requests.labels(method, route, str(status)),
                    self._duration.labels(method, route))
        self._children[key] = children
        return children

    def _in_flight_of(self, method: str) -> Any:
        child = self._in_flight[method] = self._active.labels(method)
        return child

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        if path in self.skip:
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        if method not in METHODS:
            method = _OTHER
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        in_flight = self._in_flight.get(method) or self._in_flight_of(method)
        in_flight.inc()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            in_flight.dec()
            key = (method, self.templates.template(scope, path), status or 500)
            requests, duration = self._children.get(key) or self._children_of(key)
            requests.inc()
            duration.observe(elapsed)


def _serve_metrics(request: Request) -> Response:
    # A plain function: Starlette runs it in the thread pool (reading the multiprocess
    # files does file I/O).
    body, content_type = metrics.exposition(request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type})


def check_metrics_path(path: str, base_url: str, max_url_length: int | None = None) -> None:
    """Refuse a metrics path the app's own paths would hide: ``{base_url}/health_check``
    and what is under it (answered before routing, open under auth), and
    ``{base_url}/static`` and under (the docs' files); and one longer than
    ``max_url_length`` bytes (``flyer_max_url_length``: its scrapes would all be 414).
    Raises :class:`~fastflyer.settings.SettingsError` (one line, naming the variable)."""
    name = variable_name("metrics_path")
    for taken, what in ((f"{base_url}/health_check", "the health checks"),
                        (f"{base_url}/static", "the docs pages' files")):
        if path == taken or path.startswith(f"{taken}/"):
            raise SettingsError([f"{name}={path!r} is not allowed: a "
                                 f"path outside {taken}, where {what} are served"])
    if max_url_length is not None and len(path) > max_url_length:
        shown = path if len(path) <= 60 else f"{path[:40]}...({len(path)} characters)"
        raise SettingsError([f"{name}={shown!r} is not allowed: a path of at most "
                             f"{variable_name('max_url_length')}={max_url_length} characters, "
                             "the longest request target the server reads"])


def metrics_route(path: str) -> Route:
    """The route serving :func:`fastkit.metrics.exposition` at ``path`` (``GET``, and
    ``HEAD``), in Prometheus's text format or OpenMetrics as the scrape's ``Accept`` asks;
    not in the OpenAPI schema."""
    return Route(path, _serve_metrics, methods=["GET"], include_in_schema=False,
                 name="fastflyer-metrics")
