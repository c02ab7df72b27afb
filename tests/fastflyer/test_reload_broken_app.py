"""``./start-reload.sh`` (``fastflyer run`` with ``flyer_reload=1``) while the app cannot load.

A generated project is served on port 0 as a developer serves it. Saving a file that breaks
the app (a syntax error, an exception raised at import, a broken ``main.py``, a start hook
that fails) makes every
request answer 503 in the envelope, naming the error in one line, instead of hanging; the
console log holds the traceback, once; saving the fix brings the real app back. SIGTERM and
Ctrl-C stop the server, broken or not, with status 0 and no process left behind.

Every request has a short client timeout: a server that hangs fails the test at the
deadline instead of stalling it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from test_launch import env_for as launch_env
from test_launch import generate_project, started

START = 60.0  # seconds: a cold start on a busy machine, with room
RELOAD = 15.0  # seconds: from a saved file to the reloaded server's answer
REQUEST_TIMEOUT = 2.0  # seconds per request: a hang is a failed poll, not a stalled test
LOAD_ERROR = "the app cannot load: "  # the log line's words, in whatever format the log has


@dataclass
class Reloading:
    """A ``./start-reload.sh --port 0`` process of ``project``, its output in ``log``."""

    process: subprocess.Popen[bytes]
    url: str
    project: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def poll(self, what: str, check: Callable[[], object], deadline: float = RELOAD) -> object:
        """Poll ``check`` until it returns something true; fail if the server ends first.

        A transport error (refused, timed out) counts as "not yet" and is told on failure.
        """
        end = time.monotonic() + deadline
        last: object = None
        while time.monotonic() < end:
            try:
                found = check()
            except httpx.TransportError as exc:
                found, last = None, exc
            if found:
                return found
            assert self.process.poll() is None, \
                f"ended ({self.process.returncode}) before {what}:\n{self.output()}"
            time.sleep(0.05)
        raise AssertionError(f"no {what} within {deadline:g} s (last: {last!r}):\n"
                             f"{self.output()}")

    def get(self, path: str = "/health_check", **headers: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=REQUEST_TIMEOUT)

    def answering(self, status_code: int) -> httpx.Response:
        """The first answer with ``status_code`` to ``GET /health_check``."""
        def check() -> httpx.Response | None:
            response = self.get()
            return response if response.status_code == status_code else None

        found = self.poll(f"answer {status_code}", check)
        assert isinstance(found, httpx.Response)
        return found


def env_for(tmp_path: Path) -> dict[str, str]:
    """The caller's environment without flyer_* or make's variables; logs in tmp_path."""
    return launch_env(tmp_path, flyer_host="127.0.0.1", flyer_log_path=str(tmp_path / "logs"),
                      flyer_access_log="0")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project from ``fastflyer create_app``, written once for the module."""
    return generate_project(tmp_path_factory.mktemp("generated"))


@pytest.fixture
def project(generated: Path, tmp_path: Path) -> Path:
    """A copy of the generated project, this test's to break."""
    path = tmp_path / "shop"
    shutil.copytree(generated, path, ignore=shutil.ignore_patterns("__pycache__"))
    return path


@contextlib.contextmanager
def reloading(project: Path, tmp_path: Path) -> Iterator[Reloading]:
    """``./start-reload.sh --port 0`` in ``project``, healthy; whatever the block leaves
    running (the reloader and its server process, one session) is killed."""
    log = tmp_path / "console.log"
    with started([str(project / "start-reload.sh"), "--port", "0"], project,
                 env_for(tmp_path), log, new_session=True) as process:
        server = Reloading(process, "", project, log)
        found = server.poll("address", lambda: re.search(
            r"Uvicorn running on (http://127\.0\.0\.1:\d+)", server.output()), START)
        assert isinstance(found, re.Match) and not found.group(1).endswith(":0")
        server.url = found.group(1)
        server.poll("health", lambda: server.get().status_code == 200, START)
        yield server


def save(path: Path, text: str, scratch: Path) -> None:
    """Write ``path`` as an editor does, in one step: the reloader sees one change, never
    a half-written file."""
    staged = scratch / f"{path.name}.staged"
    staged.write_text(text, encoding="utf-8")
    os.replace(staged, path)


def stopped(server: Reloading, how: str) -> int:
    """Stop ``server`` as a user does (``how``: "SIGTERM" to the server, "Ctrl-C" to its
    process group); its status, once no process of it is left (bounded waits)."""
    if how == "SIGTERM":
        server.process.send_signal(signal.SIGTERM)
    else:
        os.killpg(server.process.pid, signal.SIGINT)
    status = server.process.wait(timeout=30)
    end = time.monotonic() + 10
    while True:  # the reloader joined its server process: nothing of the group is left
        try:
            os.killpg(server.process.pid, 0)
        except ProcessLookupError:
            return status
        assert time.monotonic() < end, f"processes left in the group:\n{server.output()}"
        time.sleep(0.05)


