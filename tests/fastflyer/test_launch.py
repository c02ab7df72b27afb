"""Starting and stopping servers as a user does: ``fastflyer demo``/``run``/``serve`` and
``make demo``, real processes on real sockets.

A server binds before it says where it serves (a port in use is one line and a non-zero
status, never a banner then a failure); ``--port 0`` takes a free port and prints it; Ctrl-C
ends with status 0; the demo leaves nothing behind (its temporary project, its logs).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent
FASTFLYER = str(BIN / "fastflyer")
ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60.0  # seconds: a cold start on a busy machine, with room


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without flyer_* or make's variables; temp files in tmp_path."""
    env = {k: v for k, v in os.environ.items()
           if not k.lower().startswith("flyer_") and k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    env["TMPDIR"] = str(scratch)  # where the demo's temporary project goes
    env.update(extra)
    return env


def wait_for(what: str, check: Callable[[], object], process: subprocess.Popen[bytes],
             log: Path) -> object:
    """Poll ``check`` until it returns something true; fail if the process ends first."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            found = check()
        except httpx.TransportError:
            found = None
        if found:
            return found
        assert process.poll() is None, f"ended ({process.returncode}) before {what}:\n" \
                                       f"{log.read_text()}"
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {DEADLINE:g} s:\n{log.read_text()}")


@contextlib.contextmanager
def started(args: list[str], cwd: Path, env: dict[str, str], log: Path,
            new_session: bool = False) -> Iterator[subprocess.Popen[bytes]]:
    """``args`` running with its output in ``log``; whatever the block leaves running is
    killed (with ``new_session``, its whole process group)."""
    with log.open("wb") as out:
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=new_session)
        try:
            yield process
        finally:
            if process.poll() is None:
                if new_session:
                    os.killpg(process.pid, signal.SIGKILL)
                else:
                    process.kill()
                process.wait()


def healthy_address(process: subprocess.Popen[bytes], log: Path) -> str:
    """The URL a ``run``/``serve`` started on port 0 says it listens on, once healthy."""
    found = wait_for("address", lambda: re.search(
        r"(?:Uvicorn running on|Listening at:) (http://\S+)", log.read_text()), process, log)
    assert isinstance(found, re.Match) and not found.group(1).endswith(":0")
    url = found.group(1)
    wait_for("health", lambda: httpx.get(f"{url}/health_check", timeout=2).status_code == 200,
             process, log)
    return url


def served_url(process: subprocess.Popen[bytes], log: Path) -> str:
    """The URL the demo prints, once its docs answer 200."""
    found = wait_for("banner", lambda: re.search(r"serving on (http://\S+)", log.read_text()),
                     process, log)
    assert isinstance(found, re.Match)
    url = found.group(1)
    wait_for("docs", lambda: httpx.get(f"{url}/flyer/docs", timeout=2).status_code == 200,
             process, log)
    return url


def write_a_log_line(url: str, project: Path, process: subprocess.Popen[bytes],
                     log: Path) -> None:
    """Run the demo's heartbeat job now: its lock warning is a line in the log files."""
    ran = httpx.post(f"{url}/flyer/tasks/background/heartbeat/run", timeout=10)
    assert ran.status_code == 200, ran.text
    wait_for("log file", lambda: any(p.stat().st_size for p in project.glob("logs/*.log")),
             process, log)


@pytest.fixture
def held_port() -> Iterator[tuple[socket.socket, int]]:
    """A port some other program holds: a socket bound on 127.0.0.1:0 (not listening)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder, holder.getsockname()[1]


def generate_project(where: Path) -> Path:
    """``where``/shop, a project made by ``fastflyer create_app``."""
    path = where / "shop"
    path.mkdir()
    created = subprocess.run([FASTFLYER, "create_app"], cwd=path, env=env_for(where),
                             capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return generate_project(tmp_path)


# --- a port in use: one line, before any banner ----------------------------------------------

@pytest.mark.parametrize("under_make", [False, True], ids=["direct", "make"])
@pytest.mark.parametrize("listening", [False, True], ids=["bound", "listening"])
def test_demo_on_a_port_in_use_says_so_in_one_line_and_prints_no_banner(
        tmp_path, held_port, listening, under_make):
    holder, port = held_port
    if listening:
        holder.listen()
    env = env_for(tmp_path, **({"MAKELEVEL": "1"} if under_make else {}))
    result = subprocess.run([FASTFLYER, "demo", "--port", str(port)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stdout == ""  # no "serving on ..." claim
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}: port {port} is already in use" in result.stderr
    # The hint names what the user typed: make's variable under make, else the flag.
    assert ("make demo PORT=" in result.stderr) is under_make
    assert "--port N" in result.stderr
    assert not any((tmp_path / "tmp").iterdir())  # no project written either


@pytest.mark.parametrize("command", ["run", "serve"])
def test_run_and_serve_on_a_port_in_use_say_so_in_one_line(tmp_path, project, held_port,
                                                           command):
    _, port = held_port
    # run: the port from the flag; serve: from flyer_port (the error names both ways)
    args, extra = ((["--port", str(port)], {}) if command == "run"
                   else ([], {"flyer_port": str(port)}))
    result = subprocess.run([FASTFLYER, command, *args], cwd=project,
                            env=env_for(tmp_path, flyer_host="127.0.0.1", HOME=str(tmp_path),
                                        **extra),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"port {port} is already in use" in result.stderr
    assert "--port" in result.stderr and "flyer_port" in result.stderr


def test_a_host_that_is_not_here_names_host(tmp_path):
    result = subprocess.run([FASTFLYER, "demo", "--host", "192.0.2.1"], cwd=tmp_path,
                            env=env_for(tmp_path), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "192.0.2.1 is not an address of this machine" in result.stderr
    assert "--host" in result.stderr


# --- port 0, Ctrl-C, leftovers ----------------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_the_demo_on_port_0_stops_with_status_0_and_leaves_nothing(tmp_path, signum):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    log = tmp_path / "demo.log"
    with started([FASTFLYER, "demo", "--port", "0"], cwd,
                 env_for(tmp_path, flyer_task_api_open="1"), log) as process:
        url = served_url(process, log)
        assert not url.endswith(":0")
        assert httpx.get(f"{url}/flyer/demo?id=1").json()["data"] == {"itemId": 1}
        (made,) = (tmp_path / "tmp").iterdir()
        assert made.name.startswith("fastflyer-demo-") and (made / "main.py").is_file()
        assert f"FastFlyer demo project in {made}" in log.read_text()
        write_a_log_line(url, made, process, log)  # into the project, not ./logs
        process.send_signal(signum)
        process.wait(timeout=30)
    output = log.read_text()
    assert process.returncode == 0, output
    assert "Traceback" not in output
    assert "Application shutdown complete" in output
    assert not any((tmp_path / "tmp").iterdir()), "the temporary project is still there"
    assert not any(cwd.iterdir()), "the demo wrote into the directory it was started in"


def test_the_demo_keeps_a_directory_it_was_given(tmp_path):
    given = tmp_path / "mine"
    log = tmp_path / "demo.log"
    with started([FASTFLYER, "demo", "--port", "0", "--dir", str(given)], tmp_path,
                 env_for(tmp_path, flyer_task_api_open="1"), log) as process:
        write_a_log_line(served_url(process, log), given, process, log)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert process.returncode == 0, log.read_text()
    assert (given / "main.py").is_file()
    assert any(given.glob("logs/*.log"))  # its log files live with it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.log", "mine", "tmp"]


@pytest.mark.parametrize("reload", [False, True], ids=["run", "run-reload"])
def test_run_on_port_0_stops_with_status_0_on_ctrl_c(tmp_path, project, reload):
    log = tmp_path / "run.log"
    args = [FASTFLYER, "run", "--port", "0", *(["--reload"] if reload else [])]
    env = env_for(tmp_path, flyer_host="127.0.0.1", flyer_log_path=str(tmp_path / "logs"))
    with started(args, project, env, log) as process:
        healthy_address(process, log)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    output = log.read_text()
    assert process.returncode == 0, output
    assert "Traceback" not in output


# --- the app sees what the command checked ----------------------------------------------------


@pytest.mark.parametrize("command", ["run", "serve"])
def test_flags_win_over_bad_variables_in_the_app_too(tmp_path, project, command):
    # The app reads flyer_* again where it is built (in each worker): it must see the flags.
    log = tmp_path / "server.log"
    args = [FASTFLYER, command, "--host", "127.0.0.1", "--port", "0",
            *(["--workers", "1"] if command == "serve" else [])]
    env = env_for(tmp_path, flyer_port="70000", FLYER_HOST="not_a_host",
                  flyer_log_path=str(tmp_path / "logs"),
                  **({"flyer_workers": "0"} if command == "serve" else {}))
    with started(args, project, env, log) as process:
        healthy_address(process, log)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0, log.read_text()
    assert "not allowed" not in log.read_text()


@pytest.mark.parametrize("command", ["run", "serve"])
def test_a_bad_setting_in_the_project_stops_the_server_with_one_line(tmp_path, project,
                                                                      command):
    # Found where the app is built: `run` says so before any banner; `serve`'s workers
    # end with gunicorn's boot-error status, so the master stops instead of restarting them.
    settings = project / "settings.py"
    settings.write_text(settings.read_text().replace('PREFIX = "/flyer"', 'PREFIX = "/a/"'))
    result = subprocess.run(
        [FASTFLYER, command, "--host", "127.0.0.1", "--port", "0",
         *(["--workers", "2"] if command == "serve" else [])],
        cwd=project, capture_output=True, text=True, timeout=120,
        env=env_for(tmp_path, flyer_log_path=str(tmp_path / "logs")))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "CustomConfig.PREFIX='/a/' is not allowed" in output
    assert "Traceback" not in output
    assert output.count("Booting worker") <= 2, output  # started once each, never again
    if command == "run":
        assert "Uvicorn running" not in output


# Each worker's main.py waits until every worker has started it, then all end at once with
# the status of a worker that cannot boot.
ALL_WORKERS_FAIL_AT_ONCE = """\
import os, pathlib, time
_met = pathlib.Path(os.environ["WORKERS_MET"])
(_met / str(os.getpid())).touch()
_deadline = time.monotonic() + 30
while len(list(_met.iterdir())) < int(os.environ["WORKERS"]) and time.monotonic() < _deadline:
    time.sleep(0.001)
print("cannot boot", flush=True)
os._exit(3)  # gunicorn's status for a worker that cannot boot, at once: nothing to clean up
"""


def test_workers_that_all_fail_to_boot_at_once_still_stop_without_a_traceback(tmp_path,
                                                                             project):
    # The master stops for the first worker's boot error, and meets the others' while
    # stopping: gunicorn raises its HaltServer again there, out of its own halt().
    main = project / "main.py"
    main.write_text(ALL_WORKERS_FAIL_AT_ONCE + main.read_text())
    met = tmp_path / "met"
    met.mkdir()
    result = subprocess.run(
        [FASTFLYER, "serve", "--host", "127.0.0.1", "--port", "0", "--workers", "4"],
        cwd=project, capture_output=True, text=True, timeout=120,
        env=env_for(tmp_path, flyer_log_path=str(tmp_path / "logs"), WORKERS_MET=str(met),
                    WORKERS="4"))
    output = result.stdout + result.stderr
    assert result.returncode == 3, output  # gunicorn's status for a worker that cannot boot
    assert output.count("cannot boot") == 4, output
    assert "Traceback" not in output, output


# --- make demo ------------------------------------------------------------------------------

def _descendant(pid: int, name: str) -> int:
    """The first process under ``pid`` whose command line mentions ``name``."""
    pending = [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").iterdir():
            for child in (task / "children").read_text().split():
                if name in Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace"):
                    return int(child)
                pending.append(int(child))
    raise AssertionError(f"no {name} process under {pid}")


@pytest.mark.parametrize("ctrl_c", ["server", "terminal"])
def test_make_demo_port_0_then_ctrl_c(tmp_path, ctrl_c):
    """``make demo PORT=0`` as typed; Ctrl-C reaches the server alone, or the whole group."""
    venv = Path(sys.prefix)
    log = tmp_path / "make.log"
    # -o: the venv running this test is the one to use; installing is not what is tested
    command = ["make", "--no-print-directory", "-o", f"{venv}/.installed", "demo", "PORT=0",
               f"VENV={venv}"]
    with started(command, ROOT, env_for(tmp_path), log, new_session=True) as process:
        served_url(process, log)
        if ctrl_c == "server":
            os.kill(_descendant(process.pid, "fastflyer"), signal.SIGINT)
        else:  # what a terminal does: SIGINT to make and the server alike
            os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)
    output = log.read_text()
    assert "***" not in output and "Error" not in output, output  # no "make: *** Error 130"
    # make itself, interrupted, ends by the same signal (as every interrupted make does)
    assert process.returncode == (0 if ctrl_c == "server" else -signal.SIGINT), output
    assert not any((tmp_path / "tmp").iterdir()), "the temporary project is still there"
