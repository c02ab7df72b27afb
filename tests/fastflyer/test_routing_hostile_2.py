"""``FlyerRoute`` against FastAPI's ``APIRoute`` where requests fail validation: each probe
builds the same app twice from one factory (``FastAPI()`` with ``app.router.route_class``
``FlyerRoute`` and ``APIRoute``) and compares the answers (status, headers, body bytes), what
the app did on the side (a log), and what a ``RequestValidationError`` exception handler saw:
``exc.errors()`` in full and in order, ``exc.body``, ``exc.endpoint_ctx`` and ``str(exc)``.

The handler answers with ``exc.errors()`` and ``exc.body`` verbatim (through
``jsonable_encoder``), so the body bytes compare them too.
"""

import contextvars
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

import anyio
import fastapi.dependencies.utils
import fastapi.routing
import httpx
import pytest
from fastapi import (
    BackgroundTasks,
    Body,
    Cookie,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    Security,
)
from fastapi.dependencies.utils import get_parameterless_sub_dependant
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import SecurityScopes
from fastapi.telemetry import get_telemetry_data
from pydantic import AfterValidator, BaseModel
from pydantic_core import PydanticCustomError

import route_pairs
from fastflyer.routing import FlyerRoute
from route_pairs import JSON, Answer, Factory, Log, Probe


class Item(BaseModel):
    a: int
    b: str = "b"


class Other(BaseModel):
    x: int


