"""Bare Starlette app for ``bench_web.py``: the same two routes as the FastAPI and FastFlyer apps.

    taskset -c 1 python -m uvicorn web_starlette:app --app-dir bench --loop uvloop \
        --http httptools --workers 1 --log-level error --no-access-log --no-proxy-headers

* GET ``/health_check/async`` -> ``{"code":200,"message":"success"}``;
* POST ``/flyer/items`` (JSON body) -> ``{"code":200,"message":"success","data":<body>}``,
  no validation: the floor a framework with routing and JSON can reach.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"code": 200, "message": "success"})


async def create_item(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse({"code": 200, "message": "success", "data": body})


app = Starlette(
    routes=[
        Route("/health_check/async", health, methods=["GET"]),
        Route("/flyer/items", create_item, methods=["POST"]),
    ]
)
