"""``FlyerRoute`` against FastAPI's ``APIRoute``, with the requests and routes of a hostile
or careless user: each probe builds the same app twice from one factory (``FastAPI()`` with
``app.router.route_class`` ``FlyerRoute`` and ``APIRoute``; a few with ``FlyerAPI`` and
``flyer_fast_path`` 1 and 0) and compares the answers (status, headers, body bytes) and
what the app did on the side (a log the routes, dependencies, validators and background
tasks write to).

Among them, the probes of order: FastAPI validates a dependant's inputs only after its
sub-dependencies have run, so a dependency may rewrite an input (a body field, a path
parameter, a context variable a validator reads) before it is validated, and a validator
runs once however many other inputs are invalid. An earlier planner that validated every
input first failed each of them.
"""

import contextvars
import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal, cast
from uuid import UUID

import anyio
import fastapi
import httpx
import pytest
from fastapi import (
    APIRouter,
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
)
from fastapi.dependencies.utils import get_parameterless_sub_dependant
from fastapi.exceptions import RequestValidationError, ResponseValidationError
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
)
from fastapi.routing import APIRoute
from fastapi.sse import EventSourceResponse
from pydantic import AfterValidator, AliasChoices, BaseModel, BeforeValidator, Json
from starlette.background import BackgroundTask
from starlette.testclient import TestClient

from fastflyer import FlyerAPI
from fastflyer.routing import FlyerRoute
from route_pairs import JSON, Answer, Factory, Log, Probe, assert_alike
from route_pairs import ask as _ask
from route_pairs import make as _make


# --- models (module level: FastAPI resolves annotations through the module) ---
class Item(BaseModel):
    a: int
    extra: dict[str, Any] = {}


class Owned(BaseModel):
    a: int
    owner: str


class Inner(BaseModel):
    b: int = 1
    c: int = 2


class Out(BaseModel):
    a: Inner = Inner()
    x: int | None = None


class Secretive(Out):
    secret: str = "hidden"


class Letter(Enum):
    a = "a"
    one = "1"


TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="none")


def _in_tenant(value: str) -> str:
    if not value.startswith(TENANT.get()):
        raise ValueError(f"not in tenant {TENANT.get()}")
    return value


def planned_paths(factory: Factory) -> dict[str, bool]:
    app, _ = _make(factory, FlyerRoute)
    return {route.path: route.planned for route in app.routes if isinstance(route, FlyerRoute)}


# --- factories: each declares routes on ``app``, writing side effects to ``log`` ---
def bodies(app: FastAPI, log: Log) -> None:
    async def reads_body(request: Request) -> bytes:
        body = await request.body()
        log.append(f"dep body {body!r}")
        return body

    async def reads_json(request: Request) -> Any:
        data = await request.json()
        log.append(f"dep json {data!r}")
        return data

    async def reads_stream(request: Request) -> None:
        chunks = [chunk async for chunk in request.stream()]
        log.append(f"stream {chunks!r}")

    async def reads_form(request: Request) -> None:
        form = await request.form()
        log.append(f"form {list(form.items())!r}")

    @app.post("/deps-read-body")
    async def deps_read_body(item: Item, raw: Annotated[bytes, Depends(reads_body)],
                             data: Annotated[Any, Depends(reads_json)]) -> Any:
        return {"item": item, "raw": raw.decode("latin-1"), "data": data}

    @app.post("/dep-streams-no-body", dependencies=[Depends(reads_stream)])
    async def dep_streams_no_body() -> dict[str, int]:
        return {}

    @app.post("/dep-streams-with-body", dependencies=[Depends(reads_stream)])
    async def dep_streams_with_body(item: Item) -> Item:
        return item

    @app.post("/dep-reads-form", dependencies=[Depends(reads_form)])
    async def dep_reads_form(item: Item | None = None) -> Any:
        return {"item": item}

    @app.post("/scalars")
    async def scalars(x: Annotated[int, Body()], y: Annotated[str, Body()]) -> list[Any]:
        return [x, y]

    @app.post("/embed-one")
    async def embed_one(x: Annotated[int, Body(embed=True)]) -> int:
        return x

    @app.post("/scalar-one")
    async def scalar_one(x: Annotated[int, Body()]) -> int:
        return x

    @app.post("/dict")
    async def any_dict(x: dict[str, Any]) -> dict[str, Any]:
        return x

    @app.post("/models")
    async def models(x: list[Item]) -> list[Item]:
        return x

    @app.post("/optional")
    async def optional(x: Item | None = None) -> Any:
        return {"x": x}

    def query_dep(z: int) -> int:
        log.append(f"query_dep {z}")
        return z

    @app.post("/body-and-dep")
    async def body_and_dep(x: Item, y: Annotated[int, Depends(query_dep)]) -> list[Any]:
        return [x, y]

    @app.post("/embed-and-factory")
    async def embed_and_factory(
            x: Annotated[Item, Body(embed=True)],
            y: Annotated[list[int], Body(default_factory=list)]) -> list[Any]:
        return [x, y]

    def body_dep(z: Annotated[int, Body()] = 0) -> int:
        log.append(f"body_dep {z}")
        return z

    @app.post("/dependency-body")
    async def dependency_body(x: Item, z: Annotated[int, Depends(body_dep)]) -> list[Any]:
        return [x, z]


