"""``FlyerRoute`` answers exactly as FastAPI's own ``APIRoute`` does.

Two comparisons, each over the same requests (one test id per request):

* a ``FlyerAPI`` with ``flyer_fast_path=1`` (its routes are ``FlyerRoute``) against the
  same app with ``flyer_fast_path=0`` (FastAPI's ``APIRoute``);
* a plain ``FastAPI()`` whose routes and included ``APIRouter`` use ``FlyerRoute`` against
  the same app built by the same factory with ``APIRoute``.

An answer is its status, every header (but ``x-request-id`` and ``x-lasting-time``, which
differ from one request to the next) and its body bytes, plus what the app did on the
side: yield-dependency clean-ups and background tasks, recorded in a list.
"""

import os
import re
import textwrap
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import (
    APIRouter,
    BackgroundTasks,
    Body,
    Cookie,
    Depends,
    FastAPI,
    File,
    Form,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
    Security,
    UploadFile,
)
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security import SecurityScopes
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.testclient import TestClient

from fastflyer import FlyerAPI
from fastflyer.routing import FlyerRoute
from fastflyer.settings import load_settings

# Per request, not per route: they may differ between two otherwise identical answers.
IGNORED_HEADERS = {"x-request-id", "x-lasting-time"}


# --- the models and exceptions the routes use (module level: FastAPI reads annotations) ---
class Color(StrEnum):
    red = "red"
    blue = "blue"


class Item(BaseModel):
    name: str
    price: float = 0.0


class User(BaseModel):
    name: str = Field(min_length=1)
    age: int = Field(ge=0)


class StrictCount(BaseModel):
    model_config = ConfigDict(strict=True)
    count: int


def _not_bad(item: Item) -> Item:
    if item.name == "bad":
        raise ValueError("the name may not be 'bad'")
    return item


CheckedItem = Annotated[Item, AfterValidator(_not_bad)]


