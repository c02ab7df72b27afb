"""Routes of the items app."""

from typing import Annotated

from fastapi import Path

from fastflyer import APIRouter, FlyerError, status
from fastflyer.schemas import DataResponse

from .module import store
from .schema import MAX_ID, Item, ItemIn

router = APIRouter(tags=["Demo示例"])


@router.get("/demo", response_model=DataResponse, summary="Demo接口")
async def demo(id: int):
    """
    演示接口:信息查询
    ---
    - 附加说明: 这是一个演示接口。id < 0 演示第三方超时: HTTP 504, code 604。
    """
    if id < 0:
        # A business error: HTTP 504 with {"code": 604, "message": "inventory timed out"}.
        raise FlyerError(status.HTTP_604_THIRD_PARTY_TIMEOUT_ERROR, "inventory timed out")
    return {"code": status.HTTP_200_OK, "data": {"itemId": id}}


# Plain `def` routes: the database calls block, so FastAPI runs them in its thread pool.
@router.post("/items", response_model=DataResponse[Item], status_code=201,
             summary="Create an item")
def create_item(item: ItemIn):
    return {"code": status.HTTP_201_CREATED, "data": store.add(item)}


@router.get("/items/{item_id}", response_model=DataResponse[Item], summary="Get an item")
def get_item(item_id: Annotated[int, Path(ge=1, le=MAX_ID)]):
    item = store.get(item_id)
    if item is None:
        raise FlyerError(status.HTTP_404_NOT_FOUND, f"item {item_id} not found")
    return {"data": item}
