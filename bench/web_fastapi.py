"""Bare FastAPI app for ``bench_web.py``: the business route written as a user would.

    taskset -c 1 python -m uvicorn web_fastapi:app --app-dir bench --loop uvloop \
        --http httptools --workers 1 --log-level error --no-access-log --no-proxy-headers

``Envelope`` has the fields of ``fastflyer.schemas.DataResponse`` (code, message, data),
so POST ``/flyer/items`` does the same work as the FastFlyer bench project: validate the
body into ``Item``, then validate and serialize the response through ``response_model``.
"""

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


class Envelope(BaseModel):
    code: int = 200
    message: str = "success"
    data: Any = None


@app.post("/flyer/items", response_model=Envelope)
async def create_item(item: Item):
    return {"code": 200, "data": item}


@app.get("/health_check/async")
async def health():
    return {"code": 200, "message": "success"}