class Profile(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    name: str
    nick: str | None = None
    score: int = 0
    display: str = Field("plain", alias="displayName")


class FilterParams(BaseModel):
    limit: int = 10
    tag: list[str] = []


class Teapot(Exception):
    """Raised by an endpoint; a sync exception handler answers it."""


class RouteProbe(Exception):
    """Raised by an endpoint; its handler answers with ``request.scope["route"]``."""


class Doubler:
    """An endpoint that is an object with an ``async def __call__``."""

    async def __call__(self, n: int = 1) -> dict[str, int]:
        return {"n": n * 2}


FALLBACK = {"form_body", "upload", "query_model", "stream"}  # FastAPI's handler serves them


def populate(app: FastAPI, route_class: type[APIRoute] | None) -> FastAPI:
    """Declare every route on ``app``. ``route_class``: the class of the app's routes and of
    the included router; ``None`` leaves the app's as it is (FlyerAPI chooses it) and the
    router's to FastAPI's default (FlyerAPI adopts it when it is included)."""
    events: list[str] = []
    app.state.events = events
    if route_class is not None:
        app.router.route_class = route_class

    # Exception handlers: a sync one, and one that reads the route from the scope.
    def teapot_handler(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"teapot": str(exc)}, status_code=418, headers={"x-tea": "1"})

    async def probe_handler(request: Request, exc: Exception) -> JSONResponse:
        route = request.scope["route"]
        return JSONResponse({"path": route.path, "name": route.name,
                             "methods": sorted(route.methods)}, status_code=409)

    app.add_exception_handler(Teapot, teapot_handler)
    app.add_exception_handler(RouteProbe, probe_handler)

    # --- app-level routes (no dependencies: the planned handler's simplest form) ---
    @app.get("/a/ping")
    def ping():
        return {"pong": True}

    app.add_api_route("/a/call", Doubler(), methods=["GET"], name="doubler")

    @app.get("/a/teapot")
    def teapot():
        raise Teapot("short and stout")

    @app.get("/a/probe/{number}")
    async def probe(number: int):
        raise RouteProbe(number)

    @app.post("/a/items/{item_id}")
    async def a_item(item_id: int, item: Item, q: str | None = None):
        return {"item_id": item_id, "item": item, "q": q}

    # --- dependencies ---
    def router_guard(x_block: Annotated[str | None, Header()] = None) -> None:
        if x_block == "yes":
            raise HTTPException(status_code=403, detail="blocked")

    async def include_dep() -> None:
        events.append("include-dep")

    def counter(request: Request) -> int:
        calls: int = getattr(request.state, "calls", 0) + 1
        request.state.calls = calls
        return calls

    def base_dep(level: int = 1) -> str:
        return f"base{level}"

    async def sub_dep(base: str = Depends(base_dep)) -> str:
        return f"sub({base})"

    def yield_sync(response: Response):
        events.append("enter sync")
        response.headers["x-dep"] = "sync"
        try:
            yield "s"
        finally:
            events.append("exit sync")

    async def yield_async():
        events.append("enter async")
        try:
            yield "a"
        finally:
            events.append("exit async")

    def yield_function_scope():
        events.append("enter function")
        try:
            yield "f"
        finally:
            events.append("exit function")

    def require_token(authorization: Annotated[str | None, Header()] = None) -> str:
        if authorization != "Bearer good":
            raise HTTPException(status_code=401, detail="Not authenticated",
                                headers={"WWW-Authenticate": "Bearer"})
        return "token-user"

    def scoped_token(security_scopes: SecurityScopes,
                     authorization: Annotated[str | None, Header()] = None) -> list[str]:
        if authorization != "Bearer good":
            raise HTTPException(status_code=401, detail="Not authenticated",
                                headers={"WWW-Authenticate":
                                         f'Bearer scope="{security_scopes.scope_str}"'})
        return security_scopes.scopes

    def scoped_user(
            scopes: Annotated[list[str], Security(scoped_token, scopes=["me"])]) -> list[str]:
        return scopes

    def current_user() -> str:
        return "real"

    def noted(note: Annotated[str, Body()]) -> str:  # a dependency with a body parameter
        return f"noted {note}"

    app.state.current_user = current_user  # the dependency overrides replace

    router = APIRouter(route_class=route_class or APIRoute, dependencies=[Depends(router_guard)])

    # --- path parameters ---
    @router.get("/items/{item_id}")
    async def item_by_id(item_id: int):
        return {"item_id": item_id}

    @router.get("/names/{name}")
    def name_by_str(name: str):
        return {"name": name}

    @router.get("/colors/{color}")
    async def color_by_enum(color: Color):
        return {"color": color}

    @router.get("/files/{file_path:path}")
    async def file_by_path(file_path: str):
        return {"file_path": file_path}

    # --- query, header, cookie ---
    @router.get("/search")
    async def search(q: str, n: int = 5, tags: Annotated[list[int], Query()] = [],  # noqa: B006
                     item_query: Annotated[str | None, Query(alias="item-query")] = None,
                     limit: Annotated[int, Query(ge=1, le=100)] = 10):
        return {"q": q, "n": n, "tags": tags, "item_query": item_query, "limit": limit}

    @router.get("/headers")
    async def headers(x_required: Annotated[str, Header()],
                      user_agent: Annotated[str | None, Header()] = None,
                      x_token: Annotated[list[str] | None, Header()] = None):
        return {"x_required": x_required, "user_agent": user_agent, "x_token": x_token}

    @router.get("/cookies")
    async def cookies(session: Annotated[str | None, Cookie()] = None):
        return {"session": session}

    # --- bodies ---
    @router.post("/users", status_code=201)
    async def create_user(user: User):
        return user

    @router.post("/pair")
    def pair(a: Item, b: Item):
        return {"a": a, "b": b}

    @router.post("/embed")
    async def embed(item: Annotated[Item, Body(embed=True)]):
        return item

    @router.post("/strict")
    async def strict_model(body: StrictCount):
        return body

    @router.post("/checked")
    async def checked(item: CheckedItem):
        return item

    @router.post("/items/{item_id}")
    async def update_item(item_id: int, item: Item, q: str | None = None):
        return {"item_id": item_id, "item": item, "q": q}

    async def lenient(item: Item):
        return item

    router.add_api_route("/lenient", lenient, methods=["POST"], strict_content_type=False)

    @router.post("/optional")
    async def optional_body(item: Item | None = None):
        return {"item": item}

    @router.post("/dep-body")
    async def dep_body(item: Item, note: str = Depends(noted)):
        return {"item": item, "note": note}

    @router.post("/limited", max_body_size=64)
    async def limited(item: Item):
        return item

    # --- dependencies ---
    @router.get("/deps")
    async def deps(a: int = Depends(counter), b: int = Depends(counter),
                   c: int = Depends(counter, use_cache=False), sub: str = Depends(sub_dep)):
        return {"a": a, "b": b, "c": c, "sub": sub}

    @router.get("/yield")
    def yields(fail: int = 0, s: str = Depends(yield_sync), a: str = Depends(yield_async),
               f: str = Depends(yield_function_scope, scope="function")):
        events.append("endpoint")
        if fail:
            raise HTTPException(status_code=409, detail="endpoint failed")
        return {"s": s, "a": a, "f": f}

    @router.get("/private")
    async def private(user: str = Depends(require_token)):
        return {"user": user}

    @router.get("/scoped")
    async def scoped(scopes: Annotated[list[str],
                                       Security(scoped_user, scopes=["items:read"])]):
        return {"scopes": scopes}

    @router.get("/scoped-twice")
    async def scoped_twice(one: Annotated[list[str], Security(scoped_token, scopes=["a"])],
                           two: Annotated[list[str], Security(scoped_token, scopes=["b"])],
                           again: Annotated[list[str], Security(scoped_token, scopes=["a"])]):
        return {"one": one, "two": two, "again": again}

    @router.get("/who")
    async def who(user: str = Depends(current_user), q: int = 0):
        return {"user": user, "q": q}

    # --- Request, Response, BackgroundTasks ---
    @router.get("/request-info")
    async def request_info(request: Request):
        return {"method": request.method, "path": request.url.path,
                "query": str(request.query_params)}

    @router.get("/respond")
    def respond(response: Response):
        response.headers["x-set"] = "yes"
        response.status_code = 203
        return {"responded": True}

    @router.post("/respond-over", status_code=201)
    async def respond_over(response: Response):
        response.status_code = 203
        return {"over": True}

    @router.post("/background", status_code=202)
    async def background(tasks: BackgroundTasks):
        tasks.add_task(events.append, "background task")
        return {"queued": True}

    # --- response_model ---
    @router.get("/model/include", response_model=Profile, response_model_include={"name"})
    async def model_include():
        return {"name": "a", "nick": "n", "score": 3}

    @router.get("/model/exclude", response_model=Profile, response_model_exclude={"score"})
    async def model_exclude():
        return {"name": "a", "nick": "n", "score": 3}

    @router.get("/model/unset", response_model=Profile, response_model_exclude_unset=True)
    async def model_unset():
        return Profile.model_validate({"name": "a", "score": 0})

    @router.get("/model/defaults", response_model=Profile,
                response_model_exclude_defaults=True)
    async def model_defaults():
        return {"name": "a", "nick": "n", "score": 0}

    @router.get("/model/none", response_model=Profile, response_model_exclude_none=True)
    def model_none():
        return {"name": "a", "nick": None}

    @router.get("/model/names", response_model=Profile, response_model_by_alias=False)
    async def model_names():
        return {"name": "a", "displayName": "D"}

    @router.get("/model/invalid", response_model=Profile)
    async def model_invalid():
        return {"nick": 5}

    @router.get("/direct")
    async def direct():
        return JSONResponse({"direct": True}, status_code=207, headers={"x-direct": "1"})

    # --- status codes ---
    @router.post("/created", status_code=201)
    async def created():
        return {"created": True}

    @router.post("/accepted", status_code=202)
    def accepted():
        return {"accepted": True}

    @router.delete("/gone", status_code=204)
    async def gone():
        return None

    @router.delete("/gone-body", status_code=204)
    async def gone_with_body():
        return {"still": "here"}

    @router.get("/not-modified", status_code=304)
    async def not_modified():
        return {"x": 1}

    # --- response classes ---
    @router.get("/text", response_class=PlainTextResponse)
    async def text():
        return "hello"

    @router.get("/html", response_class=HTMLResponse)
    def html():
        return "<b>hi</b>"

    @router.get("/raw", response_class=Response)
    async def raw():
        return b"\x00raw bytes"

    # --- fallback shapes: FastAPI's handler ---

    @router.post("/form")
    async def form_body(name: Annotated[str, Form()]):
        return {"name": name}

    @router.post("/upload")
    async def upload(file: Annotated[UploadFile, File()]):
        return {"filename": file.filename, "size": len(await file.read())}

    @router.get("/filter")
    async def query_model(filters: Annotated[FilterParams, Query()]):
        return filters

    @router.get("/stream")
    def stream():
        for n in range(3):
            yield {"n": n}

    # A router included in the router, and the router included twice: one handler per
    # inclusion, each with the includer's prefix and dependencies.
    async def inner_dep() -> None:
        events.append("inner-dep")

    def second_dep(x_second: Annotated[str | None, Header()] = None) -> None:
        events.append("second-dep")
        if x_second == "no":
            raise HTTPException(status_code=418, detail="not the second time")

    inner = APIRouter(route_class=route_class or APIRoute, prefix="/inner",
                      dependencies=[Depends(inner_dep)])

    @inner.get("/{n}")
    async def inner_item(n: int, q: int = 0):
        return {"n": n, "q": q}

    router.include_router(inner)
    app.include_router(router, prefix="/r", dependencies=[Depends(include_dep)])
    app.include_router(router, prefix="/r2", dependencies=[Depends(second_dep)])
    return app


