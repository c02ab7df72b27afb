"""Bounds on the request head, enforced by the HTTP server as its bytes arrive.

uvicorn's httptools parser holds a request head however long it grows (a 1 MiB header is
served; an unfinished 32 MiB one is 32 MiB of the worker's memory), and h11 bounds only the
whole head. The protocols here, uvicorn's own subclassed, count the head as it is parsed
and refuse it past a limit:

==============================  ===================================  ===================
what                            setting (default)                    answer
==============================  ===================================  ===================
the request target (the URL)    ``flyer_max_url_length`` (8192)      414 URI Too Long
one header field line           ``flyer_max_header_field_size``      431 Request Header
                                (8192)                               Fields Too Large
all header field lines          ``flyer_max_header_size`` (16384)    431
the number of header fields     ``flyer_max_headers`` (100)          431
==============================  ===================================  ===================

A field line counts ``len(name) + len(value) + 4`` bytes (``": "`` and CRLF); chunked
trailers count as fields of their message. A refusal is the framework's envelope
(``{"code": 431, "message": "..."}``, ``X-Request-ID``, ``Connection: close``), then the
connection closes; when an answer to an earlier request on the connection is still being
sent, or the head was already served (trailers), it only closes. A request the parser
refuses as malformed (a bad request line, a control byte in a field, a bad chunk size)
gets uvicorn's 400 in the same envelope, with the same headers.

A request body must keep arriving: while a head is complete and its body is not, and
uvicorn has not paused reading (its flow control), ``flyer_body_timeout`` (30 s) may pass
between two reads at most. Past it, the request answers 408 in the envelope (``"Request
body not received within N s"``) if the app has not started its answer, and the
connection closes; the app sees a disconnect.

A request head must arrive whole within ``flyer_header_timeout`` (10 s): counted from the
connection's opening for its first request, and for a later one from its first byte (the
idle time between answers is uvicorn's keep-alive, ``flyer_keepalive``); a head sent a
line at a time is bounded too. Past it, a connection that has sent some bytes of a head
answers 408 in the envelope (``"Request head not received within N s"``) and closes; one
that sent nothing only closes. A pipelined head that arrives while an answer is under way
waits with that answer, and is timed from the answer's end.

One timer per connection, for the head or the body, armed at the connection's opening and
then only while a head or a body is unfinished at the end of a read: requests read whole
in one read each arm nothing.

Memory: an unfinished head is held up to :attr:`RequestLimits.head_budget` bytes (the URL's
and the fields' limits plus a request line's method and version); with httptools, a head
that starts after a pipelined request's body may hold one more read slice of that size.

Use: ``uvicorn.Config(app, http=http_protocol(settings))`` (``fastflyer run``, and the
worker of ``fastflyer serve``). httptools when installed, else h11, as uvicorn's ``auto``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast

import h11
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.h11_impl import H11Protocol

from fastflyer.errors import error_body
from fastkit.request_id import new_request_id

if TYPE_CHECKING:
    from fastflyer.settings import FlyerSettings

try:
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - uvicorn[standard] installs it
    httptools = None  # type: ignore[assignment]

__all__ = ["LimitedH11Protocol", "LimitedHttpToolsProtocol", "RequestLimits", "http_protocol"]

BAD_REQUEST = 400
REQUEST_TIMEOUT = 408
URI_TOO_LONG = 414
FIELDS_TOO_LARGE = 431
# Bytes of a request line besides its target: the longest method, two spaces,
# "HTTP/1.1" and line ends, with room.
REQUEST_LINE_EXTRA = 64
_FIELD_EXTRA = 4  # ": " and CRLF


@dataclass(frozen=True)
class RequestLimits:
    """How large a request head may be; sizes in bytes (see the module docstring)."""

    max_url_length: int = 8192
    max_header_field_size: int = 8192
    max_header_size: int = 16384
    max_headers: int = 100
    body_timeout: float = 30.0  # seconds a started request body may go without a read
    header_timeout: float = 10.0  # seconds a request head may take to arrive whole

    @classmethod
    def from_settings(cls, settings: FlyerSettings) -> RequestLimits:
        """The limits ``flyer_max_url_length``, ``flyer_max_header_field_size``,
        ``flyer_max_header_size``, ``flyer_max_headers``, ``flyer_body_timeout`` and
        ``flyer_header_timeout`` say."""
        return cls(max_url_length=settings.max_url_length,
                   max_header_field_size=settings.max_header_field_size,
                   max_header_size=settings.max_header_size,
                   max_headers=settings.max_headers,
                   body_timeout=settings.body_timeout,
                   header_timeout=settings.header_timeout)

    @property
    def head_budget(self) -> int:
        """Bytes of an unfinished request head the server holds at most."""
        return self.max_url_length + self.max_header_size + REQUEST_LINE_EXTRA

    def url_refusal(self, length: int) -> Refusal | None:
        """The refusal of a request target of ``length`` bytes, if over the limit."""
        if length > self.max_url_length:
            return Refusal(URI_TOO_LONG, f"The request URL is longer than "
                                         f"{self.max_url_length} bytes")
        return None

    def field_refusal(self, count: int, field_size: int, total: int) -> Refusal | None:
        """The refusal of the ``count``-th field, of ``field_size`` bytes, bringing the
        fields to ``total`` bytes, if over a limit."""
        if count > self.max_headers:
            return Refusal(FIELDS_TOO_LARGE, f"The request has more than "
                                             f"{self.max_headers} header fields")
        if field_size > self.max_header_field_size:
            return Refusal(FIELDS_TOO_LARGE, f"A request header field is larger than "
                                             f"{self.max_header_field_size} bytes")
        return self.total_refusal(total)

    def total_refusal(self, total: int) -> Refusal | None:
        """The refusal of header fields of ``total`` bytes, if over the limit."""
        if total > self.max_header_size:
            return Refusal(FIELDS_TOO_LARGE, f"The request header fields are larger than "
                                             f"{self.max_header_size} bytes")
        return None


class Refusal(Exception):
    """A request head over a limit: the HTTP ``status`` and the ``message`` answered."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self, default_headers: list[tuple[bytes, bytes]]) -> bytes:
        """The answer as bytes: status line, ``default_headers`` (uvicorn's ``server`` and
        ``date``), the envelope; the connection closes after it."""
        body = error_body(self.status, self.message)
        lines = [f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}\r\n".encode()]
        fields = [*default_headers,
                  (b"content-type", b"application/json"),
                  (b"content-length", str(len(body)).encode()),
                  (b"connection", b"close"),
                  (b"x-request-id", new_request_id().encode()),
                  (b"x-content-type-options", b"nosniff")]
        lines.extend(name + b": " + value + b"\r\n" for name, value in fields)
        lines.append(b"\r\n")
        lines.append(body)
        return b"".join(lines)


