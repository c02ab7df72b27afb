"""Routes that fail in every way an app can, for the error tests; and, left out of the
schema (the schema-driven tests do not call them), slow ones for the limit tests
(tests/fastflyer/test_service_limits.py)."""

import asyncio
import threading
from collections import defaultdict

import anyio.to_thread
from fastapi import HTTPException, Query, WebSocket, WebSocketDisconnect
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from fastflyer import APIRouter, FlyerError, requests, status
from fastflyer.schemas import DataResponse

router = APIRouter(prefix="/errors", tags=["errors"])


class Order(BaseModel):
    quantity: int
    note: str = ""


@router.get("/http/{code}", response_model=DataResponse)
async def http_error(code: int):
    if not 400 <= code <= 599:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "code must be 400-599")
    raise HTTPException(code)


@router.get("/missing", response_model=DataResponse)
async def missing():
    raise HTTPException(status.HTTP_404_NOT_FOUND, "Item not found")


@router.get("/business/{code}", response_model=DataResponse)
async def business(code: int):
    raise FlyerError(code, "business rule says no", detail={"code": code})


@router.get("/crash", response_model=DataResponse)
async def crash():
    secret_path = "/srv/secret/config.py"
    raise RuntimeError(f"boom at {secret_path} with {object()!r}")


@router.get("/crash-sync", response_model=DataResponse)
def crash_sync():
    raise ValueError("sync boom")


@router.post("/orders", response_model=DataResponse)
async def order(order: Order):
    return {"data": order}


@router.get("/upstream", response_model=DataResponse)
def upstream(url: str):
    # A FastKit call made while serving: the request id must travel with it.
    response = requests.get(url)
    return {"data": {"status": response.status_code}}


# --- slow routes, for the limit tests --------------------------------------------------

@router.get("/slow", include_in_schema=False)
async def slow(seconds: float = Query(1.0, ge=0, le=5)):
    await asyncio.sleep(seconds)
    return {"code": status.HTTP_200_OK, "data": {"slept": seconds}}


class _Held:
    """Calls of one test (its ``key``) blocked in a worker thread until released."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.released = threading.Event()


_held: defaultdict[str, _Held] = defaultdict(_Held)


def _hold(key: str) -> int:
    held = _held[key]
    with held.lock:
        held.running += 1
        held.peak = max(held.peak, held.running)
    try:
        held.released.wait(30)  # bounded: a failed test never leaves a thread behind
    finally:
        with held.lock:
            held.running -= 1
    return held.peak


@router.get("/hold", include_in_schema=False)
def hold(key: str):
    """Sync: runs in the thread pool until ``/release?key=`` is called."""
    return {"code": status.HTTP_200_OK, "data": {"peak": _hold(key)}}


@router.get("/hold-async", include_in_schema=False)
async def hold_async(key: str):
    return {"code": status.HTTP_200_OK, "data": {"peak": await run_in_threadpool(_hold, key)}}


@router.get("/held", include_in_schema=False)
async def held(key: str):
    """How many calls of ``key`` run now and at most, and what the thread pool holds."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    stats = limiter.statistics()
    state = _held[key]
    return {"code": status.HTTP_200_OK,
            "data": {"running": state.running, "peak": state.peak,
                     "threads": limiter.total_tokens, "waiting": stats.tasks_waiting}}


@router.post("/release", include_in_schema=False)
async def release(key: str):
    _held[key].released.set()
    return {"code": status.HTTP_200_OK}


@router.websocket("/echo")
async def echo(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass
