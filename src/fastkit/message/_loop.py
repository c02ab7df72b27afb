"""A private event loop on a daemon thread: how the blocking clients run the asyncio ones.

    loop = LoopThread("fastkit-kafka-producer")
    result = loop.call(coroutine, timeout=10)     # started at the first call
    loop.close(final=coroutine)                   # runs ``final`` there, then stops

The coroutine runs on the private loop; the calling thread waits for its result. A wait
that is interrupted (``KeyboardInterrupt``, a timeout) cancels the coroutine, so nothing
is left running behind the caller's back. Context variables (the request id) travel
with the call.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")


async def _cancel_the_rest() -> None:
    current = asyncio.current_task()
    rest = [task for task in asyncio.all_tasks() if task is not current]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)


class LoopThread:
    """One event loop on one daemon thread, started on first use."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    @property
    def running(self) -> bool:
        return self._loop is not None

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._guard:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name=self.name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop and wait up to ``timeout`` seconds for its result."""
        # The task runs in a copy of the caller's context (its request id included).
        future = asyncio.run_coroutine_threadsafe(coroutine, self._started())
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(f"no result within {timeout:g} s") from None
        except BaseException:
            future.cancel()  # interrupted: the coroutine must not go on alone
            raise

    def close(self, final: Coroutine[Any, Any, Any] | None = None,
              timeout: float | None = 30) -> None:
        """Run ``final`` (if any) on the loop, then stop the loop and its thread."""
        with self._guard:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            if final is not None:
                final.close()
            return
        try:
            if final is not None:
                asyncio.run_coroutine_threadsafe(final, loop).result(timeout)
        finally:
            # What the clients left behind is cancelled, as asyncio.run does at its end.
            asyncio.run_coroutine_threadsafe(_cancel_the_rest(), loop).result(timeout)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if not thread.is_alive():
                loop.close()