def _refuse(protocol: Any, refusal: Refusal, *, answer: bool) -> None:
    """Log ``refusal``, answer it when ``answer`` and the connection is between answers,
    and close the connection."""
    cycle = protocol.cycle
    _close(protocol, refusal, answer=answer and (cycle is None or cycle.response_complete))


def _close(protocol: Any, refusal: Refusal, *, answer: bool) -> None:
    """Log ``refusal``, write it when ``answer``, and close the connection."""
    client = protocol.client
    where = f"{client[0]}:{client[1]} - " if client else ""
    protocol.logger.warning("%sRequest refused: %s", where, refusal.message)
    if answer:
        protocol.transport.write(refusal.response(protocol.server_state.default_headers))
    protocol.transport.close()


def _bad_request(protocol: Any, message: str) -> None:
    """uvicorn's 400 for a request the parser refused (uvicorn logged it), in the
    envelope with a request id and ``nosniff`` as every other answer; only when no answer
    is under way on the connection (a pipelined request's answer is never cut into)."""
    cycle = protocol.cycle
    if cycle is None or cycle.response_complete or not cycle.response_started:
        refusal = Refusal(BAD_REQUEST, message)
        protocol.transport.write(refusal.response(protocol.server_state.default_headers))
    protocol.transport.close()