BODY_REQUESTS: list[Probe] = [
    ("POST", "/deps-read-body", JSON, b'{"a":1}'),
    ("POST", "/deps-read-body", JSON, b'{"a":"x"}'),
    ("POST", "/deps-read-body", JSON, b'{"a":1'),
    ("POST", "/dep-streams-no-body", JSON, b"hello"),
    ("POST", "/dep-streams-no-body", {}, b""),
    ("POST", "/dep-streams-with-body", JSON, b'{"a":1}'),
    ("POST", "/dep-reads-form", {"content-type": "application/x-www-form-urlencoded"}, b"a=1"),
    ("POST", "/dep-reads-form", JSON, b'{"a":1}'),
    ("POST", "/scalars", JSON, b'{"x":1,"y":"s"}'),
    ("POST", "/scalars", JSON, b'{"x":1}'),
    ("POST", "/embed-one", JSON, b'{"x":1}'),
    ("POST", "/embed-one", JSON, b"1"),
    ("POST", "/scalar-one", JSON, b"1"),
    ("POST", "/scalar-one", JSON, b"null"),
    ("POST", "/scalar-one", JSON, b"123456789012345678901234567890"),
    ("POST", "/dict", JSON, b'{"a":[1,2]}'),
    ("POST", "/dict", JSON, b"[1]"),
    ("POST", "/dict", JSON, b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("POST", "/models", JSON, b'[{"a":1},{"a":2,"extra":{"c":1}}]'),
    ("POST", "/models", JSON, b'[{"a":1},{"b":2}]'),
    ("POST", "/optional", JSON, b""),
    ("POST", "/optional", JSON, b"null"),
    ("POST", "/optional", {}, b'{"a":1}'),
    ("POST", "/optional", {"content-type": "text/plain"}, b'{"a":1}'),
    ("POST", "/optional", {"content-type": "application/json; charset=latin-1"}, b'{"a":1}'),
    ("POST", "/optional", {"content-type": "APPLICATION/JSON"}, b'{"a":1}'),
    ("POST", "/optional", {"content-type": "application/merge-patch+json"}, b'{"a":1}'),
    ("POST", "/optional", [("content-type", "text/plain"), ("content-type", "application/json")],
     b'{"a":1}'),
    ("POST", "/optional", [("content-type", "application/json"), ("content-type", "text/plain")],
     b'{"a":1}'),
    ("POST", "/optional", JSON, b'{"a":"\xff"}'),
    ("POST", "/optional", JSON, b'\xef\xbb\xbf{"a":1}'),
    ("POST", "/optional", JSON, b"\xff\xfe{\x00}\x00"),
    ("POST", "/optional", JSON, b'{"a":1' + b"0" * 5000 + b"}"),
    ("POST", "/optional", JSON, b'{"a":NaN}'),
    ("POST", "/optional", JSON, b'{"a":1e400}'),
    ("POST", "/optional", JSON, b"  "),
    ("POST", "/body-and-dep?z=1", JSON, b'{"a":1}'),
    ("POST", "/body-and-dep?z=q", JSON, b'{"a":1}'),
    ("POST", "/body-and-dep?z=1", JSON, b'{"a":"q"}'),
    *[("POST", "/optional", [(b"content-type", content_type)], b'{"a":1}') for content_type in [
        b"application/json\x00", "application/js\u00f6n".encode("latin-1"),
        b'application/json; charset="utf-8', b"application/json;;;",
        b"application/" + b"x" * 300 + b"+json", b"application /json", b"application/json\tx",
        b"multipart/form-data; boundary=x", b"application/x-www-form-urlencoded"]],
    *[("POST", "/embed-and-factory", JSON, body) for body in [
        b'{"x":{"a":1}}', b'{"x":{"a":1},"y":[1]}', b"[]", b'{"x":null}']],
    *[("POST", "/dependency-body", JSON, body) for body in [
        b'{"x":{"a":1},"z":2}', b'{"x":{"a":1}}', b'{"a":1}', b'{"x":{"a":1},"z":"q"}']],
]


def yields(app: FastAPI, log: Log) -> None:
    async def catches() -> AsyncIterator[int]:
        log.append("catches start")
        try:
            yield 1
        except ValueError as exc:
            log.append(f"catches {exc}")
            raise HTTPException(418, "teapot") from exc
        finally:
            log.append("catches end")

    def cleanup_raises() -> Iterator[int]:
        log.append("cleanup_raises start")
        yield 2
        log.append("cleanup_raises end")
        raise RuntimeError("clean-up fails")

    async def function_scoped() -> AsyncIterator[int]:
        log.append("function start")
        yield 3
        log.append("function end")

    async def swallows() -> AsyncIterator[int]:
        try:
            yield 1
        except Exception:
            log.append("swallowed")

    @app.get("/yield")
    async def yield_route(a: Annotated[int, Depends(catches)],
                          f: Annotated[int, Depends(function_scoped, scope="function")],
                          mode: str = "ok") -> dict[str, int]:
        log.append("endpoint")
        if mode == "value":
            raise ValueError("v")
        if mode == "http":
            raise HTTPException(409, "conflict")
        return {"a": a, "f": f}

    @app.get("/cleanup-raises")
    def cleanup_raises_route(b: Annotated[int, Depends(cleanup_raises)]) -> int:
        return b

    @app.get("/swallows")
    async def swallows_route(b: Annotated[int, Depends(swallows)], q: int = 0) -> int:
        if q:
            raise ValueError("x")
        return b


YIELD_REQUESTS: list[Probe] = [
    ("GET", "/yield", {}, None), ("GET", "/yield?mode=value", {}, None),
    ("GET", "/yield?mode=http", {}, None), ("GET", "/cleanup-raises", {}, None),
    ("GET", "/swallows", {}, None), ("GET", "/swallows?q=1", {}, None),
    ("GET", "/swallows?q=x", {}, None),
]


class Constructed:
    def __init__(self, log: Log, q: int = 1) -> None:
        log.append(f"Constructed {q}")
        self.q = q


class AsyncCall:
    def __init__(self, log: Log) -> None:
        self.log = log

    async def __call__(self, q: int = 2) -> int:
        self.log.append("async __call__")
        return q


class SyncCall:
    def __init__(self, log: Log) -> None:
        self.log = log

    def __call__(self, q: int = 3) -> int:
        self.log.append("sync __call__")
        return q


def callables(app: FastAPI, log: Log) -> None:
    counter = [0]

    def count() -> int:
        counter[0] += 1
        log.append(f"count {counter[0]}")
        return counter[0]

    def uses(c1: Annotated[int, Depends(count)],
             c2: Annotated[int, Depends(count, use_cache=False)]) -> list[int]:
        return [c1, c2]

    @app.get("/cache")
    def cache(u: Annotated[list[int], Depends(uses)], c3: Annotated[int, Depends(count)],
              c4: Annotated[int, Depends(count, use_cache=False)], bad: int = 0) -> list[Any]:
        return [u, c3, c4]

    def constructed(q: int = 1) -> Constructed:
        return Constructed(log, q)

    def base(x: int, y: int = 0) -> int:
        log.append(f"base {x} {y}")
        return x + y

    @app.get("/callables")
    async def callables_route(
            c: Annotated[Constructed, Depends(constructed)],
            a: Annotated[int, Depends(AsyncCall(log))],
            s: Annotated[int, Depends(SyncCall(log))],
            p: Annotated[int, Depends(functools.partial(base, y=5))]) -> list[int]:
        return [c.q, a, s, p]

    async def endpoint(x: int, y: int = 0) -> dict[str, int]:
        return {"x": x, "y": y}

    app.get("/partial")(functools.partial(endpoint, y=7))

    def sync_function(x: int) -> dict[str, int]:
        return {"x": x}

    @functools.wraps(sync_function)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        return sync_function(*args, **kwargs)

    app.get("/wrapped")(wrapped)

    @app.get("/scope")
    def scope(request: Request) -> dict[str, Any]:
        return {"keys": sorted(request.scope), "route": request.scope["route"].path,
                "endpoint": request.scope["endpoint"].__name__}

    def sync_dep_func(func: int = 0) -> int:  # FastAPI calls run_in_threadpool(call, func=...)
        return func

    @app.get("/sync-dep-func")
    async def sync_dep_func_route(f: Annotated[int, Depends(sync_dep_func)]) -> int:
        return f


CALLABLE_REQUESTS: list[Probe] = [
    ("GET", "/cache", {}, None), ("GET", "/cache?bad=x", {}, None),
    ("GET", "/callables?q=9", {}, None), ("GET", "/callables?q=z", {}, None),
    ("GET", "/callables?x=1", {}, None), ("GET", "/callables?x=1&q=4", {}, None),
    ("GET", "/partial?x=1", {}, None), ("GET", "/partial?x=1&y=2", {}, None),
    ("GET", "/wrapped?x=1", {}, None), ("GET", "/wrapped?args=1", {}, None),
    ("GET", "/scope", {}, None), ("GET", "/sync-dep-func?func=2", {}, None),
]


def parameters(app: FastAPI, log: Log) -> None:
    @app.get("/q")
    async def query(
            a: Annotated[int, Query(alias="A-b")] = 0,
            v: Annotated[str | None, Query(validation_alias=AliasChoices("v1", "v2"))] = None,
            ints: Annotated[list[int] | None, Query()] = None,
            words: Annotated[set[str], Query()] = set(),  # noqa: B006
            pair: Annotated[tuple[int, int] | None, Query()] = None,
            d: Decimal = Decimal("1.0"), u: UUID | None = None, dt: datetime | None = None,
            j: Json[list[int]] | None = None,
            jl: Annotated[Json[list[int]] | None, Query()] = None,
            e: Letter = Letter.a, lit: Literal["x", "y"] = "x",
            dv: Annotated[int, Query(validate_default=True)] = "5",  # type: ignore[assignment]
            mutable: Annotated[list[str], Query()] = [],  # noqa: B006
            empty: str | None = None, b: bool = False) -> dict[str, Any]:
        mutable.append("touched")  # the default is copied per request, or not, alike
        return {"a": a, "v": v, "ints": ints, "words": sorted(words), "pair": pair,
                "d": str(d), "u": str(u), "dt": dt, "j": j, "jl": jl, "e": e, "lit": lit,
                "dv": dv, "mutable": mutable, "empty": empty, "b": b}

    @app.get("/h")
    async def headers(
            x_a: Annotated[str | None, Header(convert_underscores=False)] = None,
            x_b: Annotated[str | None, Header()] = None,
            many: Annotated[list[str] | None, Header(alias="X-L")] = None,
            user_agent: Annotated[str | None, Header()] = None,
            weird: Annotated[str | None, Cookie(alias="we ird;")] = None,
            dashed: Annotated[str | None, Cookie(alias="c-2")] = None,
            listed: Annotated[list[str] | None, Cookie()] = None) -> list[Any]:
        return [x_a, x_b, many, user_agent, weird, dashed, listed]

    @app.get("/p/{rest:path}")
    async def path_rest(rest: str) -> str:
        return rest

    @app.get("/pe/{e}/{d}/{u}")
    async def path_types(e: Letter, d: Decimal, u: UUID) -> list[Any]:
        return [e, str(d), str(u)]

    @app.get("/pq/{x}")
    async def path_and_query_same_key(x: Annotated[int, Path(gt=0)],
                                      y: Annotated[int, Query(alias="x")] = 0) -> list[int]:
        return [x, y]


PARAM_URLS = [
    "/q", "/q?A-b=3&a=4", "/q?a=4", "/q?v2=z&v1=y", "/q?v2=z", "/q?ints=", "/q?ints=1&ints=2",
    "/q?ints=1&ints=x", "/q?words=a&words=a&words=b", "/q?pair=1&pair=2", "/q?pair=1",
    "/q?d=1e3", "/q?d=NaN", "/q?u=12345678123456781234567812345678",
    "/q?dt=2020-01-01T00:00:00%2B05:00", "/q?j=[1,2]", "/q?j=nope", "/q?jl=[1]&jl=[2]",
    "/q?e=1", "/q?e=b", "/q?lit=y", "/q?lit=z", "/q?empty=", "/q?b=yes", "/q?b=", "/q?dv=7",
    "/q?mutable=a", "/q?%ff=1&a=%ff", "/q?a=%EF%BC%91", "/p/a/b/../c", "/p/%2F%2F",
    "/pe/1/1.5/12345678-1234-5678-1234-567812345678", "/pe/a/x/z", "/pq/3?x=4", "/pq/0",
]
PARAM_REQUESTS: list[Probe] = [("GET", url, {}, None) for url in PARAM_URLS] + [
    ("GET", "/q", {}, None),  # twice more: a shared mutable default would show
    ("GET", "/q", {}, None),
    ("GET", "/h", {"x_a": "1", "x-a": "2", "x-b": "3", "x_b": "4"}, None),
    ("GET", "/h", [("x-l", "1"), ("X-L", "2"), ("x-l", "3,4")], None),
    ("GET", "/h", {"cookie": "we ird;=1; c-2=2; listed=a; listed=b"}, None),
    ("GET", "/h", {"cookie": 'c-2="q\\"x"; listed'}, None),
    ("GET", "/h", {"user-agent": "agent"}, None),
]


def responses(app: FastAPI, log: Log) -> None:
    @app.get("/none", response_model=Out)
    async def none() -> Any:
        return None

    @app.get("/none-allowed", response_model=Out | None)
    async def none_allowed() -> Any:
        return None

    @app.get("/subclass", response_model=Out)
    async def subclass() -> Any:
        return Secretive()

    @app.get("/subclass-annotated")
    async def subclass_annotated() -> Out:
        return Secretive()

    @app.get("/raw", response_model=None)
    async def raw() -> Any:
        return {"dt": datetime(2020, 1, 1), "b": b"xx", "s": {1}, "d": Decimal("1.10"),
                "f": float("nan")}

    @app.get("/exclude-nested", response_model=Out, response_model_exclude={"a": {"b"}})
    async def exclude_nested() -> Out:
        return Out()

    @app.get("/exclude-unset", response_model=Out, response_model_exclude_unset=True,
             response_model_exclude_none=True)
    async def exclude_unset() -> Any:
        return {"x": None}

    @app.get("/204", status_code=204, response_model=None)
    async def no_content() -> Any:
        return {"a": 1}

    @app.get("/own-response", status_code=202)
    async def own_response(response: Response) -> Response:
        response.set_cookie("k", "v")
        response.status_code = 201
        return PlainTextResponse("own", headers={"x": "1"})

    @app.get("/sub-response")
    async def sub_response(response: Response) -> dict[str, int]:
        response.set_cookie("k", "v")
        response.status_code = 201
        response.headers["content-type"] = "text/evil"
        return {"a": 1}

    @app.get("/sub-response-304")
    async def sub_response_304(response: Response) -> dict[str, int]:
        response.status_code = 304
        return {"a": 1}

    def adds_task(tasks: BackgroundTasks) -> int:
        tasks.add_task(log.append, "dependency task")
        return 1

    @app.get("/background")
    async def background(tasks: BackgroundTasks, d: Annotated[int, Depends(adds_task)],
                         own: int = 0) -> Any:
        tasks.add_task(log.append, "endpoint task")
        if own:
            return JSONResponse({"own": 1}, background=BackgroundTask(log.append, "own task"))
        return {"background": d}

    @app.get("/background-raises")
    async def background_raises(tasks: BackgroundTasks) -> dict[str, int]:
        def boom() -> None:
            log.append("boom")
            raise RuntimeError("background")

        tasks.add_task(boom)
        tasks.add_task(log.append, "after")
        return {}

    @app.get("/redirect", response_class=RedirectResponse)
    async def redirect() -> str:
        return "/elsewhere"

    @app.get("/redirect-302", response_class=RedirectResponse, status_code=302)
    async def redirect_302() -> str:
        return "/elsewhere"

    @app.get("/html", response_class=HTMLResponse)
    async def html() -> str:
        return "<b>"

    @app.get("/text", response_class=PlainTextResponse)
    async def text() -> int:
        return 12

    @app.get("/invalid-response", response_model=int)
    def invalid_response() -> Any:
        return "x"

    @app.get("/head")
    async def head() -> dict[str, int]:
        return {"a": 1}

    def refuses() -> None:
        raise HTTPException(401, headers={"www-authenticate": "x"})

    @app.get("/refused", dependencies=[Depends(refuses)])
    async def refused(n: int) -> int:
        return n

    @app.exception_handler(ResponseValidationError)
    async def response_invalid(request: Request, exc: ResponseValidationError) -> Response:
        return PlainTextResponse(str(exc), status_code=500)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"errors": exc.errors(), "body": repr(exc.body)}, status_code=422)


