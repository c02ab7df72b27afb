"""The access log: one JSON line per request.

    {"time": "2026-11-23T08:00:00.123+00:00", "method": "GET", "path": "/flyer/demo",
     "query": "id=1&token=***", "status": 200, "latency_ms": 1.52, "client_ip": "10.0.0.7",
     "request_id": "6f1c...", "user_agent": "curl/8.5.0"}

Written to ``flyer_access_logfile`` (appended, one ``write`` per line) or, for ``-``,
to the console. The file opens at the first line, never at import. Paths in
``flyer_access_log_exclude_uris`` are skipped (``/health*`` skips a prefix). Secret
query values are masked as in FastKit's call log; headers other than the user agent
are not logged at all.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import IO, Any

from fastkit.logging.redact import redact_query

__all__ = ["AccessLog"]


class AccessLog:
    """Formats and writes access lines; safe to share between threads."""

    def __init__(self, target: str = "-", exclude: Iterable[str] = ()) -> None:
        self.target = target
        exact, prefixes = set(), []
        for item in exclude:
            if item.endswith("*"):
                prefixes.append(item[:-1])
            else:
                exact.add(item)
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)
        self._stream: IO[str] | None = None
        self._lock = threading.Lock()

    def wanted(self, path: str) -> bool:
        """False for a path the configuration excludes."""
        return path not in self._exact and not (self._prefixes and path.startswith(self._prefixes))

    def _open(self) -> IO[str]:
        if self.target == "-":
            return sys.stdout
        directory = os.path.dirname(os.path.abspath(self.target))
        os.makedirs(directory, exist_ok=True)
        return open(self.target, "a", encoding="utf-8", buffering=1)

    def write(self, method: str, path: str, query: bytes, status: int, latency_ms: float,
              client_ip: str | None, request_id: str, user_agent: str | None) -> None:
        """Write one line. Never raises: a log that cannot be written is reported once."""
        record: dict[str, Any] = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "method": method,
            "path": path,
            "query": redact_query(query.decode("latin-1")),
            "status": status,
            "latency_ms": round(latency_ms, 2),
            "client_ip": client_ip,
            "request_id": request_id,
            "user_agent": user_agent,
        }
        line = json.dumps(record, ensure_ascii=False, separators=(", ", ": ")) + "\n"
        stream = self._stream
        try:
            if stream is None:
                with self._lock:
                    if self._stream is None:
                        self._stream = self._open()
                    stream = self._stream
            stream.write(line)
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        # Fall back to the console so no line is lost, and say why once.
        with self._lock:
            if self._stream is not sys.stdout:
                sys.stderr.write(f"access log {self.target!r} is not writable ({exc}); "
                                 "writing access lines to the console\n")
                self._stream = sys.stdout

    def close(self) -> None:
        """Close the file (the console stays open)."""
        with self._lock:
            if self._stream is not None and self._stream is not sys.stdout:
                self._stream.close()
            self._stream = None