_HEAD, _BODY = "head", "body"


class _Clock:
    """A connection's one read timer. While a request head is due and unfinished
    (``head_pending()``: some of its bytes are held, no answer is under way), the whole
    head must arrive within ``limits.header_timeout`` of its first byte (of the
    connection's opening, for the first); while a body is (``body_pending()``: its head
    is complete, the message is not) and reading is not paused, ``limits.body_timeout``
    may pass between two reads at most. Otherwise no timer runs."""

    def __init__(self, protocol: Any, limits: RequestLimits, body_pending: Callable[[], bool],
                 head_pending: Callable[[], bool]) -> None:
        self._protocol = protocol
        self._limits = limits
        self._body_pending = body_pending
        self._head_pending = head_pending
        self._timer: asyncio.TimerHandle | None = None
        self._mode: str | None = None

    def start(self) -> None:
        """Time the first head from the connection's opening."""
        self._arm(_HEAD, self._limits.header_timeout)

    def update(self) -> None:
        """After each read and each answer's end: time the head or the body that is
        unfinished, else nothing."""
        if not self._live():
            self.cancel()
        elif self._body_pending():
            self._time_body()
        elif self._head_pending():
            if self._mode is not _HEAD:  # its first byte: the deadline starts
                self._arm(_HEAD, self._limits.header_timeout)
                self._protocol._unset_keepalive_if_required()  # this timer is the bound
        else:
            self.cancel()

    def flow_changed(self) -> None:
        """Reading paused or resumed: only a body's timer follows it."""
        if self._live() and self._body_pending():
            self._time_body()
        elif self._mode is _BODY:
            self.cancel()

    def cancel(self) -> None:
        """Stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._mode = None

    def _time_body(self) -> None:
        if self._protocol.flow.read_paused:
            self.cancel()
        else:
            self._arm(_BODY, self._limits.body_timeout)  # re-armed at each read

    def _arm(self, mode: str, timeout: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._mode = mode
        self._timer = self._protocol.loop.call_later(timeout, self._expire)

    def _live(self) -> bool:
        transport = self._protocol.transport
        return not transport.is_closing() and transport.get_protocol() is self._protocol

    def _expire(self) -> None:
        mode, self._timer, self._mode = self._mode, None, None
        protocol = self._protocol
        if not self._live():  # closed, or upgraded to a websocket
            return
        cycle = protocol.cycle
        if mode is _BODY:
            refusal = Refusal(REQUEST_TIMEOUT, f"Request body not received within "
                                               f"{self._limits.body_timeout:g} s")
            _close(protocol, refusal, answer=cycle is not None and not cycle.response_started)
        elif not self._head_pending():
            protocol.transport.close()  # a connection that never sent a byte
        else:
            refusal = Refusal(REQUEST_TIMEOUT, f"Request head not received within "
                                               f"{self._limits.header_timeout:g} s")
            _close(protocol, refusal, answer=cycle is None or cycle.response_complete)


class _ClockedFlowControl(FlowControl):
    """uvicorn's flow control, telling ``changed`` when reading pauses or resumes."""

    def __init__(self, transport: asyncio.Transport, changed: Callable[[], None]) -> None:
        super().__init__(transport)
        self._changed = changed

    def pause_reading(self) -> None:
        super().pause_reading()
        self._changed()

    def resume_reading(self) -> None:
        super().resume_reading()
        self._changed()


class _ClockedConnection:
    """The clock's part of a protocol's connection: uvicorn's flow control replaced by one
    that tells the clock, the first head timed from the opening, the clock stopped with the
    connection."""

    _clock: _Clock
    flow: FlowControl

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self.flow = _ClockedFlowControl(cast(asyncio.Transport, transport),
                                        self._clock.flow_changed)
        self._clock.start()

    def connection_lost(self, exc: Exception | None) -> None:
        self._clock.cancel()
        super().connection_lost(exc)  # type: ignore[misc]


