"""Demo app 2: users, several router files aggregated into one ``router``."""

from .routers import router

__all__ = ["router"]