ROUTE_NAMES = {
    "ping", "doubler", "teapot", "probe", "a_item", "item_by_id", "name_by_str",
    "color_by_enum", "file_by_path", "search", "headers", "cookies", "create_user", "pair",
    "embed", "strict_model", "checked", "update_item", "limited", "deps", "yields", "private",
    "scoped", "who", "request_info", "respond", "background", "model_include",
    "model_exclude", "model_unset", "model_defaults", "model_none", "model_names",
    "model_invalid", "direct", "created", "accepted", "gone", "gone_with_body",
    "not_modified", "text", "html", "raw", "query_model", "stream", "optional_body",
    "dep_body", "scoped_twice", "respond_over", "lenient", "inner_item",
    "form_body", "upload",
}

JSON = {"content-type": "application/json"}
BIG = b'{"name":"' + b"x" * 200 + b'"}'

# id: (method, url, headers, body); a list body is sent in chunks, without a length
REQUESTS: dict[str, tuple[str, str, Any, bytes | list[bytes] | None]] = {
    # app-level routes
    "sync-endpoint": ("GET", "/a/ping", {}, None),
    "sync-endpoint-head": ("HEAD", "/a/ping", {}, None),
    "sync-endpoint-405": ("PUT", "/a/ping", {}, None),
    "endpoint-object-async-call": ("GET", "/a/call?n=21", {}, None),
    "endpoint-object-async-call-bad-query": ("GET", "/a/call?n=x", {}, None),
    "sync-exception-handler": ("GET", "/a/teapot", {}, None),
    "scope-route-in-exception-handler": ("GET", "/a/probe/7", {}, None),
    "scope-route-in-exception-handler-bad-path": ("GET", "/a/probe/x", {}, None),
    "app-body-query-path": ("POST", "/a/items/3?q=z", JSON, b'{"name":"n","price":1.5}'),
    "app-body-malformed": ("POST", "/a/items/3", JSON, b"{nope"),
    "app-body-bad-path": ("POST", "/a/items/x", JSON, b'{"name":"n"}'),
    # path parameters
    "path-int": ("GET", "/r/items/5", {}, None),
    "path-int-conversion-error": ("GET", "/r/items/abc", {}, None),
    "path-int-head": ("HEAD", "/r/items/5", {}, None),
    "path-unknown-method-405": ("PURGE", "/r/items/5", {}, None),
    "path-str": ("GET", "/r/names/bob%20x", {}, None),
    "path-enum": ("GET", "/r/colors/red", {}, None),
    "path-enum-invalid": ("GET", "/r/colors/purple", {}, None),
    "path-convertor": ("GET", "/r/files/a/b/c.txt", {}, None),
    "not-found": ("GET", "/r/nowhere/at/all", {}, None),
    # query
    "query-all": ("GET", "/r/search?q=hi&n=3&tags=1&tags=2&item-query=z&limit=5", {}, None),
    "query-defaults": ("GET", "/r/search?q=hi", {}, None),
    "query-missing-required": ("GET", "/r/search", {}, None),
    "query-list-invalid": ("GET", "/r/search?q=hi&tags=1&tags=x", {}, None),
    "query-constraint-violated": ("GET", "/r/search?q=hi&limit=0", {}, None),
    "query-alias-by-name": ("GET", "/r/search?q=hi&item_query=z", {}, None),
    "query-scalar-twice": ("GET", "/r/search?q=a&q=b&n=1&n=2", {}, None),
    "query-405": ("DELETE", "/r/search?q=hi", {}, None),
    "query-head": ("HEAD", "/r/search?q=hi", {}, None),
    # headers and cookies
    "header-all": ("GET", "/r/headers", [("x-required", "1"), ("x-token", "a"),
                                         ("x-token", "b"), ("user-agent", "ua/1")], None),
    "header-missing-required": ("GET", "/r/headers", {}, None),
    "header-underscore-not-converted": ("GET", "/r/headers", {"x_required": "1"}, None),
    "cookie": ("GET", "/r/cookies", {"cookie": "session=abc; other=1"}, None),
    "cookie-absent": ("GET", "/r/cookies", {}, None),
    # one JSON body model
    "body": ("POST", "/r/users", JSON, b'{"name":"ann","age":7}'),
    "body-charset": ("POST", "/r/users", {"content-type": "application/json; charset=utf-8"},
                     b'{"name":"ann","age":7}'),
    "body-vnd-api-json": ("POST", "/r/users", {"content-type": "application/vnd.api+json"},
                          b'{"name":"ann","age":7}'),
    "body-invalid-values": ("POST", "/r/users", JSON, b'{"name":"","age":-1}'),
    "body-missing-field": ("POST", "/r/users", JSON, b'{"name":"ann"}'),
    "body-malformed-json": ("POST", "/r/users", JSON, b"{nope"),
    "body-invalid-utf8": ("POST", "/r/users", JSON, b"\xff\x06\xff"),
    "body-empty": ("POST", "/r/users", JSON, b""),
    "body-json-list": ("POST", "/r/users", JSON, b"[1, 2]"),
    "body-text-plain": ("POST", "/r/users", {"content-type": "text/plain"},
                        b'{"name":"ann","age":7}'),
    "body-no-content-type": ("POST", "/r/users", {}, b'{"name":"ann","age":7}'),
    "body-content-type-capitals": ("POST", "/r/users",
                                   {"content-type": "Application/JSON; Charset=latin-1"},
                                   b'{"name":"ann","age":7}'),
    "body-content-type-json-like": ("POST", "/r/users", {"content-type": "application/jsonx"},
                                    b'{"name":"ann","age":7}'),
    "body-lenient-no-content-type": ("POST", "/r/lenient", {}, b'{"name":"x"}'),
    "body-lenient-no-content-type-malformed": ("POST", "/r/lenient", {}, b"{nope"),
    "body-lenient-text-plain": ("POST", "/r/lenient", {"content-type": "text/plain"},
                                b'{"name":"x"}'),
    "body-optional-null": ("POST", "/r/optional", JSON, b"null"),
    "body-optional-absent": ("POST", "/r/optional", {}, None),
    "body-optional-given": ("POST", "/r/optional", JSON, b'{"name":"x"}'),
    "body-in-dependency": ("POST", "/r/dep-body", JSON, b'{"item":{"name":"x"},"note":"n"}'),
    "body-in-dependency-missing": ("POST", "/r/dep-body", JSON, b'{"item":{"name":"x"}}'),
    "body-in-dependency-not-embedded": ("POST", "/r/dep-body", JSON, b'{"name":"x"}'),
    "body-lone-surrogate": ("POST", "/r/users", JSON, b'{"name":"\\ud800","age":1}'),
    # several bodies, embed
    "bodies-several": ("POST", "/r/pair", JSON, b'{"a":{"name":"x"},"b":{"name":"y"}}'),
    "bodies-several-one-missing": ("POST", "/r/pair", JSON, b'{"a":{"name":"x"}}'),
    "bodies-several-json-list": ("POST", "/r/pair", JSON, b"[1]"),
    "bodies-several-empty": ("POST", "/r/pair", JSON, b""),
    "body-embed": ("POST", "/r/embed", JSON, b'{"item":{"name":"x","price":2}}'),
    "body-embed-not-wrapped": ("POST", "/r/embed", JSON, b'{"name":"x"}'),
    # the same router included a second time, and a router included in it
    "second-inclusion-path-int": ("GET", "/r2/items/5", {}, None),
    "second-inclusion-dependency-refuses": ("GET", "/r2/items/5", {"x-second": "no"}, None),
    "second-inclusion-body": ("POST", "/r2/users", JSON, b'{"name":"ann","age":7}'),
    "second-inclusion-invalid-body": ("POST", "/r2/users", JSON, b'{"name":"ann"}'),
    "nested-router": ("GET", "/r/inner/3?q=1", {}, None),
    "nested-router-invalid": ("GET", "/r/inner/x", {}, None),
    "nested-router-second-inclusion": ("GET", "/r2/inner/3", {"x-block": "yes"}, None),
    # the inputs
    "strict-body-model": ("POST", "/r/strict", JSON, b'{"count":3}'),
    "strict-body-model-no-coercion": ("POST", "/r/strict", JSON, b'{"count":"3"}'),
    "annotated-aftervalidator-body": ("POST", "/r/checked", JSON, b'{"name":"ok"}'),
    "annotated-aftervalidator-body-rejected": ("POST", "/r/checked", JSON, b'{"name":"bad"}'),
    "route-max-body-size-413": ("POST", "/r/limited", JSON, BIG),
    "route-max-body-size-413-chunked": ("POST", "/r/limited", JSON,
                                        [BIG[:40], BIG[40:120], BIG[120:]]),
    "route-max-body-size-within-chunked": ("POST", "/r/limited", JSON,
                                           [b'{"name":', b'"small"}']),
    "route-max-body-size-within": ("POST", "/r/limited", JSON, b'{"name":"small"}'),
    # body + query + path
    "body-query-path": ("POST", "/r/items/4?q=z", JSON, b'{"name":"n","price":1}'),
    "body-query-path-bad-path": ("POST", "/r/items/x?q=z", JSON, b'{"name":"n"}'),
    "body-query-path-bad-body": ("POST", "/r/items/4?q=z", JSON, b'{"price":"x"}'),
    # dependencies
    "deps-cache-and-subdeps": ("GET", "/r/deps", {}, None),
    "deps-sub-param": ("GET", "/r/deps?level=3", {}, None),
    "deps-sub-param-invalid": ("GET", "/r/deps?level=x", {}, None),
    "router-dependency-403": ("GET", "/r/deps", {"x-block": "yes"}, None),
    "router-dependency-403-and-invalid": ("GET", "/r/deps?level=x", {"x-block": "yes"}, None),
    "yield-deps": ("GET", "/r/yield", {}, None),
    "yield-deps-endpoint-raises": ("GET", "/r/yield?fail=1", {}, None),
    "yield-deps-invalid-query": ("GET", "/r/yield?fail=x", {}, None),
    "dependency-401": ("GET", "/r/private", {}, None),
    "dependency-passes": ("GET", "/r/private", {"authorization": "Bearer good"}, None),
    "security-scopes": ("GET", "/r/scoped", {"authorization": "Bearer good"}, None),
    "security-scopes-401": ("GET", "/r/scoped", {}, None),
    "security-scopes-cache-keys": ("GET", "/r/scoped-twice",
                                   {"authorization": "Bearer good"}, None),
    "dependency-plain": ("GET", "/r/who?q=2", {}, None),
    # Request, Response, BackgroundTasks
    "request-param": ("GET", "/r/request-info?x=1&y=2", {}, None),
    "response-param-header-and-status": ("GET", "/r/respond", {}, None),
    "response-param-status-over-route-status": ("POST", "/r/respond-over", {}, None),
    "background-tasks": ("POST", "/r/background", {}, None),
    # response_model
    "response-model-include": ("GET", "/r/model/include", {}, None),
    "response-model-exclude": ("GET", "/r/model/exclude", {}, None),
    "response-model-exclude-unset": ("GET", "/r/model/unset", {}, None),
    "response-model-exclude-defaults": ("GET", "/r/model/defaults", {}, None),
    "response-model-exclude-none": ("GET", "/r/model/none", {}, None),
    "response-model-by-alias-false": ("GET", "/r/model/names", {}, None),
    "response-model-invalid-500": ("GET", "/r/model/invalid", {}, None),
    "response-returned-directly": ("GET", "/r/direct", {}, None),
    # status codes
    "status-201": ("POST", "/r/created", {}, None),
    "status-202": ("POST", "/r/accepted", {}, None),
    "status-204": ("DELETE", "/r/gone", {}, None),
    "status-204-body-returned": ("DELETE", "/r/gone-body", {}, None),
    "status-304": ("GET", "/r/not-modified", {}, None),
    # response classes
    "plain-text-response": ("GET", "/r/text", {}, None),
    "plain-text-response-head": ("HEAD", "/r/text", {}, None),
    "html-response": ("GET", "/r/html", {}, None),
    "response-class-bytes": ("GET", "/r/raw", {}, None),
    # fallback shapes
    "fallback-query-model": ("GET", "/r/filter?limit=5&tag=a&tag=b", {}, None),
    "fallback-query-model-invalid": ("GET", "/r/filter?limit=x", {}, None),
    "fallback-stream": ("GET", "/r/stream", {}, None),
    "fallback-form": ("POST", "/r/form", {"content-type": "application/x-www-form-urlencoded"},
                      b"name=ann"),
    "fallback-form-missing": ("POST", "/r/form",
                              {"content-type": "application/x-www-form-urlencoded"}, b""),
    "fallback-upload": ("POST", "/r/upload",
                        {"content-type": "multipart/form-data; boundary=b0"},
                        b'--b0\r\nContent-Disposition: form-data; name="file"; filename="f.txt"'
                        b"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b0--\r\n"),
}

