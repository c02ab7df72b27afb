"""Starting a project's server: ``fastflyer run`` (development) and ``fastflyer serve``.

``run``: one uvicorn process, reloading on code changes when ``flyer_reload=1``.
``serve``: gunicorn with :class:`~fastflyer.worker.FlyerWorker` (uvicorn) workers,
``flyer_workers`` of them (unset: :func:`~fastflyer.cpus.usable_cpus`), with the
``flyer_*`` timeouts, keep-alive and max-requests settings. Both load ``main:app`` from the
project directory, leave the client address to the app and write no server access log
(the app writes its own, ``flyer_access_log``). Under ``serve`` the workers record their
metrics in one directory (:func:`multiprocess_metrics`), so that any worker's ``/metrics``
tells the whole server's.

Both serve a socket from :func:`listen`, bound before anything says where the server is: a
port in use fails there, with :class:`BindError`, instead of after a banner claiming it
serves; port 0 takes a free port, which the socket tells (``getsockname()``). Ctrl-C
(SIGINT) and SIGTERM stop either gracefully (see :mod:`fastflyer.server`): requests in
flight get ``flyer_graceful_timeout`` to finish, then the stop hooks run within
``flyer_shutdown_timeout``. The status is 0 for a clean stop, else
:data:`~fastflyer.server.EXIT_UNCLEAN`. A second Ctrl-C stops at once.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastflyer.cpus import usable_cpus
from fastflyer.exceptions import FastFlyerError
from fastflyer.settings import FlyerSettings, SettingsError

__all__ = ["BindError", "gunicorn_options", "listen", "multiprocess_metrics", "run", "serve"]

APP = "main:app"


def _log_level(settings: FlyerSettings) -> str:
    return settings.console_log_level.lower()


class BindError(FastFlyerError, OSError):
    """The server cannot listen on the address asked for; the message says why in one line.

    ``errno`` is the system's (``errno.EADDRINUSE`` for a port in use); ``port_problem``
    tells whether another port (rather than another host) is the way out.
    """

    @property
    def port_problem(self) -> bool:
        return self.errno in (errno.EADDRINUSE, errno.EACCES)

    def __str__(self) -> str:
        return str(self.strerror) if self.strerror is not None else super().__str__()


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening, for :func:`run` or :func:`serve`.

    Port 0 takes a free port (``sock.getsockname()[1]``). Raises :class:`BindError`.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As uvicorn and gunicorn do: a port whose old connections linger in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            why = f"port {port} is already in use"
        elif exc.errno == errno.EACCES:
            why = f"no permission to use port {port} (ports below 1024 need root)"
        elif exc.errno == errno.EADDRNOTAVAIL:
            why = f"{host} is not an address of this machine"
        else:
            why = exc.strerror or str(exc)
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise BindError(exc.errno or 0, f"cannot listen on {shown}: {why}") from None
    sock.set_inheritable(True)
    return sock


def run(settings: FlyerSettings, project: Path, sock: socket.socket | None = None) -> None:
    """Serve ``project`` with uvicorn in this process (reload when ``settings.reload``).

    ``sock``: a socket from :func:`listen` (default: one for ``settings.host``/``port``).
    """
    import uvicorn
    from uvicorn.supervisors import ChangeReload

    from fastflyer.http_limits import http_protocol
    from fastflyer.reloading import reload_target
    from fastflyer.serverlog import uvicorn_log_config

    if sock is None:
        sock = listen(settings.host, settings.port)
    if str(project) not in sys.path:
        sys.path.insert(0, str(project))  # main:app, here and in the reloader's child
    level = _log_level(settings)
    config = uvicorn.Config(
        APP, host=settings.host, port=sock.getsockname()[1],
        reload=settings.reload, reload_dirs=[str(project)] if settings.reload else None,
        loop="auto", proxy_headers=False, access_log=False,
        http=http_protocol(settings),  # httptools (else h11), the request head bounded
        timeout_keep_alive=math.ceil(settings.keepalive),  # whole seconds, as under serve
        log_level=level,
        log_config=uvicorn_log_config(level),  # lines through fastkit.logging
    )
    # Imported here, not at the top: the CLI sets flyer_* variables before logging starts.
    from fastflyer.server import EXIT_UNCLEAN, FlyerServer, stop_problems

    server = FlyerServer(config, settings)  # sets the drain (timeout_graceful_shutdown)
    server.handle_signals_outside_serving()  # Ctrl-C while the app loads: status 0, quietly
    if not config.should_reload:
        config.load()  # the app is built (its settings checked) before the line below
    # uvicorn says where it runs only for sockets it binds itself: the same line, for ours.
    # (Connections made before the app is up wait in the socket's backlog.)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on http://%s:%d (Press CTRL+C to quit)", host, config.port)
    if not config.should_reload and signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
        # A closed terminal stops the server as SIGTERM does (so `finally` blocks run);
        # under nohup SIGHUP stays ignored.
        signal.signal(signal.SIGHUP, lambda signum, frame: server.handle_exit(
            signal.SIGTERM, frame))
    with sock:
        if config.should_reload:
            reloader = ChangeReload(config, target=reload_target(server, project),
                                    sockets=[sock])
            reloader.run()
        else:
            server.run(sockets=[sock])
    if config.should_reload:  # the last server process's status: was its stop clean?
        if reloader.process.exitcode == EXIT_UNCLEAN:
            raise SystemExit(EXIT_UNCLEAN)
        return
    if not server.started:
        raise SystemExit(3)  # uvicorn's status for a failed start-up; it logged why
    from uvicorn.importer import import_from_string

    if stop_problems(import_from_string(APP)):  # each was logged as it happened
        raise SystemExit(EXIT_UNCLEAN)


def gunicorn_options(settings: FlyerSettings, project: Path) -> dict[str, Any]:
    """gunicorn's settings for ``settings`` (see the module docstring)."""
    return {
        "bind": [f"{settings.host}:{settings.port}"],
        "workers": settings.workers or usable_cpus(),
        "worker_class": "fastflyer.worker.FlyerWorker",
        # gunicorn takes whole seconds
        "timeout": math.ceil(settings.timeout),
        # SIGTERM to SIGKILL: the drain, the stop hooks, the exit; a worker ends itself
        # before (fastflyer.server), so a kill means something held it.
        "graceful_timeout": math.ceil(settings.stop_budget) + 1,
        "keepalive": math.ceil(settings.keepalive),
        "max_requests": settings.max_requests if settings.enable_max_requests else 0,
        "max_requests_jitter": settings.max_requests_jitter if settings.enable_max_requests else 0,
        "chdir": str(project),
        "accesslog": None,
        "errorlog": "-",
        "loglevel": _log_level(settings),
        "logger_class": "fastflyer.serverlog.GunicornLogger",  # lines through fastkit.logging
        "proc_name": f"fastflyer:{project.name}",
        "preload_app": False,
        # gunicorn ≥ 23 opens a control socket under $HOME: nothing outside the project
        "control_socket_disable": True,
    }


