"""Starting a project's server: ``fastflyer run`` (development) and ``fastflyer serve``.

``run``: one uvicorn process, reloading on code changes when ``flyer_reload=1``.
``serve``: gunicorn with :class:`~fastflyer.worker.FlyerWorker` (uvicorn) workers,
``flyer_workers`` of them (unset: :func:`~fastflyer.cpus.usable_cpus`), with the
``flyer_*`` timeouts, keep-alive and max-requests settings. Both load ``main:app`` from the
project directory, leave the client address to the app and write no server access log
(the app writes its own, ``flyer_access_log``).
"""

from __future__ import annotations

import math
import signal
import sys
from pathlib import Path
from typing import Any

from fastflyer.cpus import usable_cpus
from fastflyer.settings import FlyerSettings

__all__ = ["gunicorn_options", "run", "serve"]

APP = "main:app"


def _log_level(settings: FlyerSettings) -> str:
    return settings.console_log_level.lower()


def _stop(signum: int, frame: object) -> None:
    # uvicorn shuts down gracefully, then raises the signal again for the handler it found:
    # end with status 0 for SIGTERM (a normal stop), 130 for Ctrl-C, and no traceback.
    raise SystemExit(0 if signum == signal.SIGTERM else 128 + signum)


def run(settings: FlyerSettings, project: Path) -> None:
    """Serve ``project`` with uvicorn in this process (reload when ``settings.reload``)."""
    import uvicorn

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    uvicorn.run(
        APP, app_dir=str(project), host=settings.host, port=settings.port,
        reload=settings.reload, reload_dirs=[str(project)] if settings.reload else None,
        loop="auto", http="auto", proxy_headers=False, access_log=False,
        timeout_keep_alive=int(settings.keepalive),
        timeout_graceful_shutdown=int(settings.graceful_timeout) or None,
        log_level=_log_level(settings),
    )


def gunicorn_options(settings: FlyerSettings, project: Path) -> dict[str, Any]:
    """gunicorn's settings for ``settings`` (see the module docstring)."""
    return {
        "bind": [f"{settings.host}:{settings.port}"],
        "workers": settings.workers or usable_cpus(),
        "worker_class": "fastflyer.worker.FlyerWorker",
        "worker_connections": settings.worker_connections,
        # gunicorn takes whole seconds
        "timeout": math.ceil(settings.timeout),
        "graceful_timeout": math.ceil(settings.graceful_timeout),
        "keepalive": math.ceil(settings.keepalive),
        "max_requests": settings.max_requests if settings.enable_max_requests else 0,
        "max_requests_jitter": settings.max_requests_jitter if settings.enable_max_requests else 0,
        "chdir": str(project),
        "accesslog": None,
        "errorlog": "-",
        "loglevel": _log_level(settings),
        "proc_name": f"fastflyer:{project.name}",
        "preload_app": False,
        # gunicorn ≥ 23 opens a control socket under $HOME: nothing outside the project
        "control_socket_disable": True,
    }


def serve(settings: FlyerSettings, project: Path) -> None:
    """Serve ``project`` with gunicorn and uvicorn workers; returns when gunicorn stops."""
    from gunicorn.app.base import BaseApplication

    options = gunicorn_options(settings, project)

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                if key in self.cfg.settings:  # older gunicorn lacks the newest settings
                    self.cfg.set(key, value)

        def load(self) -> Any:  # in each worker, after the fork
            from uvicorn.importer import import_from_string

            if str(project) not in sys.path:
                sys.path.insert(0, str(project))
            return import_from_string(APP)

    Application().run()
