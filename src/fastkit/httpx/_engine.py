"""The retry engine: one small state machine per logical call, shared by sync and async.

It decides, after each attempt, whether to try again and how long to wait first;
the clients only run the attempts and sleep. Decisions:

- ``retry_by_except`` / ``retry_by_result`` given: they decide, for every method.
- otherwise, errors where the request never reached the server (connect error,
  connect timeout, pool timeout) retry for every method; read/write timeouts,
  dropped connections and the ``retry_statuses`` (429, 500, 502, 503, 504)
  retry only for ``retry_methods`` (the idempotent ones).
- a body that cannot be replayed (a generator, a stream) is never sent twice.

It gives up when ``stop_max_attempt_number`` attempts are spent or when the
next wait would end past ``stop_max_delay`` seconds from the first attempt.
A ``Retry-After`` header (seconds or an HTTP date) replaces the computed wait.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from httpx._multipart import MultipartStream

from fastkit.httpx._policy import RetryPolicy

__all__ = ["Attempts", "instant_waits", "parse_retry_after", "set_testing"]

# Never reached the server: safe to send again whatever the method.
_NEVER_SENT: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout,
                                            httpx.PoolTimeout)
# May have reached the server: only idempotent methods are sent again.
_MAYBE_SENT: tuple[type[Exception], ...] = (httpx.ReadTimeout, httpx.WriteTimeout,
                                            httpx.ReadError, httpx.WriteError,
                                            httpx.RemoteProtocolError)
_REPLAYABLE_STREAMS = (httpx.ByteStream, MultipartStream)


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
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def is_replayable(request: httpx.Request) -> bool:
    """True when the request body can be sent again (bytes, form, JSON, multipart)."""
    return isinstance(request.stream, _REPLAYABLE_STREAMS)


class Attempts:
    """The retry state of one logical call.

    ``after_response`` and ``after_error`` return the seconds to wait before the
    next attempt, or ``None`` to stop; ``number`` is the attempts made so far.
    """

    __slots__ = ("method", "number", "policy", "reason", "replayable", "started", "waited")

    def __init__(self, policy: RetryPolicy, request: httpx.Request) -> None:
        self.policy = policy
        self.method = request.method
        self.replayable = is_replayable(request)
        self.started = time.monotonic()
        self.number = 1
        self.waited = 0.0
        self.reason = ""

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def after_response(self, response: httpx.Response) -> float | None:
        policy = self.policy
        self.reason = ""
        if not policy.enabled:
            return None
        if policy.retry_by_result is not None:
            if not policy.retry_by_result(response):
                return None
        elif (response.status_code not in policy.retry_statuses
              or self.method not in policy.retry_methods):
            return None
        hint = None
        if policy.respect_retry_after:
            hint = parse_retry_after(response.headers.get("retry-after"))
        return self._schedule(f"HTTP {response.status_code}", hint)

    def after_error(self, error: Exception) -> float | None:
        policy = self.policy
        self.reason = ""
        if not policy.enabled:
            return None
        if policy.retry_by_except is not None:
            if not isinstance(error, policy.retry_by_except):
                return None
        elif not (isinstance(error, _NEVER_SENT)
                  or (isinstance(error, _MAYBE_SENT) and self.method in policy.retry_methods)):
            return None
        return self._schedule(f"{type(error).__name__}: {error}".rstrip(": "), None)

    def _schedule(self, reason: str, retry_after: float | None) -> float | None:
        policy = self.policy
        if not self.replayable:
            self.reason = f"{reason}; body cannot be replayed"
            return None
        if self.number >= policy.stop_max_attempt_number:
            self.reason = f"{reason}; {self.number} attempts spent"
            return None
        if retry_after is not None:
            wait = retry_after
        else:
            wait = policy.backoff(self.number)
            if policy.wait_jitter_max:
                wait += random.uniform(0, policy.wait_jitter_max)
        budget = policy.stop_max_delay
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

    def annotate(self, error: BaseException, description: str) -> None:
        """Add the attempt count and the reason for giving up to ``error``'s notes."""
        note = (f"fastkit: {description} failed after {self.number} attempt"
                f"{'s' if self.number != 1 else ''}"
                + (f" ({self.reason})" if self.reason else ""))
        error.add_note(note)
