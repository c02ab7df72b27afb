"""The gunicorn worker ``fastflyer serve`` runs: uvicorn's, with the framework's choices.

uvloop and httptools when installed, the request head bounded (:mod:`fastflyer.http_limits`,
as under ``fastflyer run``); the client address is left to the app (which believes
``X-Forwarded-For`` only from ``flyer_trusted_proxies``); no uvicorn access log (the app
writes its own).

It stops as :mod:`fastflyer.server` says: SIGTERM or SIGINT drain the requests in flight
for ``flyer_graceful_timeout``, then the stop hooks run; SIGQUIT (gunicorn's quick stop)
skips the drain. A worker that stopped cleanly exits with status 0, quietly; one that did
not exits with :data:`~fastflyer.server.EXIT_UNCLEAN`, and the master then exits with
that status too. A worker whose master is gone (killed) stops. ``FASTFLYER_WORKERS``
holds gunicorn's number of workers, for the app (one process of several cannot act for
the whole service alone).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import Any

from gunicorn.arbiter import Arbiter
from uvicorn_worker import UvicornWorker

from fastflyer.http_limits import http_protocol
from fastflyer.server import EXIT_UNCLEAN, FlyerServer, stop_problems
from fastflyer.service import WORKERS_VARIABLE

__all__ = ["FlyerWorker"]


class FlyerWorker(UvicornWorker):  # type: ignore[misc]
    """``uvicorn_worker.UvicornWorker`` without proxy headers or access log, with a
    bounded, quiet, reported stop (see the module docstring)."""

    CONFIG_KWARGS: dict[str, Any] = {  # noqa: RUF012 (uvicorn-worker's own attribute)
        "loop": "auto", "http": "auto", "proxy_headers": False, "access_log": False,
    }

    server: FlyerServer | None = None
    exit_status = 0  # EXIT_UNCLEAN once a stop was not clean

    def init_signals(self) -> None:
        super().init_signals()
        # uvicorn handles SIGTERM/SIGINT while it serves, then raises the signal again for
        # the handler it found. With gunicorn's default that kills the worker by the signal
        # ("Worker was sent SIGTERM!"); this one lets a served worker end with its status.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._signal_outside_serving)

    def _signal_outside_serving(self, sig: int, frame: FrameType | None) -> None:
        if self.server is None:  # still booting: stop now
            sys.exit(0)
        # else: the signal uvicorn raises again once it has stopped; nothing left to do

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGQUIT from the master (its quick stop): stop without waiting for requests."""
        super().handle_exit(sig, frame)
        if self.server is not None:
            self.server.force_exit = self.server.should_exit = True

    def load_wsgi(self) -> None:
        """Import the app. One with a bad setting (a
        :class:`~fastflyer.settings.SettingsError`, told in its lines, no traceback) or that
        stops itself ends with gunicorn's boot-error status, so that the master stops with
        it instead of starting the worker again and again. Other errors keep gunicorn's
        traceback: an app's own import error needs its frames."""
        from fastflyer.settings import SettingsError

        os.environ[WORKERS_VARIABLE] = str(self.cfg.workers)
        try:
            super().load_wsgi()
        except SettingsError as exc:
            print(exc, file=sys.stderr, flush=True)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
        except SystemExit as exc:
            if exc.code in (None, 0):
                raise
            if not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr, flush=True)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        self.server = FlyerServer(self.config, getattr(self.wsgi, "settings", None),
                                  parent_pid=self.ppid)
        # The request head bounded by the app's settings (before uvicorn loads the config).
        self.config.http = http_protocol(self.server.settings)
        self._install_sigquit_handler()
        # The sockets themselves, not gunicorn's wrappers: uvicorn closes what it is given
        # once the event loop's server closed them, and a wrapper says so ("Error while
        # closing socket [Errno 9]") at every stop.
        await self.server.serve(sockets=[getattr(s, "sock", s) for s in self.sockets])
        if not self.server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
        if stop_problems(self.wsgi):  # each was logged as it happened
            self.exit_status = EXIT_UNCLEAN

    def run(self) -> None:
        super().run()
        # Here, not inside the event loop: a SystemExit raised there goes through the
        # tasks still running (a forced stop leaves the lifespan's) as an error.
        if self.exit_status:
            sys.exit(self.exit_status)
