"""The stop signal a scheduler or thread pool gives its running work.

    while not threadpool.is_stopped():
        poll_queue()
        threadpool.sleep(5)          # returns at once when shutdown begins

Each run (a scheduled fire, a thread pool task) has a signal of its own, set when the
owner shuts down *or* when the run's lock is lost (its lease could not be renewed: it
expired, or the lock store restarted and forgot it). Inside the run, ``is_stopped()`` and
``sleep()`` of its owner answer for that signal, so a holder that lost its lock stops at
its next check instead of running beside the process that took the lock over.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Stopping", "current_run_signal"]

_ASYNC_POLL = 0.05
# (owner, the run's signal) of the run going on in this context.
_RUN: contextvars.ContextVar[tuple[Stopping, threading.Event] | None] = contextvars.ContextVar(
    "fastkit_run_signal", default=None)


def current_run_signal() -> threading.Event | None:
    """The stop signal of the run going on in this context (``None`` outside any run)."""
    run = _RUN.get()
    return run[1] if run is not None else None


class Stopping:
    """A flag set when shutdown begins, with sleeps that it cuts short."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._runs: set[threading.Event] = set()
        self._guard = threading.Lock()

    def _signal(self) -> threading.Event:
        run = _RUN.get()
        return run[1] if run is not None and run[0] is self else self._event

    def is_stopped(self) -> bool:
        """True once shutdown has begun, or once the calling run lost its lock."""
        return self._signal().is_set()

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True (at once) when the run is told to stop meanwhile."""
        return self._signal().wait(max(0.0, seconds))

    async def asleep(self, seconds: float) -> bool:
        """:meth:`sleep` for coroutines: the event loop keeps running."""
        signal = self._signal()
        deadline = time.monotonic() + max(0.0, seconds)
        while not signal.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(_ASYNC_POLL, remaining))
        return True

    @contextmanager
    def run(self) -> Iterator[threading.Event]:
        """Mark a run in this context: its own signal, set by :meth:`stop` (or by whoever
        holds it: a lost lock sets it too)."""
        signal = threading.Event()
        with self._guard:
            self._runs.add(signal)
            if self._event.is_set():
                signal.set()
        token = _RUN.set((self, signal))
        try:
            yield signal
        finally:
            _RUN.reset(token)
            with self._guard:
                self._runs.discard(signal)

    def stop(self) -> None:
        with self._guard:
            self._event.set()
            for signal in self._runs:
                signal.set()

    def reset(self) -> None:
        self._event.clear()
