"""The gunicorn worker ``fastflyer serve`` runs: uvicorn's, with the framework's choices.

uvloop and httptools when installed; the client address is left to the app (which believes
``X-Forwarded-For`` only from ``flyer_trusted_proxies``); no uvicorn access log (the app
writes its own).
"""

from __future__ import annotations

import sys
from typing import Any

from gunicorn.arbiter import Arbiter
from uvicorn_worker import UvicornWorker

__all__ = ["FlyerWorker"]


class FlyerWorker(UvicornWorker):  # type: ignore[misc]
    """``uvicorn_worker.UvicornWorker`` without proxy headers or access log."""

    CONFIG_KWARGS: dict[str, Any] = {  # noqa: RUF012 (uvicorn-worker's own attribute)
        "loop": "auto", "http": "auto", "proxy_headers": False, "access_log": False,
    }

    def load_wsgi(self) -> None:
        """Import the app. One that stops itself (a bad setting is a ``SystemExit`` with
        its one line) ends with gunicorn's boot-error status, so that the master stops
        with it instead of starting the worker again and again."""
        try:
            super().load_wsgi()
        except SystemExit as exc:
            if exc.code in (None, 0):
                raise
            if not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr, flush=True)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
