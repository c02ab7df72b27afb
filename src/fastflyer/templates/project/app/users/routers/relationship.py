"""Relationship routes."""

from fastflyer import APIRouter
from fastflyer.schemas import DataResponse

from ..modules.relationship import follow, following
from ..schemas.relationship import Follow

router = APIRouter(prefix="/users", tags=["users"])


@router.post("/{name}/following", response_model=DataResponse[list[str]],
             summary="Follow a user")
async def add_following(name: str, body: Follow):
    return {"data": follow(name, body.other)}


@router.get("/{name}/following", response_model=DataResponse[list[str]],
            summary="Whom a user follows")
async def get_following(name: str):
    return {"data": following(name)}
