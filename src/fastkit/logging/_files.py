"""Log files that several processes write and rotate together.

loguru's own file sink rotates on its process's view of the file: it renames the path,
which another process may already have renamed and recreated, while the others keep
appending to files that have moved or gone, so lines are lost. loguru's documented way
to share a file is ``enqueue=True`` on a sink added in a parent before it starts the
children, which server workers that configure logging after the fork do not follow.
Here each line goes through ``concurrent-log-handler``: under an exclusive lock on a
lock file beside the log (``.__<stem>.lock``), the writer reopens the file if another
process rotated it, rotates it if it is full, and appends the whole line. A process
forked after the sink was added opens the lock file again (locks belong to an open
file), so a server's master and its workers exclude each other too.

Rotated files: by size, ``<name>.log.1`` (the newest) … ``<name>.log.N``; by time,
``<name>.log.<date and time the period began>``. ``retention=N`` keeps N of them.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import sys
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from loguru import logger

# loguru's own parsers, so ``rotation`` reads exactly as loguru reads it; loguru offers
# no public API for them.
from loguru._string_parsers import parse_daytime, parse_duration, parse_frequency, parse_size

if TYPE_CHECKING:
    from loguru import Record

_parse_size: Callable[[str], float | None] = parse_size
_parse_duration: Callable[[str], datetime.timedelta | None] = parse_duration
_parse_frequency: Callable[[str], object] = parse_frequency
_parse_daytime: Callable[[str], tuple[int | None, datetime.time | None] | None] = parse_daytime

__all__ = ["add_file_sink", "check_file_options"]

_ROTATION_FORMS = (
    "a size ('64 KB', '100 MB', '1 GiB') or an int of bytes, an interval ('1 day', "
    "'6 hours'), a time of day ('00:00'), a weekday ('monday', 'w0', 'monday at 12:00'), "
    "'daily' or 'weekly'"
)


class _Message(logging.Formatter):
    """The record's text as loguru formatted it: no prefix, no traceback added."""

    def format(self, record: logging.LogRecord) -> str:
        return str(record.msg)


