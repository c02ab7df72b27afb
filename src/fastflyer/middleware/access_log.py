"""The access log: one JSON line per request.

    {"time":"2026-11-23T08:00:00.123+00:00","method":"GET","path":"/flyer/demo",
     "query":"id=1&token=***","status":200,"latency_ms":1.52,"client_ip":"10.0.0.7",
     "request_id":"6f1c...","user_agent":"curl/8.5.0"}

Written to ``flyer_access_logfile`` or, for ``-``, to standard output. The file opens
at the first line, never at import. Lines are buffered, so a busy server does not pay
one system call per request, and written out when the buffer fills, when the app shuts
down (the lifespan closes the log), and at most ``flush_interval`` (1 s) after they were
logged, idle server or not: a line that finds nothing flushed for a second flushes the
buffer, and one that stays buffered arms a single flush ``flush_interval`` later (a
timer on the running event loop, else a daemon ``threading.Timer``; none while nothing
is buffered). A process killed outright loses at most its last second of lines. Paths in
``flyer_access_log_exclude_uris`` are skipped (``/health*`` skips a prefix). Secret query
values are masked as in FastKit's call log; no header but the user agent is logged.
While tracing is on (``flyer_opentelemetry_enabled=1``), a line also has the request's
``trace_id`` and ``span_id`` (its server span's), after ``request_id``.
With log shipping on (``flyer_log_ship_enabled``), each line is also shipped to the
syslog collector (:class:`fastkit.logging.LogShipper`), with ``"kind": "access"``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO

from pydantic_core import to_json

from fastkit.logging import active_shipper
from fastkit.logging.redact import redact_query

__all__ = ["AccessLog"]

FLUSH_INTERVAL = 1.0


class AccessLog:
    """Formats and writes access lines; safe to share between threads."""

    def __init__(self, target: str = "-", exclude: Iterable[str] = (),
                 flush_interval: float = FLUSH_INTERVAL) -> None:
        self.target = target
        self.flush_interval = flush_interval
        exact, prefixes = set(), []
        for item in exclude:
            if item.endswith("*"):
                prefixes.append(item[:-1])
            else:
                exact.add(item)
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)
        self._stream: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._flushed = 0.0
        # The one pending flush (a loop timer or a thread timer) and the loop it runs on.
        self._timer: asyncio.TimerHandle | threading.Timer | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    def wanted(self, path: str) -> bool:
        """False for a path the configuration excludes."""
        return path not in self._exact and not (self._prefixes and path.startswith(self._prefixes))

    def _open(self) -> IO[bytes]:
        if self.target == "-":
            return sys.stdout.buffer
        directory = os.path.dirname(os.path.abspath(self.target))
        os.makedirs(directory, exist_ok=True)
        return open(self.target, "ab", buffering=64 * 1024)

    def write(self, method: str, path: str, query: bytes, status: int, latency_ms: float,
              client_ip: str | None, request_id: str, user_agent: str | None, *,
              trace_id: str | None = None, span_id: str | None = None) -> None:
        """Write one line (``trace_id`` and ``span_id``, hex: fields only when given).
        Never raises: an unwritable file falls back to the console."""
        fields: dict[str, object] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "method": method,
            "path": path,
            "query": redact_query(query.decode("latin-1")) if query else "",
            "status": status,
            "latency_ms": round(latency_ms, 2),
            "client_ip": client_ip,
            "request_id": request_id,
        }
        if trace_id is not None:
            fields["trace_id"], fields["span_id"] = trace_id, span_id
        fields["user_agent"] = user_agent
        line = to_json(fields) + b"\n"
        shipper = active_shipper()
        if shipper is not None:  # log shipping is on: queued, never waited for
            shipper.ship_line(fields, encoded=line[:-1])
        with self._lock:
            try:
                if self._stream is None:
                    self._stream = self._open()
                self._stream.write(line)
                now = time.monotonic()
                if now - self._flushed >= self.flush_interval:
                    self._stream.flush()
                    self._flushed = now
                else:
                    self._arm_flush()
            except OSError as exc:
                self._fail(exc, line)

    def _arm_flush(self) -> None:
        """Flush ``flush_interval`` from now unless a flush is pending (lock held)."""
        if self._timer is not None and not (self._timer_loop is not None
                                            and self._timer_loop.is_closed()):
            return
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # a thread with no loop: a timer thread of its own
            loop = None
        if loop is not None:
            self._timer = loop.call_later(self.flush_interval, self._timed_flush)
        else:
            timer = threading.Timer(self.flush_interval, self._timed_flush)
            timer.daemon = True
            timer.start()
            self._timer = timer
        self._timer_loop = loop

    def _timed_flush(self) -> None:
        with self._lock:
            self._timer = self._timer_loop = None
            if self._stream is None:
                return
            try:
                self._stream.flush()
            except OSError as exc:
                self._fail(exc, b"")
            self._flushed = time.monotonic()

    def _fail(self, exc: OSError, line: bytes) -> None:
        # Fall back to the console so no line is lost, and say why once.
        console = sys.stdout.buffer
        if self._stream is not console:
            sys.stderr.write(f"access log {self.target!r} is not writable ({exc}); "
                             "writing access lines to the console\n")
            self._stream = console
        console.write(line)
        console.flush()

    def flush(self) -> None:
        """Write out buffered lines."""
        with self._lock:
            if self._stream is not None:
                self._stream.flush()
                self._flushed = time.monotonic()

    def close(self) -> None:
        """Write out buffered lines and close the file (the console stays open)."""
        with self._lock:
            if isinstance(self._timer, threading.Timer):
                self._timer.cancel()
            # A loop timer may be on another thread's loop: left to find nothing to do.
            self._timer = self._timer_loop = None
            stream, self._stream = self._stream, None
            if stream is not None:
                stream.flush()
                if stream is not sys.stdout.buffer:
                    stream.close()
