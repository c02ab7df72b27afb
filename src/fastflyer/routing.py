"""``FlyerRoute``: FastAPI's ``APIRoute`` with a request handler planned once per route.

FastAPI's handler works out, on every request, what its route has already fixed: which
request key each parameter reads, whether it is a sequence, whether an endpoint or a
dependency is awaited, which content types are JSON. ``FlyerRoute`` works these out when the
route is built (``get_route_handler``, FastAPI's documented extension point) and keeps only
the per-request work. It stays a FastAPI route: routing, ``scope["route"]``, a route's
``max_body_size``, the exception handlers, middleware and telemetry are FastAPI's own.

Opt in on any FastAPI app::

    from fastapi import APIRouter, FastAPI
    from fastflyer.routing import FlyerRoute

    router = APIRouter(route_class=FlyerRoute)   # one router
    app = FastAPI()
    app.router.route_class = FlyerRoute          # every route added with app.get/... after

``FlyerAPI`` uses it for every route it serves, its own included, unless
``flyer_fast_path=0`` (any app can say the same with an attribute ``flyer_fast_path = False``:
its routes keep FastAPI's handler). The plain ``APIRoute`` routes of a router ``FlyerAPI``
includes become ``FlyerRoute`` (:func:`adopt`); included in another app as well, they answer
there exactly as before.

**Same answers.** Whatever the request, the answer is FastAPI's: status, headers, body,
and what ran on the way. The planned handler solves the dependencies as FastAPI's
``solve_dependencies`` does, in its order: a dependency's own inputs are validated after its
sub-dependencies ran, a dependency with invalid inputs is skipped, the others still run, and
the errors are raised together as FastAPI's ``RequestValidationError``, with the same body and
endpoint context. Under FastAPI's telemetry (a request it traces, ``fastapi.telemetry``) the
planned handler fills the request's ``TelemetryData`` (request, body, values, errors) and
records a validation failure as FastAPI's handler does. FastAPI's own handler for the route
is handed the same ``Request`` (its body already read and kept) before anything ran when:
the JSON body does not parse (FastAPI reports it its way), the app has
``dependency_overrides`` set, FastAPI's telemetry opens operation spans for the request
(``telemetry={"operation_spans": True}``, FastAPI's default), an instrumentation library
(Sentry, Logfire) has wrapped one of the functions FastAPI's handler is made of
(:data:`fastflyer._fastapi.HOOKS`), or a dependant of the route was changed after the route
was built (a dependency appended to ``route.dependant.dependencies``, a call replaced).

**What is planned.** Path, query, header and cookie parameters; JSON bodies (one or several
parameters, embedded or not); dependencies, sync and async, plain or with ``yield``, with
sub-dependencies, caching and ``Security`` scopes; ``Request``, ``Response`` and
``BackgroundTasks`` parameters; ``response_model`` with every include/exclude option; any
status code; any response class. What is not planned keeps FastAPI's handler for that route,
decided when the route is built: form and file bodies, parameter models
(``Annotated[Model, Query()]``), streaming (generator) endpoints, dependencies with a
concurrency limit, and anything the planner does not recognise.
"""

from __future__ import annotations

import email.message
import functools
import json
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import params
from fastapi.background import BackgroundTasks
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError, ResponseValidationError
from fastapi.routing import APIRoute
from fastapi.security.oauth2 import SecurityScopes
from fastapi.sse import EventSourceResponse
from fastapi.telemetry import get_telemetry_data
from fastapi.utils import is_body_allowed_for_status_code
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from fastflyer._fastapi import AVAILABLE, internals

__all__ = ["FlyerRoute", "adopt", "plan"]

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

_PATH, _QUERY, _HEADER, _COOKIE = range(4)
_SOURCE_OF = {params.ParamTypes.path: _PATH, params.ParamTypes.query: _QUERY,
              params.ParamTypes.header: _HEADER, params.ParamTypes.cookie: _COOKIE}


class _Invalid(Exception):
    """Some input of the request is invalid: FastAPI's handler reports it."""


