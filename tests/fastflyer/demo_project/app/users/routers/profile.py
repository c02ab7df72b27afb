from pydantic import BaseModel, Field

from fastflyer import APIRouter, status
from fastflyer.schemas import DataResponse

router = APIRouter(prefix="/users", tags=["users"])


class User(BaseModel):
    name: str = Field(min_length=1, max_length=32)
    age: int = Field(ge=0, le=150)


@router.post("", response_model=DataResponse[User], status_code=201, summary="Create a user")
async def create_user(user: User):
    return {"code": status.HTTP_201_CREATED, "data": user}
