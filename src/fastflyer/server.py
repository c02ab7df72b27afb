"""The uvicorn server both launchers run, and how a stop is bounded and reported.

A stop signal (SIGTERM, SIGINT) starts the stop: the app's stopping hooks run while the
port still accepts (:meth:`fastflyer.lifespan.Lifecycle.stopping`: a service registry
withdraws the instance), then the server stops accepting, lets the requests in flight
finish for up to ``flyer_graceful_timeout`` seconds (the drain; any still running then
are cut off), then runs the app's stop hooks; the stopping and the stop hooks get
``flyer_shutdown_timeout`` seconds in total. A process still alive ``STOP_MARGIN``
seconds after that (a thread stuck in a call without a timeout, say) logs which threads
hold it and exits with status :data:`EXIT_UNCLEAN` anyway: no value of any setting
means "wait forever".

The stop was clean when nothing was cut off, every stop hook finished in time and the
process exited on its own; ``fastflyer run`` and ``fastflyer serve`` then exit with 0,
otherwise with :data:`EXIT_UNCLEAN`, after ERROR lines saying what went wrong.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.importer import import_from_string

from fastflyer.lifespan import Lifecycle
from fastflyer.settings import STOP_MARGIN, FlyerSettings
from fastkit.logging import logger

__all__ = ["EXIT_UNCLEAN", "REPLACED_VARIABLE", "FlyerServer", "mark_replaced", "replaced",
           "stop_problems"]

#: Exit status of a server whose stop was not clean (see the module docstring).
EXIT_UNCLEAN = 1


#: A directory (made by ``fastflyer serve``) where gunicorn's master marks each worker it
#: stops while the server goes on (a reload on SIGHUP, fewer workers on SIGTTOU): a file
#: named by the worker's pid. Such a worker stops as a recycled one does: the service
#: registry leaves the instance listed for the workers that replace it.
REPLACED_VARIABLE = "FASTFLYER_REPLACED_WORKERS"


def mark_replaced(pid: int) -> None:
    """Mark worker ``pid`` as stopped while the server goes on (the master, before its
    SIGTERM). Does nothing outside ``fastflyer serve``; never raises."""
    directory = os.environ.get(REPLACED_VARIABLE)
    if directory:
        with contextlib.suppress(OSError):
            Path(directory, str(pid)).touch()


def replaced(pid: int) -> bool:
    """Whether the master marked worker ``pid`` (see :data:`REPLACED_VARIABLE`)."""
    directory = os.environ.get(REPLACED_VARIABLE)
    return directory is not None and Path(directory, str(pid)).exists()


def stop_problems(app: Any) -> list[str]:
    """What went wrong while ``app`` stopped, one line each (empty: a clean stop).

    ``app`` is the ASGI app the server ran; one that is no FastFlyer app reports nothing.
    """
    lifecycle = getattr(app, "lifecycle", None)
    if lifecycle is None:
        return []
    if not lifecycle.stopped:
        return ["the stop hooks did not run (a forced stop, or the server never started)"]
    return list(lifecycle.stop_problems)


class FlyerServer(uvicorn.Server):
    """uvicorn's server, draining for the app's ``flyer_graceful_timeout`` and exiting
    within ``settings.stop_budget`` seconds of the start of its stop, whatever hangs.

    ``settings``: the served app's settings (``None``: the environment's).
    ``parent_pid``: a process whose end stops this server too (a gunicorn worker's master:
    a worker whose master was killed stops rather than serve on alone).
    """

    def __init__(self, config: uvicorn.Config, settings: FlyerSettings | None = None,
                 parent_pid: int | None = None) -> None:
        super().__init__(config)
        if settings is None:
            from fastflyer.settings import load_settings

            settings = load_settings(warn_unknown=False)
        self.settings = settings
        self.parent_pid = parent_pid
        # uvicorn reads None (and, before 0.29, 0) as "wait forever": always a number.
        config.timeout_graceful_shutdown = settings.drain_timeout  # type: ignore[assignment]
        self._watchdog: threading.Timer | None = None

    def handle_signals_outside_serving(self) -> None:
        """Handle SIGTERM and SIGINT while uvicorn's own handlers are not installed (they
        are while it serves): before serving (the app still loading), a signal stops the
        process (``SystemExit(0)``, with ``should_exit`` set); after, the signal uvicorn
        raises again once it has stopped is taken as done, so that the process ends with
        its own status rather than killed by it. Call from the main thread."""

        def handler(signum: int, frame: FrameType | None) -> None:
            if not self.should_exit:
                self.handle_exit(signum, frame)
                raise SystemExit(0)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """A stop signal: start the stop, and the clock that bounds it."""
        super().handle_exit(sig, frame)
        self._arm()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """The stop, however it came (a signal, ``limit_max_requests``), within the budget:
        the served app's stopping hooks first, while the listener still accepts (only
        after the server started serving, and not on a stop at once), then uvicorn's
        stop (the listener closed, the drain, the lifespan's shutdown)."""
        self._arm()
        try:
            lifecycle = self._served_lifecycle()
            if lifecycle is not None and self.started and not self.force_exit:
                # uvicorn's limit_max_requests ends serving without should_exit, which
                # only a signal (or the master's end, on_tick) sets; gunicorn's master
                # marks the workers it replaces (a reload) before it signals them.
                lifecycle.recycling = not self.should_exit or replaced(os.getpid())
                await lifecycle.stopping()
        finally:
            await super().shutdown(sockets)

    def _served_lifecycle(self) -> Lifecycle | None:
        """The :class:`~fastflyer.lifespan.Lifecycle` of the app served (``None``: an app
        without one). ``config.app`` is the app itself (under gunicorn, the worker sets
        it) or its import string (``fastflyer run``: the module is imported already, and
        is never imported here); failing that (an app factory), the app inside uvicorn's
        wrappers."""
        app: Any = self.config.app
        if isinstance(app, str):
            try:
                app = (import_from_string(app)
                       if app.partition(":")[0] in sys.modules else None)
            except Exception:  # not importable here: nothing to run
                app = None
        lifecycle = getattr(app, "lifecycle", None)
        inner = getattr(self.config, "loaded_app", None)
        for _ in range(8):  # uvicorn's few wrappers (proxy headers, message logger, ...)
            if isinstance(lifecycle, Lifecycle) or inner is None:
                break
            lifecycle = getattr(inner, "lifecycle", None)
            inner = getattr(inner, "app", None)
        return lifecycle if isinstance(lifecycle, Lifecycle) else None

    async def on_tick(self, counter: int) -> bool:
        if (self.parent_pid is not None and not self.should_exit
                and os.getppid() != self.parent_pid):
            logger.warning("the master process ({}) is gone: stopping", self.parent_pid)
            self.handle_exit(signal.SIGTERM, None)
        return await super().on_tick(counter)

    def _arm(self) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Timer(self.settings.stop_budget, self._overran)
            self._watchdog.daemon = True
            self._watchdog.start()

    def _overran(self) -> None:
        held = sorted(thread.name for thread in threading.enumerate()
                      if thread is not threading.current_thread() and thread.is_alive()
                      and not thread.daemon and thread is not threading.main_thread())
        logger.error("the server did not stop within {:g} s (flyer_graceful_timeout {:g} s + "
                     "flyer_shutdown_timeout {:g} s + {:g} s); exiting{}",
                     self.settings.stop_budget, self.settings.drain_timeout,
                     self.settings.shutdown_timeout, STOP_MARGIN,
                     f"; threads still running: {', '.join(held)}" if held else "")
        logger.remove()  # flushes and closes the sinks
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_UNCLEAN)
