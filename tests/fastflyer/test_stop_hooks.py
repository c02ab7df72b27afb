"""Shutdown runs every stop hook, whatever one of them raises (CancelledError,
KeyboardInterrupt included), each within its time, and reports what went wrong."""

from __future__ import annotations

import asyncio
import time

import pytest
from starlette.testclient import TestClient

from fastflyer import background_scheduler
from fastflyer.lifespan import Lifecycle


def test_a_hook_raising_cancelled_error_does_not_stop_the_later_hooks(build, logs):
    assert not background_scheduler.running  # started by this app, stopped by it
    app = build(shutdown_timeout=5)
    ran: list[str] = []

    # Added after the app's own components: they run first at shutdown, before the
    # schedulers' stop hooks.
    async def cancelled() -> None:
        ran.append("cancelled")
        raise asyncio.CancelledError

    def broken() -> None:
        ran.append("broken")
        raise RuntimeError("cannot close the pool")

    app.lifecycle.add("cancelling", stop=cancelled)
    app.lifecycle.add("broken", stop=broken)
    started = time.monotonic()
    with TestClient(app):
        assert background_scheduler.running
    assert time.monotonic() - started < 5
    assert ran == ["broken", "cancelled"]
    assert not background_scheduler.running
    assert app.lifecycle.stopped
    problems = app.lifecycle.stop_problems
    assert any("shutdown of broken failed: RuntimeError: cannot close the pool" in p
               for p in problems), problems
    assert any("shutdown of cancelling failed: CancelledError" in p for p in problems), problems
    assert "shutdown of cancelling failed: CancelledError" in logs.text()
    assert "shutdown of broken failed: RuntimeError" in logs.text()


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_a_keyboard_interrupt_from_a_hook_is_raised_after_every_hook_ran(kind, logs):
    lifecycle = Lifecycle(shutdown_timeout=2)
    ran: list[str] = []

    async def interrupted_async() -> None:
        raise KeyboardInterrupt

    def interrupted_sync() -> None:
        raise KeyboardInterrupt

    lifecycle.add("last", stop=lambda: ran.append("last"))
    lifecycle.add("interrupted", stop=interrupted_async if kind == "async" else interrupted_sync)
    lifecycle.add("first", stop=lambda: ran.append("first"))
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(lifecycle.shutdown())
    assert ran == ["first", "last"]
    assert lifecycle.stopped
    assert lifecycle.stop_problems == ["shutdown of interrupted failed: KeyboardInterrupt: "]


def test_a_hook_that_swallows_its_cancel_is_left_behind_within_the_timeout():
    lifecycle = Lifecycle(shutdown_timeout=0.5)
    ran: list[str] = []

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue

    lifecycle.add("last", stop=lambda: ran.append("last"))
    lifecycle.add("stubborn", stop=stubborn)

    async def main() -> float:
        began = time.monotonic()
        await lifecycle.shutdown()
        took = time.monotonic() - began
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.get_coro().close()
        return took

    assert asyncio.run(main()) < 2
    assert ran == ["last"]
    assert "shutdown of stubborn did not finish" in lifecycle.stop_problems[0]


def test_a_cancelled_shutdown_still_runs_the_later_hooks_then_is_cancelled():
    lifecycle = Lifecycle(shutdown_timeout=5)
    ran: list[str] = []
    entered = asyncio.Event()

    async def slow() -> None:
        entered.set()
        await asyncio.sleep(30)

    lifecycle.add("last", stop=lambda: ran.append("last"))
    lifecycle.add("slow", stop=slow)

    async def main() -> None:
        shutdown = asyncio.create_task(lifecycle.shutdown())
        await entered.wait()
        shutdown.cancel()
        with pytest.raises(asyncio.CancelledError):
            await shutdown

    asyncio.run(main())
    assert ran == ["last"]
    assert lifecycle.stopped
    assert "shutdown of slow was cancelled" in lifecycle.stop_problems[0]
