"""Stopping hooks run once when the server starts stopping, while its port still accepts
(a service registry withdraws the instance), before the stop hooks; bounded, and what
goes wrong is reported as for stop hooks."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import textwrap
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from test_launch import FASTFLYER, env_for, healthy_address, started

from fastflyer.lifespan import STOPPING_TIMEOUT, Lifecycle

from conftest import DEMO

# The demo project, its main.py with a stopping hook that calls the server's own port
# (the listener still open: a 200) and a stop hook that tries again (closed: refused).
# Each notes what it saw in STOPPING_DIR/events; the test writes the port it learned
# into STOPPING_DIR/address.
MAIN = textwrap.dedent('''\
    import asyncio
    import os
    import socket
    from pathlib import Path

    from fastflyer import FlyerAPI

    app = FlyerAPI(app_path=__file__)
    HERE = Path(os.environ["STOPPING_DIR"])


    def note(line: str) -> None:
        with (HERE / "events").open("a") as out:
            out.write(line + "\\n")


    def address() -> tuple[str, int]:
        host, port = (HERE / "address").read_text().split()
        return host, int(port)


    @app.lifecycle.on_stopping
    async def withdraw() -> None:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*address()), 5)
        except OSError as exc:
            note(f"stopping: {type(exc).__name__}")
        else:
            writer.write(b"GET /health_check HTTP/1.1\\r\\nHost: test\\r\\n"
                         b"Connection: close\\r\\n\\r\\n")
            status = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            note(f"stopping: {status.decode().strip()}")
        if os.environ.get("STOPPING_FAILS"):
            raise RuntimeError("the registry is unreachable")


    @app.lifecycle.on_shutdown
    def close() -> None:
        try:
            socket.create_connection(address(), timeout=5).close()
        except ConnectionRefusedError:
            note("stop: refused")
        else:
            note("stop: accepted")
''')


def _project(where: Path) -> tuple[Path, Path]:
    """A copy of the demo project with :data:`MAIN`, and its STOPPING_DIR."""
    project = where / "demo"
    shutil.copytree(DEMO, project, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "main.py").write_text(MAIN)
    record = where / "record"
    record.mkdir()
    return project, record


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)


@pytest.mark.parametrize(("command", "at_stop"), [
    ("run", "refused"),
    # The reloader holds the listening socket until its child (the server) has stopped.
    ("run --reload", "accepted"),
    ("serve --workers 1", "refused"),
])
def test_the_stopping_hook_runs_while_the_port_still_accepts(tmp_path, command, at_stop):
    project, record = _project(tmp_path)
    log = tmp_path / "server.log"
    args = [FASTFLYER, *command.split(), "--host", "127.0.0.1", "--port", "0"]
    env = env_for(tmp_path, flyer_log_path=str(tmp_path / "logs"), STOPPING_DIR=str(record))
    with started(args, project, env, log) as process:
        url = urlsplit(healthy_address(process, log))
        host, port = url.hostname or "", url.port or 0
        (record / "address").write_text(f"{host} {port}")
        _stop(process)
    output = log.read_text()
    assert process.returncode == 0, output
    # Once (the lifespan's shutdown does not run it again), before the listener closed;
    # then the stop hooks, after.
    assert (record / "events").read_text().splitlines() == [
        "stopping: HTTP/1.1 200 OK", f"stop: {at_stop}"], output
    assert _refused(host, port)
    assert "Traceback" not in output


def test_a_failing_stopping_hook_makes_the_stop_unclean_and_the_stop_hooks_still_run(tmp_path):
    project, record = _project(tmp_path)
    log = tmp_path / "server.log"
    env = env_for(tmp_path, flyer_log_path=str(tmp_path / "logs"), STOPPING_DIR=str(record),
                  STOPPING_FAILS="1")
    with started([FASTFLYER, "run", "--host", "127.0.0.1", "--port", "0"], project, env,
                 log) as process:
        url = urlsplit(healthy_address(process, log))
        (record / "address").write_text(f"{url.hostname} {url.port}")
        _stop(process)
    output = log.read_text()
    assert process.returncode == 1, output  # EXIT_UNCLEAN
    assert "stopping hook of withdraw failed: RuntimeError: the registry is unreachable" \
        in output
    assert (record / "events").read_text().splitlines() == [
        "stopping: HTTP/1.1 200 OK", "stop: refused"], output


def test_under_plain_uvicorn_the_stopping_hook_runs_at_shutdown_first(tmp_path, launch):
    # uvicorn's own server never calls stopping(): the withdraw still happens, at the
    # lifespan's shutdown (the listener closed by then), before the stop hooks.
    project, record = _project(tmp_path)
    server = launch({"STOPPING_DIR": str(record)}, project)
    url = urlsplit(server.url)
    (record / "address").write_text(f"{url.hostname} {url.port}")
    output = server.stop()
    # uvicorn raises the signal again once stopped: its status is SIGTERM's.
    assert "Application shutdown complete" in output, output
    assert (record / "events").read_text().splitlines() == [
        "stopping: ConnectionRefusedError", "stop: refused"], output


# --- the Lifecycle itself -------------------------------------------------------------------


def test_stopping_runs_once_in_reverse_order_and_shutdown_does_not_run_it_again():
    lifecycle = Lifecycle(shutdown_timeout=2)
    ran: list[str] = []
    lifecycle.add("registry", stopping=lambda: ran.append("withdraw registry"),
                  stop=lambda: ran.append("close registry"))

    @lifecycle.on_stopping
    async def drain_queue() -> None:
        ran.append("pause consumer")

    assert lifecycle.names == ["registry", drain_queue.__qualname__]

    async def main() -> None:
        await lifecycle.stopping()
        assert ran == ["pause consumer", "withdraw registry"]
        await lifecycle.stopping()  # does nothing
        await lifecycle.shutdown()

    asyncio.run(main())
    assert ran == ["pause consumer", "withdraw registry", "close registry"]
    assert lifecycle.stopped
    assert lifecycle.stop_problems == []


def test_a_component_may_have_only_a_stopping_hook():
    lifecycle = Lifecycle()
    lifecycle.add("registry", stopping=lambda: None)
    assert lifecycle.names == ["registry"]
    with pytest.raises(ValueError, match="needs a start or a stop hook"):
        lifecycle.add("nothing")


def test_a_raising_stopping_hook_is_reported_and_the_stop_hooks_still_run(logs):
    lifecycle = Lifecycle(shutdown_timeout=2)
    ran: list[str] = []

    def withdraw() -> None:
        ran.append("withdraw")
        raise ConnectionError("registry unreachable")

    lifecycle.add("pool", stop=lambda: ran.append("close pool"))
    lifecycle.add("early", stopping=lambda: ran.append("early stopping"))
    lifecycle.add("registry", stopping=withdraw, stop=lambda: ran.append("close registry"))

    async def main() -> None:
        await lifecycle.stopping()  # the error does not escape
        await lifecycle.shutdown()

    asyncio.run(main())
    assert ran == ["withdraw", "early stopping", "close registry", "close pool"]
    line = "stopping hook of registry failed: ConnectionError: registry unreachable"
    assert lifecycle.stop_problems == [line]
    assert line in logs.text()
    assert lifecycle.stopped


def test_shutdown_runs_the_stopping_hooks_first_when_nobody_called_stopping():
    lifecycle = Lifecycle(shutdown_timeout=2)
    ran: list[str] = []
    lifecycle.add("registry", start=lambda: ran.append("register"),
                  stopping=lambda: ran.append("withdraw"), stop=lambda: ran.append("close"))
    lifecycle.add("cache", stop=lambda: ran.append("close cache"))

    app = Starlette(lifespan=lifecycle.lifespan())
    with TestClient(app):
        assert ran == ["register"]
    assert ran == ["register", "withdraw", "close cache", "close"]
    assert lifecycle.stop_problems == []


def test_the_app_lifespan_runs_the_stopping_hooks_before_the_stop_hooks(build):
    app = build()
    ran: list[str] = []
    app.lifecycle.add("registry", stopping=lambda: ran.append("withdraw"),
                      stop=lambda: ran.append("close"))
    with TestClient(app) as client:
        assert client.get("/health_check").status_code == 200
        assert ran == []
    assert ran == ["withdraw", "close"]


def test_stopping_hooks_do_not_run_when_start_up_failed():
    lifecycle = Lifecycle(shutdown_timeout=2)
    ran: list[str] = []
    lifecycle.add("registry", start=lambda: ran.append("register"),
                  stopping=lambda: ran.append("withdraw"), stop=lambda: ran.append("close"))

    def broken() -> None:
        raise RuntimeError("cannot start")

    lifecycle.add("broken", start=broken, stopping=lambda: ran.append("withdraw broken"))
    app = Starlette(lifespan=lifecycle.lifespan())
    with pytest.raises(RuntimeError, match="cannot start"), TestClient(app):
        pass
    assert ran == ["register", "close"]

    async def later() -> None:
        await lifecycle.stopping()

    asyncio.run(later())  # nor later: the app never served
    assert ran == ["register", "close"]


def test_the_stopping_hooks_are_bounded_and_their_time_comes_off_the_stop_hooks():
    lifecycle = Lifecycle(shutdown_timeout=1)
    assert lifecycle.stopping_timeout == 0.5  # half of the shutdown timeout
    assert Lifecycle(shutdown_timeout=60).stopping_timeout == STOPPING_TIMEOUT
    ran: list[str] = []
    never = asyncio.Event()

    async def hangs() -> None:
        await never.wait()

    lifecycle.add("quick", stopping=lambda: ran.append("quick"),
                  stop=lambda: ran.append("close"))
    lifecycle.add("hangs", stopping=hangs)

    async def main() -> tuple[float, float]:
        began = time.monotonic()
        await lifecycle.stopping()
        stopping_took = time.monotonic() - began
        await lifecycle.shutdown()
        return stopping_took, time.monotonic() - began

    stopping_took, total = asyncio.run(main())
    assert 0.5 <= stopping_took < 1.5
    assert total < 2
    assert ran == ["quick", "close"]  # the hook after the hung one still ran
    assert len(lifecycle.stop_problems) == 1
    assert lifecycle.stop_problems[0].startswith(
        "stopping hook of hangs did not finish within 0.5 s (half of flyer_shutdown_timeout")


def test_a_keyboard_interrupt_from_a_stopping_hook_is_raised_after_every_hook_ran():
    lifecycle = Lifecycle(shutdown_timeout=2)
    ran: list[str] = []

    def interrupted() -> None:
        raise KeyboardInterrupt

    lifecycle.add("first", stopping=lambda: ran.append("stopping first"),
                  stop=lambda: ran.append("stop first"))
    lifecycle.add("interrupted", stopping=interrupted)
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(lifecycle.shutdown())
    assert ran == ["stopping first", "stop first"]
    assert lifecycle.stopped
    assert lifecycle.stop_problems == ["stopping hook of interrupted failed: KeyboardInterrupt: "]