def websocket_answer(url: str) -> bytes:
    """The status line a websocket handshake to ``url`` gets (b"" if closed unanswered)."""
    address = urlsplit(url)
    assert address.hostname is not None and address.port is not None
    with socket.create_connection((address.hostname, address.port),
                                  timeout=REQUEST_TIMEOUT) as conn:
        conn.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        return conn.recv(4096).split(b"\r\n", 1)[0]


# What is saved into which file, the error the answer names, and the text of the line it
# names (the file's last line holding it).
BREAKS = {
    "syntax error in an app": ("app/items/router.py", "\n\ndef broken(:\n    pass\n",
                               "SyntaxError", "def broken(:"),
    "error raised at import": ("app/items/__init__.py", '\nraise RuntimeError("boom")\n',
                               "RuntimeError", "raise RuntimeError"),
    "syntax error in main.py": ("main.py", "\napp = (\n", "SyntaxError", "app = ("),
    # the app imports, but a start hook fails: uvicorn's server exits, as for the others
    "start-up that fails": ("main.py", "\n\n@app.lifecycle.on_startup\ndef refuse():\n"
                            '    raise RuntimeError("boom")\n', "RuntimeError",
                            'raise RuntimeError("boom")'),
}


@pytest.mark.parametrize("broken", list(BREAKS))
def test_a_broken_app_answers_503_naming_the_error_until_fixed(tmp_path, project, broken):
    name, breaking, error, marker = BREAKS[broken]
    module = project / name
    original = module.read_text(encoding="utf-8")
    text = original + breaking
    line = max(number for number, content in enumerate(text.splitlines(), 1)
               if marker in content)
    with reloading(project, tmp_path) as server:
        save(module, text, tmp_path)
        answer = server.answering(503)

        # The envelope names the error in one line: type, message, file and line.
        body = answer.json()
        assert answer.headers["content-type"] == "application/json"
        assert set(body) == {"code", "message", "data"}
        assert body["code"] == 503
        assert body["data"] == {"error": error, "file": name, "line": line}
        assert body["message"].startswith(f"the app cannot load: {error}: ")
        assert body["message"].endswith(f"({name}, line {line})")
        if error == "RuntimeError":  # both RuntimeError breaks raise "boom"
            assert body["message"] == \
                f"the app cannot load: RuntimeError: boom ({name}, line {line})"
        # ... and leaks nothing: no traceback, no absolute path, one line.
        assert "Traceback" not in answer.text and str(tmp_path) not in answer.text
        assert "\n" not in body["message"]

        # Every request, any path and method, is answered so, with its request id.
        for _ in range(3):
            again = server.get("/shop/v1/items", **{"X-Request-ID": "reload-check-1"})
            assert again.status_code == 503 and again.json() == body
            assert again.headers["x-request-id"] == "reload-check-1"
        posted = httpx.post(f"{server.url}/anything", json={"a": 1}, timeout=REQUEST_TIMEOUT)
        assert posted.status_code == 503 and posted.headers["x-request-id"]

        # The console log holds the full traceback, once for the one failed load.
        output = server.output()
        assert "Traceback (most recent call last)" in output
        assert f"{error}:" in output.split("Traceback (most recent call last)", 1)[1]
        assert output.count(LOAD_ERROR) == 1, output

        # The fix is saved: the reloader restarts the server and the real app answers.
        save(module, original, tmp_path)
        server.answering(200)
        assert server.get("/health_check").json()["code"] == 200
        assert stopped(server, "SIGTERM") == 0, server.output()
    assert server.output().count(LOAD_ERROR) == 1


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_the_broken_apps_server_closes_websockets_and_stops_like_the_real_one(
        tmp_path, project, how):
    module = project / "app" / "items" / "router.py"
    with reloading(project, tmp_path) as server:
        save(module, module.read_text(encoding="utf-8") + "\ndef broken(:\n", tmp_path)
        server.answering(503)
        # The fallback has no lifespan to run and refuses a websocket's handshake.
        assert websocket_answer(server.url) == b"HTTP/1.1 403 Forbidden"
        assert stopped(server, how) == 0, server.output()
    output = server.output()
    assert "Stopping reloader process" in output
    assert output.count("Traceback (most recent call last)") >= 1
    assert "KeyboardInterrupt" not in output


def test_a_save_while_the_app_loads_reloads_it_again(tmp_path, project):
    # The reloader stops the server process while it is still importing the app: that
    # process stops (it does not serve "SystemExit" as a load error and hang the reloader),
    # the next one serves, and SIGTERM still stops everything.
    main = project / "main.py"
    save(main, main.read_text(encoding="utf-8") + "\nimport time\ntime.sleep(2)\n", tmp_path)
    module = project / "app" / "items" / "router.py"
    original = module.read_text(encoding="utf-8")
    with reloading(project, tmp_path) as server:
        save(module, original + "\n# first save\n", tmp_path)
        server.poll("the first reload", lambda: server.output().count("Reloading...") >= 1)
        save(module, original + "\n# second save, while the app loads\n", tmp_path)
        server.poll("the second reload", lambda: server.output().count("Reloading...") >= 2)
        server.answering(200)
        assert LOAD_ERROR not in server.output()
        assert stopped(server, "SIGTERM") == 0, server.output()