RESPONSE_REQUESTS: list[Probe] = [cast(Probe, ("GET", url, {}, None)) for url in [
    "/none", "/none-allowed", "/subclass", "/subclass-annotated", "/raw", "/exclude-nested",
    "/exclude-unset", "/204", "/own-response", "/sub-response", "/sub-response-304",
    "/background", "/background?own=1", "/background?own=z", "/background-raises",
    "/redirect", "/redirect-302", "/html", "/text", "/invalid-response", "/refused?n=x",
    "/refused?n=1"]] + [
    ("HEAD", "/head", {}, None), ("OPTIONS", "/head", {}, None), ("POST", "/head", {}, None),
]


@pytest.mark.parametrize(("factory", "request_"), [
    *[pytest.param(bodies, request, id=f"bodies-{n}") for n, request in enumerate(BODY_REQUESTS)],
    *[pytest.param(yields, request, id=f"yields-{n}") for n, request in enumerate(YIELD_REQUESTS)],
    *[pytest.param(callables, request, id=f"callables-{n}")
      for n, request in enumerate(CALLABLE_REQUESTS)],
    *[pytest.param(parameters, request, id=f"params-{n}")
      for n, request in enumerate(PARAM_REQUESTS)],
    *[pytest.param(responses, request, id=f"responses-{n}")
      for n, request in enumerate(RESPONSE_REQUESTS)],
])
def test_alike(factory: Factory, request_: Probe) -> None:
    assert_alike(factory, request_)