class _LockedFile:
    """A loguru sink (an object with ``write``) over a process-safe rotating handler."""

    def __init__(self, handler: logging.Handler, path: str, encoding: str) -> None:
        self._handler = handler
        self.name = path  # loguru shows it in the handler's repr
        self.encoding = encoding
        # One record, reused: loguru calls a sink's ``write`` under that sink's own lock,
        # so no two calls overlap, and building a LogRecord per line costs more than the
        # text it carries.
        self._record = logging.makeLogRecord({})
        # A file that cannot be written (a directory in its place, no permission, a full
        # disk): one line on stderr per new reason, instead of a traceback per logged line.
        self._reported: str | None = None
        handler.handleError = self._failed  # type: ignore[method-assign,assignment]

    def _failed(self, _record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        reason = f"{type(error).__name__}: {error}" if error is not None else "unknown error"
        if reason != self._reported:
            self._reported = reason
            with contextlib.suppress(Exception):
                sys.stderr.write(f"fastkit.logging: cannot write {self.name} ({reason}); "
                                 "its lines are lost until it can be written\n")

    def write(self, message: str) -> None:
        # loguru ends every message with "\n" (a JSON line too); the handler adds its own.
        self._record.msg = message[:-1] if message.endswith("\n") else message
        # emit, not handle: no logging filter applies, and the handler takes its own locks
        self._handler.emit(self._record)

    def stop(self) -> None:
        """Called by ``logger.remove``: close the log and the lock file."""
        self._handler.close()


def _retention_count(retention: str | int) -> int:
    if isinstance(retention, int) and not isinstance(retention, bool) and retention >= 1:
        return retention
    raise ValueError(
        f"retention={retention!r}: give the number of rotated files to keep, an int >= 1 "
        "(a duration such as '10 days' is not supported)"
    )


def _bad_rotation(rotation: object, detail: str = "") -> ValueError:
    why = f" ({detail})" if detail else ""
    return ValueError(f"rotation={rotation!r} is not a rotation{why}; use {_ROTATION_FORMS}")


def _handler_for(path: str, rotation: str | int, backups: int,
                 encoding: str) -> Callable[[], logging.Handler]:
    """What builds the handler for ``rotation``, read the way loguru reads it (size,
    interval, frequency, then time of day); ``ValueError`` naming ``rotation`` otherwise.
    Nothing is opened until it is called."""
    # Imported here: importing it registers two classes in logging.handlers.
    from concurrent_log_handler import (
        ConcurrentRotatingFileHandler,
        ConcurrentTimedRotatingFileHandler,
    )

    # a lone surrogate in a message becomes "?" instead of losing the line
    policy = "replace"

    def by_size(max_bytes: float) -> Callable[[], logging.Handler]:
        if max_bytes < 1:
            raise _bad_rotation(rotation, "a size must be at least 1 byte")
        if max_bytes == float("inf"):
            raise _bad_rotation(rotation, "a size must be finite")
        return partial(ConcurrentRotatingFileHandler, path, maxBytes=int(max_bytes),
                       backupCount=backups, encoding=encoding, unicode_error_policy=policy)

    def by_time(when: str, interval: int = 1,
                at: datetime.time | None = None) -> Callable[[], logging.Handler]:
        return partial(ConcurrentTimedRotatingFileHandler, path, when=when, interval=interval,
                       atTime=at, backupCount=backups, encoding=encoding,
                       unicode_error_policy=policy)

    if isinstance(rotation, bool) or not isinstance(rotation, int | str):
        raise _bad_rotation(rotation)
    if isinstance(rotation, int):
        return by_size(rotation)
    try:  # each parser answers None for a form that is not its own
        size = _parse_size(rotation)
        interval = None if size is not None else _parse_duration(rotation)
        frequency = (None if size is not None or interval is not None
                     else _parse_frequency(rotation))
        daytime = (None if size is not None or interval is not None or frequency is not None
                   else _parse_daytime(rotation))
    except (ValueError, OverflowError) as exc:  # "1e400 GB", "99999999999999999999 days"
        raise _bad_rotation(rotation, str(exc)) from None
    if size is not None:
        return by_size(size)
    if interval is not None:
        seconds = int(interval.total_seconds())
        if seconds < 1:
            raise _bad_rotation(rotation, "an interval must be at least 1 second")
        return by_time("S", seconds)
    if frequency is not None:
        when = {"daily": "MIDNIGHT", "weekly": "W0"}.get(rotation.strip().lower())
        if when is None:
            raise _bad_rotation(rotation, "of the frequencies, only 'daily' and 'weekly'")
        return by_time(when)
    if daytime is None:
        raise _bad_rotation(rotation)
    day, at = daytime
    return by_time("MIDNIGHT" if day is None else f"W{day}", at=at or datetime.time(0))


def check_file_options(rotation: str | int, retention: str | int) -> None:
    """Raise ``ValueError`` naming ``rotation`` or ``retention`` when :func:`add_file_sink`
    would refuse it (the forms are listed there); touch no file. For settings checked when
    they are given, long before the first line opens the files."""
    _handler_for(os.devnull, rotation, _retention_count(retention), "utf-8")


def add_file_sink(
    path: str,
    *,
    level: str,
    format: str | Callable[[Record], str],
    serialize: bool,
    rotation: str | int,
    retention: str | int,
    encoding: str = "utf-8",
) -> int:
    """Add a loguru sink appending to the file ``path`` that any number of processes may
    share; return loguru's handler id (for ``logger.remove``).

    ``level``, ``format`` and ``serialize`` are loguru's; the lines are those loguru's
    own file sink writes with them (``diagnose`` and ``backtrace`` off), except that a
    character the encoding cannot take is written as ``?`` where loguru would drop the
    whole line. ``rotation`` is
    a size (``"64 KB"`` = 64,000 bytes, ``"1 MiB"``, or an int of bytes), an interval
    (``"1 day"``, ``"6 hours"``), a time of day (``"00:00"``), a weekday
    (``"monday at 12:00"``), ``"daily"`` or ``"weekly"``. ``retention`` is the number of
    rotated files kept (an int >= 1): by size they are ``<path>.1`` (newest) to
    ``<path>.N``; by time ``<path>.<date>``. A lock file ``.__<stem>.lock`` lives beside
    the log. Raises ``ValueError`` naming ``rotation`` or ``retention`` when one is not
    of these forms. The directory is created if missing.
    """
    make_handler = _handler_for(path, rotation, _retention_count(retention), encoding)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    handler = make_handler()
    handler.setFormatter(_Message())
    return logger.add(
        _LockedFile(handler, path, encoding), level=level, format=format,
        serialize=serialize, colorize=False, diagnose=False, backtrace=False,
    )