def _clean_end(ended: Any) -> bool:
    """Whether a worker that ended while the server stopped (``os.waitid``'s answer) ended
    cleanly: status 0, or killed by the master's own SIGTERM, which a worker meets with
    no handler only where it holds nothing (still booting, or already exiting after a
    recycling: its requests done, the interpreter finalizing)."""
    if ended.si_code == os.CLD_EXITED:
        return bool(ended.si_status == 0)
    return bool(ended.si_code == os.CLD_KILLED and ended.si_status == signal.SIGTERM)


def serve(settings: FlyerSettings, project: Path, sock: socket.socket | None = None) -> None:
    """Serve ``project`` with gunicorn and uvicorn workers; returns when gunicorn stops.

    ``sock``: a socket from :func:`listen` (default: one for ``settings.host``/``port``),
    handed to gunicorn as ``fd://N``.
    """
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter
    from gunicorn.errors import HaltServer

    from fastflyer.server import EXIT_UNCLEAN, REPLACED_VARIABLE, mark_replaced

    if sock is None:
        sock = listen(settings.host, settings.port)
    options = gunicorn_options(settings, project)
    # gunicorn takes the descriptor over (and closes it): this object lets it go.
    options["bind"] = [f"fd://{sock.detach()}"]

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

        def run(self) -> None:
            _StopReportingArbiter(self).run()

    class _StopReportingArbiter(Arbiter):  # type: ignore[misc]
        """gunicorn's master, exiting with EXIT_UNCLEAN after a stop that was not clean:
        a worker that ended otherwise than with status 0 while stopping (it said why), or
        one still alive when the stop budget ran out (killed)."""

        unclean = False
        stopping = False

        def handle_int(self) -> None:
            # Ctrl-C stops as SIGTERM does, draining (gunicorn's own is a quick stop);
            # a second one, while stopping, is the quick stop.
            raise StopIteration

        def stop(self, graceful: bool = True) -> None:
            self.stopping = True
            super().stop(graceful)

        def reap_workers(self) -> None:
            if self.stopping:  # peek (WNOWAIT) at how each ended; gunicorn reaps them
                for pid in list(self.WORKERS):
                    try:
                        ended = os.waitid(os.P_PID, pid,
                                          os.WEXITED | os.WNOHANG | os.WNOWAIT)
                    except ChildProcessError:
                        continue
                    if ended is not None and not _clean_end(ended):
                        self.unclean = True
            try:
                super().reap_workers()
            except HaltServer:
                # Another worker that could not boot, met while stopping for the first
                # (gunicorn raises again from inside its own halt): the stop goes on,
                # with the first one's reason and status.
                if not self.stopping:
                    raise

        def kill_worker(self, pid: int, sig: int) -> None:
            if sig == signal.SIGTERM and not self.stopping:
                # One worker stopped while the server goes on (a reload, fewer workers):
                # it leaves the instance listed for the others (fastflyer.server).
                mark_replaced(pid)
            super().kill_worker(pid, sig)

        def kill_workers(self, sig: int) -> None:
            if sig == signal.SIGKILL and self.WORKERS:
                self.log.error("%d worker(s) still running %d s after the stop signal: "
                               "killed", len(self.WORKERS), self.cfg.graceful_timeout)
                self.unclean = True
            super().kill_workers(sig)

        def halt(self, reason: str | None = None, exit_status: int = 0) -> None:
            try:
                super().halt(reason, exit_status)
            except SystemExit as exc:
                if exc.code in (0, None) and self.unclean:
                    self.log.error("the stop was not clean (see above)")
                    raise SystemExit(EXIT_UNCLEAN) from None
                raise

    replaced_dir = tempfile.mkdtemp(prefix="fastflyer-replaced-")
    os.environ[REPLACED_VARIABLE] = replaced_dir  # the workers inherit it
    master = os.getpid()
    try:
        with multiprocess_metrics(settings) as metrics_dir:
            if metrics_dir is not None:  # a worker's live gauges go with it
                options["child_exit"] = _worker_exited
            Application().run()
    finally:
        # A worker (forked in there) ends by SystemExit through these frames too: only the
        # master removes what the workers share.
        if os.getpid() == master:
            os.environ.pop(REPLACED_VARIABLE, None)
            shutil.rmtree(replaced_dir, ignore_errors=True)