@pytest.mark.parametrize("factory", [bodies, yields, callables, parameters, responses])
def test_the_probed_routes_are_planned(factory: Factory) -> None:
    """The probes above exercise the planned handler, not FastAPI's (form-free routes)."""
    assert all(planned_paths(factory).values()), planned_paths(factory)


def test_the_request_sequence_keeps_counting_alike() -> None:
    """Cached and uncached dependencies over several requests (one counter per app)."""
    assert_alike(callables, *[("GET", "/cache", {}, None)] * 3, ("GET", "/cache?bad=x", {}, None))


# --- differences: each its own factory ---
def sync_endpoint_func_param(app: FastAPI, log: Log) -> None:
    @app.get("/sync")
    def sync(func: int = 1) -> dict[str, int]:
        return {"func": func}


def test_sync_endpoint_with_a_parameter_named_func() -> None:
    """``run_in_threadpool(call, **values)`` takes ``func`` as its own argument."""
    assert planned_paths(sync_endpoint_func_param) == {"/sync": True}
    assert_alike(sync_endpoint_func_param, ("GET", "/sync?func=3", {}, None),
                 ("GET", "/sync", {}, None))


def background_tasks_type(app: FastAPI, log: Log) -> None:
    @app.get("/type")
    async def tasks_type(tasks: BackgroundTasks) -> dict[str, Any]:
        return {"fastapi": isinstance(tasks, fastapi.BackgroundTasks),
                "module": type(tasks).__module__}


