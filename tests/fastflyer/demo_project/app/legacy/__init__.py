from fastflyer import APIRouter

__ENABLED__ = False

router = APIRouter()


@router.get("/legacy")
async def legacy():
    return {"code": 200}
