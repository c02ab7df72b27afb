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
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import CancelledError as FutureCancelled
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from fastkit.logging import logger

__all__ = ["LoopThread", "Once"]

T = TypeVar("T")


async def _cancel_the_rest(grace: float = 1.0) -> None:
    current = asyncio.current_task()
    rest = [task for task in asyncio.all_tasks() if task is not current]
    for task in rest:
        task.cancel()
    if rest:
        await asyncio.wait(rest, timeout=grace)


class Once:
    """A start shared by everyone who asks for it at the same time.

        await self._once.run(self._connect)       # 50 tasks at once: one connect

    Concurrent callers on one loop wait for the same task; once it is done (failed, or
    succeeded and the caller keeps what it made) the next ``run`` starts afresh. A
    caller that gives up (cancelled, its deadline passed) does not cut the start short
    for the others; when the last one gives up, the start is cancelled, so nothing is
    left connecting for nobody.
    """

    def __init__(self) -> None:
        self._task: asyncio.Task[Any] | None = None
        self._waiting = 0

    async def run(self, start: Callable[[], Coroutine[Any, Any, Any]]) -> bool:
        """Run ``start()`` or wait for the one under way: ``False`` if :meth:`cancel`
        cut it short (this caller's own cancellation is raised as usual)."""
        loop = asyncio.get_running_loop()
        task = self._task
        if task is None or task.done() or task.get_loop() is not loop:
            task = self._task = loop.create_task(start())
            self._waiting = 0
        self._waiting += 1
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and current is not None and not current.cancelling():
                return False  # cancel() stopped the start, not this caller's cancellation
            raise
        finally:
            if self._task is task:
                self._waiting -= 1
                if self._waiting == 0 and not task.done():
                    task.cancel()
        return True

    def cancel(self) -> asyncio.Task[Any] | None:
        """Cancel a start under way; its task (to wait for), if there was one."""
        task, self._task = self._task, None
        if task is None or task.done():
            return None
        task.cancel()
        return task


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
        """Run ``final`` (if any) on the loop, then stop the loop and its thread.

        Bounded by ``timeout`` in all (plus a second for the tasks left behind to end);
        ``final`` overrunning or cancelled inside is logged, not raised. What is still
        waiting on the loop gets :class:`concurrent.futures.CancelledError`.
        """
        with self._guard:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            if final is not None:
                final.close()
            return
        deadline = None if timeout is None else time.monotonic() + timeout

        def left(floor: float = 0.0) -> float | None:
            return None if deadline is None else max(deadline - time.monotonic(), floor)

        try:
            if final is not None:
                future = asyncio.run_coroutine_threadsafe(final, loop)
                try:
                    future.result(left())
                except FutureTimeout:
                    future.cancel()
                    logger.warning("{}: closing did not finish within {:g} s; going on",
                                   self.name, timeout)
                except FutureCancelled:
                    logger.warning("{}: closing was cancelled inside its loop", self.name)
        finally:
            # What the clients left behind is cancelled, as asyncio.run does at its end.
            cancelling = asyncio.run_coroutine_threadsafe(_cancel_the_rest(), loop)
            try:
                cancelling.result(left(1.0))
            except (FutureTimeout, FutureCancelled):
                logger.warning("{}: tasks left on its loop did not end", self.name)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(left(1.0))
            if thread.is_alive():
                logger.warning("{}: its thread did not stop; left behind (a daemon)",
                               self.name)
            else:
                loop.close()
