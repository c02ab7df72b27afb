from .routers import router

__all__ = ["router"]
