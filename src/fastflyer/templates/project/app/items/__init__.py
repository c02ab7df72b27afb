"""Demo app 1: items, one router file. The framework loads the object named ``router``."""

from .router import router

__all__ = ["router"]
