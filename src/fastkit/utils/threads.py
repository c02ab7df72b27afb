"""Blocking calls awaited from asyncio without holding up the process's exit.

    result = await run_in_daemon_thread(pool.ping)                    # like asyncio.to_thread
    await asyncio.wait_for(run_in_daemon_thread(hook), timeout=2.0)  # give up after 2 s

``asyncio.to_thread`` (and Starlette's ``run_in_threadpool``) run the call on a pool
thread that the interpreter, and ``asyncio.run`` on Python 3.11, wait for at exit
without bound: one call that never returns (a driver with no timeout, a server that
accepts and never answers) keeps a stopped process alive. :func:`run_in_daemon_thread`
runs it on a new daemon thread instead. The thread is one per call: use it for
occasional calls (readiness probes, stop hooks), not for every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["run_in_daemon_thread"]

T = TypeVar("T")


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the waiter gave up (a timeout cancelled it): drop the result
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def run_in_daemon_thread(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> asyncio.Future[T]:
    """Start ``func(*args, **kwargs)`` on a new daemon thread; a future of its result.

    Call it from a running event loop (``RuntimeError`` otherwise); awaiting the future
    gives ``func``'s return value or raises its exception. The call runs in a copy of
    the caller's context (the request id goes along, as with ``asyncio.to_thread``).
    Cancelling the future, as ``asyncio.wait_for`` does on its timeout, leaves ``func``
    to finish alone; its result is dropped, and its thread never delays the process's
    exit.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def run() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = context.run(func, *args, **kwargs)
        except BaseException as exc:  # handed to the waiter, raised there
            error = exc
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_settle, future, result, error)

    name = getattr(func, "__qualname__", type(func).__name__)
    threading.Thread(target=run, name=f"daemon: {name}", daemon=True).start()
    return future
