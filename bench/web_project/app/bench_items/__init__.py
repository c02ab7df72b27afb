"""Bench route for ``bench/web_flyer.py``: POST /flyer/items, the same work as web_fastapi.py."""

from pydantic import BaseModel

from fastflyer import APIRouter, status
from fastflyer.schemas import DataResponse

router = APIRouter(tags=["bench"])


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@router.post("/items", response_model=DataResponse)
async def create_item(item: Item):
    return {"code": status.HTTP_200_OK, "data": item}
