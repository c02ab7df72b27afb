"""The servers' log records (gunicorn's and uvicorn's), written by the framework's logger.

gunicorn and uvicorn log through the standard library's :mod:`logging`, each in its own
format; the framework logs through loguru (:mod:`fastkit.logging`). Routed here, their
records become loguru lines like any other: one format, the console and file levels of the
``flyer_*`` variables, the request id bound when the record was made (``-`` outside a
request), and the standard logger's name in place of the module's::

    2026-11-30 17:05:12.946 | INFO     | - | gunicorn.error:spawn_worker:748 - Booting worker ...

- :class:`InterceptHandler`: a :class:`logging.Handler` handing each record to loguru
  (loguru's documented recipe for standard logging).
- :class:`GunicornLogger`: gunicorn's ``logger_class``; its error log goes to the handler,
  and so does uvicorn's in the workers (``uvicorn_worker`` gives ``uvicorn.error`` the
  error log's handlers). gunicorn's access log stays off (the app writes its own).
- :func:`uvicorn_log_config`: uvicorn's ``log_config`` for ``fastflyer run``.

Messages pass through :func:`fastkit.logging.redact.redact_text` (URLs' passwords and
secret query values, secret headers and ``name=value`` pairs masked), as the framework's own
lines do. Nothing here configures anything when imported: the launcher installs it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gunicorn import glogging

from fastkit.logging import logger
from fastkit.logging.redact import redact_text

if TYPE_CHECKING:
    from loguru import Record

__all__ = ["GunicornLogger", "InterceptHandler", "uvicorn_log_config"]

# Frames of these files are logging machinery, not the caller a line names: the standard
# library's logging and gunicorn's logger (``self.log.info(...)`` wraps ``error_log.info``).
_MACHINERY = frozenset({logging.__file__, glogging.__file__})
def _named(name: str) -> Callable[[Record], None]:
    def patch(record: Record) -> None:
        record["name"] = name

    return patch


class InterceptHandler(logging.Handler):
    """A standard-library handler writing each record through the framework's logger.

    The level is loguru's of the same name (else the number), the exception and stack
    of the record go with it, the location (``function:line``) is the caller's, found as
    loguru's recipe finds it (the first frame outside logging), and the name shown is the
    standard logger's (``gunicorn.error``, ``uvicorn.error``). The request id is the one
    bound where the record was made: the framework's patcher reads it from its context
    variable, which a record emitted in that context (the standard library emits
    synchronously) shares.
    """

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record`` as a loguru line; a failure goes to ``handleError``."""
        try:
            level: str | int
            try:
                level = logger.level(record.levelname).name
            except ValueError:
                level = record.levelno
            message = record.getMessage()
            if record.stack_info:
                message = f"{message}\n{record.stack_info}"
            # The caller: the first frame, past this one, outside logging machinery.
            frame, depth = inspect.currentframe(), 0
            while frame is not None:
                filename = frame.f_code.co_filename
                frozen = "importlib" in filename and "_bootstrap" in filename
                if depth > 0 and not (filename in _MACHINERY or frozen):
                    break
                frame = frame.f_back
                depth += 1
            logger.patch(_named(record.name)).opt(
                depth=depth, exception=record.exc_info,
            ).log(level, redact_text(message))
        except Exception:
            self.handleError(record)


class GunicornLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's logger (its ``logger_class`` setting) with the error log routed to
    :class:`InterceptHandler`: what gunicorn would write to the console or the
    ``errorlog`` file, the framework's logger writes (console and log files). The level
    stays gunicorn's ``loglevel``; ``accesslog`` is left as set (the framework's is
    ``None``: off); syslog and ``logconfig*`` settings keep working."""

    def setup(self, cfg: Any) -> None:
        """gunicorn's setup (run at start and on each ``HUP`` reload), then the error
        log's console or file handler replaced by the intercept handler."""
        super().setup(cfg)
        for handler in list(self.error_log.handlers):
            # gunicorn's own console or file handler (it marks its handlers, and removes
            # the marked ones, the previous intercept handler too, when it sets up again)
            if getattr(handler, "_gunicorn", False) and isinstance(handler, logging.StreamHandler):
                self.error_log.removeHandler(handler)
        handler = InterceptHandler()
        handler._gunicorn = True  # type: ignore[attr-defined]  # dropped on re-setup
        self.error_log.addHandler(handler)


def uvicorn_log_config(level: str = "INFO") -> dict[str, Any]:
    """uvicorn's ``log_config`` (a :func:`logging.config.dictConfig` dictionary): the
    ``uvicorn`` loggers (``uvicorn.error``, ``uvicorn.asgi``) write through
    :class:`InterceptHandler` at ``level`` (a standard level name, any case; uvicorn's
    ``log_level`` then sets ``uvicorn.error``'s own), ``uvicorn.access`` writes nothing.
    Other loggers are left as they are. The handler is named by its import path, so the
    dictionary survives the reloader's process spawn."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"framework": {"()": f"{__name__}.{InterceptHandler.__name__}"}},
        "loggers": {
            "uvicorn": {"handlers": ["framework"], "level": level.upper(),
                        "propagate": False},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }
