"""User routes."""

from fastapi import Query

from fastflyer import APIRouter, status
from fastflyer.schemas import DataResponse, PageDataResponse

from ..modules.userinfo import list_users, save_user
from ..schemas.userinfo import User

router = APIRouter(prefix="/users", tags=["users"])


@router.post("", response_model=DataResponse[User], status_code=201, summary="Save a user")
async def create_user(user: User):
    return {"code": status.HTTP_201_CREATED, "data": save_user(user)}


@router.get("", response_model=PageDataResponse[list[User]], summary="List users")
async def get_users(offset: int = Query(0, ge=0), size: int = Query(10, ge=1, le=100)):
    users, total = list_users(offset, size)
    return {"data": users, "pageInfo": {"total": total, "offset": offset, "size": size}}