PARAMS = [pytest.param(key, id=key) for key in REQUESTS]

# Valid requests to planned routes: the planned handler answers them by itself.
PLANNED_ANSWERS = [
    "sync-endpoint", "endpoint-object-async-call", "sync-exception-handler",
    "scope-route-in-exception-handler", "app-body-query-path", "path-int", "path-enum",
    "path-convertor", "query-all", "header-all", "cookie", "body", "body-vnd-api-json",
    "bodies-several", "body-embed", "strict-body-model", "annotated-aftervalidator-body",
    "body-query-path", "deps-cache-and-subdeps", "yield-deps", "yield-deps-endpoint-raises",
    "dependency-401", "router-dependency-403", "security-scopes", "request-param",
    "response-param-header-and-status", "background-tasks", "response-model-include",
    "response-model-invalid-500", "status-204-body-returned", "status-304",
    "response-class-bytes", "route-max-body-size-413-chunked", "body-in-dependency",
    "security-scopes-cache-keys", "response-param-status-over-route-status",
    "second-inclusion-path-int", "second-inclusion-dependency-refuses",
    "second-inclusion-body", "nested-router", "nested-router-second-inclusion",
    "body-optional-null", "body-content-type-capitals", "body-lenient-no-content-type",
]


Answer = tuple[int, list[tuple[str, str]], bytes, list[str]]


