"""The reloader's child: serve the project's app, or answer 503 saying why it cannot load.

Under ``fastflyer run`` with ``flyer_reload=1``, uvicorn's reloader (``ChangeReload``) holds
the listening socket and runs the server in a child process that it starts again on every
change. uvicorn's own child exits when ``main:app`` fails to import (a syntax error saved, an
exception raised at import, ``main.py`` without ``app``) or its start-up fails (a start hook,
the app's own lifespan), and the socket, still listening in
the reloader, queues connections nobody answers until the next change. The target from
:func:`reload_target` does not leave them hanging: when the app cannot load it logs the full
traceback (once) and serves, on the same sockets with the same options but no lifespan, an
app that answers every HTTP request with

    HTTP 503  {"code": 503,
               "message": "the app cannot load: SyntaxError: invalid syntax
                           (app/items/router.py, line 3)",       <- one line in the body
               "data": {"error": "SyntaxError", "file": "app/items/router.py", "line": 3}}

(``X-Request-ID`` and the other headers of every answer included; no traceback, paths relative
to the project) and closes every websocket. Saving a fix restarts the child as any change
does, and the real app answers again. Both run on the reloader's own server object
(``fastflyer.launch.run``'s), so SIGTERM and SIGINT stop the fallback as they stop the app.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from uvicorn import Server
from uvicorn.importer import import_from_string

from fastflyer.errors import ErrorRenderer
from fastflyer.middleware.context import RequestContextMiddleware
from fastflyer.server import EXIT_UNCLEAN, FlyerServer, stop_problems

__all__ = ["LoadError", "LoadErrorApp", "describe_load_error", "reload_target", "serve_child"]

_MAX_MESSAGE = 500  # characters of an exception's message shown to clients

logger = logging.getLogger("uvicorn.error")


@dataclass(frozen=True)
class LoadError:
    """Why the app cannot load, as a client may read it: no traceback, no absolute path.

    ``error``: the exception's class name; ``message``: its message on one line;
    ``file``/``line``: where it happened (the file relative to the project), when known.
    """

    error: str
    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f" ({self.file}, line {self.line})" if self.file and self.line else \
            f" ({self.file})" if self.file else ""
        return f"{self.error}: {self.message}{where}" if self.message else f"{self.error}{where}"


def _root_cause(exc: BaseException) -> BaseException:
    """The exception at the end of the ``raise ... from`` chain (the app's own error)."""
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


def _relative(filename: str, project: Path) -> str | None:
    """``filename`` relative to ``project`` (POSIX form); its bare name when outside it."""
    if not filename or filename.startswith("<"):  # <frozen ...>, <string>
        return None
    path = Path(filename)
    try:
        return path.resolve().relative_to(project.resolve()).as_posix()
    except (ValueError, OSError):
        return path.name


def describe_load_error(exc: BaseException, project: Path) -> LoadError:
    """``exc``, raised loading the app of ``project`` (a directory), told in one line.

    The root of its ``raise ... from`` chain is told (an app's ``SyntaxError`` rather than
    the framework's error wrapping it), with the file and line: a ``SyntaxError``'s own, else
    the innermost frame of the traceback inside ``project``. Paths inside the message are
    made relative to ``project``; a message is cut at 500 characters.
    """
    root = _root_cause(exc)
    file: str | None = None
    line: int | None = None
    if isinstance(root, SyntaxError):
        message = str(root.msg or "")
        if root.filename:
            file, line = _relative(root.filename, project), root.lineno
    else:
        lines = getattr(root, "lines", None)  # a SettingsError: one line per bad value
        message = "; ".join(lines) if isinstance(lines, list) else str(root)
        inside = str(project.resolve())
        for frame in reversed(traceback.extract_tb(root.__traceback__)):
            if frame.filename.startswith(inside + os.sep):
                file, line = _relative(frame.filename, project), frame.lineno
                break
    for prefix in {str(project.resolve()), str(project)}:
        message = message.replace(prefix + os.sep, "")
    message = " ".join(message.split())  # one line
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE - 3] + "..."
    return LoadError(type(root).__name__, message, file, line)


class LoadErrorApp:
    """ASGI app answering every HTTP request 503 with ``error`` in the envelope.

    Websockets are closed (the handshake is refused); the lifespan is a no-op.
    """

    def __init__(self, error: LoadError) -> None:
        self.error = error
        self.body = json.dumps(
            {"code": 503, "message": f"the app cannot load: {error}",
             "data": {"error": error.error, "file": error.file, "line": error.line}},
            ensure_ascii=False, separators=(",", ":")).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            response = Response(self.body, status_code=503, media_type="application/json")
            await response(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1011})
        # no "lifespan": the server runs this app with lifespan="off"


def serve_child(server: Server, project: Path,
                sockets: list[socket.socket] | None = None) -> None:
    """Load ``server.config.app`` and run ``server`` on ``sockets`` (``Server.run``); if the
    app cannot load, log the traceback and run ``server`` with :class:`LoadErrorApp` instead.

    ``server``: the reloader's (its config not yet loaded; any ``uvicorn.Server``, its
    subclass's stop handling kept); ``project``: the directory paths in the answer are
    relative to. Returns when the server stops (SIGTERM, SIGINT).
    """
    config = server.config
    if isinstance(server, FlyerServer):
        server.handle_signals_outside_serving()  # so that the status below is the exit's
    try:
        # uvicorn's Config.load logs a failed import string and calls sys.exit(1); a
        # SyntaxError or an error raised at import it lets through: all are caught here.
        app = import_from_string(config.app)
        config.load()
    except (Exception, SystemExit) as exc:
        if server.should_exit:  # the reloader stopped this process while the app loaded
            raise
        error = describe_load_error(exc, project)
        logger.error("the app cannot load: %s; every request answers 503 until a saved "
                     "change reloads it", error, exc_info=exc)
        _serve_load_error(server, error, sockets)
        return
    try:
        server.run(sockets=sockets)
        if stop_problems(app):  # logged as they happened; the reloader passes the status on
            sys.exit(EXIT_UNCLEAN)
    except SystemExit:
        if server.started or server.should_exit:
            raise
        # The app loaded but its start-up failed (uvicorn logged why and exits with 3):
        # answer 503 naming that error too, rather than leave requests hanging.
        cause = getattr(getattr(app, "lifecycle", None), "start_error", None)
        error = (describe_load_error(cause, project) if cause is not None
                 else LoadError("StartupError", "the app's start-up failed (see the log)"))
        logger.error("the app cannot load: %s (its start-up failed); every request "
                     "answers 503 until a saved change reloads it", error)
        server.should_exit = server.force_exit = False
        _serve_load_error(server, error, sockets)


def _serve_load_error(server: Server, error: LoadError,
                      sockets: list[socket.socket] | None) -> None:
    config = server.config
    config.app = RequestContextMiddleware(LoadErrorApp(error), renderer=ErrorRenderer())
    config.lifespan = "off"
    config.loaded = False  # loaded once already when the app's start-up failed
    config.load()  # uvicorn's way with an app object: no import, the same options
    server.run(sockets=sockets)


def reload_target(server: Server, project: Path) -> Callable[..., None]:
    """The target for uvicorn's reloader: ``target(sockets=...)`` runs :func:`serve_child`
    with ``server`` in the reloader's child process (picklable, as a spawned child needs).
    """
    return functools.partial(serve_child, server, project)