@dataclass(frozen=True, slots=True)
class _Param:
    """One path, query, header or cookie parameter, as FastAPI reads it."""

    field: Any
    source: int
    keys: tuple[str, ...]  # request keys in preference order
    many: bool  # read with getlist (a sequence from a multi-valued source)
    sequence: bool  # an empty sequence counts as missing
    location: str

    def read(self, sources: list[Any]) -> Any:
        received = sources[self.source]
        key = self.keys[0]
        if len(self.keys) > 1:
            key = next((k for k in self.keys if k in received), key)
        value = received.getlist(key) if self.many else received.get(key, None)
        if value is None or (self.sequence and len(value) == 0):
            value = internals.Undefined
        return key, value


@dataclass(frozen=True, slots=True)
class _Node:
    """One dependant (a dependency, or the endpoint last): what solving it needs."""

    call: Callable[..., Any]
    name: str | None
    kind: str  # "async", "sync" or "generator"
    dependant: Any
    use_cache: bool
    cache_key: Any
    function_scope: bool
    subs: tuple[_Node, ...]
    params: tuple[_Param, ...]
    body_fields: tuple[Any, ...]
    request_names: tuple[str, ...]
    background_name: str | None
    response_name: str | None
    scopes_name: str | None
    scopes: tuple[str, ...]
    shape: tuple[Any, ...]  # _shape(dependant) when planned


