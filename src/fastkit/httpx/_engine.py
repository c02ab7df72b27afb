"""The retry engine: one small state machine per logical call, shared by sync and async.

It decides, after each attempt, whether to try again and how long to wait first,
and writes the call's log lines, metrics and span (:mod:`fastkit.httpx._telemetry`, while
metrics or tracing are on); the transports only run the attempts and sleep.
Decisions:

- ``retry_by_except`` / ``retry_by_result`` given: they decide, for every method.
- otherwise, errors where the request never reached the server (connect error,
  connect timeout, pool timeout) retry for every method; read/write timeouts,
  dropped connections and the ``retry_statuses`` (429, 500, 502, 503, 504)
  retry only for ``retry_methods`` (the idempotent ones).
- a body that cannot be replayed (a generator, a stream) is never sent twice.

It gives up when ``stop_max_attempt_number`` attempts are spent or when the
next wait would end past ``stop_max_delay`` seconds from the first attempt.
A readable ``Retry-After`` header (seconds or an HTTP date) is a lower bound: the
wait is the longer of it and the computed backoff. When it refuses to retry, the
reason goes into the exception's notes and the log line.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import httpx

from fastkit import metrics, tracing
from fastkit.httpx import _telemetry
from fastkit.httpx._policy import RetryPolicy
from fastkit.request_id import REQUEST_ID_HEADER, get_request_id

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from fastkit.httpx._log import CallLog

__all__ = ["RETRY_AFTER_CEILING", "Attempts", "instant_waits", "parse_retry_after", "set_testing"]

# Never reached the server: safe to send again whatever the method.
_NEVER_SENT: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout,
                                            httpx.PoolTimeout)
# May have reached the server: only idempotent methods are sent again.
_MAYBE_SENT: tuple[type[Exception], ...] = (httpx.ReadTimeout, httpx.WriteTimeout,
                                            httpx.ReadError, httpx.WriteError,
                                            httpx.RemoteProtocolError)

RETRY_AFTER_CEILING = 300.0
"""With no ``stop_max_delay``, a ``Retry-After`` longer than this (seconds) gives up."""

_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


class _Testing:
    instant = False


def set_testing(instant: bool = True) -> None:
    """Make every retry wait instant (``True``) or real again (``False``).

    Waits are still computed, checked against the budget and logged.
    """
    _Testing.instant = instant


@contextmanager
def instant_waits() -> Iterator[None]:
    """``with instant_waits():`` retries inside the block do not sleep."""
    previous = _Testing.instant
    _Testing.instant = True
    try:
        yield
    finally:
        _Testing.instant = previous


def sleep(seconds: float) -> None:
    if seconds > 0 and not _Testing.instant:
        time.sleep(seconds)


async def asleep(seconds: float) -> None:
    import anyio  # on the retry path only: keeps it out of import time

    await anyio.sleep(0 if _Testing.instant else seconds)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds (``"120"``, leniently
    ``"1.5"``) or an HTTP date (``0.0`` once it has passed).

    ``None`` when absent or unreadable (negative, ``NaN``, non-ASCII digits, a mangled
    date, several values joined): the caller then uses its own backoff. Never raises.
    """
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)  # a run of digits too long for a float is inf: past any budget
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except OverflowError:
        return None


def is_replayable(request: httpx.Request) -> bool:
    """True when the request body can be sent again: bytes, form or JSON (already in
    memory), or a multipart upload (httpx rewinds its files)."""
    stream = request.stream
    if isinstance(stream, httpx.ByteStream):
        return True
    # httpx's multipart stream is not exported; it is told by its class, not imported.
    kind = type(stream)
    return kind.__name__ == "MultipartStream" and kind.__module__.startswith("httpx.")



def error_text(error: BaseException) -> str:
    """``Type: message``, then the notes a transport added (which instance refused)."""
    return "; ".join([f"{type(error).__name__}: {error}".rstrip(": "),
                      *getattr(error, "__notes__", ())])

