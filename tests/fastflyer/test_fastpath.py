"""Simple routes served directly answer exactly as FastAPI's full handling does."""

from __future__ import annotations

import re
import textwrap

import pytest
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.testclient import TestClient

from fastflyer import FlyerAPI
from fastflyer.fastpath import FastPathMiddleware, plan_route
from fastflyer.schemas import DataResponse

REQUESTS = [
    ("GET", "/flyer/demo?id=7", {}, None),
    ("GET", "/flyer/demo/?id=7", {}, None),
    ("GET", "/flyer/demo?id=seven", {}, None),
    ("GET", "/flyer/demo", {}, None),
    ("GET", "/flyer/demo?id=1&id=2", {}, None),
    ("HEAD", "/flyer/demo?id=7", {}, None),
    ("GET", "/flyer/users?offset=20&size=3", {}, None),
    ("GET", "/flyer/users?size=0", {}, None),
    ("POST", "/flyer/users", {"content-type": "application/json"}, b'{"name":"ann","age":7}'),
    ("POST", "/flyer/users", {"content-type": "application/json; charset=utf-8"},
     b'{"name":"ann","age":7}'),
    ("POST", "/flyer/users", {"content-type": "application/vnd.api+json"},
     b'{"name":"ann","age":7}'),
    ("POST", "/flyer/users", {"content-type": "application/json"}, b'{"name":"","age":-1}'),
    ("POST", "/flyer/users", {"content-type": "application/json"}, b'{"name":"ann"}'),
    ("POST", "/flyer/users", {"content-type": "application/json"}, b"{nope"),
    ("POST", "/flyer/users", {"content-type": "application/json"}, b"\xff\x06\xff"),
    ("POST", "/flyer/users", {"content-type": "application/json"}, b""),
    ("POST", "/flyer/users", {"content-type": "application/json"}, b"[1, 2]"),
    ("POST", "/flyer/users", {"content-type": "text/plain"}, b'{"name":"ann","age":7}'),
    ("POST", "/flyer/users", {}, b'{"name":"ann","age":7}'),
    ("POST", "/flyer/errors/orders", {"content-type": "application/json"}, b'{"quantity":"2"}'),
    ("GET", "/flyer/errors/missing", {}, None),
    ("GET", "/flyer/errors/crash", {}, None),
    ("GET", "/flyer/errors/crash-sync", {}, None),
    ("DELETE", "/flyer/demo", {}, None),
]


def answers(build, fast: int) -> list[tuple[int, str, bytes]]:
    out = []
    with TestClient(build(fast_path=fast), raise_server_exceptions=False) as client:
        for method, url, headers, body in REQUESTS:
            response = client.request(method, url, headers=headers, content=body)
            out.append((response.status_code, response.headers.get("content-type", ""),
                        response.content))
    return out


def test_fast_and_full_handling_answer_alike(build):
    fast, full = answers(build, 1), answers(build, 0)
    for request, one, other in zip(REQUESTS, fast, full, strict=True):
        assert one == other, request


def fast_table(app: FlyerAPI) -> set[tuple[str, str]]:
    with TestClient(app):
        pass
    layer = app.middleware_stack
    while layer is not None and not isinstance(layer, FastPathMiddleware):
        layer = getattr(layer, "app", None)
    return set(layer.table) if layer is not None else set()


def test_which_routes_are_served_directly(build):
    table = fast_table(build())
    assert {("GET", "/flyer/demo"), ("POST", "/flyer/users"), ("GET", "/flyer/users"),
            ("POST", "/flyer/errors/orders"), ("GET", "/flyer/errors/crash-sync")} <= table
    assert not any("{" in path for _, path in table)  # path parameters: FastAPI's
    assert not any(path.startswith(("/flyer/docs", "/flyer/openapi", "/health_check"))
                   for _, path in table)


def test_auth_and_own_middleware_and_switch_turn_it_off(build):
    # Auth is a middleware in front of the fast path (fastflyer.middleware.auth): it stays on.
    secured = build(auth_enable=1, auth_user="u", auth_pass="p")
    assert ("GET", "/flyer/users") in fast_table(secured)
    with TestClient(secured) as client:
        assert client.get("/flyer/users").status_code == 401
        assert client.get("/flyer/users", auth=("u", "p")).status_code == 200
    assert fast_table(build(gzip_min_size=500)) == set()
    # CORS wraps the whole stack (application.py): the fast path stays on under it.
    # (gzip_min_size=0: build() keeps the variables set above.)
    assert fast_table(build(gzip_min_size=0, cors_origins="https://a.example"))
    assert fast_table(build(fast_path=0)) == set()


def test_dependency_overrides_send_requests_through_fastapi(tmp_path, build):
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
    assert ("GET", "/flyer/plain") in fast_table(app)
    assert ("GET", "/flyer/who") not in fast_table(app)  # it has a dependency
    module = __import__("app.dep", fromlist=["current_user"])
    app.dependency_overrides[module.current_user] = lambda: "override"
    with TestClient(app) as client:
        assert client.get("/flyer/who").json()["data"] == "override"
        assert client.get("/flyer/plain?q=3").json()["data"] == 3


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
    table = fast_table(app)
    assert ("GET", "/flyer/items") not in table  # FastAPI would route it to /{name}
    assert ("POST", "/flyer/items") in table     # /{name} takes GET only
    with TestClient(app) as client:
        assert client.get("/flyer/items").json()["data"] == "catch-all items"
        assert client.post("/flyer/items").json()["data"] == "added"


def test_the_real_server_serves_the_fast_path_with_the_context_headers(live):
    import httpx

    response = httpx.post(f"{live.url}/flyer/users", json={"name": "bo", "age": 3},
                          headers={"X-Request-ID": "fast-1"})
    assert response.status_code == 201
    assert response.json() == {"code": 201, "message": "success",
                               "data": {"name": "bo", "age": 3}}
    assert response.headers["x-request-id"] == "fast-1"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert re.fullmatch(r"\d+\.\d\d", response.headers["x-lasting-time"])


@pytest.mark.parametrize("chunked", [False, True])
def test_the_body_limit_holds_on_the_fast_path(build, chunked):
    payload = b'{"name":"' + b"x" * 5000 + b'","age":1}'
    with TestClient(build(max_body_size=1000), raise_server_exceptions=False) as client:
        content = iter([payload[:600], payload[600:]]) if chunked else payload
        response = client.post("/flyer/users", content=content,
                               headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["code"] == 413


class Item(BaseModel):  # module level: the annotations below are strings
    name: str


def test_plans_only_what_it_can_answer_alike():
    router = APIRouter()

    @router.post("/ok", response_model=DataResponse)
    async def ok(item: Item, q: int = 0): ...

    @router.get("/raw")
    async def no_model(): ...

    @router.get("/req", response_model=DataResponse)
    async def with_request(request: Request): ...

    @router.get("/dep", response_model=DataResponse, dependencies=[Depends(lambda: None)])
    async def with_dependency(): ...

    @router.get("/item/{item_id}", response_model=DataResponse)
    async def with_path(item_id: int): ...

    @router.post("/two", response_model=DataResponse)
    async def two_bodies(a: Item, b: Item): ...

    @router.get("/excl", response_model=DataResponse, response_model_exclude_none=True)
    async def excluding(): ...

    planned = {route.path: plan_route(route) for route in router.routes}
    assert planned["/ok"] is not None
    assert planned["/ok"].body_name == "item"
    assert [f.name for f in planned["/ok"].query_fields] == ["q"]
    assert [path for path, plan in planned.items() if plan is None] == [
        "/raw", "/req", "/dep", "/item/{item_id}", "/two", "/excl"]