if httptools is not None:

    class LimitedHttpToolsProtocol(_ClockedConnection, HttpToolsProtocol):
        """uvicorn's httptools protocol, refusing a request head over ``limits`` and
        closing a head or a body that is too slow (``limits.header_timeout``,
        ``limits.body_timeout``).

        Raw bytes of an unfinished head are counted before the parser buffers them (data
        is fed in slices of at most the head budget); the URL and each field exactly, in
        the parser's callbacks.
        """

        def __init__(self, *args: Any, limits: RequestLimits | None = None,
                     **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.limits = limits or RequestLimits()
            self._in_head = True  # the bytes arriving belong to a request head
            self._head_bytes = 0  # raw bytes of the current head fed to the parser
            self._url_bytes = 0
            self._fields = 0
            self._field_bytes = 0
            self._restarted = False  # a message ended within the slice being fed
            self._body_seen = False  # the slice being fed delivered body bytes
            self._quiet_bytes = 0  # bytes after the head that delivered no body (trailers)
            self._refusal: Refusal | None = None
            self._body_pending = False  # a head is complete, its message is not
            self._head_begun = False  # bytes of a request head arrived, not all of it
            self._clock = _Clock(self, self.limits, lambda: self._body_pending,
                                 self._head_pending)

        def _head_pending(self) -> bool:
            cycle = self.cycle
            return self._head_begun and (cycle is None or cycle.response_complete)

        def data_received(self, data: bytes) -> None:
            try:
                self._receive(data)
            finally:
                self._clock.update()

        def on_response_complete(self) -> None:
            """uvicorn's; then a head that arrived in part meanwhile is timed."""
            super().on_response_complete()
            if self._head_begun or self._body_pending:
                self._clock.update()

        def _receive(self, data: bytes) -> None:
            budget = self.limits.head_budget
            view = memoryview(data)
            while view:
                if self.transport.is_closing() or self.transport.get_protocol() is not self:
                    return  # refused, closed, or upgraded to a websocket
                in_head = self._in_head
                size = budget + 1 - self._head_bytes if in_head else budget
                piece, view = view[:size], view[size:]
                if in_head:
                    self._head_bytes += len(piece)
                    self._head_begun = True
                self._restarted = self._body_seen = False
                super().data_received(piece)  # type: ignore[arg-type]
                if self._refusal is not None or self.transport.is_closing():
                    return
                if self._restarted and self._in_head:  # a head began within the slice
                    self._head_bytes = self._url_bytes + self._field_bytes
                if self._in_head and self._head_bytes > budget:
                    refusal = (self.limits.url_refusal(self._url_bytes)
                               or self.limits.total_refusal(budget + 1))
                    assert refusal is not None
                    _refuse(self, refusal, answer=True)
                    return
                if in_head or self._in_head or self._restarted or self._body_seen:
                    self._quiet_bytes = 0
                else:
                    self._quiet_bytes += len(piece)
                    if self._quiet_bytes > budget:  # trailers or chunk extensions
                        _refuse(self, Refusal(FIELDS_TOO_LARGE, "The request trailer "
                                              f"fields are larger than {budget} bytes"),
                                answer=False)
                        return

        def send_400_response(self, msg: str) -> None:
            """A callback's refusal stops the parser, which uvicorn takes for a malformed
            request: answer the refusal instead."""
            if self._refusal is not None:
                _refuse(self, self._refusal, answer=self._in_head)
                return
            _bad_request(self, msg)

        def _stop(self, refusal: Refusal | None) -> None:
            if refusal is not None:
                self._refusal = refusal
                raise refusal

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head = self._head_begun = True
            self._url_bytes = self._fields = self._field_bytes = 0

        def on_url(self, url: bytes) -> None:
            self._url_bytes += len(url)
            self._stop(self.limits.url_refusal(self._url_bytes))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            size = len(name) + len(value) + _FIELD_EXTRA
            self._fields += 1
            self._field_bytes += size
            self._stop(self.limits.field_refusal(self._fields, size, self._field_bytes))
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = self._head_begun = False
            self._quiet_bytes = 0
            self._body_pending = True
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            self._body_seen = True
            super().on_body(body)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._body_pending = False
            self._in_head = True
            self._head_bytes = 0
            self._restarted = True


class _LimitedConnection(h11.Connection):
    """h11's server connection holding at most the head budget of an unfinished event,
    and refusing a request over ``limits``; the refusal is kept in :attr:`refusal`."""

    def __init__(self, limits: RequestLimits) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=limits.head_budget)
        self.limits = limits
        self.refusal: Refusal | None = None

    def next_event(self) -> Any:
        waiting = self.their_state is h11.IDLE  # for a request line and header fields
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint == FIELDS_TOO_LARGE and self.refusal is None:
                self.refusal = self._overflow(waiting)
            raise
        if isinstance(event, h11.Request):
            sizes = [len(name) + len(value) + _FIELD_EXTRA for name, value in event.headers]
            self.refusal = self.limits.url_refusal(len(event.target))
            total = 0
            for count, size in enumerate(sizes, 1):
                total += size
                self.refusal = self.refusal or self.limits.field_refusal(count, size, total)
            if self.refusal is not None:
                raise h11.RemoteProtocolError(self.refusal.message,
                                              error_status_hint=self.refusal.status)
        return event

    def holds_data(self) -> bool:
        """Bytes received and not yet parsed are held (``trailing_data`` without its copy,
        which a head trickled a byte per read would pay for at each read)."""
        return bool(self._receive_buffer)

    def _overflow(self, waiting: bool) -> Refusal:
        """The refusal of an event that outgrew the head budget unfinished."""
        budget = self.limits.head_budget
        if waiting:
            data = self.trailing_data[0].lstrip(b"\r\n")
            line, newline, _ = data.partition(b"\n")
            target = line.split(b" ")[1:2]
            if not newline or (target and len(target[0]) > self.limits.max_url_length):
                return Refusal(URI_TOO_LONG, f"The request URL is longer than "
                                             f"{self.limits.max_url_length} bytes")
            return Refusal(FIELDS_TOO_LARGE, f"The request header fields are larger than "
                                             f"{self.limits.max_header_size} bytes")
        return Refusal(FIELDS_TOO_LARGE, f"The request trailer fields are larger than "
                                         f"{budget} bytes")


