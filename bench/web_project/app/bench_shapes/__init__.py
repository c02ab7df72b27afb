"""Bench routes of other shapes for ``bench/web_flyer.py``; ``web_fastapi.py`` has the same.

* POST ``/flyer/items/{item_id}?q=...``: path, query and a pydantic body, ``DataResponse``;
* GET ``/flyer/things/{thing_id}?q=...&limit=...`` with an ``X-Token`` header parameter;
* GET ``/flyer/deps``: an async dependency with a sync sub-dependency, both used;
* GET ``/flyer/yield``: a dependency with ``yield``;
* GET ``/flyer/ctx``: ``Request`` and ``BackgroundTasks`` parameters (one no-op task);
* GET ``/flyer/profile``: ``response_model`` with ``response_model_exclude_none=True``.
"""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, Header, Request
from pydantic import BaseModel

from fastflyer import APIRouter, status
from fastflyer.schemas import DataResponse

router = APIRouter(tags=["bench"])


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


class Profile(BaseModel):
    name: str
    email: str | None = None
    phone: str | None = None
    tags: list[str] = []


@router.post("/items/{item_id}", response_model=DataResponse)
async def update_item(item_id: int, item: Item, q: str | None = None) -> dict[str, Any]:
    return {"code": status.HTTP_200_OK, "data": {"item_id": item_id, "q": q, "item": item}}


@router.get("/things/{thing_id}", response_model=DataResponse)
async def read_thing(thing_id: int, q: str, limit: int = 10,
                     x_token: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    return {"code": status.HTTP_200_OK,
            "data": {"thing_id": thing_id, "q": q, "limit": limit, "token": x_token}}


def get_config() -> dict[str, Any]:
    return {"page_size": 10}


async def get_db(config: Annotated[dict[str, Any], Depends(get_config)]) -> dict[str, Any]:
    return {"db": "ok", "page_size": config["page_size"]}


@router.get("/deps", response_model=DataResponse)
async def with_deps(db: Annotated[dict[str, Any], Depends(get_db)],
                    config: Annotated[dict[str, Any], Depends(get_config)]) -> dict[str, Any]:
    return {"code": status.HTTP_200_OK, "data": {"db": db, "config": config}}


async def get_session() -> AsyncIterator[dict[str, Any]]:
    session = {"open": True}
    try:
        yield session
    finally:
        session["open"] = False


@router.get("/yield", response_model=DataResponse)
async def with_yield(
    session: Annotated[dict[str, Any], Depends(get_session)],
) -> dict[str, Any]:
    return {"code": status.HTTP_200_OK, "data": session}


async def _noop() -> None:
    return None


@router.get("/ctx", response_model=DataResponse)
async def with_context(request: Request, background: BackgroundTasks) -> dict[str, Any]:
    background.add_task(_noop)
    return {"code": status.HTTP_200_OK, "data": {"method": request.method}}


@router.get("/profile", response_model=Profile, response_model_exclude_none=True)
async def profile() -> dict[str, Any]:
    return {"name": "widget", "email": None, "phone": None, "tags": ["a"]}
