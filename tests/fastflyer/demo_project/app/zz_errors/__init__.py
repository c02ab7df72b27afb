"""Routes that fail in every way an app can, for the error tests."""

from fastapi import HTTPException
from pydantic import BaseModel

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