def test_background_tasks_are_fastapis_class() -> None:
    assert planned_paths(background_tasks_type) == {"/type": True}
    assert_alike(background_tasks_type, ("GET", "/type", {}, None))


def sse_plain_endpoint(app: FastAPI, log: Log) -> None:
    @app.get("/events", response_class=EventSourceResponse)
    def events() -> Any:  # not a generator: FastAPI still streams what it returns
        return [{"a": 1}, {"a": 2}]


def test_event_source_response_class_on_a_plain_endpoint() -> None:
    assert_alike(sse_plain_endpoint, ("GET", "/events", {}, None))


def validator_side_effects(app: FastAPI, log: Log) -> None:
    def logged(value: str) -> str:
        log.append(f"validate {value}")
        return value

    def dep() -> int:
        log.append("dependency")
        return 1

    @app.get("/logged")
    async def logged_route(d: Annotated[int, Depends(dep)],
                           a: Annotated[str, AfterValidator(logged)] = "x",
                           b: int = 0) -> dict[str, int]:
        log.append("endpoint")
        return {}

    @app.get("/logged-alone")
    async def logged_alone(a: Annotated[str, AfterValidator(logged)] = "x",
                           b: int = 0) -> dict[str, int]:
        return {}


def test_validator_and_dependency_order() -> None:
    assert_alike(validator_side_effects, ("GET", "/logged?a=q&b=2", {}, None))


