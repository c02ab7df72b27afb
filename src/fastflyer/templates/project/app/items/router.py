"""Routes of the items app."""

from fastflyer import APIRouter, FlyerError, status
from fastflyer.schemas import DataResponse

from .module import store
from .schema import Item, ItemIn

router = APIRouter(tags=["Demo示例"])


@router.get("/demo", response_model=DataResponse, summary="Demo接口")
async def demo(id: int):
    """
    演示接口:信息查询
    ---
    - 附加说明: 这是一个演示接口。
    """
    return {"code": status.HTTP_200_OK, "data": {"itemId": id}}


@router.post("/items", response_model=DataResponse[Item], status_code=201,
             summary="Create an item")
async def create_item(item: ItemIn):
    return {"code": status.HTTP_201_CREATED, "data": store.add(item)}


@router.get("/items/{item_id}", response_model=DataResponse[Item], summary="Get an item")
async def get_item(item_id: int):
    item = store.get(item_id)
    if item is None:
        raise FlyerError(status.HTTP_404_NOT_FOUND, f"item {item_id} not found")
    return {"data": item}
