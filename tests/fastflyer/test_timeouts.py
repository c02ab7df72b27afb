"""A component that never answers holds neither a readiness probe nor the process's exit.

The failing input of issue 15: ``flyer_db_url`` at a server that accepts connections and
never sends a byte. The readiness probe must answer 503 within its deadline, the probe's
thread must end on its own (the driver's timeouts are the check's), and after SIGTERM the
served process must exit within 15 s. The per-client timeouts themselves are tested in
``tests/fastkit/test_client_timeouts.py``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from test_launch import FASTFLYER, env_for, healthy_address, started

from fastflyer.components import CHECK_TIMEOUT
from fastflyer.health import Readiness
from hung_server import hung_server

DEMO = Path(__file__).parent / "demo_project"
MARGIN = 2.0  # seconds past a deadline that a loaded machine may take
EXIT_WITHIN = 15.0  # seconds from SIGTERM to the end of the process (the bound)


def _hung_db_url(port: int) -> str:
    return f"mysql+pymysql://root@127.0.0.1:{port}/test"


def _probe_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.endswith("database_ping")]


async def test_a_check_that_never_returns_is_down_on_time_and_runs_once_at_a_time():
    readiness = Readiness()
    calls: list[float] = []
    release = threading.Event()

    def hangs() -> None:
        calls.append(time.monotonic())
        release.wait(30)

    readiness.register("db", hangs, timeout=0.2)
    started_at = time.monotonic()
    first, second = await asyncio.gather(readiness.report(), readiness.report())
    third = await readiness.report()  # the first run is still going: it waits for that one
    assert time.monotonic() - started_at < 2 * 0.2 + MARGIN
    for report in (first, second, third):
        assert report["ready"] is False
        assert report["components"]["db"]["error"] == "no answer within 0.2 s"
    assert len(calls) == 1  # one thread, however many probes
    release.set()  # the stuck run returns: the probe waiting for it is up
    deadline = time.monotonic() + 10
    while (await readiness.report())["ready"] is False:
        assert time.monotonic() < deadline, "the check never came back up"
    assert len(calls) == 1
    assert (await readiness.report())["ready"] is True  # a finished run is not reused
    assert len(calls) == 2


SCRIPT = """
import asyncio, threading
from fastflyer.health import Readiness

readiness = Readiness()
readiness.register("stuck", threading.Event().wait, timeout=0.2)  # never returns
print(asyncio.run(readiness.report())["components"]["stuck"]["error"], flush=True)
"""


def test_a_check_that_never_returns_does_not_hold_up_exit(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent(SCRIPT))
    started_at = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=EXIT_WITHIN)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "no answer within 0.2 s\n"
    assert time.monotonic() - started_at < EXIT_WITHIN


def test_readiness_answers_503_on_time_and_its_probe_ends_on_its_own(build):
    with hung_server() as port:
        app = build(db_url=_hung_db_url(port))
        with TestClient(app, raise_server_exceptions=False) as client:
            started_at = time.monotonic()
            response = client.get("/health_check/ready")
            elapsed = time.monotonic() - started_at
            assert response.status_code == 503
            database = response.json()["data"]["components"]["database"]
            assert database["status"] == "down", database
            assert elapsed < CHECK_TIMEOUT + MARGIN, elapsed
            # The driver's read timeout is the check's: its thread ends, not 60 s later.
            deadline = time.monotonic() + CHECK_TIMEOUT + MARGIN
            while _probe_threads():
                assert time.monotonic() < deadline, "the probe's thread is still running"
                time.sleep(0.05)


@contextmanager
def _served(launcher: str, project: Path, env: dict[str, str], logs: Path,
            launch: Callable[..., Any]) -> Iterator[tuple[str, subprocess.Popen[Any], Path]]:
    """``project`` served on 127.0.0.1, port 0: (its URL, its process, its console log)."""
    if launcher == "uvicorn":  # the conftest's server: uvicorn main:app
        server = launch(env, project)
        yield server.url, server.process, server.console
        return
    log = logs / "run.log"
    logs.mkdir(parents=True, exist_ok=True)
    run_env = env_for(logs, flyer_host="127.0.0.1", flyer_log_path=str(logs / "logs"), **env)
    with started([FASTFLYER, "run", "--port", "0"], project, run_env, log) as process:
        yield healthy_address(process, log), process, log


@pytest.mark.parametrize("launcher", ["uvicorn", "fastflyer run"])
def test_a_database_that_never_answers_holds_neither_readiness_nor_shutdown(tmp_path, launcher,
                                                                           launch):
    project = tmp_path / "demo"
    shutil.copytree(DEMO, project, ignore=shutil.ignore_patterns("__pycache__"))
    with hung_server() as port:
        # PYTHONFAULTHANDLER: a process that does not stop is sent SIGABRT, and its threads'
        # stacks land in its console log, which the failure shows.
        env = {"flyer_db_url": _hung_db_url(port), "PYTHONFAULTHANDLER": "1"}
        with _served(launcher, project, env, tmp_path / "logs", launch) as (url, process,
                                                                            console):
            started_at = time.monotonic()
            response = httpx.get(f"{url}/health_check/ready", timeout=30)
            elapsed = time.monotonic() - started_at
            assert response.status_code == 503, response.text
            assert response.json()["data"]["components"]["database"]["status"] == "down"
            assert elapsed < CHECK_TIMEOUT + MARGIN, elapsed

            process.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            try:
                process.wait(EXIT_WITHIN)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGABRT)  # faulthandler dumps every thread
                process.wait(10)
                pytest.fail(f"still running {EXIT_WITHIN:g} s after SIGTERM; its stacks:\n"
                            f"{console.read_text()}")
            assert time.monotonic() - stopping < EXIT_WITHIN
            output = console.read_text()
            assert "Traceback" not in output
            if launcher == "fastflyer run":  # a clean stop: nothing had to be left behind
                assert process.returncode == 0, output