def answer(client: TestClient, request_id: str) -> Answer:
    method, url, headers, body = REQUESTS[request_id]
    events: list[str] = client.app.state.events  # type: ignore[attr-defined]
    events.clear()
    content = iter(body) if isinstance(body, list) else body
    response = client.request(method, url, headers=headers, content=content)
    kept = [(name, value) for name, value in response.headers.multi_items()
            if name not in IGNORED_HEADERS]
    return response.status_code, kept, response.content, list(events)


def flyer_app(fast_path: bool, log_dir: Path) -> FastAPI:
    settings = load_settings(fast_path=fast_path, log_path=str(log_dir), access_log=False)
    return populate(FlyerAPI(settings=settings), None)


def plain_app(route_class: type[APIRoute]) -> FastAPI:
    return populate(FastAPI(), route_class)


@pytest.fixture(scope="module")
def flyer_clients(tmp_path_factory) -> Iterator[tuple[TestClient, TestClient]]:
    log_dir = tmp_path_factory.mktemp("routing-logs")
    with pytest.MonkeyPatch.context() as patch:  # no flyer_* variable of the caller's
        for name in [name for name in os.environ if name.lower().startswith("flyer_")]:
            patch.delenv(name)
        apps = flyer_app(True, log_dir), flyer_app(False, log_dir)
    with (TestClient(apps[0], raise_server_exceptions=False) as on,
          TestClient(apps[1], raise_server_exceptions=False) as off):
        yield on, off