class Attempts:
    """The retry state of one logical call, its log lines, metrics and span.

    ``Attempts(policy, request, log)`` forwards the bound request id on ``request`` and,
    while tracing is on, opens the call's span and forwards its ``traceparent``.
    ``after_response`` and ``after_error`` return the seconds to wait before the next
    attempt, or ``None`` to stop (then the call's line is logged, its metrics recorded and
    its span ended, and an error is annotated with the attempts made and why it stopped);
    ``number`` is the attempts made so far. A transport whose loop is interrupted
    otherwise (a cancelled task) calls :meth:`interrupted`.
    """

    __slots__ = ("ended", "log", "method", "number", "policy", "reason", "replayable",
                 "request", "span", "started", "waited")

    def __init__(self, policy: RetryPolicy, request: httpx.Request, log: CallLog) -> None:
        request_id = get_request_id()
        if request_id is not None and REQUEST_ID_HEADER not in request.headers:
            request.headers[REQUEST_ID_HEADER] = request_id
        self.span: Span | None = _telemetry.start_span(request) if tracing.enabled() else None
        self.ended = False
        self.policy = policy
        self.request = request
        self.log = log
        self.method = request.method
        self.replayable = is_replayable(request)
        self.started = time.monotonic()
        self.number = 1
        self.waited = 0.0
        self.reason = ""

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def buffers(self, status_code: int) -> bool:
        """True when the attempt's body must be read before deciding: a ``retry_by_result``
        predicate reads it, and a failed call logs it."""
        policy = self.policy
        return ((policy.enabled and policy.retry_by_result is not None)
                or (status_code >= 400 and self.log.enabled))

    def after_response(self, response: httpx.Response, view: httpx.Response | None) -> float | None:
        """Decide after an answer; ``view`` is the same answer with its body read (given
        when :meth:`buffers` said so), handed to ``retry_by_result``."""
        try:
            wait = self._judge_response(response, view)
        except Exception as error:  # the caller's retry_by_result raised
            self.reason = f"retry_by_result raised {type(error).__name__}"
            self.annotate(error)
            self.log.finished(self.request, None, None, error, self)
            self._observe(None, error)
            raise
        if wait is None:
            self.log.finished(self.request, response, view, None, self)
            self._observe(response.status_code, None)
        else:
            self.log.retrying(self.request, self, wait)
            if metrics.enabled():
                _telemetry.record_retry(self.request, str(response.status_code))
        return wait

    def after_error(self, error: Exception) -> float | None:
        """Decide after an attempt raised ``error``."""
        wait = self._judge_error(error)
        if wait is None:
            self.annotate(error)
            self.log.finished(self.request, None, None, error, self)
            self._observe(None, error)
        else:
            self.log.retrying(self.request, self, wait)
            if metrics.enabled():
                _telemetry.record_retry(self.request, type(error).__name__)
        return wait

    def interrupted(self, error: BaseException) -> None:
        """The transport's loop ended by ``error`` without a decision here (a cancelled
        task, an interrupt): the call counts as failed and its span ends. No-op once the
        call has finished."""
        if not self.ended:
            self._observe(None, error)

    def _observe(self, status: int | None, error: BaseException | None) -> None:
        """Record the finished call: its metrics and the end of its span, when on."""
        self.ended = True
        if self.span is not None:
            _telemetry.end_span(self.span, status, error, self.number)
        if metrics.enabled():
            _telemetry.record_call(self.request, status, self.elapsed(), self.number)

    def _judge_response(self, response: httpx.Response,
                        view: httpx.Response | None) -> float | None:
        policy = self.policy
        self.reason = ""
        status = response.status_code
        if not policy.enabled:
            return None
        if policy.retry_by_result is not None:
            if not policy.retry_by_result(view if view is not None else response):
                return None
        elif status not in policy.retry_statuses:
            return None
        elif self.method not in policy.retry_methods:
            self.reason = f"HTTP {status}; {self._not_idempotent()}"
            return None
        hint = None
        if policy.respect_retry_after:
            hint = parse_retry_after(response.headers.get("retry-after"))
        return self._schedule(f"HTTP {status}", hint)

    def _judge_error(self, error: Exception) -> float | None:
        policy = self.policy
        self.reason = ""
        if not policy.enabled:
            self.reason = "retries are off for this call"
            return None
        if policy.retry_by_except is not None:
            if not isinstance(error, policy.retry_by_except):
                self.reason = f"{type(error).__name__} is not in retry_by_except"
                return None
        elif isinstance(error, _MAYBE_SENT):
            if self.method not in policy.retry_methods:
                self.reason = self._not_idempotent()
                return None
        elif not isinstance(error, _NEVER_SENT):
            self.reason = f"{type(error).__name__} is not a connection failure the policy retries"
            return None
        return self._schedule(error_text(error), None)

    def _not_idempotent(self) -> str:
        return (f"{self.method} is not idempotent and may have reached the server "
                "(add it to retry_methods, or pass retry_by_result / retry_by_except, "
                "to retry it)")

    def _schedule(self, reason: str, retry_after: float | None) -> float | None:
        policy = self.policy
        if not self.replayable:
            self.reason = f"{reason}; body cannot be replayed"
            return None
        if self.number >= policy.stop_max_attempt_number:
            self.reason = f"{reason}; {self.number} attempts spent"
            return None
        wait = policy.backoff(self.number)
        if policy.wait_jitter_max:
            wait += random.uniform(0, policy.wait_jitter_max)
        budget = policy.stop_max_delay
        if retry_after is not None:
            if budget is None and retry_after > RETRY_AFTER_CEILING:
                self.reason = (f"{reason}; Retry-After of {retry_after:g}s is over "
                               f"{RETRY_AFTER_CEILING:g}s and stop_max_delay is None")
                return None
            wait = max(wait, retry_after)  # the server's minimum, never below our backoff
        # Under the testing switch the skipped waits still count against the budget.
        spent = self.elapsed() + (self.waited if _Testing.instant else 0.0)
        if budget is not None and spent + wait > budget:
            self.reason = (f"{reason}; waiting {wait:.2f}s would pass the "
                           f"stop_max_delay of {budget:g}s")
            return None
        self.number += 1
        self.waited += wait
        self.reason = reason
        return wait

    def annotate(self, error: BaseException) -> None:
        """Add the attempt count and the reason for giving up to ``error``'s notes."""
        request = self.request
        note = (f"fastkit: {request.method} {self.log.url(request.url)} failed after "
                f"{self.number} attempt{'s' if self.number != 1 else ''}"
                + (f" ({self.reason})" if self.reason else ""))
        error.add_note(note)
