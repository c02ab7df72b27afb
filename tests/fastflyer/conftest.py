"""Fixtures for the framework: the demo project built in-process and served for real.

``build(**env)`` builds the demo project's app with ``flyer_*`` variables set for the
test; ``live`` is the same project served by uvicorn in a child process on a free
127.0.0.1 port, with its access log in a file, shared by the session.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from starlette.testclient import TestClient

import fastflyer.app_context
import fastflyer.config_center
from fastflyer import FlyerAPI
from fastflyer.config_center import FLAGS_VARIABLE, ORIGINALS_VARIABLE

DEMO = Path(__file__).parent / "demo_project"


@pytest.fixture(autouse=True)
def _clean_flyer_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ``flyer_*`` variable leaks into a test from the caller's environment."""
    for name in list(os.environ):
        if name.lower().startswith("flyer_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("flyer_log_path", str(tmp_path / "logs"))
    monkeypatch.setenv("flyer_access_log", "0")
    # Nor the settings of an app an earlier test built (the default outside any app).
    monkeypatch.setattr(fastflyer.app_context, "_last_built", None)
    # Nor what an earlier test's command line or config center left for child processes.
    for name in (FLAGS_VARIABLE, ORIGINALS_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(fastflyer.config_center, "_current", None)


@pytest.fixture
def build(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FlyerAPI]:
    """Build an app with ``flyer_<name>=value`` for each keyword."""

    def _build(app_path: Path | str | None = DEMO, **env: object) -> FlyerAPI:
        for name, value in env.items():
            monkeypatch.setenv(f"flyer_{name}", str(value))
        return FlyerAPI(app_path=app_path)

    return _build


@pytest.fixture
def client(build: Callable[..., FlyerAPI]) -> Iterator[TestClient]:
    with TestClient(build(), raise_server_exceptions=False) as test_client:
        yield test_client


@dataclass
class LiveServer:
    url: str
    access_log: Path
    console: Path
    process: subprocess.Popen[str]
    console_file: IO[str]

    def stop(self) -> str:
        """Stop the server with SIGTERM; its console output."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        self.console_file.close()
        return self.console.read_text()

    def access_lines(self) -> list[str]:
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []


_LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


def serve(project: Path, env: dict[str, str], log_dir: Path, timeout: float = 30) -> LiveServer:
    """``project`` served by uvicorn on 127.0.0.1, port 0: the port it bound is read from
    its start-up line, which it logs once the lifespan has started and the socket listens."""
    log_dir.mkdir(parents=True, exist_ok=True)
    access_log, console = log_dir / "access.log", log_dir / "console.log"
    console_file = console.open("w")
    child_env = {k: v for k, v in os.environ.items() if not k.lower().startswith("flyer_")}
    child_env.update({"flyer_log_path": str(log_dir), "flyer_access_log": "1",
                      "flyer_access_logfile": str(access_log),
                      "flyer_console_log_level": "warn", **env})
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "main:app", "--app-dir", str(project),
         "--host", "127.0.0.1", "--port", "0", "--no-proxy-headers", "--no-access-log",
         "--log-level", "info"],
        # A file, not a pipe: a pipe nobody drains blocks the server once it is full.
        cwd=log_dir, env=child_env, stdout=console_file, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    while True:
        found = _LISTENING.search(console.read_text())
        if found:
            server = LiveServer(f"http://127.0.0.1:{found[1]}", access_log, console, process,
                                console_file)
            assert httpx.get(f"{server.url}/health_check", timeout=5).status_code == 200
            return server
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(timeout=10)
            console_file.close()
            raise RuntimeError(f"{project} exited or did not listen within {timeout:g} s:\n"
                               f"{console.read_text()}")
        time.sleep(0.05)


def stop(server: LiveServer) -> str:
    """Stop ``server``; its console output."""
    return server.stop()


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = serve(DEMO, {}, tmp_path_factory.mktemp("live-logs"))
    yield server
    server.stop()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start a server of the demo project with extra ``flyer_*`` variables."""
    started: list[LiveServer] = []

    def _launch(env: dict[str, str] | None = None, project: Path = DEMO) -> LiveServer:
        server = serve(project, env or {}, tmp_path / f"server{len(started)}")
        started.append(server)
        return server

    yield _launch
    for server in started:
        server.stop()


@pytest.fixture(params=["in-process", "real-server"])
def http(request: pytest.FixtureRequest, build: Callable[..., FlyerAPI]) -> Iterator[httpx.Client]:
    """The demo app through the test client and through a real server process."""
    if request.param == "in-process":
        with TestClient(build(), raise_server_exceptions=False) as test_client:
            yield test_client
    else:
        live: LiveServer = request.getfixturevalue("live")
        with httpx.Client(base_url=live.url, timeout=10) as real:
            yield real


def center_variables(url: str, app_id: str = "orders") -> dict[str, str]:
    """The variables that turn the config center on for ``/{app_id}/prod/default/`` of
    the etcd at ``url``."""
    return {"flyer_config_enabled": "1", "flyer_config_endpoints": url,
            "flyer_config_app_id": app_id, "flyer_config_env_name": "prod",
            "flyer_config_group_name": "default"}


@pytest.fixture
def restored_environ() -> Iterator[None]:
    """``os.environ`` as the test found it, afterwards: the config center writes it
    itself, outside monkeypatch."""
    before = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(before)


@pytest.fixture
def center(etcd: Any, monkeypatch: pytest.MonkeyPatch,
           restored_environ: None) -> dict[str, Any]:
    """The config center on, for a fresh app id on the shared etcd: ``etcd``, ``prefix``
    (``/{app_id}/prod/default/``) and ``variables``."""
    app_id = f"app-{uuid.uuid4().hex[:8]}"
    variables = center_variables(etcd.url, app_id)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return {"etcd": etcd, "prefix": f"/{app_id}/prod/default/", "variables": variables}
