"""The stop signal a scheduler or thread pool gives its running work.

    while not threadpool.is_stopped():
        poll_queue()
        threadpool.sleep(5)          # returns at once when shutdown begins
"""

from __future__ import annotations

import asyncio
import threading
import time

__all__ = ["Stopping"]

_ASYNC_POLL = 0.05


class Stopping:
    """A flag set when shutdown begins, with sleeps that it cuts short."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def is_stopped(self) -> bool:
        """True once shutdown has begun."""
        return self._event.is_set()

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True (at once) when shutdown begins meanwhile."""
        return self._event.wait(max(0.0, seconds))

    async def asleep(self, seconds: float) -> bool:
        """:meth:`sleep` for coroutines: the event loop keeps running."""
        deadline = time.monotonic() + max(0.0, seconds)
        while not self._event.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(_ASYNC_POLL, remaining))
        return True

    def stop(self) -> None:
        self._event.set()

    def reset(self) -> None:
        self._event.clear()
