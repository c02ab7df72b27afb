"""Aggregates the users app's router files into the one ``router`` FastFlyer loads."""

from fastflyer import APIRouter

from .relationship import router as relationship_router
from .userinfo import router as userinfo_router

router = APIRouter()
router.include_router(userinfo_router)
router.include_router(relationship_router)
