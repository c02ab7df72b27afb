"""Loguru configuration: a console sink and rotating files, levels from ``flyer_*`` variables.

Importing configures the console sink only (no file, no thread). The files are
opened when the first line is logged: their directory is ``flyer_log_path`` when
set and writable, else ``./logs``, else a directory under the system temp dir, so
a non-root process never crashes for want of a log directory.

Every record passes one patcher before any sink sees it: it folds the exception's
traceback into the message and masks the message's secrets
(:func:`fastkit.logging.redact.redact_text`), so console, files and JSON lines alike
carry no token, password or cookie, exceptions and tracebacks included.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from loguru import logger
from loguru._logger import Logger as _LoguruLogger

from fastkit.logging.redact import redact_text
from fastkit.request_id import get_request_id

if TYPE_CHECKING:
    from loguru import Logger, Record, RecordException

__all__ = ["LogSettings", "configure", "get_logger", "log_settings_from_env", "logger"]

TEXT_FORMAT = (
    "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {extra[request_id]} | "
    "{name}:{function}:{line} - {message}"
)

_LEVELS = {
    "trace": "TRACE",
    "debug": "DEBUG",
    "info": "INFO",
    "success": "SUCCESS",
    "warn": "WARNING",
    "warning": "WARNING",
    "error": "ERROR",
    "critical": "CRITICAL",
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

# The specification writes ``logger.warn``; loguru spells it ``warning``.
if not hasattr(_LoguruLogger, "warn"):
    _LoguruLogger.warn = _LoguruLogger.warning  # type: ignore[attr-defined]


@dataclass(frozen=True)
class LogSettings:
    """Where and how FastKit logs. Build one with :func:`log_settings_from_env`."""

    name: str = "fastkit"
    console_level: str = "INFO"
    file_level: str = "INFO"
    log_path: str | None = None
    to_file: bool = True
    json: bool = False
    log_format: str = TEXT_FORMAT
    rotation: str | int = "100 MB"
    retention: str | int = 10


def parse_level(value: str, variable: str) -> str:
    """Map ``debug/info/warn/error`` (any case) to a loguru level; name ``variable`` on error."""
    level = _LEVELS.get(value.strip().lower())
    if level is None:
        allowed = "debug, info, warn, error, critical"
        raise ValueError(f"{variable}={value!r} is not a log level; use one of {allowed}")
    return level


def parse_flag(value: str, variable: str) -> bool:
    """Map ``1/0`` (also true/false, yes/no, on/off) to a bool; name ``variable`` on error."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{variable}={value!r} is not a switch; use 1 or 0")


def log_settings_from_env(
    environ: Mapping[str, str] | None = None, *, problems: list[str] | None = None,
) -> LogSettings:
    """Read ``flyer_console_log_level``, ``flyer_file_log_level``, ``flyer_log_path``,
    ``flyer_log_to_file`` and ``flyer_log_json``.

    A bad value raises ``ValueError`` naming the variable; with a ``problems`` list, the
    default is used instead and the message appended to it.
    """
    env = os.environ if environ is None else environ

    def read(parse: Callable[[str, str], Any], variable: str, default: str) -> Any:
        try:
            return parse(env.get(variable, default), variable)
        except ValueError as exc:
            if problems is None:
                raise
            problems.append(f"{exc}; using {default}")
            return parse(default, variable)

    return LogSettings(
        console_level=read(parse_level, "flyer_console_log_level", "info"),
        file_level=read(parse_level, "flyer_file_log_level", "info"),
        log_path=env.get("flyer_log_path") or None,
        to_file=read(parse_flag, "flyer_log_to_file", "1"),
        json=read(parse_flag, "flyer_log_json", "0"),
    )


class _State:
    lock = threading.RLock()
    handler_ids: list[int] = []  # noqa: RUF012 - process-wide state, guarded by ``lock``
    pending_files: LogSettings | None = None
    placeholder_id: int | None = None
    log_dir: str | None = None
    problems: list[str] = []  # noqa: RUF012 - bad variables met at import, told at first line


def _discard(_message: object) -> None:
    return None


def _patch(record: Record) -> None:
    # Secrets never reach a sink: the exception, which loguru would format in each sink
    # (and serialize with its message for JSON), is formatted here once, as Python prints
    # it (no local variables), into the message; the message is then redacted.
    exception = record["exception"]
    if exception is not None:
        record["message"] = _with_traceback(record["message"], exception)
        record["exception"] = None
    record["message"] = redact_text(record["message"])
    extra = record["extra"]
    if "request_id" not in extra:
        extra["request_id"] = get_request_id() or "-"
    if _State.pending_files is not None:
        _open_files()
    if _State.problems:
        with _State.lock:
            problems, _State.problems = _State.problems, []
        for problem in problems:
            logger.warning(problem)