class LimitedH11Protocol(_ClockedConnection, H11Protocol):
    """uvicorn's h11 protocol, refusing a request head over ``limits`` and closing a head
    or a body that is too slow (``limits.header_timeout``, ``limits.body_timeout``)."""

    def __init__(self, *args: Any, limits: RequestLimits | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits or RequestLimits()
        self.conn = _LimitedConnection(self.limits)
        self._clock = _Clock(self, self.limits,
                             lambda: self.conn.their_state is h11.SEND_BODY,
                             self._head_pending)

    def _head_pending(self) -> bool:
        cycle = self.cycle
        conn = self.conn
        return (conn.their_state is h11.IDLE and (cycle is None or cycle.response_complete)
                and isinstance(conn, _LimitedConnection) and conn.holds_data())

    def handle_events(self) -> None:
        """uvicorn's (after each read and each answer's end), then the clock."""
        try:
            super().handle_events()
        finally:
            self._clock.update()

    def send_400_response(self, msg: str) -> None:
        """Answer a refusal (h11 stopped at it) instead of uvicorn's plain 400."""
        conn = self.conn
        if isinstance(conn, _LimitedConnection) and conn.refusal is not None:
            _refuse(self, conn.refusal, answer=True)
            return
        _bad_request(self, msg)


def http_protocol(settings: FlyerSettings | RequestLimits) -> type[asyncio.Protocol]:
    """uvicorn's ``http`` option for ``settings``' limits: a factory of
    :class:`LimitedHttpToolsProtocol` (h11's :class:`LimitedH11Protocol` without httptools)
    that uvicorn calls as it calls a protocol class; picklable, for the reloader's child."""
    limits = settings if isinstance(settings, RequestLimits) else \
        RequestLimits.from_settings(settings)
    protocol: Any = LimitedH11Protocol if httptools is None else LimitedHttpToolsProtocol
    return cast("type[asyncio.Protocol]", functools.partial(protocol, limits=limits))