@pytest.fixture(scope="module")
def plain_clients() -> Iterator[tuple[TestClient, TestClient]]:
    with (TestClient(plain_app(FlyerRoute), raise_server_exceptions=False) as on,
          TestClient(plain_app(APIRoute), raise_server_exceptions=False) as off):
        yield on, off


@pytest.mark.parametrize("request_id", PARAMS)
def test_flyer_api_answers_alike_with_the_switch_on_and_off(flyer_clients, request_id):
    on, off = flyer_clients
    assert answer(on, request_id) == answer(off, request_id)


@pytest.mark.parametrize("request_id", PARAMS)
def test_plain_fastapi_answers_alike_with_flyer_route_and_api_route(plain_clients, request_id):
    on, off = plain_clients
    assert answer(on, request_id) == answer(off, request_id)


# --- the inputs, each its own test: the same answer both ways, and the right one ---
def _same_and_expected(pair: tuple[TestClient, TestClient],
                       cases: list[tuple[str, int]]) -> None:
    on, off = pair
    for request_id, status in cases:
        on_answer = answer(on, request_id)
        assert on_answer == answer(off, request_id), request_id
        assert on_answer[0] == status, request_id


@pytest.fixture(params=["flyer", "plain"])
def pair(request, flyer_clients, plain_clients):
    return flyer_clients if request.param == "flyer" else plain_clients


def test_strict_body_model(pair):
    _same_and_expected(pair, [("strict-body-model", 200),
                              ("strict-body-model-no-coercion", 422)])


def test_annotated_model_with_after_validator_body(pair):
    _same_and_expected(pair, [("annotated-aftervalidator-body", 200),
                              ("annotated-aftervalidator-body-rejected", 422)])


def test_route_max_body_size_413(pair):
    _same_and_expected(pair, [("route-max-body-size-413", 413),
                              ("route-max-body-size-413-chunked", 413),
                              ("route-max-body-size-within", 200),
                              ("route-max-body-size-within-chunked", 200)])


def test_scope_route_in_exception_handler(pair):
    _same_and_expected(pair, [("scope-route-in-exception-handler", 409)])
    on, _ = pair
    assert on.get("/a/probe/7").json() == {"path": "/a/probe/{number}", "name": "probe",
                                           "methods": ["GET"]}


def test_endpoint_object_with_async_call(pair):
    _same_and_expected(pair, [("endpoint-object-async-call", 200),
                              ("endpoint-object-async-call-bad-query", 422)])


def test_sync_exception_handler(pair):
    _same_and_expected(pair, [("sync-exception-handler", 418)])