@pytest.mark.parametrize("url", ["/logged?a=q&b=x", "/logged-alone?a=q&b=x"])
def test_a_validator_runs_once_when_another_input_is_invalid(url: str) -> None:
    assert_alike(validator_side_effects, ("GET", url, {}, None))


def validator_raises(app: FastAPI, log: Log) -> None:
    def unknown_tenant(value: str) -> str:
        raise HTTPException(404, f"no tenant {value}")

    def authenticate(authorization: Annotated[str | None, Header()] = None) -> str:
        log.append("authenticate")
        if authorization != "Bearer good":
            raise HTTPException(401, "not authenticated")
        return "user"

    @app.get("/tenants/{tenant}")
    async def tenant(user: Annotated[str, Depends(authenticate)],
                     tenant: Annotated[str, BeforeValidator(unknown_tenant)]) -> str:
        return tenant


def test_a_validator_raising_after_an_auth_dependency() -> None:
    assert_alike(validator_raises, ("GET", "/tenants/acme", {}, None))


def dependency_rewrites_inputs(app: FastAPI, log: Log) -> None:
    async def force_owner(request: Request) -> None:
        body = await request.json()
        body["owner"] = "authenticated-user"  # the client may not choose the owner

    @app.post("/owned", dependencies=[Depends(force_owner)])
    async def owned(item: Owned) -> Owned:
        return item

    async def lower(request: Request) -> None:
        request.path_params["name"] = request.path_params["name"].lower()

    @app.get("/users/{name}", dependencies=[Depends(lower)])
    async def user(name: str) -> str:
        return name

    async def set_tenant(x_tenant: Annotated[str, Header()] = "none") -> str:
        TENANT.set(x_tenant)
        return x_tenant

    @app.get("/tenant-item")
    async def tenant_item(t: Annotated[str, Depends(set_tenant)],
                          item: Annotated[str, AfterValidator(_in_tenant)]) -> str:
        return item


def test_a_dependency_overwrites_a_body_field() -> None:
    assert_alike(dependency_rewrites_inputs,
                 ("POST", "/owned", JSON, b'{"a":1,"owner":"spoofed"}'))


def test_a_dependency_rewrites_a_path_parameter() -> None:
    assert_alike(dependency_rewrites_inputs, ("GET", "/users/BOB", {}, None))


def test_a_validator_reads_a_context_variable_a_dependency_sets() -> None:
    assert_alike(dependency_rewrites_inputs,
                 ("GET", "/tenant-item?item=none-1", {"x-tenant": "acme"}, None))


def test_rewritten_inputs_answer_alike() -> None:
    assert_alike(dependency_rewrites_inputs,
                 ("POST", "/owned", JSON, b'{"a":1}'),
                 ("GET", "/tenant-item?item=acme-1", {"x-tenant": "acme"}, None),
                 ("GET", "/tenant-item?item=t-1", {"x-tenant": "acme"}, None))


# --- the route's dependant changed after the route is built (FastAPI reads it per request) ---
def dependency_added_afterwards(app: FastAPI, log: Log) -> None:
    @app.get("/open")
    async def open_route() -> dict[str, bool]:
        return {"open": True}

    @app.get("/wrapped")
    async def wrapped_route() -> dict[str, str]:
        return {"v": "original"}

    def authenticate(request: Request) -> None:
        log.append("authenticate")
        if request.headers.get("authorization") != "ok":
            raise HTTPException(401)

    async def wrapper(**values: Any) -> dict[str, str]:
        log.append("wrapper")
        return {"v": "wrapped"}

    for route in app.routes:  # "protect every route": a pattern found in the wild
        if isinstance(route, APIRoute) and route.path == "/open":
            route.dependant.dependencies.insert(0, get_parameterless_sub_dependant(
                depends=Depends(authenticate), path=route.path_format))
        if isinstance(route, APIRoute) and route.path == "/wrapped":
            route.dependant.call = wrapper


