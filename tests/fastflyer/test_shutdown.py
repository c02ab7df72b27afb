"""Stopping ``fastflyer run`` and ``fastflyer serve``: drain, then the stop hooks, within a
bound, with a status that says whether the stop was clean (fastflyer.server).

Each test serves a small project on port 0 whose endpoints mark when they start (so that
the signal is sent once the requests are in flight, not after a guessed sleep) and whose
stop hook leaves a file per process.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_launch import FASTFLYER, env_for, healthy_address, started, wait_for

APP = '''
import asyncio, os, threading
from pathlib import Path
from fastflyer import APIRouter

router = APIRouter(tags=["slow"])
MARKS = Path(os.environ["MARKS"])
_never = threading.Event()


def _entered(tag: str) -> None:
    (MARKS / f"entered-{tag}").touch()


@router.get("/slow")
async def slow(tag: str, seconds: float = 2.0):
    _entered(tag)
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@router.get("/stuck")
def stuck(tag: str):
    _entered(tag)
    _never.wait()  # a sync endpoint in a call that never returns
'''

MAIN = '''
import os, threading
from pathlib import Path
from fastflyer import FlyerAPI

MARKS = Path(os.environ["MARKS"])
if os.environ.get("SLOW_IMPORT"):  # an app that takes a while to load
    (MARKS / f"importing-{os.getpid()}").touch()
    threading.Event().wait(float(os.environ["SLOW_IMPORT"]))
app = FlyerAPI(app_path=__file__)


@app.lifecycle.on_shutdown
def leave_a_mark():
    (MARKS / f"stopped-{os.getpid()}").touch()


if os.environ.get("SLOW_HOOK"):  # a stop hook that takes a while, then finishes
    @app.lifecycle.on_shutdown
    def slow():
        (MARKS / f"stopping-{os.getpid()}").touch()
        threading.Event().wait(float(os.environ["SLOW_HOOK"]))


if os.environ.get("STUCK_HOOK"):
    @app.lifecycle.on_shutdown
    def hangs():
        threading.Event().wait()
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "stopping"
    (path / "app" / "slow").mkdir(parents=True)
    (path / "main.py").write_text(MAIN)
    (path / "app" / "__init__.py").write_text("")
    (path / "app" / "slow" / "__init__.py").write_text(APP)
    return path


class Served:
    """A ``run``/``serve`` process of the project, with its marks and its log."""

    def __init__(self, process: Iterator[object], url: str, marks: Path, log: Path,
                 access_log: Path) -> None:
        self.process = process
        self.url = url
        self.marks = marks
        self.log = log
        self.access_log = access_log

    def entered(self) -> int:
        return len(list(self.marks.glob("entered-*")))

    def stopped(self) -> int:
        return len(list(self.marks.glob("stopped-*")))


@pytest.fixture
def serve_project(tmp_path: Path, project: Path) -> Iterator[object]:
    """``serve_project(command, **env)``: the project served on port 0, with two workers
    under ``serve``."""
    stack: list[object] = []

    def start(command: str, **env: str):  # type: ignore[no-untyped-def]
        marks = tmp_path / f"marks{len(stack)}"
        marks.mkdir()
        access_log = tmp_path / f"access{len(stack)}.log"
        log = tmp_path / f"console{len(stack)}.log"
        args = [FASTFLYER, command, "--host", "127.0.0.1", "--port", "0"]
        if command == "serve":
            args += ["--workers", "2"]
        context = started(args, project, env_for(
            tmp_path, MARKS=str(marks), flyer_access_logfile=str(access_log),
            flyer_log_path=str(tmp_path / "logs"), **env), log)
        process = context.__enter__()
        stack.append(context)
        url = healthy_address(process, log)
        if command == "serve":  # both workers up, so that both have something to stop
            wait_for("two workers", lambda: log.read_text().count(
                "Application startup complete") >= 2, process, log)
        return Served(process, url, marks, log, access_log)

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)  # type: ignore[attr-defined]


def requests_in_flight(served: Served, path: str, count: int,
                       timeout: float = 60) -> tuple[list[object], list[threading.Thread]]:
    """``count`` concurrent GETs of ``path`` (each with its tag), returned once every one
    has entered its endpoint; the list fills with each status code (or exception name)."""
    results: list[object] = []

    def get(tag: int) -> None:
        try:
            answer = httpx.get(f"{served.url}{path}&tag={tag}", timeout=timeout)
            results.append(answer.status_code)
        except httpx.HTTPError as exc:
            results.append(type(exc).__name__)

    threads = [threading.Thread(target=get, args=(tag,)) for tag in range(count)]
    for thread in threads:
        thread.start()
    wait_for(f"{count} requests in flight", lambda: served.entered() >= count,
             served.process, served.log)  # type: ignore[arg-type]
    return results, threads


def stop(served: Served, signum: int = signal.SIGTERM, within: float = 60) -> tuple[int, float]:
    """Send ``signum``; the exit status and the seconds it took."""
    began = time.monotonic()
    served.process.send_signal(signum)  # type: ignore[attr-defined]
    status = served.process.wait(timeout=within)  # type: ignore[attr-defined]
    return status, time.monotonic() - began


@pytest.mark.parametrize("command", ["run", "serve"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_default_settings_let_requests_in_flight_finish(serve_project, command, signum):
    # The input: 10 concurrent 2 s requests, the stop signal while they run.
    served = serve_project(command)
    results, threads = requests_in_flight(served, "/flyer/slow?seconds=2", 10)
    status, _took = stop(served, signum)
    for thread in threads:
        thread.join(timeout=30)
    log = served.log.read_text()
    assert results == [200] * 10, log
    assert status == 0, log
    # every process ran its stop hooks, and wrote every access line before it exited
    assert served.stopped() == (2 if command == "serve" else 1), log
    access = [line for line in served.access_log.read_text().splitlines() if "/flyer/slow" in line]
    assert len(access) == 10
    # a clean stop is quiet
    for noise in ("Error while closing socket", "was sent SIG", "Traceback", "ERROR"):
        assert noise not in log, log


@pytest.mark.parametrize("command", ["run", "serve"])
@pytest.mark.parametrize("drain", ["0", "0.5", "1"])
def test_no_drain_value_means_wait_forever(serve_project, command, drain):
    # A long poll is open; the drain is short (0 and 0.5 were "wait forever" once):
    # the poll is cut off with a 503, the stop hooks still run, the status says unclean.
    served = serve_project(command, flyer_graceful_timeout=drain)
    results, threads = requests_in_flight(served, "/flyer/slow?seconds=120", 1)
    status, took = stop(served, within=30)
    for thread in threads:
        thread.join(timeout=30)
    log = served.log.read_text()
    assert took < float(drain) + 10, log
    assert results == [503], log
    assert status == 1, log
    assert "1 request(s) cut off" in log
    assert served.stopped() == (2 if command == "serve" else 1), log


@pytest.mark.parametrize("command", ["run", "serve"])
def test_a_stop_hook_that_hangs_is_left_behind_within_the_shutdown_timeout(serve_project,
                                                                           command):
    served = serve_project(command, STUCK_HOOK="1", flyer_shutdown_timeout="1")
    status, took = stop(served, within=30)
    log = served.log.read_text()
    assert status == 1, log
    assert took < 1 + 5, log
    assert "shutdown of " in log and "hangs did not finish within flyer_shutdown_timeout" in log
    assert served.stopped() == (2 if command == "serve" else 1), log  # the others still ran


@pytest.mark.parametrize("command", ["run", "serve"])
def test_a_thread_stuck_for_ever_does_not_keep_the_process(serve_project, command):
    # A sync endpoint blocked in a call with no timeout holds a non-daemon thread: the
    # process still ends within drain + stop hooks + margin, and says what held it.
    served = serve_project(command, flyer_graceful_timeout="0.5", flyer_shutdown_timeout="1")
    _results, _threads = requests_in_flight(served, "/flyer/stuck?", 1, timeout=30)
    status, took = stop(served, within=30)
    log = served.log.read_text()
    assert status == 1, log
    assert took < 0.5 + 1 + 2 + 4, log
    assert "did not stop within" in log and "AnyIO worker thread" in log


def test_the_master_kills_a_worker_that_outlives_the_budget_and_says_so(serve_project):
    # SIGSTOP freezes a worker: nothing in it can end it; gunicorn's master kills it once
    # the stop budget ran out, and exits with the unclean status.
    served = serve_project("serve", flyer_graceful_timeout="0.5", flyer_shutdown_timeout="1")
    workers = _children(served.process.pid)  # type: ignore[attr-defined]
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGSTOP)
    status, took = stop(served, within=60)
    log = served.log.read_text()
    assert status == 1, log
    assert "still running" in log and "killed" in log
    assert took < 0.5 + 1 + 2 + 1 + 5


def _children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


@pytest.mark.parametrize("command", ["run", "serve"])
def test_a_second_ctrl_c_stops_at_once_and_says_so_without_a_traceback(serve_project,
                                                                       command):
    served = serve_project(command)
    results, threads = requests_in_flight(served, "/flyer/slow?seconds=120", 4)
    began = time.monotonic()
    served.process.send_signal(signal.SIGINT)  # type: ignore[attr-defined]
    wait_for("the drain", lambda: "Shutting down" in served.log.read_text(),
             served.process, served.log)  # type: ignore[arg-type]
    served.process.send_signal(signal.SIGINT)  # type: ignore[attr-defined]
    status = served.process.wait(timeout=30)  # type: ignore[attr-defined]
    took = time.monotonic() - began
    for thread in threads:
        thread.join(timeout=30)
    log = served.log.read_text()
    assert status == 1, log
    assert took < 10, log  # not the 30 s drain
    assert results == [503] * 4, log
    assert "stopped at once (a second Ctrl-C, or SIGQUIT)" in log
    assert "Traceback" not in log and "was sent SIG" not in log, log
    assert served.stopped() == (2 if command == "serve" else 1), log  # hooks still ran


def test_the_reloading_server_passes_on_an_unclean_stop(serve_project):
    # Under reload the drain is 1 s: a 120 s request is cut off, and the reloader's own
    # status says so, as run's does without reload.
    served = serve_project("run", flyer_reload="1")
    results, threads = requests_in_flight(served, "/flyer/slow?seconds=120", 1)
    status, took = stop(served, within=30)
    for thread in threads:
        thread.join(timeout=30)
    log = served.log.read_text()
    assert results == [503], log
    assert status == 1, log
    assert took < 1 + 10, log


def test_the_reloading_server_stops_cleanly_with_status_0(serve_project):
    served = serve_project("run", flyer_reload="1")
    results, threads = requests_in_flight(served, "/flyer/slow?seconds=0.2", 2)
    for thread in threads:
        thread.join(timeout=30)
    status, _took = stop(served, within=30)
    assert results == [200, 200]
    assert status == 0, served.log.read_text()


def _workers(served: Served) -> list[int]:
    return _children(served.process.pid)  # type: ignore[attr-defined]


@pytest.mark.parametrize("killed", [True, False], ids=["one killed", "none killed"])
def test_a_worker_killed_while_stopping_makes_the_stop_unclean(serve_project, killed):
    # Each worker's stop hook takes 2 s and finishes; one worker is SIGKILLed meanwhile
    # (by the OOM killer, say): the master's status says so.
    served = serve_project("serve", SLOW_HOOK="2")
    workers = _workers(served)
    served.process.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    wait_for("the stop hooks", lambda: len(list(served.marks.glob("stopping-*"))) == 2,
             served.process, served.log)  # type: ignore[arg-type]
    if killed:
        os.kill(workers[0], signal.SIGKILL)
    status = served.process.wait(timeout=60)  # type: ignore[attr-defined]
    assert status == (1 if killed else 0), served.log.read_text()


def test_an_unclean_worker_restart_earlier_does_not_make_a_clean_stop_unclean(serve_project):
    # SIGHUP replaces the workers; the old one cuts off a request (drain 0.5 s) and ends
    # with status 1. The later stop, with nothing in flight, is clean: status 0.
    served = serve_project("serve", flyer_graceful_timeout="0.5")
    results, threads = requests_in_flight(served, "/flyer/slow?seconds=120", 1)
    old = set(_workers(served))
    served.process.send_signal(signal.SIGHUP)  # type: ignore[attr-defined]
    for thread in threads:
        thread.join(timeout=30)
    assert results == [503]
    wait_for("new workers", lambda: len(set(_workers(served)) - old) == 2
             and not old & set(_workers(served)), served.process,  # type: ignore[arg-type]
             served.log)
    wait_for("their start-up", lambda: served.log.read_text().count(
        "Application startup complete") >= 4, served.process, served.log)  # type: ignore[arg-type]
    status, _took = stop(served)
    assert status == 0, served.log.read_text()


def test_workers_stop_when_their_master_is_killed(serve_project):
    served = serve_project("serve")
    workers = _workers(served)
    served.process.kill()  # type: ignore[attr-defined]
    served.process.wait(timeout=10)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in workers):
        assert time.monotonic() < deadline, f"workers still serving:\n{served.log.read_text()}"
        time.sleep(0.05)
    assert "the master process" in served.log.read_text()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].split("\n", 1)[0]
    except (OSError, IndexError):
        return "zombie"


def test_a_worker_recycled_after_max_requests_is_bounded_too(serve_project):
    # A recycled worker stops as a signalled one does: a thread stuck in a sync endpoint
    # cannot keep it alive past the budget, and the master goes on serving.
    served = serve_project("serve", flyer_enable_max_requests="1", flyer_max_requests="2",
                           flyer_graceful_timeout="0.5", flyer_shutdown_timeout="1")
    _results, _threads = requests_in_flight(served, "/flyer/stuck?", 1, timeout=30)
    for tag in range(4):  # reach max_requests on whichever worker holds the stuck one
        # A connection a recycling worker accepted but had not read yet is closed as it
        # stops (reset): a client sends such a GET again.
        for _attempt in range(3):
            try:
                httpx.get(f"{served.url}/flyer/slow?seconds=0&tag=n{tag}", timeout=10)
                break
            except httpx.TransportError:
                continue
    wait_for("the watchdog", lambda: "did not stop within" in served.log.read_text(),
             served.process, served.log)  # type: ignore[arg-type]
    assert httpx.get(f"{served.url}/health_check", timeout=10).status_code == 200


@pytest.mark.parametrize("command", ["run", "serve"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_while_the_app_loads_stops_at_once_and_quietly(tmp_path, project,
                                                                     command, signum):
    marks = tmp_path / "marks"
    marks.mkdir()
    log = tmp_path / "console.log"
    args = [FASTFLYER, command, "--host", "127.0.0.1", "--port", "0"]
    with started(args, project, env_for(tmp_path, MARKS=str(marks), SLOW_IMPORT="30",
                                         flyer_log_path=str(tmp_path / "logs")),
                 log) as process:
        wait_for("the import", lambda: any(marks.glob("importing-*")), process, log)
        began = time.monotonic()
        process.send_signal(signum)
        status = process.wait(timeout=20)
    output = log.read_text()
    assert status == 0, output
    assert time.monotonic() - began < 10, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output


@pytest.mark.parametrize(("how", "clean"), [
    ("exit 0", True), ("exit 1", False), ("SIGKILL", False),
    # The master's own SIGTERM meeting a worker with no handler: one still booting, or
    # one exiting after its recycling (requests done, the interpreter finalizing).
    ("SIGTERM", True)])
def test_how_a_worker_ended_while_stopping_decides_a_clean_stop(how: str, clean: bool) -> None:
    import subprocess
    import sys

    from fastflyer.launch import _clean_end

    code = {"exit 0": "raise SystemExit(0)", "exit 1": "raise SystemExit(1)",
            "SIGKILL": "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
            "SIGTERM": "import os, signal; signal.signal(signal.SIGTERM, signal.SIG_DFL); "
                       "os.kill(os.getpid(), signal.SIGTERM)"}[how]
    child = subprocess.Popen([sys.executable, "-c", code])
    ended = os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    assert ended is not None
    assert _clean_end(ended) is clean
    child.wait(timeout=30)