def _worker_exited(arbiter: Any, worker: Any) -> None:
    """gunicorn's ``child_exit`` hook (in the master): drop the live gauge values of the
    worker that exited; its counters and histograms stay in the directory, counted."""
    from fastkit.metrics import mark_process_dead

    mark_process_dead(worker.pid)


@contextlib.contextmanager
def multiprocess_metrics(settings: FlyerSettings) -> Iterator[str | None]:
    """prometheus-client's multiprocess mode for the workers ``fastflyer serve`` starts
    while the block runs: each writes its metrics to files in one directory, which any
    worker's ``/metrics`` sums (:func:`fastkit.metrics.exposition`), those of the workers
    gone (recycled, restarted) included.

    Yields the directory, ``PROMETHEUS_MULTIPROC_DIR`` in ``os.environ`` (so that the
    workers inherit it; nothing in this process may have imported ``prometheus_client``
    before): one made here (``tempfile.mkdtemp``) and removed with the variable after the
    block, or the caller's own when the variable is set already (created if missing, never
    removed; prometheus-client asks that it be emptied between runs). Yields ``None``, doing
    nothing, with ``flyer_metrics_enabled=0``. Raises
    :class:`~fastflyer.settings.SettingsError` when the caller's directory cannot be made.
    """
    if not settings.metrics_enabled:
        yield None
        return
    from fastkit.metrics import MULTIPROC_DIR_ENV

    if "prometheus_client" in sys.modules:  # its values were made for one process already
        logging.getLogger("gunicorn.error").warning(
            "prometheus_client was imported before the server set %s: each worker may "
            "serve only its own figures", MULTIPROC_DIR_ENV)
    given = os.environ.get(MULTIPROC_DIR_ENV)
    if given:
        from fastkit.metrics import MetricsConfigError, check_multiprocess_directory

        try:
            check_multiprocess_directory()  # made if missing; a file or read-only: refused
        except MetricsConfigError as exc:
            raise SettingsError([str(exc)]) from None
        yield given
        return
    directory = tempfile.mkdtemp(prefix="fastflyer-metrics-")
    os.environ[MULTIPROC_DIR_ENV] = directory
    maker = os.getpid()
    try:
        yield directory
    finally:
        if os.getpid() == maker:  # not a process forked in the block, on its way out
            os.environ.pop(MULTIPROC_DIR_ENV, None)
            shutil.rmtree(directory, ignore_errors=True)
