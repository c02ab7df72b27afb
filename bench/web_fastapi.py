"""Bare FastAPI app for ``bench_web.py``: the bench routes written as a user would.

    taskset -c 1 python -m uvicorn web_fastapi:app --app-dir bench --loop uvloop \
        --http httptools --workers 1 --log-level error --no-access-log --no-proxy-headers

``app`` is ``FastAPI()`` with its defaults (its per-request telemetry check included);
``web_fastapi_notelemetry.py`` serves the same routes with ``FastAPI(telemetry=...)`` off.
``Envelope`` has the fields of ``fastflyer.schemas.DataResponse`` (code, message, data),
so each route does the same work as its twin in the FastFlyer bench project
(``web_project/app``): POST ``/flyer/items`` validates the body into ``Item``, then
validates and serializes the response through ``response_model``; the other routes
(``bench_shapes``) add path, query and header parameters, dependencies (sync, async,
``yield``), ``Request``/``BackgroundTasks`` parameters and ``response_model_exclude_none``.
"""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, FastAPI, Header, Request
from pydantic import BaseModel


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


class Envelope(BaseModel):
    code: int = 200
    message: str = "success"
    data: Any = None


class Profile(BaseModel):
    name: str
    email: str | None = None
    phone: str | None = None
    tags: list[str] = []


def get_config() -> dict[str, Any]:
    return {"page_size": 10}


async def get_db(config: Annotated[dict[str, Any], Depends(get_config)]) -> dict[str, Any]:
    return {"db": "ok", "page_size": config["page_size"]}


async def get_session() -> AsyncIterator[dict[str, Any]]:
    session = {"open": True}
    try:
        yield session
    finally:
        session["open"] = False


async def _noop() -> None:
    return None


def build(**kwargs: Any) -> FastAPI:
    """``FastAPI(**kwargs)`` with the bench routes, declared in the FastFlyer project's order."""
    app = FastAPI(**kwargs)

    @app.post("/flyer/items", response_model=Envelope)
    async def create_item(item: Item) -> dict[str, Any]:
        return {"code": 200, "data": item}

    @app.post("/flyer/items/{item_id}", response_model=Envelope)
    async def update_item(item_id: int, item: Item, q: str | None = None) -> dict[str, Any]:
        return {"code": 200, "data": {"item_id": item_id, "q": q, "item": item}}

    @app.get("/flyer/things/{thing_id}", response_model=Envelope)
    async def read_thing(thing_id: int, q: str, limit: int = 10,
                         x_token: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        return {"code": 200,
                "data": {"thing_id": thing_id, "q": q, "limit": limit, "token": x_token}}

    @app.get("/flyer/deps", response_model=Envelope)
    async def with_deps(db: Annotated[dict[str, Any], Depends(get_db)],
                        config: Annotated[dict[str, Any], Depends(get_config)]) -> dict[str, Any]:
        return {"code": 200, "data": {"db": db, "config": config}}

    @app.get("/flyer/yield", response_model=Envelope)
    async def with_yield(
        session: Annotated[dict[str, Any], Depends(get_session)],
    ) -> dict[str, Any]:
        return {"code": 200, "data": session}

    @app.get("/flyer/ctx", response_model=Envelope)
    async def with_context(request: Request, background: BackgroundTasks) -> dict[str, Any]:
        background.add_task(_noop)
        return {"code": 200, "data": {"method": request.method}}

    @app.get("/flyer/profile", response_model=Profile, response_model_exclude_none=True)
    async def profile() -> dict[str, Any]:
        return {"name": "widget", "email": None, "phone": None, "tags": ["a"]}

    @app.get("/health_check/async", response_model=None)  # as unannotated: no validation
    async def health() -> dict[str, Any]:
        return {"code": 200, "message": "success"}

    return app


app = build()