def test_a_dependency_added_to_a_built_route_runs() -> None:
    """It ran with FastAPI's handler, not with the planned one (an authentication bypass)."""
    assert_alike(dependency_added_afterwards, ("GET", "/open", {}, None),
                 ("GET", "/open", {"authorization": "ok"}, None))


def test_a_call_replaced_on_a_built_route_is_called() -> None:
    assert_alike(dependency_added_afterwards, ("GET", "/wrapped", {}, None))


# --- overrides changing between requests, routers included twice and in a mounted app ---
def _real() -> str:
    return "real"


def _fake() -> str:
    return "fake"


def _served_with_overrides(route_class: type[APIRoute]) -> list[list[Any]]:
    app, sub = FastAPI(), FastAPI()
    router = APIRouter(route_class=route_class)

    @router.get("/r")
    async def read(d: Annotated[str, Depends(_real)]) -> str:
        return d

    app.include_router(router)
    app.include_router(router, prefix="/p")
    sub.include_router(router)
    app.mount("/sub", sub)
    seen = []
    with TestClient(app) as client:
        for step in range(4):
            if step == 1:
                app.dependency_overrides[_real] = _fake
            if step == 2:
                del app.dependency_overrides[_real]
                sub.dependency_overrides[_real] = _fake
            if step == 3:
                app.dependency_overrides[_real] = lambda: "lambda"
            seen.append([client.get(url).json() for url in ("/r", "/p/r", "/sub/r")])
    return seen


def test_overrides_added_and_removed_between_requests() -> None:
    assert _served_with_overrides(FlyerRoute) == _served_with_overrides(APIRoute)


# --- concurrency, a client that disconnects, a request cancelled mid-endpoint, middleware ---
def concurrent_and_cancelled(app: FastAPI, log: Log) -> None:
    lock = threading.Lock()

    def sync_dep(n: int) -> int:  # in the threadpool, cached: once per request
        with lock:
            log.append(f"dep {n}")
        return n

    @app.get("/concurrent")
    def concurrent(n: Annotated[int, Depends(sync_dep)],
                   again: Annotated[int, Depends(sync_dep)]) -> dict[str, int]:
        return {"n": n, "again": again}

    async def cleaned() -> AsyncIterator[int]:
        log.append("cleaned start")
        try:
            yield 1
        except BaseException as exc:
            log.append(f"cleaned sees {type(exc).__name__}")
            raise
        finally:
            log.append("cleaned end")

    @app.post("/slow")
    async def slow(item: Item, c: Annotated[int, Depends(cleaned)]) -> Item:
        log.append("slow start")
        app.state.started.set()
        await anyio.Event().wait()  # until cancelled
        return item  # pragma: no cover

    @app.middleware("http")
    async def catching(request: Request, call_next: Any) -> Response:
        try:
            response: Response = await call_next(request)
            return response
        except RuntimeError as exc:
            log.append(f"middleware caught {exc}")
            return PlainTextResponse("caught", status_code=599)

    @app.get("/raises")
    async def raises(c: Annotated[int, Depends(cleaned)]) -> None:
        raise RuntimeError("endpoint")


def _concurrently(route_class: type[APIRoute]) -> tuple[list[Any], list[str]]:
    app, log = _make(concurrent_and_cancelled, route_class)

    async def main() -> list[Any]:
        seen: list[Any] = []
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            async def one(n: int) -> None:
                response = await client.get(f"/concurrent?n={n}")
                seen.append((n, response.status_code, response.json()))

            async with anyio.create_task_group() as group:
                for n in range(100):
                    group.start_soon(one, n)
        return sorted(seen)

    return anyio.run(main), sorted(log)


def test_many_concurrent_requests_with_a_sync_dependency() -> None:
    assert _concurrently(FlyerRoute) == _concurrently(APIRoute)


def _asgi(app: FastAPI, method: str, path: str, chunks: list[bytes]) -> list[Any]:
    """``app`` called as a server would, the body in ``chunks`` (more to come) then a
    disconnect. What it sent, and how it ended."""
    sent: list[Any] = []
    messages = [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
             "server": ("test", 80), "headers": [(b"content-type", b"application/json")]}

    try:
        anyio.run(cast(Any, app), scope, receive, send)
        ended = "returned"
    except BaseException as exc:  # what reached the server
        ended = type(exc).__name__
    return [sent, ended]


@pytest.mark.parametrize("chunks", [[], [b'{"a":'], [b'{"a":1}']],
                         ids=["nothing", "half", "whole-no-end"])
def test_a_client_disconnecting_during_the_body(chunks: list[bytes]) -> None:
    results = []
    for route_class in (FlyerRoute, APIRoute):
        app, log = _make(concurrent_and_cancelled, route_class)
        results.append([*_asgi(app, "POST", "/slow", chunks), log])
    assert results[0] == results[1]