def test_the_answers_are_the_expected_ones(plain_clients):
    """The comparisons above compare answers that are what the routes mean to answer."""
    on, _ = plain_clients
    assert on.post("/r/strict", json={"count": "3"}).status_code == 422
    assert on.post("/r/checked", json={"name": "bad"}).status_code == 422
    assert on.post("/r/limited", content=BIG, headers=JSON).status_code == 413
    assert on.get("/a/teapot").status_code == 418
    assert on.get("/a/probe/7").json() == {"path": "/a/probe/{number}", "name": "probe",
                                           "methods": ["GET"]}
    assert on.get("/a/call?n=21").json() == {"n": 42}
    assert on.get("/r/deps").json() == {"a": 1, "b": 1, "c": 2, "sub": "sub(base1)"}
    response = on.get("/r/yield")
    assert response.headers["x-dep"] == "sync"
    assert set(on.app.state.events) >= {"exit sync", "exit async", "exit function"}
    response = on.get("/r/respond")
    assert (response.status_code, response.headers["x-set"]) == (203, "yes")
    on.post("/r/background")
    assert "background task" in on.app.state.events
    assert on.get("/r/private").status_code == 401
    assert on.get("/r/scoped", headers={"authorization": "Bearer good"}).json() == {
        "scopes": ["items:read", "me"]}
    assert on.get("/r/model/names").json() == {"name": "a", "nick": None, "score": 0,
                                               "display": "D"}
    assert on.get("/r/model/invalid").status_code == 500
    assert on.delete("/r/gone-body").content == b""


def _routes(app: FastAPI) -> dict[str, Any]:
    routes: list[Any] = [context.original_route
                         for context in iter_route_contexts(app.router.routes)]
    return {route.name: route for route in routes if route.name in ROUTE_NAMES}


@pytest.mark.parametrize("which", ["flyer", "plain"])
def test_every_shape_is_planned_but_the_fallback_ones(flyer_clients, plain_clients, which):
    on, off = flyer_clients if which == "flyer" else plain_clients
    routes = _routes(on.app)
    assert set(routes) == ROUTE_NAMES
    assert all(type(route) is FlyerRoute for route in routes.values())
    assert {name for name, route in routes.items() if not route.planned} == (
        FALLBACK & ROUTE_NAMES)
    assert not any(isinstance(route, FlyerRoute) for route in _routes(off.app).values())


