"""The gunicorn worker ``fastflyer serve`` runs: uvicorn's, with the framework's choices.

uvloop and httptools when installed; the client address is left to the app (which believes
``X-Forwarded-For`` only from ``flyer_trusted_proxies``); no uvicorn access log (the app
writes its own).
"""

from __future__ import annotations

from typing import Any

from uvicorn_worker import UvicornWorker

__all__ = ["FlyerWorker"]


class FlyerWorker(UvicornWorker):  # type: ignore[misc]
    """``uvicorn_worker.UvicornWorker`` without proxy headers or access log."""

    CONFIG_KWARGS: dict[str, Any] = {  # noqa: RUF012 (uvicorn-worker's own attribute)
        "loop": "auto", "http": "auto", "proxy_headers": False, "access_log": False,
    }
