"""Waiting in tests without sleeping to synchronise: poll a condition up to a deadline (in a
thread or on the running loop), or release several threads at once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def wait_for(condition: Callable[[], object], timeout: float = 10, what: str = "") -> None:
    """Poll ``condition`` every 20 ms until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what or 'the condition'}")
        time.sleep(0.02)


async def until(condition: Callable[[], object], timeout: float = 10, what: str = "") -> None:
    """:func:`wait_for` on the running loop: poll ``condition`` every 20 ms, letting the
    loop run in between; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what or 'the condition'}")
        await asyncio.sleep(0.02)


def at_once(count: int, call: Callable[[], Any]) -> list[Any]:
    """``call()`` from ``count`` threads released together; their results."""
    barrier = threading.Barrier(count)

    def run() -> Any:
        barrier.wait(10)
        return call()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: run(), range(count)))