def _shape(dependant: Any) -> tuple[Any, ...]:
    """What FastAPI's handler reads from ``dependant`` on every request (its lists compare by
    identity first). An app may change it after the route is built: a dependency appended to
    ``route.dependant.dependencies`` (to protect every route), a call replaced by a wrapper;
    FastAPI's handler then serves the changed dependant, and so must this one."""
    return (dependant.call, dependant.name, dependant.use_cache, dependant.scope,
            tuple(dependant.dependencies), tuple(dependant.path_params),
            tuple(dependant.query_params), tuple(dependant.header_params),
            tuple(dependant.cookie_params), tuple(dependant.body_params),
            dependant.request_param_name, dependant.http_connection_param_name,
            dependant.background_tasks_param_name, dependant.response_param_name,
            dependant.security_scopes_param_name, dependant.path,
            tuple(dependant.own_oauth_scopes or ()), tuple(dependant.parent_oauth_scopes or ()))


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything about a route that does not change from one request to the next."""

    root: _Node
    body: bool
    strict_content_type: bool
    single_body: Any  # the one body field validated whole, or None
    embed_body_fields: bool
    status_code: int | None
    response_field: Any
    response_class: type[Response]
    dump_json: bool
    serialize_options: dict[str, Any]
    overrides: Any
    path: str | None


def _value(placeholder: Any) -> Any:
    return placeholder.value if isinstance(placeholder, internals.DefaultPlaceholder) \
        else placeholder


def _plan_param(field: Any) -> _Param | None:
    info = field.field_info
    source = _SOURCE_OF.get(getattr(info, "in_", None))  # type: ignore[arg-type]
    if source is None or internals.get_param_model(field) is not None:
        return None
    aliases = internals.get_param_aliases(field)
    sequence = bool(internals.field_annotation_is_sequence(info.annotation))
    many = sequence and source in (_QUERY, _HEADER) and not internals.is_json_field(field)
    return _Param(field=field, source=source, keys=tuple(key for _, key in aliases),
                  many=many, sequence=sequence, location=info.in_.value)


def _plan_node(dependant: Any, uses_scopes: dict[int, Any], top: bool) -> _Node | None:
    call = dependant.call
    if call is None or dependant.websocket_param_name or dependant.concurrency is not None:
        return None
    generator = internals.is_gen_callable(call) or internals.is_async_gen_callable(call)
    if generator and top:
        return None  # streaming endpoints: FastAPI's handler
    kind = ("generator" if generator
            else "async" if internals.is_coroutine_callable(call) else "sync")
    subs = []
    for sub in dependant.dependencies:
        planned = _plan_node(sub, uses_scopes, top=False)
        if planned is None:
            return None
        subs.append(planned)
    planned_params = []
    for field in (*dependant.path_params, *dependant.query_params, *dependant.header_params,
                  *dependant.cookie_params):
        param = _plan_param(field)
        if param is None:
            return None
        planned_params.append(param)
    for field in dependant.body_params:
        if isinstance(field.field_info, params.Form) or internals.get_form_models(field):
            return None
    request_names = tuple(name for name in (dependant.request_param_name,
                                            dependant.http_connection_param_name) if name)
    return _Node(
        call=call, name=dependant.name, kind=kind, dependant=dependant,
        use_cache=dependant.use_cache,
        cache_key=None if top else internals.get_cache_key(dependant=dependant,
                                                           uses_scopes_cache=uses_scopes),
        function_scope=dependant.scope == "function", subs=tuple(subs),
        params=tuple(planned_params), body_fields=tuple(dependant.body_params),
        request_names=request_names,
        background_name=dependant.background_tasks_param_name,
        response_name=dependant.response_param_name,
        scopes_name=dependant.security_scopes_param_name,
        scopes=tuple(internals.get_oauth_scopes(dependant=dependant)),
        shape=_shape(dependant),
    )


def plan(route: Any) -> _Plan | None:
    """The plan of ``route`` (an ``APIRoute`` or the context FastAPI builds for it per
    inclusion), or ``None`` when FastAPI's own handler must serve it."""
    if not AVAILABLE or internals.instrumented():
        return None
    try:
        if (getattr(route, "is_sse_stream", False) or getattr(route, "is_json_stream", False)
                or getattr(route, "stream_item_field", None) is not None):
            return None
        response_class = _value(route.response_class)
        if isinstance(response_class, type) and issubclass(response_class, EventSourceResponse):
            return None  # FastAPI streams whatever the endpoint returns, generator or not
        body_field = route.body_field
        if body_field is not None and isinstance(body_field.field_info, params.Form):
            return None
        root = _plan_node(route.dependant, {}, top=True)
        if root is None:
            return None
        body_fields = root.body_fields
        single = (len(body_fields) == 1 and not root.subs and not route._embed_body_fields
                  and not internals.should_embed_body_fields(list(body_fields)))
        return _Plan(
            root=root,
            body=body_field is not None,
            strict_content_type=bool(_value(route.strict_content_type)),
            single_body=body_fields[0] if single else None,
            embed_body_fields=route._embed_body_fields,
            status_code=route.status_code,
            response_field=route.response_field,
            response_class=response_class,
            dump_json=(route.response_field is not None
                       and isinstance(route.response_class, internals.DefaultPlaceholder)),
            serialize_options={
                "include": route.response_model_include,
                "exclude": route.response_model_exclude,
                "by_alias": route.response_model_by_alias,
                "exclude_unset": route.response_model_exclude_unset,
                "exclude_defaults": route.response_model_exclude_defaults,
                "exclude_none": route.response_model_exclude_none,
            },
            overrides=route.dependency_overrides_provider,
            path=route.dependant.path,
        )
    except (AttributeError, TypeError, ValueError):  # a shape this planner does not know
        return None


@functools.lru_cache(maxsize=64)
def _is_json_media(content_type: str) -> bool:
    """FastAPI's rule: ``application/json`` or ``application/*+json`` (RFC 6839)."""
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def _is_json(content_type: str) -> bool:
    if len(content_type) > 200:  # not worth a cache slot
        return _is_json_media.__wrapped__(content_type)
    return _is_json_media(content_type)


async def _read_body(request: Request, strict: bool) -> Any:
    """The body as FastAPI's handler reads it: JSON when the content type says so."""
    try:
        body_bytes = await request.body()
        if not body_bytes:
            return internals.Undefined
        content_type = request.headers.get("content-type")
        if content_type:
            if _is_json(content_type):
                return await request.json()
        elif not strict:
            return await request.json()
        return body_bytes
    except json.JSONDecodeError as exc:
        raise _Invalid from exc
    except HTTPException:
        raise
    except Exception as exc:
        if internals.MAX_BODY_SIZE_SCOPE_KEY in request.scope:
            error = internals.get_body_limit_error(exc)
            if error:
                raise error from exc
        raise HTTPException(status_code=400,
                            detail="There was an error parsing the body") from exc


