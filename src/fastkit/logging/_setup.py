"""FastKit's logger, and the one function that configures loguru for an application.

Importing or using FastKit configures nothing: :data:`logger` is loguru's own logger
(same sinks, same levels) with a patcher of its own, attached by ``logger.patch`` to the
lines FastKit logs and to no one else's. So a library user's sinks, formats and patcher
are left as they are, and FastKit's lines reach them; with loguru untouched they print on
stderr in loguru's format. The patcher folds the exception's traceback into the message
and masks the message's secrets (:func:`fastkit.logging.redact.redact_text`), and adds
``extra["request_id"]``; while tracing is on (:mod:`fastkit.tracing`), it adds
``extra["trace_id"]`` and ``extra["span_id"]`` to each line logged inside a span (32 and 16
hex digits, as ``traceparent`` writes them), and nothing to the others. JSON lines carry
them as fields; the default text format (:data:`TEXT_FORMAT`) shows them after the request
id, ``- -`` on a line outside any span while tracing is on, and no column while it is off.

:func:`configure` (and :func:`get_logger`, which calls it) is the one function that
changes loguru's global state, and only when called: FastFlyer calls it when it builds an
app and when its command starts. It replaces loguru's default stderr sink by FastKit's
console sink, sets the same patcher on every line (the application's too, so the lines the
framework writes and the application's alike are redacted and carry the request id), and
adds rotating files, opened when the first line is logged: their directory is
``log_path`` when set and writable, else ``./logs``, else a directory under the system
temp dir, so a non-root process never crashes for want of a log directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from loguru import logger as _loguru

from fastkit import tracing as _tracing
from fastkit.exceptions import FastKitError
from fastkit.logging._files import add_file_sink, check_file_options
from fastkit.logging._ship import NO_SHIP, PROTOCOLS, LogShipper
from fastkit.logging.redact import MASK, is_secret_key, redact_text
from fastkit.request_id import get_request_id

if TYPE_CHECKING:
    from loguru import Logger, Record, RecordException

__all__ = ["LogConfigError", "LogSettings", "active_shipper", "configure", "get_logger",
           "log_settings_from_env", "logger", "parse_flag", "parse_level"]

TEXT_FORMAT = (
    "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {extra[request_id]} | "
    "{name}:{function}:{line} - {message}"
)
# What the sinks given TEXT_FORMAT write (see _text_format): with the trace columns on the
# lines that have them, "- -" on the others while tracing is on.
_TRACED = TEXT_FORMAT.replace(
    "{extra[request_id]} | ", "{extra[request_id]} | {extra[trace_id]} {extra[span_id]} | "
) + "\n{exception}"
_UNTRACED = TEXT_FORMAT.replace("{extra[request_id]} | ", "{extra[request_id]} | - - | ") \
    + "\n{exception}"
_PLAIN = TEXT_FORMAT + "\n{exception}"

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
_FALSE = {"0", "false", "no", "off"}
# Set on a record once patched: the global patcher (after configure) and the logger's own
# both see FastKit's lines, which are masked once. Loguru shows a record's known fields only.
_PATCHED = "fastkit_patched"


class LogConfigError(FastKitError, ValueError):
    """A log setting that cannot work: the message names the variable or argument."""


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
    #: Log shipping over syslog (:class:`fastkit.logging.LogShipper`), off by default:
    #: ``ship_proto`` "udp", "tcp" or "dev" (standard error only), the collector at
    #: ``ship_host``:``ship_port``, APP-NAME ``ship_topic``, HOSTNAME ``ship_my_ip``
    #: (None: the address of the default route). Lines at ``console_level`` are shipped.
    ship_enabled: bool = False
    ship_proto: str = "udp"
    ship_host: str | None = None
    ship_port: int = 514
    ship_topic: str = "fastkit"
    ship_my_ip: str | None = None


def parse_level(value: str, variable: str) -> str:
    """Map ``debug/info/warn/error/critical`` (also trace, success, warning; any case) to a
    loguru level name.

    Raises :class:`LogConfigError` (a ``ValueError``) naming ``variable`` and ``value``.
    The one parser of a level: ``flyer_console_log_level`` and ``flyer_file_log_level``
    are read with it here and by FastFlyer's settings.
    """
    level = _LEVELS.get(str(value).strip().lower())
    if level is None:
        allowed = "debug, info, warn, error, critical"
        raise LogConfigError(f"{variable}={value!r} is not a log level; use one of {allowed}")
    return level


def parse_flag(value: str, variable: str) -> bool:
    """Map ``1/0`` (also true/false, yes/no, on/off; any case) to a bool.

    Raises :class:`LogConfigError` (a ``ValueError``) naming ``variable`` and ``value``.
    """
    lowered = str(value).strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise LogConfigError(f"{variable}={value!r} is not a switch; use 1 or 0")


def log_settings_from_env(
    environ: Mapping[str, str] | None = None,
) -> LogSettings:
    """Read ``flyer_console_log_level``, ``flyer_file_log_level``, ``flyer_log_path``,
    ``flyer_log_to_file`` and ``flyer_log_json``.

    These are FastKit's documented defaults, read here only (FastFlyer reads the same
    variables into its settings with the same parsers). A variable set to the empty string
    counts as unset. A bad value raises :class:`LogConfigError` naming the variable.
    """
    env = os.environ if environ is None else environ

    def read(parse: Callable[[str, str], Any], variable: str, default: str) -> Any:
        return parse(env.get(variable) or default, variable)

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
    shipper: LogShipper | None = None
    exit_hook = False
    placeholder_id: int | None = None
    log_dir: str | None = None


def _discard(_message: object) -> None:
    return None


def _patch(record: Record) -> None:
    # Secrets never reach a sink: the exception, which loguru would format in each sink
    # (and serialize with its message for JSON), is formatted here once, as Python prints
    # it (no local variables), into the message; the message is then redacted.
    if _PATCHED in record:
        return
    record[_PATCHED] = True  # type: ignore[literal-required]
    exception = record["exception"]
    if exception is not None:
        record["message"] = _with_traceback(record["message"], exception)
        record["exception"] = None
    original = record["message"]
    record["message"] = masked = redact_text(original)
    extra = record["extra"]
    # bind(...), and the keywords of a formatted message (loguru keeps them there), shown
    # by serializing sinks: masked under a secret's name, or when masked in the message
    for key, value in extra.items():
        if isinstance(value, str):
            hidden = masked is not original and value and value in original \
                and value not in masked
            extra[key] = MASK if hidden or is_secret_key(key) else redact_text(value)
    if "request_id" not in extra:
        extra["request_id"] = get_request_id() or "-"
    if "trace_id" not in extra:
        ids = _tracing.current_ids()  # None while tracing is off, or outside any span
        if ids is not None:
            extra["trace_id"], extra["span_id"] = ids
    if _State.pending_files is not None:
        _open_files()


class _FastKitLogger(type(_loguru)):  # type: ignore[misc]
    """Loguru's logger with the seed's ``warn``; what ``bind``/``opt``/``patch`` return
    keeps it. (The instance is a copy of one from loguru's public ``patch``: loguru's
    class itself is left unchanged.)"""

    #: ``warning`` under the seed's name: loguru's own method, so what ``opt`` gave
    #: (``depth``, ``exception``, ``lazy``, ``colors``...) holds and the line is the caller's.
    warn = type(_loguru).warning

    def bind(self, /, **kwargs: Any) -> Logger:
        return _adopt(super().bind(**kwargs))

    def opt(self, *args: Any, **kwargs: Any) -> Logger:
        return _adopt(super().opt(*args, **kwargs))

    def patch(self, patcher: Callable[[Record], None]) -> Logger:
        return _adopt(super().patch(patcher))


def _adopt(instance: Logger) -> Logger:
    instance.__class__ = _FastKitLogger
    return instance


logger: Logger = _adopt(_loguru.patch(_patch))
"""Loguru's logger for FastKit's lines: masked, with the request id, and ``warn``."""


def _text_format(record: Record) -> str:
    """:data:`TEXT_FORMAT` for one record: with its trace and span ids when it has them,
    ``- -`` in their place while tracing is on (a line outside any span)."""
    extra = record["extra"]
    if "trace_id" in extra and "span_id" in extra:
        return _TRACED
    return _UNTRACED if _tracing.enabled() else _PLAIN


# A field of the trace ids in a format (``{extra[trace_id]}``, with a conversion or spec).
_TRACE_FIELD = re.compile(r"\{extra\[(?:trace_id|span_id)\](?:![rsa])?(?::[^{}]*)?\}")


def _sink_format(log_format: str) -> str | Callable[[Record], str]:
    """The format a sink is given for ``log_format``: :func:`_text_format` for the default
    text format; a format of the application's that names ``{extra[trace_id]}`` or
    ``{extra[span_id]}``, a function writing ``-`` in their place on a line without them
    (tracing off, or outside any span: loguru would fail on the missing key and drop the
    line); any other as it is."""
    if log_format == TEXT_FORMAT:
        return _text_format
    untraced = _TRACE_FIELD.sub("-", log_format)
    if untraced == log_format:
        return log_format
    traced, untraced = f"{log_format}\n{{exception}}", f"{untraced}\n{{exception}}"

    def trace_format(record: Record) -> str:
        extra = record["extra"]
        return traced if "trace_id" in extra and "span_id" in extra else untraced

    return trace_format


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
            _loguru.remove(_State.placeholder_id)
            _State.handler_ids.remove(_State.placeholder_id)
            _State.placeholder_id = None
        # Called by the line being logged, which must not fail for want of a file: a
        # problem turns file logging off, said once on stderr.
        try:
            directory, problem = _writable_dir(settings.log_path)
            base = os.path.join(directory, settings.name)
            for path, level in ((f"{base}.log", settings.file_level),
                                (f"{base}.error.log", "ERROR")):
                # tracebacks without local variables (they may hold secrets); one lock file
                # per log: the processes of a server share and rotate these files
                _State.handler_ids.append(add_file_sink(
                    path, level=level, format=_sink_format(settings.log_format),
                    serialize=settings.json,
                    rotation=settings.rotation, retention=settings.retention, encoding="utf-8",
                ))
        except (OSError, ValueError) as exc:
            sys.stderr.write(f"fastkit.logging: file logging off: {exc}\n")
            return
        _State.log_dir = directory
    if problem:
        logger.warning("log files written to {} ({})", directory, problem)


def configure(settings: LogSettings) -> None:
    """Configure loguru for an application: FastKit's console sink now, its files at the
    first logged line, and FastKit's patcher on every line.

    Replaces loguru's default stderr sink (handler 0) and the sinks an earlier call added;
    sinks the application added itself stay. ``settings``: see :class:`LogSettings`
    (levels are loguru level names, as :func:`parse_level` returns them). Called again,
    it replaces what it set before.

    With ``ship_enabled``, lines at ``console_level`` are also shipped to a syslog
    collector by a :class:`~fastkit.logging.LogShipper` (started here, stopped by the next
    call, within 1 s, and at interpreter exit, within 2 s); :func:`active_shipper` returns
    it, for the access log.

    Raises :class:`LogConfigError` naming the field (``console_level``, ``file_level``,
    ``name``, ``log_path``, ``rotation``, ``retention``, ``ship_*``...) when one cannot work, before
    loguru is changed: the logging set up before stays as it was.
    """
    settings = _checked(settings)
    with _State.lock:
        with contextlib.suppress(ValueError):
            _loguru.remove(0)  # loguru's own stderr sink: ours replaces it
        for handler_id in _State.handler_ids:
            _loguru.remove(handler_id)
        _State.handler_ids.clear()
        # closed once the lock is released: its sender may log (a note the patcher sees)
        previous, _State.shipper = _State.shipper, None
        _State.placeholder_id = None
        _State.log_dir = None
        _loguru.configure(patcher=_patch)
        _State.handler_ids.append(
            _loguru.add(sys.stderr, level=settings.console_level,
                        format=_sink_format(settings.log_format), serialize=settings.json,
                        colorize=None if not settings.json else False,
                        diagnose=False, backtrace=False)
        )
        _State.pending_files = None
        if settings.to_file:
            # Until the files open, a no-op sink at the file level keeps loguru from
            # dropping records the console would not show (the patcher must see one).
            _State.pending_files = settings
            _State.placeholder_id = _loguru.add(_discard, level=settings.file_level,
                                                format="{message}")
            _State.handler_ids.append(_State.placeholder_id)
        if settings.ship_enabled:
            _add_shipper(settings)
    if previous is not None:
        previous.close(1.0)


def _add_shipper(settings: LogSettings) -> None:
    """Start the shipper ``settings`` describe and add its sink (lock held)."""
    from fastkit.utils.net import routable_host

    shipper = LogShipper(settings.ship_host, settings.ship_port, settings.ship_proto,
                         app_name=settings.ship_topic,
                         hostname=settings.ship_my_ip or routable_host())
    shipper.start()
    _State.shipper = shipper
    _State.handler_ids.append(_loguru.add(
        shipper.sink, level=settings.console_level, format="{message}", diagnose=False,
        backtrace=False, filter=lambda record: not record["extra"].get(NO_SHIP)))
    if not _State.exit_hook:
        import atexit

        atexit.register(_close_shipper)  # send what is queued before the process ends
        _State.exit_hook = True


def _close_shipper(timeout: float = 2.0) -> None:
    """Stop the shipper :func:`configure` started, sending what it holds for up to
    ``timeout`` seconds."""
    shipper, _State.shipper = _State.shipper, None
    if shipper is not None:
        shipper.close(timeout)


def active_shipper() -> LogShipper | None:
    """The shipper :func:`configure` started (``ship_enabled``), else None: the access
    log hands it its lines."""
    return _State.shipper


def _checked_level(value: object, field: str) -> str:
    """A level of FastKit's names (:func:`parse_level`) or one loguru knows (a custom level
    the application added, by its exact name)."""
    if isinstance(value, str) and value:
        with contextlib.suppress(ValueError):
            _loguru.level(value)  # a level loguru has: its name, as loguru spells it
            return value
    return parse_level(str(value), field)


def _checked(settings: LogSettings) -> LogSettings:
    """``settings`` with its levels as loguru names them; :class:`LogConfigError` naming
    the field whose value cannot work."""
    name, path = settings.name, settings.log_path
    if (not isinstance(name, str) or name in ("", ".", "..") or "\0" in name
            or os.sep in name or (os.altsep and os.altsep in name)):
        raise LogConfigError(f"name={name!r} is not a file name (the logs are <name>.log)")
    if path is not None and not isinstance(path, str | os.PathLike):
        raise LogConfigError(f"log_path={path!r} is not a directory path")
    path = os.fspath(path) if path is not None else None
    if path is not None and (not isinstance(path, str) or "\0" in path):
        raise LogConfigError(f"log_path={path!r} is not a directory path")
    for field in ("to_file", "json"):
        if not isinstance(getattr(settings, field), bool):
            raise LogConfigError(f"{field}={getattr(settings, field)!r} is not a bool")
    if not isinstance(settings.log_format, str):
        raise LogConfigError(f"log_format={settings.log_format!r} is not a format string")
    try:
        check_file_options(settings.rotation, settings.retention)
    except ValueError as exc:
        raise LogConfigError(str(exc)) from None
    _check_ship(settings)
    return replace(settings, log_path=path or None,
                   console_level=_checked_level(settings.console_level, "console_level"),
                   file_level=_checked_level(settings.file_level, "file_level"))


def _check_ship(settings: LogSettings) -> None:
    """:class:`LogConfigError` naming the ``ship_*`` field that cannot work."""
    if not isinstance(settings.ship_enabled, bool):
        raise LogConfigError(f"ship_enabled={settings.ship_enabled!r} is not a bool")
    if settings.ship_proto not in PROTOCOLS:
        raise LogConfigError(f"ship_proto={settings.ship_proto!r} is not one of "
                             f"{', '.join(PROTOCOLS)}")
    port = settings.ship_port
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise LogConfigError(f"ship_port={port!r} is not between 1 and 65535")
    if settings.ship_enabled and settings.ship_proto != "dev" and not settings.ship_host:
        raise LogConfigError(f"ship_enabled with ship_proto={settings.ship_proto} needs "
                             "ship_host, the collector's address")
    for field in ("ship_topic", "ship_my_ip"):
        value = getattr(settings, field)
        if value is not None and not isinstance(value, str):
            raise LogConfigError(f"{field}={value!r} is not a string")


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
    out come from the ``flyer_*`` environment variables (:func:`log_settings_from_env`).
    Configures loguru as :func:`configure` does.

    Raises :class:`LogConfigError` (a ``ValueError``) for a bad level or variable.
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
    configure(settings)  # checks it all, here rather than at the first logged line
    return logger
