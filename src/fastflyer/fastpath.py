"""Direct dispatch of simple routes: the same answers as FastAPI, with less work per request.

Most API routes are plain: a fixed path, query parameters, at most one JSON body model, a
``response_model`` and no dependencies. For those, FastAPI's general machinery (the
route scan, the dependency solver, the per-request exit stacks, the content-type parse)
costs more than the work itself. This middleware serves such a route directly:

1. query parameters are read by FastAPI's own ``request_params_to_args``;
2. the body is validated from its JSON bytes in one step by pydantic
   (``validate_json``), without ``json.loads`` first;
3. the endpoint is called (sync ones in the thread pool, as FastAPI does);
4. the result is validated against ``response_model`` and written with ``dump_json``,
   exactly as FastAPI's own fast path does.

Anything out of the ordinary goes to FastAPI untouched, so the answer is FastAPI's own:
invalid input (the body read so far is replayed, and FastAPI reports the error in its
usual shape), a content type that is not JSON, dependency overrides. (``HEAD`` arrives here
as ``GET``: see :mod:`fastflyer.middleware.methods`.) Exceptions
from the endpoint go to the app's exception handlers, found as Starlette finds them; so
does ``ClientDisconnect`` when the client goes away before its body is read (a 499, not a
truncated body replayed to FastAPI as a 422).

A route qualifies when it has no path parameters, no dependencies (the app's auth guard
runs before, as middleware), no header, cookie, ``Request``, ``Response``,
``BackgroundTasks`` or security parameters, at most one non-embedded body parameter that
is a pydantic model, a ``response_model``, the default ``JSONResponse`` and no
``response_model_include``/``exclude``/``exclude_*``, and no earlier route could match the
same request. An app with
middleware of its own (GZip, ``middlewares=``) does not use it, since those run inside
FastAPI's stack; CORS wraps the whole stack, this included. ``flyer_fast_path=0`` turns it off.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.utils import request_params_to_args
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["FastPathMiddleware", "FastRoute", "plan_route", "plan_routes"]

_JSON = (b"content-type", b"application/json")
_PARAM_NAMES = ("request_param_name", "websocket_param_name", "http_connection_param_name",
                "response_param_name", "background_tasks_param_name",
                "security_scopes_param_name")


@dataclass(frozen=True)
class FastRoute:
    """What serving one simple route needs, worked out once."""

    endpoint: Callable[..., Any]
    is_coroutine: bool
    query_fields: list[Any]
    body_name: str | None
    body_model: type[BaseModel] | None
    response: TypeAdapter[Any]
    status_code: int


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/")
                                            and media.endswith(b"+json"))


def plan_route(route: Any) -> FastRoute | None:
    """A :class:`FastRoute` for ``route`` (an ``APIRoute`` or FastAPI route context), or
    ``None`` when it needs FastAPI's full handling."""
    dependant = getattr(route, "dependant", None)
    path = getattr(route, "path", None)
    call = getattr(dependant, "call", None)
    if dependant is None or path is None or "{" in path or call is None:
        return None
    if (dependant.dependencies or dependant.path_params or dependant.header_params
            or dependant.cookie_params or any(getattr(dependant, n, None) for n in _PARAM_NAMES)):
        return None
    if inspect.isasyncgenfunction(call) or inspect.isgeneratorfunction(call):
        return None
    if getattr(route, "stream_item_field", None) is not None:
        return None
    response_class = getattr(route, "response_class", None)
    if isinstance(response_class, DefaultPlaceholder):
        response_class = response_class.value
    if response_class is not JSONResponse or getattr(route, "response_model", None) is None:
        return None
    if (route.response_model_include or route.response_model_exclude
            or route.response_model_exclude_unset or route.response_model_exclude_defaults
            or route.response_model_exclude_none or not route.response_model_by_alias):
        return None
    status_code = route.status_code or 200
    if status_code < 200 or status_code in (204, 205, 304):  # no body allowed: FastAPI's job
        return None
    body_name, body_model = None, None
    if dependant.body_params:
        if len(dependant.body_params) != 1 or getattr(route, "_embed_body_fields", False):
            return None
        field = dependant.body_params[0]
        annotation = getattr(field.field_info, "annotation", None)
        if (getattr(field.field_info, "embed", False) or not isinstance(annotation, type)
                or not issubclass(annotation, BaseModel)):
            return None
        body_name, body_model = field.name, annotation
    return FastRoute(
        endpoint=call,
        is_coroutine=inspect.iscoroutinefunction(call),
        query_fields=list(dependant.query_params),
        body_name=body_name,
        body_model=body_model,
        response=TypeAdapter(route.response_model),
        status_code=status_code,
    )