def _normal(value: Any) -> Any:
    """``value`` comparable across two apps: exceptions (in ``ctx``) by type and arguments."""
    if isinstance(value, dict):
        return {key: _normal(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_normal(item) for item in value)
    if isinstance(value, BaseException):
        return f"{type(value).__name__}{value.args!r}"
    if value is None or isinstance(value, (str, int, float, bool, bytes)):
        return value
    return repr(value)


def _seen(exc: RequestValidationError) -> dict[str, Any]:
    context = getattr(exc, "endpoint_ctx", None)
    return {
        "type": type(exc).__name__,
        "errors": repr(_normal(list(exc.errors()))),  # repr: key order counts too
        "body": repr(_normal(exc.body)),
        "endpoint_ctx": repr(dict(context)) if context is not None else None,
        "str": str(exc),
        "cause": repr(exc.__cause__), "context": repr(exc.__context__),
    }


def _record_validation(app: FastAPI, log: Log) -> None:
    # FastAPI caches each endpoint's context (file, line, name) by id(function) without
    # keeping the function: a new function at a dead one's address gets the dead one's
    # context, in both apps alike. Start each app from an empty cache.
    fastapi.routing._endpoint_context_cache.clear()

    @app.exception_handler(RequestValidationError)
    async def verbatim(request: Request, exc: RequestValidationError) -> JSONResponse:
        log.append(("handler", _seen(exc)))
        return JSONResponse(jsonable_encoder({"errors": exc.errors(), "body": exc.body}),
                            status_code=422)


def _make(factory: Factory, route_class: type[APIRoute]) -> tuple[FastAPI, Log]:
    return route_pairs.make(factory, route_class, _record_validation)


def answers(factory: Factory, route_class: type[APIRoute], requests: list[Probe],
            between: Callable[[FastAPI, int], None] | None = None) -> list[Answer]:
    return route_pairs.answers(factory, route_class, requests, between, _record_validation)


def assert_alike(factory: Factory, *requests: Probe,
                 between: Callable[[FastAPI, int], None] | None = None) -> list[Answer]:
    return route_pairs.assert_alike(factory, *requests, between=between,
                                    setup=_record_validation)


def assert_planned(factory: Factory) -> None:
    app, _ = _make(factory, FlyerRoute)
    routes = [route for route in app.routes if isinstance(route, FlyerRoute)]
    assert routes and all(route.planned for route in routes), \
        [route.path for route in routes if not route.planned]


def _handled(answer: Answer) -> dict[str, Any]:
    """What the exception handler saw for ``answer`` (it must have run)."""
    return next(entry[1] for entry in answer[3] if entry[0] == "handler")


# --- many invalid inputs at once, across sources, dependencies and sub-dependencies ---
def many_errors(app: FastAPI, log: Log) -> None:
    def leaf(x_leaf: Annotated[int, Header()], c_leaf: Annotated[int, Cookie()]) -> int:
        log.append("leaf")
        return x_leaf

    def middle(lf: Annotated[int, Depends(leaf)], m: int, mb: Annotated[int, Body()]) -> int:
        log.append("middle")
        return m

    async def side(s: Annotated[list[int], Query()], x_side: Annotated[int, Header()]) -> int:
        log.append("side")
        return 1

    def fine() -> int:
        log.append("fine")
        return 0

    @app.post("/many/{p}/{p2}", dependencies=[Depends(fine)])
    async def many(p: int, p2: Annotated[int, Path(gt=10)],
                   md: Annotated[int, Depends(middle)], sd: Annotated[int, Depends(side)],
                   q: int, q2: Annotated[str, Query(min_length=3)],
                   x_top: Annotated[int, Header()], c_top: Annotated[int, Cookie()],
                   item: Item, other: Other, n: Annotated[int, Body()]) -> dict[str, int]:
        log.append("endpoint")
        return {"p": p}

    @app.get("/scalars/{p}")
    def scalars(p: int, q: int, x_h: Annotated[int, Header()],
                c: Annotated[int, Cookie()], xs: Annotated[list[int] | None, Header()] = None,
                qs: Annotated[list[int] | None, Query()] = None) -> int:
        return p


MANY_BAD = {"x-leaf": "no", "x-side": "no", "x-top": "no",
            "cookie": "c_leaf=no; c_top=no", **JSON}
MANY_BODY = b'{"mb": "no", "item": {"a": "no"}, "other": [], "n": "no"}'


@pytest.mark.parametrize("request_", [
    ("POST", "/many/x/1?m=no&s=1&s=no&q=no&q2=ab", MANY_BAD, MANY_BODY),
    ("POST", "/many/x/1", {}, None),
    ("POST", "/many/x/1?m=1&s=1&q=1&q2=abc", MANY_BAD, b'{"mb": 1, "n": 1}'),
    ("POST", "/many/1/11?m=1&s=1&q=1&q2=abcd",
     {"x-leaf": "1", "x-side": "1", "x-top": "1", "cookie": "c_leaf=1; c_top=1", **JSON},
     b'{"mb": 1, "item": {"a": 1}, "other": {"x": 2}, "n": 3}'),
    ("POST", "/many/x/1?m=no", {**MANY_BAD, "content-type": "text/plain"}, MANY_BODY),
    ("GET", "/scalars/x?q=y", {"x-h": "z", "cookie": "c=w"}, None),
    ("GET", "/scalars/x", {}, None),
    ("GET", "/scalars/1?q=1&qs=1&qs=no&qs=", [("x-h", "1"), ("xs", "1"), ("xs", "no"),
                                               ("xs", ""), ("cookie", "c=1")], None),
], ids=["all-invalid", "all-missing", "some-invalid", "valid", "text-body", "scalars",
        "scalars-missing", "lists"])
def test_many_invalid_inputs_at_once(request_: Probe) -> None:
    assert_alike(many_errors, request_)


def test_many_invalid_inputs_are_reported_in_fastapis_order() -> None:
    answer = assert_alike(many_errors, ("POST", "/many/x/1?m=no&s=1&s=no&q=no&q2=ab",
                                        MANY_BAD, MANY_BODY))[0]
    seen = _handled(answer)
    assert answer[0] == 422 and seen["errors"].count("'loc'") >= 12
    assert_planned(many_errors)


def test_the_invalid_requests_are_answered_by_the_planned_handler(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The probes compare the planned handler, not FastAPI's (which reads its telemetry data
    first: ``fastapi.routing.get_telemetry_data``)."""
    calls: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return get_telemetry_data(*args, **kwargs)

    monkeypatch.setattr("fastapi.routing.get_telemetry_data", counting)
    requests: list[Probe] = [("POST", "/many/x/1?m=no&s=1&s=no&q=no&q2=ab", MANY_BAD,
                              MANY_BODY), ("GET", "/scalars/x?q=y", {}, None)]
    flyer = answers(many_errors, FlyerRoute, requests)
    assert [answer[0] for answer in flyer] == [422, 422] and calls == []
    answers(many_errors, APIRoute, requests)
    assert calls == [1, 1]


# --- an invalid sub-dependency input under a cached dependency used twice, use_cache=False ---
def cached(app: FastAPI, log: Log) -> None:
    def sub(q: int, x_s: Annotated[int, Header()] = 0) -> int:
        log.append(f"sub {q}")
        return q

    def shared(s: Annotated[int, Depends(sub)], r: int = 0) -> int:
        log.append("shared")
        return s + r

    def fresh(s: Annotated[int, Depends(sub, use_cache=False)]) -> int:
        log.append("fresh")
        return s

    async def gen(s: Annotated[int, Depends(shared)]) -> AsyncIterator[int]:
        log.append("gen enter")
        try:
            yield s
        except Exception as exc:
            log.append(f"gen sees {type(exc).__name__}")
            raise
        finally:
            log.append("gen exit")

    @app.get("/cached")
    async def read(a: Annotated[int, Depends(shared)], b: Annotated[int, Depends(shared)],
                   c: Annotated[int, Depends(shared, use_cache=False)],
                   f1: Annotated[int, Depends(fresh)], f2: Annotated[int, Depends(fresh)],
                   g: Annotated[int, Depends(gen)], t: int = 0) -> list[int]:
        log.append("endpoint")
        return [a, b, c, f1, f2, g, t]


@pytest.mark.parametrize("url", ["/cached?q=1", "/cached?q=x", "/cached", "/cached?q=1&r=x",
                                 "/cached?q=1&t=x", "/cached?q=x&r=y&t=z"])
@pytest.mark.parametrize("headers", [{}, {"x-s": "bad"}])
def test_cached_dependency_with_an_invalid_sub_dependency(url: str, headers: Any) -> None:
    assert_alike(cached, ("GET", url, headers, None))


def test_the_cached_routes_are_planned() -> None:
    assert_planned(cached)


# --- bodies: embed, several parameters, list / scalar / null / missing / not JSON ---
def bodies(app: FastAPI, log: Log) -> None:
    @app.post("/embed")
    async def embed(item: Annotated[Item, Body(embed=True)]) -> Item:
        return item

    @app.post("/embed-scalar")
    async def embed_scalar(n: Annotated[int, Body(embed=True)]) -> int:
        return n

    @app.post("/two")
    async def two(item: Item, other: Other) -> list[Any]:
        return [item, other]

    @app.post("/aliased")
    async def aliased(n: Annotated[int, Body(alias="N")],
                      m: Annotated[int | None, Body()] = None) -> list[Any]:
        return [n, m]

    @app.post("/single")
    async def single(item: Item) -> Item:
        return item

    @app.post("/optional")
    async def optional(item: Item | None = None) -> Item | None:
        return item

    @app.post("/list")
    async def listed(items: list[Item]) -> list[Item]:
        return items

    def body_dep(d: Annotated[int, Body()]) -> int:
        log.append("body_dep")
        return d

    @app.post("/dep-body")
    async def dep_body(d: Annotated[int, Depends(body_dep)], item: Item) -> list[Any]:
        return [d, item]

    @app.post("/dep-only-body")
    async def dep_only_body(d: Annotated[int, Depends(body_dep)]) -> int:
        return d


BODIES = [b"[1, 2]", b"[]", b"3", b'"s"', b"null", b"true", b"{}", b'{"a": "x"}',
          b'{"item": {"a": "x"}, "other": {"x": "y"}}', b'{"item": 1, "other": null}',
          b'{"N": "x", "m": "y"}', b'{"n": 1}', b'{"d": "x", "item": []}', b'{"d": 1}',
          b'[{"a": 1}, {"a": "x"}]', b'{"a": 1}']
BODY_PATHS = ["/embed", "/embed-scalar", "/two", "/aliased", "/single", "/optional", "/list",
              "/dep-body", "/dep-only-body"]


@pytest.mark.parametrize("path", BODY_PATHS)
def test_bodies(path: str) -> None:
    requests: list[Probe] = [("POST", path, JSON, body) for body in BODIES]
    requests += [("POST", path, {}, None), ("POST", path, JSON, b""),
                 ("POST", path, {"content-type": "text/plain"}, b'{"a": 1}'),
                 ("POST", path, {}, b'{"a": 1}'),
                 ("POST", path, {"content-type": "application/vnd.x+json"}, b'{"a": "x"}'),
                 ("POST", path, JSON, b'{"a": ')]  # unparsable: FastAPI's handler
    assert_alike(bodies, *requests)


def test_the_body_routes_are_planned() -> None:
    assert_planned(bodies)


# --- a dependency raising RequestValidationError itself; ValueError vs PydanticCustomError ---
def _value_error(value: str) -> str:
    if value == "bad":
        raise ValueError(f"value {value} is bad")
    return value


def _custom_error(value: str) -> str:
    if value == "bad":
        raise PydanticCustomError("custom_bad", "custom {what} is bad",
                                  {"what": value, "n": 1})
    return value


def raising(app: FastAPI, log: Log) -> None:
    def own_error(q: str = "") -> str:
        log.append("own_error")
        if q == "raise":
            raise RequestValidationError([{"type": "mine", "loc": ("query", "q"),
                                           "msg": "mine", "input": q}], body={"b": 1})
        return q

    def invalid_sibling(n: int) -> int:  # invalid: skipped; own_error still runs
        log.append("invalid_sibling")
        return n

    @app.get("/own")
    async def own(s: Annotated[int, Depends(invalid_sibling)],
                  o: Annotated[str, Depends(own_error)]) -> str:
        return o

    def refuses(x_key: Annotated[str, Header()] = "") -> None:
        log.append("refuses")
        if x_key != "ok":
            raise HTTPException(403, "refused")

    @app.get("/refused")  # an invalid dependency first, then one raising: 403, not 422
    async def refused(s: Annotated[int, Depends(invalid_sibling)],
                      r: Annotated[None, Depends(refuses)], t: int = 0) -> int:
        return s

    @app.post("/validators")
    async def validators(v: Annotated[str, AfterValidator(_value_error)] = "",
                         c: Annotated[str, AfterValidator(_custom_error)] = "",
                         h: Annotated[str, Header(), AfterValidator(_value_error)] = "",
                         b: Annotated[str, Body(), AfterValidator(_custom_error)] = "",
                         e: Annotated[str, Body(), AfterValidator(_value_error)] = ""
                         ) -> list[str]:
        return [v, c, h, b, e]


@pytest.mark.parametrize("request_", [
    ("GET", "/own?q=raise", {}, None),
    ("GET", "/own?q=raise&n=1", {}, None),
    ("GET", "/own?q=ok", {}, None),
    ("GET", "/refused?n=x&t=y", {}, None),
    ("GET", "/refused?n=x&t=y", {"x-key": "ok"}, None),
    ("POST", "/validators?v=bad&c=bad", {"h": "bad", **JSON}, b'{"b": "bad", "e": "bad"}'),
    ("POST", "/validators?v=ok&c=bad", {"h": "ok", **JSON}, b'{"b": "ok", "e": "bad"}'),
    ("POST", "/validators?v=ok&c=ok", JSON, b'{"b": "ok", "e": "ok"}'),
], ids=["own-raise", "own-raise-valid-sibling", "own-ok", "refused", "refused-passes",
        "validators-all", "validators-some",
        "validators-ok"])
def test_raising_dependencies_and_validators(request_: Probe) -> None:
    assert_alike(raising, request_)


# --- yield dependencies (sync, async; function and request scope) when validation fails ---
def yields(app: FastAPI, log: Log) -> None:
    def make(name: str, is_async: bool) -> Callable[..., Any]:
        if is_async:
            async def agen() -> AsyncIterator[str]:
                log.append(f"{name} enter")
                try:
                    yield name
                except Exception as exc:
                    log.append(f"{name} sees {type(exc).__name__} {_seen_short(exc)}")
                    raise
                else:
                    log.append(f"{name} clean")
                finally:
                    log.append(f"{name} exit")
            return agen

        def gen() -> Iterator[str]:
            log.append(f"{name} enter")
            try:
                yield name
            except Exception as exc:
                log.append(f"{name} sees {type(exc).__name__} {_seen_short(exc)}")
                raise
            else:
                log.append(f"{name} clean")
            finally:
                log.append(f"{name} exit")
        return gen

    sync_fn, async_fn = make("sync-f", False), make("async-f", True)
    sync_rq, async_rq = make("sync-r", False), make("async-r", True)

    def late(q: int) -> int:  # validated after the yield dependencies entered
        log.append("late")
        return q

    def late_sub(s: Annotated[str, Depends(async_rq, scope="request")], z: int) -> str:
        log.append("late_sub")
        return s

    @app.get("/yields")
    def yield_route(a: Annotated[str, Depends(sync_fn, scope="function")],
                    b: Annotated[str, Depends(async_fn, scope="function")],
                    c: Annotated[str, Depends(sync_rq, scope="request")],
                    d: Annotated[str, Depends(async_rq, scope="request")],
                    e: Annotated[str, Depends(late_sub)],
                    q: Annotated[int, Depends(late)], t: int = 0) -> list[Any]:
        log.append("endpoint")
        return [a, b, c, d, e, q, t]

    @app.get("/yields-async")
    async def yield_route_async(b: Annotated[str, Depends(async_fn, scope="function")],
                                d: Annotated[str, Depends(async_rq)],
                                q: Annotated[int, Depends(late)]) -> list[Any]:
        log.append("endpoint")
        return [b, d, q]


def _seen_short(exc: BaseException) -> str:
    if isinstance(exc, RequestValidationError):
        return repr(_normal(list(exc.errors())))
    return repr(exc)


@pytest.mark.parametrize("url", ["/yields?q=1&z=1", "/yields?q=x&z=1", "/yields?q=1&z=x",
                                 "/yields?q=1&z=1&t=x", "/yields", "/yields-async?q=1",
                                 "/yields-async?q=x"])
def test_yield_dependencies_when_validation_fails(url: str) -> None:
    assert_alike(yields, ("GET", url, {}, None))


def test_the_yield_routes_are_planned() -> None:
    assert_planned(yields)


# --- BackgroundTasks and Response headers from a dependency when validation then fails ---
def side_channels(app: FastAPI, log: Log) -> None:
    def tasks(background: BackgroundTasks) -> None:
        log.append("tasks dep")
        background.add_task(log.append, "task ran")

    def headers(response: Response) -> None:
        log.append("headers dep")
        response.headers["x-dep"] = "set"
        response.set_cookie("dep", "1")
        response.status_code = 201

    def check(q: int) -> int:
        return q

    @app.get("/side", dependencies=[Depends(tasks), Depends(headers)])
    async def side(q: Annotated[int, Depends(check)], t: int = 0) -> int:
        log.append("endpoint")
        return q

    @app.get("/side-response", dependencies=[Depends(tasks), Depends(headers)])
    async def side_response(q: int, response: Response,
                            background: BackgroundTasks) -> JSONResponse:
        background.add_task(log.append, "endpoint task ran")
        return JSONResponse({"q": q})


@pytest.mark.parametrize("url", ["/side?q=1", "/side?q=x", "/side?q=1&t=x", "/side",
                                 "/side-response?q=1", "/side-response?q=x"])
def test_background_tasks_and_headers_when_validation_fails(url: str) -> None:
    answer = assert_alike(side_channels, ("GET", url, {}, None))[0]
    if answer[0] == 422:
        assert "task ran" not in answer[3] and ("x-dep", "set") not in answer[1]


# --- instrumentation installed after the app served a request ---
def instrumented(app: FastAPI, log: Log) -> None:
    def dep(q: int) -> int:
        log.append("dep")
        return q

    @app.post("/instrumented")
    async def route(d: Annotated[int, Depends(dep)], item: Item) -> list[Any]:
        log.append("endpoint")
        return [d, item]


INSTRUMENTED_REQUESTS: list[Probe] = [
    ("POST", "/instrumented?q=1", JSON, b'{"a": 1}'),
    ("POST", "/instrumented?q=x", JSON, b'{"a": "x"}'),
    ("POST", "/instrumented?q=1", JSON, b'{"a": 2}'),
    ("POST", "/instrumented?q=x", JSON, b'{"a": "y"}'),
]


def _wrap_after_first(module: Any, name: str, calls: list[str],
                      patcher: pytest.MonkeyPatch) -> Callable[[FastAPI, int], None]:
    """Wrap ``module.name`` (as instrumentation does) once the app served a request."""
    def between(app: FastAPI, number: int) -> None:
        if number != 1:
            return
        original = getattr(module, name)

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return await original(*args, **kwargs)

        patcher.setattr(module, name, wrapper)
    return between


def _instrumented_answers(module: Any, name: str,
                          route_class: type[APIRoute]) -> tuple[list[Answer], list[str]]:
    calls: list[str] = []
    with pytest.MonkeyPatch.context() as patcher:
        seen = answers(instrumented, route_class, INSTRUMENTED_REQUESTS,
                       _wrap_after_first(module, name, calls, patcher))
    return seen, calls


@pytest.mark.parametrize("name", ["solve_dependencies", "run_endpoint_function",
                                  "serialize_response"])
def test_instrumentation_installed_after_a_request(name: str) -> None:
    flyer, flyer_calls = _instrumented_answers(fastapi.routing, name, FlyerRoute)
    plain, plain_calls = _instrumented_answers(fastapi.routing, name, APIRoute)
    assert flyer == plain
    assert flyer_calls == plain_calls and flyer_calls  # the wrapper saw both apps' requests


def test_instrumentation_of_the_defining_module() -> None:
    module = fastapi.dependencies.utils
    flyer, flyer_calls = _instrumented_answers(module, "solve_dependencies", FlyerRoute)
    plain, plain_calls = _instrumented_answers(module, "solve_dependencies", APIRoute)
    assert flyer == plain
    assert flyer_calls == plain_calls


# --- the dependant changed after the first request ---
def changeable(app: FastAPI, log: Log) -> None:
    def dep(n: int) -> int:
        log.append("dep")
        return n

    @app.get("/change")
    async def change(d: Annotated[int, Depends(dep)], q: int = 0, r: int = 0) -> list[int]:
        log.append("endpoint")
        return [d, q, r]

    def scoped(scopes: SecurityScopes) -> list[str]:
        return scopes.scopes

    @app.get("/scopes")
    async def with_scopes(s: Annotated[list[str], Security(scoped, scopes=["a"])]
                          ) -> list[str]:
        return s


def _route(app: FastAPI, path: str) -> APIRoute:
    return next(route for route in app.routes
                if isinstance(route, APIRoute) and route.path == path)


def _appended(app: FastAPI, number: int) -> None:
    if number == 1:
        def extra(z: int) -> int:
            return z
        route = _route(app, "/change")
        route.dependant.dependencies.append(
            get_parameterless_sub_dependant(depends=Depends(extra), path=route.path_format))


def _replaced_call(app: FastAPI, number: int) -> None:
    if number == 1:
        async def other(**values: Any) -> list[str]:
            return sorted(values)
        _route(app, "/change").dependant.call = other


def _removed_query(app: FastAPI, number: int) -> None:
    if number == 1:
        dependant = _route(app, "/change").dependant
        dependant.query_params[:] = [f for f in dependant.query_params if f.name != "q"]


def _sub_param_removed(app: FastAPI, number: int) -> None:
    if number == 1:
        _route(app, "/change").dependant.dependencies[0].query_params.clear()


def _path_changed(app: FastAPI, number: int) -> None:
    if number == 1:
        _route(app, "/change").dependant.path = "/renamed"


def _scopes_changed(app: FastAPI, number: int) -> None:
    if number == 1:
        sub = _route(app, "/scopes").dependant.dependencies[0]
        assert sub.own_oauth_scopes is not None
        sub.own_oauth_scopes.append("b")


CHANGE_REQUESTS: list[Probe] = [("GET", "/change?n=1&q=2&r=3&z=4", {}, None),
                                ("GET", "/change?n=x&q=y&r=z&z=w", {}, None),
                                ("GET", "/change?n=1&q=2", {}, None),
                                ("GET", "/change", {}, None)]


@pytest.mark.parametrize("between", [_appended, _replaced_call, _removed_query,
                                     _sub_param_removed])
def test_a_dependant_changed_after_the_first_request(
        between: Callable[[FastAPI, int], None]) -> None:
    assert_alike(changeable, *CHANGE_REQUESTS, between=between)


def test_oauth_scopes_changed_after_the_first_request() -> None:
    """FastAPI reads a dependant's oauth scopes per request (SecurityScopes, cache key)."""
    assert_alike(changeable, ("GET", "/scopes", {}, None), ("GET", "/scopes", {}, None),
                 between=_scopes_changed)


def test_dependant_path_changed_after_the_first_request() -> None:
    """FastAPI's endpoint context reads route.dependant.path per request."""
    assert_alike(changeable, ("GET", "/change?n=x", {}, None), ("GET", "/change?n=x", {}, None),
                 between=_path_changed)


# --- a dependency that changes the route's dependant during the request ---
def self_changing(app: FastAPI, log: Log) -> None:
    def extra(z: int) -> int:
        log.append("extra")
        return z

    def registers(request: Request) -> None:
        log.append("registers")
        dependant = request.scope["route"].dependant
        if len(dependant.dependencies) == 1:  # on the first request: protect the route
            dependant.dependencies.append(get_parameterless_sub_dependant(
                depends=Depends(extra), path="/self"))

    @app.get("/self", dependencies=[Depends(registers)])
    async def self_route() -> str:
        log.append("endpoint")
        return "ok"


@pytest.mark.xfail(strict=True, reason=(
    "A dependency appends a dependency to its own route's dependant during a request: "
    "FastAPI's solve_dependencies iterates the live list and runs the appended one in that "
    "same request (here: 422 for z); the planned handler checked _changed before solving, "
    "so it runs only from the next request on."))
def test_a_dependency_changes_its_route_during_the_request() -> None:
    assert_alike(self_changing, ("GET", "/self", {}, None), ("GET", "/self", {}, None))


# --- a dependency that replaces (not mutates) what the request reads its inputs from ---
def replacing(app: FastAPI, log: Log) -> None:
    async def new_path_params(request: Request) -> None:
        request.scope["path_params"] = {**request.path_params,
                                        "name": request.path_params["name"].lower()}

    @app.get("/p/{name}", dependencies=[Depends(new_path_params)])
    async def by_name(name: str) -> str:
        return name

    async def new_query(request: Request) -> None:  # a legacy parameter name, renamed
        request.scope["query_string"] = request.scope["query_string"].replace(b"old=", b"q=")

    @app.get("/q", dependencies=[Depends(new_query)])
    async def by_query(q: int) -> int:
        return q

    async def new_headers(request: Request) -> None:
        request.scope["headers"] = [*request.scope["headers"], (b"x-added", b"7")]

    @app.get("/h", dependencies=[Depends(new_headers)])
    async def by_header(x_added: Annotated[int, Header()]) -> int:
        return x_added


def test_a_dependency_replaces_the_path_parameters() -> None:
    """FastAPI reads ``request.path_params`` (the scope's, never cached) for each dependant
    after its sub-dependencies ran; the planned handler read it once, before any ran."""
    assert_alike(replacing, ("GET", "/p/BOB", {}, None))


@pytest.mark.parametrize("url", ["/q?old=1", "/h"])
def test_a_dependency_replaces_a_cached_request_input(url: str) -> None:
    """Query parameters and headers are cached by the request the first time they are read:
    FastAPI reads them while solving the replacing dependency's own (empty) inputs."""
    assert_alike(replacing, ("GET", url, {}, None))


def replacing_unread(app: FastAPI, log: Log) -> None:
    async def new_scope(request: Request) -> None:
        request.scope["headers"] = [*request.scope["headers"], (b"x-added", b"7"),
                                    (b"cookie", b"added=8")]
        request.scope["query_string"] = b"added=9"

    @app.get("/unread", dependencies=[Depends(new_scope)])
    async def unread(request: Request) -> list[Any]:
        return [request.headers.get("x-added"), request.cookies.get("added"),
                request.query_params.get("added")]


def test_a_dependency_replaces_request_inputs_no_parameter_reads() -> None:
    assert_alike(replacing_unread, ("GET", "/unread?added=1", {"cookie": "added=2"}, None))


# --- the same endpoint function served at two paths, two requests interleaved ---
def _two_paths_concurrently(route_class: type[APIRoute]) -> list[Any]:
    app, log = _make(lambda app, log: None, route_class)
    gate = anyio.Event()
    entered = anyio.Event()

    async def waits(q: int = 0) -> int:
        if q == 1:
            entered.set()
            await gate.wait()
        return q

    async def endpoint(w: Annotated[int, Depends(waits)], n: int) -> int:
        return n

    app.add_api_route("/v1/e", endpoint)
    app.add_api_route("/v2/e", endpoint)

    async def main() -> list[Any]:
        transport = httpx.ASGITransport(app=app)
        seen: list[Any] = []
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            async def first() -> None:
                response = await client.get("/v1/e?q=1&n=x")  # waits, then fails
                seen.append(("v1", response.status_code, response.content))

            async with anyio.create_task_group() as group:
                group.start_soon(first)
                await entered.wait()
                response = await client.get("/v2/e?n=1")
                seen.append(("v2", response.status_code, response.content))
                gate.set()
        seen.append([entry[1]["endpoint_ctx"] for entry in log if entry[0] == "handler"])
        return seen

    return anyio.run(main)


@pytest.mark.xfail(strict=True, reason=(
    "FastAPI's _extract_endpoint_context caches one dict per endpoint function and its handler "
    "sets that dict's 'path' at the start of every request; the planned handler sets it only "
    "when it raises. A request to the same function at another path between the two moves "
    "FastAPI's exc.endpoint_ctx['path'] (a race in FastAPI), not the planned handler's."))
def test_one_endpoint_at_two_paths_interleaved() -> None:
    assert _two_paths_concurrently(FlyerRoute) == _two_paths_concurrently(APIRoute)


# --- 50 concurrent requests, valid and invalid, to routes with cached dependencies ---
REQUEST_VAR: contextvars.ContextVar[int] = contextvars.ContextVar("request_n", default=-1)


def concurrent(app: FastAPI, log: Log) -> None:
    async def who(x_n: Annotated[int, Header()]) -> int:
        REQUEST_VAR.set(x_n)
        await anyio.sleep(0)
        return x_n

    def user(n: Annotated[int, Depends(who)], token: str = "") -> str:
        if token == "":
            return "anonymous"
        return f"user-{n}-{token}"

    async def gen(u: Annotated[str, Depends(user)]) -> AsyncIterator[str]:
        await anyio.sleep(0)
        try:
            yield u
        except Exception as exc:
            log.append((REQUEST_VAR.get(), f"gen sees {type(exc).__name__}"))
            raise

    @app.get("/c/{k}")
    async def read(k: int, u1: Annotated[str, Depends(user)],
                   u2: Annotated[str, Depends(user)], g: Annotated[str, Depends(gen)],
                   limit: Annotated[int, Query(le=10)] = 5) -> list[Any]:
        await anyio.sleep(0)
        return [k, u1, u2, g, limit]

    @app.post("/c/{k}")
    def write(k: int, item: Item, u: Annotated[str, Depends(user)],
              background: BackgroundTasks) -> list[Any]:
        background.add_task(log.append, (k, "task"))
        return [k, item, u]


def _concurrently(route_class: type[APIRoute]) -> tuple[list[Any], list[Any]]:
    app, log = _make(concurrent, route_class)

    def request_of(n: int) -> tuple[str, str, dict[str, str], bytes | None]:
        headers = {"x-n": str(n) if n % 7 else "bad", **JSON}
        k = str(n) if n % 5 else "k"
        if n % 2:
            return "GET", f"/c/{k}?token=t{n}&limit={n % 13}", headers, None
        body = b'{"a": %d}' % n if n % 3 else b'{"a": "no"}'
        return "POST", f"/c/{k}?token=t{n}", headers, body

    async def main() -> list[Any]:
        seen: list[Any] = []
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            async def one(n: int) -> None:
                method, url, headers, body = request_of(n)
                response = await client.request(method, url, headers=headers, content=body)
                seen.append((n, response.status_code, response.content,
                             sorted(response.headers.items())))

            async with anyio.create_task_group() as group:
                for n in range(50):
                    group.start_soon(one, n)
        return sorted(seen)

    answered = anyio.run(main)
    handled = sorted((repr(entry)) for entry in log)
    return answered, handled


def test_fifty_concurrent_requests_valid_and_invalid() -> None:
    flyer = _concurrently(FlyerRoute)
    plain = _concurrently(APIRoute)
    assert flyer[0] == plain[0]
    assert flyer[1] == plain[1]
    assert sum(1 for entry in plain[0] if entry[1] == 422) >= 10
    assert_planned(concurrent)