def fastapi_handler_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the requests FastAPI's own handler serves: it reads its telemetry data first
    (``fastapi.routing.get_telemetry_data``, not a function instrumentation wraps)."""
    import fastapi.routing

    calls: list[int] = []
    original = fastapi.routing.get_telemetry_data

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "get_telemetry_data", counting)
    return calls


@pytest.mark.parametrize("which", ["flyer", "plain"])
def test_valid_requests_are_answered_by_the_planned_handler(flyer_clients, plain_clients,
                                                            monkeypatch, which):
    on, off = flyer_clients if which == "flyer" else plain_clients
    calls = fastapi_handler_calls(monkeypatch)
    for request_id in PLANNED_ANSWERS:
        answer(on, request_id)
        assert calls == [], request_id
    answer(on, "query-missing-required")  # invalid: reported by the planned handler too
    assert calls == []
    answer(on, "body-malformed-json")  # no JSON: FastAPI's handler reports it its way
    assert len(calls) == 1
    calls.clear()
    answer(on, "fallback-query-model")  # not planned
    assert len(calls) == 1
    answer(off, "body")
    assert len(calls) == 2


OVERRIDDEN = ["dependency-plain", "deps-cache-and-subdeps", "body", "yield-deps",
              "query-missing-required"]


@pytest.mark.parametrize("request_id", OVERRIDDEN)
@pytest.mark.parametrize("which", ["flyer", "plain"])
def test_dependency_overrides_answer_alike(flyer_clients, plain_clients, monkeypatch, which,
                                           request_id):
    pair = flyer_clients if which == "flyer" else plain_clients
    for client in pair:
        app: Any = client.app
        monkeypatch.setitem(app.dependency_overrides, app.state.current_user,
                            lambda: "override")
    on, off = pair
    calls = fastapi_handler_calls(monkeypatch)
    assert answer(on, request_id) == answer(off, request_id)
    assert len(calls) == 2  # overrides: FastAPI's handler, with and without the route class
    if request_id == "dependency-plain":
        assert on.get("/r/who").json() == {"user": "override", "q": 0}


# --- FlyerAPI with a project -------------------------------------------------------------
@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("fast", [1, 0])
def test_the_app_body_limit_holds(build, chunked, fast):
    payload = b'{"name":"' + b"x" * 5000 + b'","age":1}'
    with TestClient(build(max_body_size=1000, fast_path=fast),
                    raise_server_exceptions=False) as client:
        content = iter([payload[:600], payload[600:]]) if chunked else payload
        response = client.post("/flyer/users", content=content,
                               headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["code"] == 413


def test_the_switch_on_makes_every_route_a_planned_flyer_route(build):
    app = build(fast_path=1)
    routes: list[Any] = [context.original_route
                         for context in iter_route_contexts(app.router.routes)
                         if isinstance(context.original_route, APIRoute)]
    assert routes
    assert all(isinstance(route, FlyerRoute) for route in routes)
    create = next(route for route in routes if route.name == "create_user")
    assert create.planned


@pytest.mark.parametrize("first_on", [False, True], ids=["alone", "after-an-app-with-it-on"])
def test_the_switch_off_serves_every_route_with_fastapis_handler(build, monkeypatch, first_on):
    """``flyer_fast_path=0`` holds even when an app with it on included the same routers
    before: a project is imported once per process, so its routers are shared objects."""
    if first_on:
        with TestClient(build(fast_path=1)) as client:
            assert client.get("/flyer/users").status_code == 200
    app = build(fast_path=0)
    routes: list[Any] = [context.original_route
                         for context in iter_route_contexts(app.router.routes)
                         if isinstance(context.original_route, APIRoute)]
    assert not any(getattr(route, "planned", False) for route in routes)
    calls = fastapi_handler_calls(monkeypatch)
    with TestClient(app) as client:
        response = client.post("/flyer/users", json={"name": "ann", "age": 7})
    assert response.status_code == 201
    assert len(calls) == 1


def test_dependency_overrides_of_a_project_app(tmp_path, build):
    project = tmp_path / "p"
    (project / "app" / "dep").mkdir(parents=True)
    (project / "app" / "__init__.py").write_text("")
    (project / "app" / "dep" / "__init__.py").write_text(textwrap.dedent("""
        from fastapi import Depends
        from fastflyer import APIRouter
        from fastflyer.schemas import DataResponse

        router = APIRouter()

        def current_user() -> str:
            return "real"

        @router.get("/plain", response_model=DataResponse)
        async def plain(q: int = 0):
            return {"data": q}

        @router.get("/who", response_model=DataResponse)
        async def who(user: str = Depends(current_user)):
            return {"data": user}
    """))
    app = build(project)
    routes: dict[str, Any] = {getattr(context.original_route, "name", ""):
                              context.original_route
                              for context in iter_route_contexts(app.router.routes)}
    assert isinstance(routes["who"], FlyerRoute)
    assert routes["who"].planned and routes["plain"].planned
    module = __import__("app.dep", fromlist=["current_user"])
    with TestClient(app) as client:
        assert client.get("/flyer/who").json()["data"] == "real"
        app.dependency_overrides[module.current_user] = lambda: "override"
        assert client.get("/flyer/who").json()["data"] == "override"
        assert client.get("/flyer/plain?q=3").json()["data"] == 3
        app.dependency_overrides.clear()
        assert client.get("/flyer/who").json()["data"] == "real"


def test_an_earlier_route_that_matches_keeps_the_request(tmp_path, build):
    project = tmp_path / "q"
    (project / "app" / "a_catch").mkdir(parents=True)
    (project / "app" / "b_items").mkdir(parents=True)
    (project / "app" / "__init__.py").write_text("")
    (project / "app" / "a_catch" / "__init__.py").write_text(textwrap.dedent("""
        from fastflyer import APIRouter
        from fastflyer.schemas import DataResponse
        router = APIRouter()

        @router.get("/{name}", response_model=DataResponse)
        async def catch(name: str):
            return {"data": "catch-all " + name}
    """))
    (project / "app" / "b_items" / "__init__.py").write_text(textwrap.dedent("""
        from fastflyer import APIRouter
        from fastflyer.schemas import DataResponse
        router = APIRouter()

        @router.get("/items", response_model=DataResponse)
        async def items():
            return {"data": "items"}

        @router.post("/items", response_model=DataResponse)
        async def add():
            return {"data": "added"}
    """))
    app = build(project)
    routes: dict[str, Any] = {getattr(context.original_route, "name", ""):
                              context.original_route
                              for context in iter_route_contexts(app.router.routes)}
    assert all(routes[name].planned for name in ("catch", "items", "add"))
    with TestClient(app) as client:
        assert client.get("/flyer/items").json()["data"] == "catch-all items"
        assert client.post("/flyer/items").json()["data"] == "added"


def test_the_real_server_serves_planned_routes_with_the_context_headers(live):
    response = httpx.post(f"{live.url}/flyer/users", json={"name": "bo", "age": 3},
                          headers={"X-Request-ID": "fast-1"})
    assert response.status_code == 201
    assert response.json() == {"code": 201, "message": "success",
                               "data": {"name": "bo", "age": 3}}
    assert response.headers["x-request-id"] == "fast-1"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert re.fullmatch(r"\d+\.\d\d", response.headers["x-lasting-time"])


# --- instrumentation that wraps FastAPI's handler functions (Sentry, Logfire) ----------------
@pytest.mark.parametrize("hook", ["solve_dependencies", "run_endpoint_function",
                                  "serialize_response"])
def test_instrumented_requests_go_through_fastapis_handler(plain_clients, monkeypatch, hook):
    """Logfire wraps ``fastapi.routing.solve_dependencies`` and ``run_endpoint_function`` after
    the routes exist: the planned handler must not hide the requests from it."""
    import fastapi.routing

    on, off = plain_clients
    seen: list[str] = []
    original = getattr(fastapi.routing, hook)

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        seen.append(hook)
        return await original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, hook, wrapped)
    assert answer(on, "body") == answer(off, "body")
    assert seen == [hook, hook]  # once with FlyerRoute, once with APIRoute


def test_a_wrapped_get_request_handler_leaves_routes_unplanned(monkeypatch):
    """Sentry wraps ``fastapi.routing.get_request_handler`` to wrap every handler it builds:
    routes built then keep FastAPI's (wrapped) handler."""
    import fastapi.routing

    built: list[str] = []
    original = fastapi.routing.get_request_handler

    def wrapping(*args: Any, **kwargs: Any) -> Any:
        built.append("built")
        return original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "get_request_handler", wrapping)
    app = FastAPI()
    app.router.route_class = FlyerRoute

    @app.get("/x")
    async def x() -> dict[str, int]:
        return {"x": 1}

    route = app.router.routes[-1]
    assert isinstance(route, FlyerRoute) and route.planned is False and built == ["built"]
    with TestClient(app) as client:
        assert client.get("/x").json() == {"x": 1}