def test_a_request_cancelled_during_a_slow_endpoint() -> None:
    results = []
    for route_class in (FlyerRoute, APIRoute):
        app, log = _make(concurrent_and_cancelled, route_class)
        app.state.started = anyio.Event()

        async def main(app: FastAPI = app) -> None:
            sent: list[Any] = []
            body = [{"type": "http.request", "body": b'{"a":1}', "more_body": False}]

            async def receive() -> dict[str, Any]:
                if body:
                    return body.pop(0)
                await anyio.Event().wait()
                return {}  # pragma: no cover

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)  # pragma: no cover

            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                     "method": "POST", "scheme": "http", "path": "/slow", "raw_path": b"/slow",
                     "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
                     "server": ("test", 80),
                     "headers": [(b"content-type", b"application/json")]}
            async with anyio.create_task_group() as group:
                group.start_soon(cast(Any, app), scope, receive, send)
                await app.state.started.wait()
                group.cancel_scope.cancel()

        anyio.run(main)
        results.append(list(log))
    assert results[0] == results[1]
    assert "cleaned end" in results[0]


def test_an_endpoint_exception_reaches_the_middleware_after_the_clean_up() -> None:
    assert_alike(concurrent_and_cancelled, ("GET", "/raises", {}, None))


# --- FlyerAPI with flyer_fast_path 1 and 0 ---
def _flyer_routes(app: FastAPI, log: Log) -> None:
    router = APIRouter()
    _flyer_routes_on(router, log)

    @app.get("/own")
    async def own(response: Response) -> dict[str, int]:
        response.status_code = 201
        return {}

    app.include_router(router, prefix="/r")


def _flyer_routes_on(router: APIRouter, log: Log) -> None:
    @router.get("/func")
    def func_route(func: int = 1) -> dict[str, int]:
        return {"func": func}

    @router.get("/tasks")
    async def tasks_route(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(log.append, "task")
        return {"fastapi": isinstance(tasks, fastapi.BackgroundTasks)}

    @router.post("/item")
    async def item_route(item: Item, q: Annotated[list[int] | None, Query()] = None) -> Any:
        return {"item": item, "q": q}


FLYER_REQUESTS: list[Probe] = [
    ("GET", "/r/func?func=2", {}, None), ("GET", "/r/tasks", {}, None),
    ("POST", "/r/item?q=1&q=2", JSON, b'{"a":1}'), ("POST", "/r/item?q=x", JSON, b'{"a":1}'),
    ("POST", "/r/item", JSON, b"{"), ("GET", "/own", {}, None),
]


def _flyer_answers(build: Callable[..., FlyerAPI], fast_path: int) -> list[Answer]:
    app = build(app_path=None, fast_path=fast_path)
    log: Log = []
    _flyer_routes(app, log)
    with TestClient(app, raise_server_exceptions=False) as client:
        return [_ask(client, log, *request) for request in FLYER_REQUESTS]


def test_a_router_adopted_by_flyer_api_answers_alike_in_a_plain_app(
        build: Callable[..., FlyerAPI]) -> None:
    """``adopt`` turns the router's routes into ``FlyerRoute`` for every app including it."""
    def served(adopted: bool) -> list[Answer]:
        app, log = FastAPI(), cast(Log, [])
        if adopted:
            flyer = build(app_path=None, fast_path=1)
            _flyer_routes(flyer, [])
        router = APIRouter()
        _flyer_routes_on(router, log)
        if adopted:
            flyer.include_router(router, prefix="/f")
        app.include_router(router, prefix="/r")
        with TestClient(app, raise_server_exceptions=False) as client:
            return [_ask(client, log, *request) for request in FLYER_REQUESTS[:-1]]

    assert served(True) == served(False)


def test_flyer_api_switch_on_and_off(build: Callable[..., FlyerAPI]) -> None:
    on = _flyer_answers(build, 1)
    off = _flyer_answers(build, 0)
    for request, a, b in zip(FLYER_REQUESTS, on, off, strict=True):
        assert a == b, request[:2]


# --- building: the planner fails closed (FastAPI's handler), it never breaks the app ---
class Unhashable:
    __hash__ = None  # type: ignore[assignment]

    def __call__(self, q: int = 0) -> int:
        return q


def odd_shapes(app: FastAPI, log: Log) -> None:
    @app.get("/unhashable")
    async def unhashable(v: Annotated[int, Depends(Unhashable())]) -> int:
        return v

    @app.get("/no-cache")
    async def no_cache(v: Annotated[int, Depends(Unhashable(), use_cache=False)]) -> int:
        return v

    @app.get("/path-file")
    async def path_file(p: FilePath | None = None) -> str:
        return str(p)


def test_odd_shapes_build_and_answer_alike() -> None:
    assert_alike(odd_shapes, ("GET", "/unhashable?q=1", {}, None),
                 ("GET", "/no-cache?q=1", {}, None), ("GET", "/path-file?p=/a/../b", {}, None))