def _with_traceback(message: str, exception: RecordException) -> str:
    """``message``, then the traceback of ``exception`` on the lines below it (or only its
    type and message when it holds no traceback)."""
    type_, value, tb = exception
    if type_ is None:
        return message
    lines = traceback.format_exception(type_, value, tb)
    return f"{message}\n{''.join(lines).rstrip()}"


def _writable_dir(preferred: str | None) -> tuple[str, str | None]:
    """The first usable log directory, and why the preferred one was passed over."""
    first = preferred or os.path.join(os.getcwd(), "logs")
    fallback = os.path.join(tempfile.gettempdir(), f"fastkit-logs-{os.getuid()}")
    problem = None
    for candidate in (first, fallback):
        try:
            os.makedirs(candidate, exist_ok=True)
        except OSError as exc:
            problem = f"cannot create {candidate}: {exc.strerror}"
            continue
        if os.access(candidate, os.W_OK | os.X_OK):
            return candidate, problem
        problem = f"{candidate} is not writable"
    raise OSError(f"no writable log directory: {problem}")


def _open_files() -> None:
    with _State.lock:
        settings = _State.pending_files
        if settings is None:
            return
        _State.pending_files = None
        if _State.placeholder_id is not None:
            logger.remove(_State.placeholder_id)
            _State.handler_ids.remove(_State.placeholder_id)
            _State.placeholder_id = None
        try:
            directory, problem = _writable_dir(settings.log_path)
        except OSError as exc:
            sys.stderr.write(f"fastkit.logging: file logging off: {exc}\n")
            return
        _State.log_dir = directory
        base = os.path.join(directory, settings.name)
        for path, level in ((f"{base}.log", settings.file_level), (f"{base}.error.log", "ERROR")):
            _State.handler_ids.append(logger.add(
                path, level=level, format=settings.log_format, serialize=settings.json,
                rotation=settings.rotation, retention=settings.retention, encoding="utf-8",
                # tracebacks without local variables (they may hold secrets), and from the
                # frame that caught the error down, as Python prints them (loguru's backtrace
                # would add every frame above it, from the thread's bootstrap on)
                diagnose=False, backtrace=False,
            ))
    if problem:
        logger.warning("log files written to {} ({})", directory, problem)


def configure(settings: LogSettings) -> None:
    """Replace FastKit's sinks: console now, files at the first logged line."""
    with _State.lock:
        for handler_id in _State.handler_ids:
            logger.remove(handler_id)
        _State.handler_ids.clear()
        _State.placeholder_id = None
        _State.log_dir = None
        logger.configure(patcher=_patch)
        _State.handler_ids.append(
            logger.add(sys.stderr, level=settings.console_level, format=settings.log_format,
                       serialize=settings.json, colorize=None if not settings.json else False,
                       diagnose=False, backtrace=False)
        )
        _State.pending_files = None
        if settings.to_file:
            # Until the files open, a no-op sink at the file level keeps loguru from
            # dropping records the console would not show (the patcher must see one).
            _State.pending_files = settings
            _State.placeholder_id = logger.add(_discard, level=settings.file_level,
                                               format="{message}")
            _State.handler_ids.append(_State.placeholder_id)


def log_directory() -> str | None:
    """The directory log files are written to, once the first line opened them."""
    return _State.log_dir


def get_logger(
    name: str = "fastkit",
    file_log_level: str | None = None,
    console_log_level: str | None = None,
    log_path: str | None = None,
    log_format: str | None = None,
    *,
    json: bool | None = None,
    to_file: bool | None = None,
    rotation: str | int | None = None,
    retention: str | int | None = None,
) -> Logger:
    """Configure FastKit's sinks and return the logger.

    Files are ``<log_path>/<name>.log`` (from ``file_log_level``) and
    ``<log_path>/<name>.error.log`` (errors only), rotated at ``rotation``
    (default 100 MB) keeping ``retention`` files (default 10). Arguments left
    out come from the ``flyer_*`` environment variables.
    """
    base = log_settings_from_env()
    settings = replace(
        base,
        name=name,
        file_level=parse_level(file_log_level, "file_log_level") if file_log_level
        else base.file_level,
        console_level=parse_level(console_log_level, "console_log_level") if console_log_level
        else base.console_level,
        log_path=log_path or base.log_path,
        log_format=log_format or base.log_format,
        json=base.json if json is None else json,
        to_file=base.to_file if to_file is None else to_file,
        rotation=base.rotation if rotation is None else rotation,
        retention=base.retention if retention is None else retention,
    )
    configure(settings)
    return logger


def _configure_default() -> None:
    """Console now, files at the first line, from the environment.

    Importing never fails: a bad ``flyer_*`` value falls back to its default and is
    reported by the first line logged (and by the framework's settings check, which
    stops start-up).
    """
    with contextlib.suppress(ValueError):
        logger.remove(0)  # loguru's own stderr sink: ours replaces it
    problems: list[str] = []
    configure(log_settings_from_env(problems=problems))
    _State.problems = problems