def _changed(node: _Node) -> bool:
    """Whether a dependant of the tree has changed since it was planned."""
    return _shape(node.dependant) != node.shape or any(_changed(sub) for sub in node.subs)


class _Solved:
    """The per-request state shared while dependencies run (FastAPI's ``SolvedDependency``)."""

    __slots__ = ("background", "body", "cache", "embed", "request", "response", "single",
                 "sources")

    def __init__(self, request: Request, sources: list[Any], body: Any, embed: bool,
                 single: Any) -> None:
        self.request = request
        self.sources = sources
        self.body = body
        self.embed = embed
        self.single = single
        self.background: BackgroundTasks | None = None
        self.response: Response | None = None
        self.cache: dict[Any, Any] = {}


def _sub_response() -> Response:
    response = Response()
    del response.headers["content-length"]
    response.status_code = None  # type: ignore[assignment]
    return response


async def _solve(node: _Node, state: _Solved) -> tuple[dict[str, Any], list[Any]]:
    """FastAPI's ``solve_dependencies`` for ``node``: run its dependencies, then validate its
    own inputs, in FastAPI's order; a dependency with invalid inputs is not run. Returns its
    call's arguments and the errors."""
    values: dict[str, Any] = {}
    errors: list[Any] = []
    for sub in node.subs:
        arguments, sub_errors = await _solve(sub, state)
        if sub_errors:
            errors.extend(sub_errors)
            continue
        if sub.use_cache and sub.cache_key in state.cache:
            solved = state.cache[sub.cache_key]
        elif sub.kind == "generator":
            scope = state.request.scope
            stack = scope["fastapi_function_astack" if sub.function_scope
                          else "fastapi_inner_astack"]
            solved = await internals.solve_generator(
                dependant=sub.dependant, stack=stack, sub_values=arguments,
                request=state.request)
        elif sub.kind == "async":
            solved = await sub.call(**arguments)
        else:
            solved = await run_in_threadpool(sub.call, **arguments)
        if sub.name is not None:
            values[sub.name] = solved
        if sub.cache_key not in state.cache:
            state.cache[sub.cache_key] = solved
    validate = internals.validate_value
    if node.params:  # FastAPI reads it per dependant, after its sub-dependencies ran
        state.sources[_PATH] = state.request.path_params
    for param in node.params:
        key, value = param.read(state.sources)
        result, param_errors = validate(field=param.field, value=value, values=values,
                                        loc=(param.location, key))
        if param_errors:
            errors.extend(param_errors)
        else:
            values[param.field.name] = result
    if node.body_fields:
        single = state.single
        if single is not None:
            result, body_errors = validate(field=single, value=state.body, values=values,
                                           loc=("body",))
            values[single.name] = result
        else:
            body_values, body_errors = await internals.request_body_to_args(
                body_fields=list(node.body_fields), received_body=state.body,
                embed_body_fields=state.embed)
            values.update(body_values)
        errors.extend(body_errors)
    for name in node.request_names:
        values[name] = state.request
    if node.background_name:
        if state.background is None:
            state.background = BackgroundTasks()
        values[node.background_name] = state.background
    if node.response_name:
        if state.response is None:
            state.response = _sub_response()
        values[node.response_name] = state.response
    if node.scopes_name:
        values[node.scopes_name] = SecurityScopes(scopes=list(node.scopes))
    return values, errors


def _endpoint_context(call: Callable[..., Any], path: str | None,
                      request: Request) -> Any:
    context = internals.extract_endpoint_context(call)
    if path:
        mount_path = request.scope.get("root_path", "").rstrip("/")
        context["path"] = f"{request.method} {mount_path}{path}"
    return context