def plan_routes(routes: Iterable[Any]) -> dict[tuple[str, str], FastRoute]:
    """The fast table of an app's routes, in routing order (see the module docstring)."""
    table: dict[tuple[str, str], FastRoute] = {}
    earlier: list[tuple[Any, frozenset[str] | None]] = []
    for route in routes:
        path: str | None = getattr(route, "path", None)
        methods: set[str] | None = getattr(route, "methods", None)
        regex = getattr(route, "path_regex", None)
        plan = plan_route(route) if path is not None and methods else None
        if plan is not None and path is not None and methods:
            for method in methods:
                shadowed = any(
                    pattern.match(path) and (seen is None or method in seen)
                    for pattern, seen in earlier
                )
                if not shadowed and method != "HEAD":
                    table.setdefault((method, path), plan)
        if regex is not None:
            earlier.append((regex, frozenset(methods) if methods else None))
    return table


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands out ``body`` once more, then defers to ``receive``."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


class FastPathMiddleware:
    """Serve the routes of ``table`` directly; hand everything else to ``app``."""

    def __init__(self, app: ASGIApp, table: Mapping[tuple[str, str], FastRoute],
                 handlers: Mapping[Any, Callable[..., Any]],
                 overridden: Callable[[], bool]) -> None:
        self.app = app
        self.table = table
        self.handlers = handlers
        self.overridden = overridden

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            route = self.table.get((scope["method"], scope["path"]))
            if route is not None and not self.overridden():
                await self._serve(route, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, route: FastRoute, scope: Scope, receive: Receive, send: Send) -> None:
        values: dict[str, Any] = {}
        if route.query_fields:
            values, errors = request_params_to_args(route.query_fields,
                                                    QueryParams(scope["query_string"]))
            if errors:  # FastAPI reports them in its usual shape
                await self.app(scope, receive, send)
                return
        try:
            if route.body_model is not None:
                content_type = b""
                for name, value in scope["headers"]:
                    if name == b"content-type":
                        content_type = value
                if not _is_json(content_type):
                    await self.app(scope, receive, send)
                    return
                body = b""
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":  # the client went away
                        raise ClientDisconnect()  # answered by the app's handler: 499
                    body += message.get("body", b"")
                    if not message.get("more_body", False):
                        break
                try:
                    model = route.body_model.__pydantic_validator__.validate_json(body)
                except ValidationError:
                    await self.app(scope, _replay(body, receive), send)
                    return
                values[route.body_name or "body"] = model
            if route.is_coroutine:
                result = await route.endpoint(**values)
            else:
                result = await run_in_threadpool(route.endpoint, **values)
            if isinstance(result, Response):
                await result(scope, receive, send)
                return
            content = route.response.dump_json(
                route.response.validate_python(result, from_attributes=True), by_alias=True)
        except Exception as exc:
            response = await self._handle(exc, scope, receive)
            await response(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": route.status_code,
                    "headers": [_JSON, (b"content-length", str(len(content)).encode())]})
        await send({"type": "http.response.body", "body": content})

    async def _handle(self, exc: Exception, scope: Scope, receive: Receive) -> Response:
        """The app's handler for ``exc``, looked up as Starlette does."""
        handler = None
        if isinstance(exc, HTTPException):
            handler = self.handlers.get(exc.status_code)
        if handler is None:
            for cls in type(exc).__mro__:
                handler = self.handlers.get(cls)
                if handler is not None:
                    break
        if handler is None:
            raise exc
        result = handler(Request(scope, receive), exc)
        if inspect.isawaitable(result):
            result = await result
        response: Response = result
        return response

