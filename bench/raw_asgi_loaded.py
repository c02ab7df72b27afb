"""The raw ASGI app of ``raw_asgi.py``, served from a process that has also built the
FastFlyer bench app (``web_flyer``) and never calls it.

It separates what a probe costs in FastFlyer's request path from what a process carrying
FastAPI, pydantic and the framework costs the server by its size alone.
"""

from __future__ import annotations

import web_flyer  # noqa: F401  (loaded and built, never called)
from raw_asgi import app

__all__ = ["app"]
