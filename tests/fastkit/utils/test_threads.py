"""``run_in_daemon_thread``: a blocking call awaited without holding up the process's exit."""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from fastkit.utils import run_in_daemon_thread

_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("test_threads_var", default="unset")


async def test_it_returns_the_result_from_a_daemon_thread_with_the_callers_context():
    _VAR.set("request-7")

    def where(a: int, b: int = 0) -> tuple[int, bool, str, bool]:
        current = threading.current_thread()
        return a + b, current.daemon, _VAR.get(), current is threading.main_thread()

    assert await run_in_daemon_thread(where, 40, b=2) == (42, True, "request-7", False)


async def test_it_raises_the_calls_exception():
    def fails() -> None:
        raise ConnectionRefusedError("127.0.0.1:1 refused")

    with pytest.raises(ConnectionRefusedError, match=r"127\.0\.0\.1:1 refused"):
        await run_in_daemon_thread(fails)


async def test_a_waiter_that_gives_up_leaves_the_call_to_finish_alone():
    release, finished = threading.Event(), threading.Event()

    def blocks() -> str:
        release.wait(10)
        finished.set()
        return "late"

    future = run_in_daemon_thread(blocks)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(future, 0.05)
    assert future.cancelled() and not finished.is_set()
    release.set()
    assert await asyncio.to_thread(finished.wait, 10)


def test_it_needs_a_running_loop():
    with pytest.raises(RuntimeError, match="no running event loop"):
        run_in_daemon_thread(print)


SCRIPT = """
import asyncio, threading, time
from fastkit.utils import run_in_daemon_thread

async def main():
    never = threading.Event()
    try:
        await asyncio.wait_for({runner}(never.wait), 0.1)
    except TimeoutError:
        print("gave up", flush=True)

asyncio.run(main())
"""


@pytest.mark.parametrize(("runner", "exits"), [("run_in_daemon_thread", True),
                                                ("asyncio.to_thread", False)])
def test_a_call_that_never_returns_does_not_hold_up_exit(runner, exits, tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT.format(runner=runner)))
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        code = process.wait(timeout=10 if exits else 3)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        assert process.stdout is not None
        output = process.stdout.read()
        process.stdout.close()
    assert output == "gave up\n"
    if exits:
        assert code == 0 and time.monotonic() - started < 10
    else:  # what the helper is for: the default executor's thread blocks asyncio.run's exit
        assert code is None