def _planned_handler(plan: _Plan, fallback: Handler) -> Handler:
    root = plan.root
    call = root.call
    is_coroutine = root.kind == "async"
    response_field = plan.response_field
    options = plan.serialize_options
    overrides = plan.overrides

    async def handler(request: Request) -> Response:
        telemetry = get_telemetry_data()
        if (overrides is not None and overrides.dependency_overrides) \
                or (telemetry is not None and internals.operation_spans()) \
                or internals.instrumented():
            return await fallback(request)
        if telemetry is not None:
            telemetry.request = request
        body = internals.Undefined
        if plan.body:
            try:
                body = await _read_body(request, plan.strict_content_type)
            except _Invalid:
                return await fallback(request)
        if telemetry is not None:
            telemetry.body = None if body is internals.Undefined else body
        # As FastAPI's handler: the query, headers and cookies read (and so kept by the
        # request) before any dependency runs, whether parameters use them or not.
        # (path parameters: read per dependant by _solve, after its sub-dependencies)
        sources: list[Any] = [None, request.query_params, request.headers, request.cookies]
        if _changed(root):
            return await fallback(request)
        state = _Solved(request, sources, body, plan.embed_body_fields, plan.single_body)
        values, errors = await _solve(root, state)
        if telemetry is not None:
            telemetry.values = values
            telemetry.errors = errors
        if errors:
            error = RequestValidationError(
                errors, body=None if body is internals.Undefined else body,
                endpoint_ctx=_endpoint_context(call, plan.path, request))
            if telemetry is not None:
                internals.validation_failed(error)
            raise error
        if is_coroutine:
            raw = await call(**values)
        else:
            # Not run_in_threadpool(call, **values): an endpoint may have a parameter `func`.
            raw = await run_in_threadpool(functools.partial(call, **values))
        background = state.background
        sub_response = state.response
        if isinstance(raw, Response):
            if raw.background is None:
                raw.background = background
            return raw
        arguments: dict[str, Any] = {"background": background}
        status_code = plan.status_code
        if not status_code and sub_response is not None:
            status_code = sub_response.status_code
        if status_code is not None:
            arguments["status_code"] = status_code
        if sub_response is not None and sub_response.status_code:
            arguments["status_code"] = sub_response.status_code
        if response_field is not None:
            if is_coroutine:
                value, errors = response_field.validate(raw, {}, loc=("response",))
            else:
                value, errors = await run_in_threadpool(response_field.validate, raw, {},
                                                        loc=("response",))
            if errors:
                raise ResponseValidationError(
                    errors=errors, body=raw,
                    endpoint_ctx=_endpoint_context(call, plan.path, request))
            serialize = response_field.serialize_json if plan.dump_json \
                else response_field.serialize
            content = serialize(value, **options)
        else:
            content = jsonable_encoder(raw)
        response: Response
        if plan.dump_json:
            response = Response(content=content, media_type="application/json", **arguments)
        else:
            response = plan.response_class(content, **arguments)
        if not is_body_allowed_for_status_code(response.status_code):
            response.body = b""
        if sub_response is not None:
            response.headers.raw.extend(sub_response.headers.raw)
        return response

    return handler


def _effective(route: APIRoute) -> Any:
    """The route as served: FastAPI builds one handler per inclusion of a router, with
    the includer's prefix, dependencies and defaults, while this context is set."""
    context = internals.effective_route_context_var.get()
    if context is not None and context.original_route is route:
        return context
    return route


class FlyerRoute(APIRoute):
    """An ``APIRoute`` whose request handler is planned when the route is built (see the
    module docstring). Takes exactly ``APIRoute``'s arguments."""

    #: Whether the handler last built for this route is planned (``False``: FastAPI's).
    planned: bool = False

    def get_route_handler(self) -> Handler:
        fallback = super().get_route_handler()
        route = _effective(self)
        # The app serving the route may turn planning off (FlyerAPI: flyer_fast_path=0).
        app = getattr(route, "dependency_overrides_provider", None)
        planned = plan(route) if getattr(app, "flyer_fast_path", True) else None
        self.planned = planned is not None
        return fallback if planned is None else _planned_handler(planned, fallback)


def adopt(routes: Sequence[Any]) -> None:
    """Make every plain ``APIRoute`` among ``routes`` (and in routers they include) a
    :class:`FlyerRoute`, before FastAPI builds their handlers for an inclusion. Routes of
    other ``APIRoute`` subclasses keep their class: they may wrap FastAPI's handler."""
    for route in routes:
        if type(route) is APIRoute:
            route.__class__ = FlyerRoute
        included = getattr(route, "original_router", None)
        if included is not None:
            adopt(included.routes)
