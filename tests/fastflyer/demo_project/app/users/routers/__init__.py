# Several router files aggregated into the one `router` the framework loads.
from fastflyer import APIRouter

from .profile import router as profile_router
from .pages import router as pages_router

router = APIRouter()
router.include_router(profile_router)
router.include_router(pages_router)
