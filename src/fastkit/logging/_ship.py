"""Log shipping over syslog: RFC 5424 messages to a collector over UDP or TCP.

Each line becomes one message ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG``:
PRI is ``facility * 8 + severity`` (local0 by default), TIMESTAMP RFC 3339 with
microseconds, HOSTNAME the address given (``my_ip``), APP-NAME the topic, PROCID the pid,
MSGID ``app`` (an application line) or ``access`` (an access line), no structured data,
and MSG one JSON object (no BOM: RFC 5424's MSG-ANY, which collectors read as UTF-8)::

    {"time": "...", "level": "INFO", "message": "paid", "request_id": "6f1c...",
     "trace_id": "4bf9...", "span_id": "00f0...", "logger": "orders.api",
     "function": "pay", "line": 42}

(``trace_id`` and ``span_id`` are ``null`` on a line logged outside any span or while
tracing is off.) An access line is the access log's own JSON object with
``"kind": "access"``, ``"level": "INFO"``, ``"trace_id"`` and ``"span_id"`` added. Over
TCP each message is framed by octet counting (RFC 6587 3.4.1: ``LEN SP MSG``), so a
message holding a line feed arrives whole; over UDP each is one datagram.
``proto="dev"`` writes the messages to standard error only.

Nothing the application does waits for the collector: :meth:`LogShipper.sink` and
:meth:`LogShipper.ship_line` format the message and, over UDP while nothing is queued and
the collector is up, send it at once from the caller's thread (one non-blocking
``send``: no thread switch per line); otherwise they put it in a bounded queue
(``queue_size``), dropping it, counted in :attr:`LogShipper.dropped`, when the queue is
full. One daemon thread sends what is queued; on a failure (collector down, refused, closed the
connection, or slower than ``send_timeout``) it reconnects with exponential backoff (0.1 s
doubling to 5 s, kept when an outage follows the last within a second), holding the one
message it was sending, and logs one WARNING per outage, which is never shipped itself
(its record carries ``extra[NO_SHIP]``) but reaches the console. Over TCP an outage ends
once a connection has carried two messages (a collector that accepts and closes at once
takes one). A message over ``max_bytes`` has its longest strings shortened (marked
``"truncated": true``); a datagram the network refuses as too long is dropped (counted),
never retried.
"""

from __future__ import annotations

import collections
import contextlib
import encodings.idna  # noqa: F401  (getaddrinfo's codec: see _connect)
import errno
import functools
import json
import os
import socket
import sys
import threading
import time
import weakref
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from fastkit.logging.redact import redact_text

if TYPE_CHECKING:
    from loguru import Message

__all__ = ["NO_SHIP", "PROTOCOLS", "LogShipper", "severity"]

#: A record whose ``extra`` holds this key set to a true value is not shipped.
NO_SHIP = "fastkit_no_ship"
PROTOCOLS = ("udp", "tcp", "dev")
# Set on a record by FastKit's patcher once its message is masked (see _setup).
_PATCHED = "fastkit_patched"

_SEVERITIES = {"TRACE": 7, "DEBUG": 7, "INFO": 6, "SUCCESS": 5, "WARNING": 4, "ERROR": 3,
               "CRITICAL": 2}
_BACKOFF_FIRST, _BACKOFF_MAX = 0.1, 5.0
# An outage starting within this many seconds of the last one's end keeps its backoff
# (a collector that accepts and closes every connection is not retried every 0.1 s).
_SETTLED = 1.0


def severity(level: str, number: int = 20) -> int:
    """The syslog severity (0-7) of a loguru level ``level`` (a custom level: by its
    ``number``, loguru's scale: 50 critical, 40 error, 30 warning, 25 success, 20 info)."""
    found = _SEVERITIES.get(level.upper())
    if found is not None:
        return found
    for bound, value in ((50, 2), (40, 3), (30, 4), (25, 5), (20, 6)):
        if number >= bound:
            return value
    return 7


def _header_field(value: str, limit: int) -> str:
    """``value`` as RFC 5424 allows a header field: printable US-ASCII (33-126) only, at
    most ``limit`` characters, ``-`` (the nil value) when nothing is left."""
    kept = "".join(ch for ch in value if 33 <= ord(ch) <= 126)[:limit]
    return kept or "-"


@functools.cache
def _access_tail(level: str, traced: bool) -> bytes:
    """What an access line's JSON gains before its closing brace (then the brace)."""
    extra: dict[str, str | None] = {"kind": "access", "level": level}
    if not traced:
        extra.update(trace_id=None, span_id=None)
    return b"," + _json(extra)[1:]


def _json(fields: dict[str, Any]) -> bytes:
    """``fields`` as UTF-8 JSON; a lone surrogate (undecodable bytes read into a ``str``)
    is written as its JSON escape, so the message stays valid UTF-8."""
    text = json.dumps(fields, ensure_ascii=False, default=str)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(fields, ensure_ascii=True, default=str).encode("ascii")


