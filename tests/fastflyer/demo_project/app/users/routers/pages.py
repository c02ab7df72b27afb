from fastapi import Query

from fastflyer import APIRouter
from fastflyer.schemas import PageDataResponse

router = APIRouter(prefix="/users", tags=["users"])

NAMES = [f"user{i}" for i in range(25)]


@router.get("", response_model=PageDataResponse[list[str]], summary="List users")
async def list_users(offset: int = Query(0, ge=0), size: int = Query(10, ge=1, le=100)):
    return {"data": NAMES[offset:offset + size],
            "pageInfo": {"total": len(NAMES), "offset": offset, "size": size}}