def _shortened(fields: dict[str, Any], limit: int) -> dict[str, Any]:
    """``fields`` marked ``"truncated": true`` with its longest strings cut until their
    JSON takes at most ``limit`` bytes; when that fails (large values that are not
    strings), the time, the level, the kind and the request's ids only."""
    out = {**fields, "truncated": True}
    for _ in range(16):
        excess = len(_json(out)) - limit
        if excess <= 0:
            return out
        strings = [key for key, value in out.items() if isinstance(value, str) and value]
        if not strings:
            break
        key = max(strings, key=lambda name: len(out[name]))
        value = out[key]
        size = len(_json({"": value}))
        keep = len(value) * max(0, size - excess - 16) // size  # in proportion to bytes
        out[key] = value[:min(keep, len(value) - 1)]
    kept = ("time", "level", "kind", "request_id", "trace_id", "span_id")
    return {key: fields[key] for key in kept if key in fields} | {
        "message": "(a line too long to ship)", "truncated": True}


def _peer_closed(sock: socket.socket) -> bool:
    """Whether the peer of the TCP socket ``sock`` has closed its side (a collector sends
    nothing, so a readable end of stream means gone); never blocks."""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)  # a peek that waits for nothing
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(timeout)


class LogShipper:
    """Ships log lines to a syslog collector; see the module's documentation.

    ``host``/``port``: the collector (``host`` unused with ``proto="dev"``); ``proto``:
    ``"udp"``, ``"tcp"`` or ``"dev"``; ``app_name``: APP-NAME (the topic, at most 48
    characters kept); ``hostname``: HOSTNAME (at most 255); ``queue_size``: messages held
    while the collector is slow or down; ``facility``: the syslog facility (16, local0);
    ``max_bytes``: the largest MSG sent (a longer message is shortened);
    ``connect_timeout``/``send_timeout``: seconds one connection attempt / one send may
    take before it counts as an outage. Raises ``ValueError`` for a bad argument.
    Start it with :meth:`start`; stop it with :meth:`close`.
    """

    def __init__(self, host: str | None, port: int = 514,
                 proto: Literal["udp", "tcp", "dev"] | str = "udp", *,
                 app_name: str = "fastkit", hostname: str = "-", queue_size: int = 10_000,
                 facility: int = 16, max_bytes: int = 60_000, connect_timeout: float = 2.0,
                 send_timeout: float = 5.0) -> None:
        if proto not in PROTOCOLS:
            raise ValueError(f"proto={proto!r} is not one of {', '.join(PROTOCOLS)}")
        if proto != "dev" and not host:
            raise ValueError(f"proto={proto!r} needs a collector host")
        if not 0 < port < 65536:
            raise ValueError(f"port={port!r} is not between 1 and 65535")
        if not 0 <= facility <= 23:
            raise ValueError(f"facility={facility!r} is not between 0 and 23")
        if queue_size < 1:
            raise ValueError(f"queue_size={queue_size!r} is not ≥ 1")
        self.host, self.port, self.proto = host or "", port, proto
        self.app_name = _header_field(app_name, 48)
        self.hostname = _header_field(hostname, 255)
        self.queue_size, self.facility, self.max_bytes = queue_size, facility, max_bytes
        self.connect_timeout, self.send_timeout = connect_timeout, send_timeout
        # Lines waiting (deque appends and pops are atomic); the sender sleeps on _wake
        # while _idle, and a producer that finds it so wakes it.
        self._queue: collections.deque[bytes] = collections.deque()
        self._wake = threading.Event()
        self._idle = False
        self._pid = os.getpid()  # PROCID (this process's: reset after fork)
        self._count_lock = threading.Lock()
        self._sent = self._dropped = 0
        self._closing = threading.Event()
        self._deadline = float("inf")
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._fork_hook = False  # start() registered its after-fork hook
        self._outage = False
        self._backoff = _BACKOFF_FIRST
        self._carried = 0  # messages sent over the current connection
        self._resumed_at = float("-inf")
        self.outages = 0
        """Outages seen so far (one WARNING each)."""

    # -- counters --------------------------------------------------------------------
    @property
    def sent(self) -> int:
        """Messages handed to the network (or to stderr, for ``dev``)."""
        return self._sent

    @property
    def dropped(self) -> int:
        """Messages dropped: the queue was full, or they were left at :meth:`close`."""
        return self._dropped

    def queued(self) -> int:
        """Messages waiting in the queue (at most ``queue_size``)."""
        return len(self._queue)

    # -- producers -------------------------------------------------------------------
    def sink(self, message: Message) -> None:
        """A loguru sink: queue the record of ``message`` as an ``app`` message. Never
        blocks, never raises for want of a collector."""
        record = message.record
        extra = record["extra"]
        if extra.get(NO_SHIP):
            return
        text = record["message"]
        if _PATCHED not in record:  # a line FastKit's patcher did not mask
            text = redact_text(text)
        fields = {
            "time": record["time"].isoformat(timespec="microseconds"),
            "level": record["level"].name,
            "message": text,
            "request_id": extra.get("request_id"),
            "trace_id": extra.get("trace_id"),
            "span_id": extra.get("span_id"),
            "logger": record["name"],
            "function": record["function"],
            "line": record["line"],
        }
        level = record["level"]
        self._put(severity(level.name, level.no), "app", record["time"], fields)

    def ship_line(self, fields: dict[str, Any], level: str = "INFO",
                  encoded: bytes | None = None) -> None:
        """Queue one access line, ``fields`` being the access log's JSON object (already
        redacted); shipped with ``kind``, ``level``, ``trace_id`` and ``span_id`` added
        (``None`` unless the line has them). ``encoded``: ``fields`` as the access log
        wrote them, compact JSON (an object, no line feed), reused rather than encoded
        again. Never blocks."""
        traced = "trace_id" in fields
        if self._closing.is_set() or len(self._queue) >= self.queue_size:
            self._drop(1)
            return
        if encoded is not None and encoded.endswith(b"}") and \
                len(encoded) + 80 <= self.max_bytes:
            # The access log's JSON, with the fields added before its closing brace.
            self._append(self._header(severity(level), "access", None) + encoded[:-1]
                         + _access_tail(level, traced))
            return
        extra: dict[str, str | None] = {"kind": "access", "level": level}
        if not traced:
            extra.update(trace_id=None, span_id=None)
        self._put(severity(level), "access", None, {**fields, **extra})

    def _put(self, sev: int, msgid: str, when: datetime | None, fields: dict[str, Any]) -> None:
        if self._closing.is_set():
            self._drop(1)
            return
        if len(self._queue) >= self.queue_size:
            self._drop(1)
            return
        self._append(self._format(sev, msgid, when, fields))

    def _append(self, data: bytes) -> None:
        if self._idle and not self._queue and self._send_now(data):
            return
        self._queue.append(data)
        if self._idle:
            self._wake.set()

    def _send_now(self, data: bytes) -> bool:
        """Send one datagram from the caller's thread, without waiting: over UDP, while
        the sender is idle with nothing queued (no line waits before this one) and the
        collector is not in an outage. False when it was not sent: it is queued then, and
        the sender retries it with backoff. A thread that sends a line at a time would
        cost the server a switch of the interpreter's lock for each request."""
        sock = self._socket
        if sock is None or self._outage or self.proto != "udp":
            return False
        try:
            sock.send(data, socket.MSG_DONTWAIT)
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):  # refused: retried
                return False
        except (OSError, ValueError):  # a full buffer, a refusal, a socket just closed
            return False
        with self._count_lock:
            self._sent += 1
        return True

    def _drop(self, count: int) -> None:
        with self._count_lock:
            self._dropped += count

    def _header(self, sev: int, msgid: str, when: datetime | None) -> bytes:
        stamp = (when or datetime.now(UTC)).isoformat(timespec="microseconds")
        return (f"<{self.facility * 8 + sev}>1 {stamp} {self.hostname} {self.app_name} "
                f"{self._pid} {msgid} - ").encode("ascii")

    def _format(self, sev: int, msgid: str, when: datetime | None,
                fields: dict[str, Any]) -> bytes:
        header = self._header(sev, msgid, when)
        body = _json(fields)
        if len(body) > self.max_bytes:  # shorten the longest strings, keep the JSON whole
            body = _json(_shortened(fields, self.max_bytes))
        return header + body

    # -- the sender ------------------------------------------------------------------
    def start(self) -> None:
        """Start the sender thread (once; a no-op when running). In a child process after
        ``fork``, a shipper that ran in the parent starts afresh, with an empty queue."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._run, name="fastkit-log-ship", daemon=True)
        self._thread.start()
        if self._fork_hook:
            return
        self._fork_hook = True  # one hook per shipper, however many restarts
        ref = weakref.ref(self)

        def after_fork() -> None:
            shipper = ref()
            if shipper is not None and not shipper._closing.is_set():
                shipper._reset_after_fork()

        os.register_at_fork(after_in_child=after_fork)

    def _reset_after_fork(self) -> None:
        self._queue = collections.deque()
        self._wake = threading.Event()
        self._idle = False
        self._pid = os.getpid()
        self._count_lock = threading.Lock()
        self._socket = None
        self._thread = None
        self._outage = False
        self._backoff = _BACKOFF_FIRST
        self.start()

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued for up to ``timeout`` seconds, then stop: what is still
        queued is dropped (counted). Returns within about ``timeout`` + 0.5 s even when
        the collector accepts and never reads. Safe to call twice."""
        self._deadline = time.monotonic() + max(0.0, timeout)
        self._closing.set()
        self._wake.set()  # wakes an idle sender; a busy one sees _closing
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, timeout))
            if thread.is_alive():  # blocked in connect or send: unblock it
                self._disconnect(shutdown=True)
                thread.join(0.5)
        self._disconnect()
        self._drop_queued()

    def _drop_queued(self) -> None:
        left = 0
        while True:
            try:
                self._queue.popleft()
            except IndexError:
                break
            left += 1
        self._drop(left)

    def _run(self) -> None:
        pending = self._queue
        while True:
            if self._closing.is_set() and (not pending or time.monotonic() >= self._deadline):
                break
            if not pending:
                self._idle = True
                if not pending:  # a line appended before _idle was seen rings _wake
                    self._wake.wait()
                self._wake.clear()
                self._idle = False
                continue
            if not self._deliver(pending.popleft()):
                self._drop(1)
                break
        self._disconnect()

    def _deliver(self, data: bytes) -> bool:
        """Send ``data``, retrying with backoff until it goes, or False once closing
        and past the deadline."""
        while True:
            try:
                self._send(data)
            except Exception as exc:  # any failure is an outage: the sender never dies
                self._disconnect()
                if getattr(exc, "errno", None) == errno.EMSGSIZE:  # it alone can never go
                    self._drop(1)
                    return True
                if self._closing.is_set() and time.monotonic() >= self._deadline:
                    return False  # stopping (close may have shut the socket): no warning
                self._begin_outage(exc)
                wait = self._backoff
                if self._closing.is_set():
                    wait = min(wait, self._deadline - time.monotonic())
                    if wait <= 0:
                        return False
                    time.sleep(wait)  # bounded by the close deadline
                else:
                    self._closing.wait(wait)
                # kept across messages, and across outages a moment apart
                self._backoff = min(self._backoff * 2, _BACKOFF_MAX)
                continue
            with self._count_lock:
                self._sent += 1
            self._carried += 1
            # over TCP a peer that has already closed takes one message (lost) and the next
            # fails: the outage ends when a connection has carried two
            if self._outage and self._carried >= (2 if self.proto == "tcp" else 1):
                self._outage = False
                self._resumed_at = time.monotonic()
                self._note(f"log shipping to {self._where()} resumed "
                           f"({self._dropped} dropped so far)", "INFO")
            return True

    def _send(self, data: bytes) -> None:
        if self.proto == "dev":
            with contextlib.suppress(ValueError):  # a closed stderr: nowhere to write
                sys.stderr.write(data.decode("utf-8", "replace") + "\n")
            return
        sock = self._socket
        if sock is None:
            sock = self._connect()
        if self.proto == "udp":
            sock.send(data)
            # A refusal of this datagram (port unreachable) comes back at once from a
            # local collector: take it now, so the datagram is retried, not lost.
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                raise OSError(error, os.strerror(error))
        else:
            if _peer_closed(sock):  # sent into, the message would be lost: reconnect
                raise ConnectionResetError(errno.ECONNRESET, "the collector closed the connection")
            sock.sendall(b"%d " % len(data) + data)

    def _connect(self) -> socket.socket:
        # getaddrinfo() encodes a host name with the idna codec, imported with this module:
        # the sender of a forked worker starts while the worker is still importing, and the
        # codec's import from this thread would fail then ("unknown encoding: idna").
        if self.proto == "udp":
            family = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_DGRAM)[0]
            sock = socket.socket(family[0], socket.SOCK_DGRAM)
            try:
                sock.connect(family[4])  # so a refusal comes back as an error
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((self.host, self.port), self.connect_timeout)
            sock.settimeout(self.send_timeout)
        self._socket = sock
        self._carried = 0
        return sock

    def _disconnect(self, *, shutdown: bool = False) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            if shutdown:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _where(self) -> str:
        return f"{self.proto}://{self.host}:{self.port}"

    def _begin_outage(self, exc: Exception) -> None:
        if self._outage:
            return
        self._outage = True
        if time.monotonic() - self._resumed_at >= _SETTLED:
            self._backoff = _BACKOFF_FIRST  # a new outage after a settled connection
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        self._note(f"log shipping to {self._where()} failed ({reason}); retrying with "
                   f"backoff, dropping lines beyond {self.queue_size} queued", "WARNING")
        self.outages += 1  # once warned: whoever sees the count sees the warning

    def _note(self, text: str, level: str) -> None:
        """Log about shipping, on the console and never shipped."""
        from fastkit.logging._setup import logger

        logger.bind(**{NO_SHIP: True}).log(level, text)
