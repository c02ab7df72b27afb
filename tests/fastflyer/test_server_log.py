"""Every console line of ``fastflyer serve`` and ``fastflyer run`` in the framework's one
format: gunicorn's and uvicorn's records go through loguru (``fastflyer.serverlog``), at
``flyer_console_log_level``, named by their standard logger, with the request id where
there is one. The JSON access lines are the access log's, and stay JSON.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gunicorn.config import Config as GunicornConfig
from test_launch import FASTFLYER, env_for, started, wait_for

from fastflyer.launch import gunicorn_options
from fastflyer.serverlog import GunicornLogger, InterceptHandler
from fastflyer.settings import FlyerSettings
from fastkit.logging import logger
from fastkit.logging._setup import TEXT_FORMAT
from fastkit.request_id import bind_request_id

DEMO = Path(__file__).parent / "demo_project"
DEADLINE = 60.0  # seconds: a cold start on a busy machine, with room
STOP_WITHIN = 30.0  # seconds from SIGTERM to the end of the process

# TEXT_FORMAT: "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {extra[request_id]} | "
#              "{name}:{function}:{line} - {message}"
LINE = re.compile(
    r"(?P<time>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}) \| (?P<level>[A-Z]+) *"
    r" \| (?P<request_id>\S+) \| (?P<name>[\w.]+):(?P<function>[^\s:]+):(?P<line>\d+)"
    r" - (?P<message>.*)")
SERVER_LOGGERS = ("gunicorn.", "uvicorn.")


def _record(line: str) -> dict[str, str] | None:
    found = LINE.fullmatch(line)
    return found.groupdict() if found else None


def _access_line(line: str) -> bool:
    if not line.startswith("{"):
        return False
    try:
        entry = json.loads(line)
    except ValueError:
        return False
    return isinstance(entry, dict) and {"method", "path", "status"} <= entry.keys()


def console_records(text: str) -> list[dict[str, str]]:
    """The records of a console; fails on a line that is neither the framework's format
    nor a JSON access line."""
    records = []
    for line in text.splitlines():
        record = _record(line)
        if record is not None:
            records.append(record)
        else:
            assert _access_line(line), f"a line in another format: {line!r}\n{text}"
    return records


@contextlib.contextmanager
def server(command: str, tmp_path: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """``fastflyer <command>`` of the demo project on 127.0.0.1, port 0, its console (stdout
    and stderr) in ``tmp_path/console.log``; killed (its process group) if left running."""
    args = [FASTFLYER, command, "--app-dir", str(DEMO), "--host", "127.0.0.1", "--port", "0",
            *(["--workers", "2"] if command == "serve" else [])]
    with started(args, tmp_path, env_for(
            tmp_path, flyer_log_path=str(tmp_path / "logs"), flyer_access_log="1",
            flyer_access_logfile="-", flyer_graceful_timeout="1", **env),
            tmp_path / "console.log", new_session=True) as process:
        yield process


def stop(process: subprocess.Popen[bytes], console: Path) -> str:
    """SIGTERM, then the console once the process ended (within ``STOP_WITHIN``)."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_WITHIN)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {STOP_WITHIN:g} s after SIGTERM:\n"
                             f"{console.read_text()}") from None
    return console.read_text()


def listening_port(pid: int) -> int | None:
    """The port of the listening TCP socket process ``pid`` holds, read from /proc (the
    console says nothing of it at level warning); ``None`` before it holds one."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:["):-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                return int(fields[1].rsplit(":", 1)[1], 16)
    return None


def _self_call(url: str, request_id: str, target: str) -> httpx.Response:
    """A request whose route calls ``target`` with FastKit's client, which logs the call."""
    response = httpx.get(f"{url}/flyer/errors/upstream", params={"url": target},
                         headers={"X-Request-ID": request_id}, timeout=30)
    assert response.status_code == 200, response.text
    return response


# --- the servers' consoles ------------------------------------------------------------------

@pytest.mark.parametrize("command", ["serve", "run"])
def test_every_console_line_is_in_the_framework_format(tmp_path, command):
    console = tmp_path / "console.log"
    address = re.compile(r"(?:Uvicorn running on|Listening at:) (http://127\.0\.0\.1:\d+)")
    workers = 2 if command == "serve" else 1
    request_id = f"server-log-{command}"
    with server(command, tmp_path) as process:
        found = wait_for("address", lambda: address.search(console.read_text()), process,
                         console)
        assert isinstance(found, re.Match)
        url = found[1]
        wait_for("every worker started", lambda: console.read_text().count(
            "Application startup complete") == workers, process, console)
        wait_for("health", lambda: httpx.get(f"{url}/health_check", timeout=2).status_code
                 == 200, process, console)
        _self_call(url, request_id, f"{url}/health_check")
        wait_for("the call's line", lambda: f"| {request_id} |" in console.read_text(),
                 process, console)
        text = stop(process, console)

    records = console_records(text)  # every line: the framework's format, or JSON access

    def lines(name: str, text: str) -> list[dict[str, str]]:
        return [r for r in records if r["name"] == name and text in r["message"]]

    if command == "serve":
        assert len(lines("gunicorn.error", "Booting worker with pid:")) == workers, text
        assert lines("gunicorn.error", "Listening at: http://127.0.0.1:"), text
    else:  # the line tests read the port from, in this format too
        assert lines("uvicorn.error", "Uvicorn running on http://127.0.0.1:"), text
    assert len(lines("uvicorn.error", "Started server process")) == workers, text
    assert len(lines("uvicorn.error", "Application startup complete")) == workers, text
    # The standard loggers' records name their logger and the caller, never the handler.
    server_records = [r for r in records if r["name"].startswith(SERVER_LOGGERS)]
    assert all(r["function"] != "emit" for r in server_records), text
    assert not [r for r in records if r["name"].startswith("fastflyer.serverlog")], text
    # Outside a request, no request id; inside one, the request's.
    assert {r["request_id"] for r in server_records} == {"-"}, text
    call = [r for r in records if r["request_id"] == request_id]
    assert call and "/health_check" in call[0]["message"], text
    assert call[0]["level"] == "INFO"
    access = [json.loads(line) for line in text.splitlines() if _access_line(line)]
    assert any(entry.get("request_id") == request_id for entry in access), text


@pytest.mark.parametrize("command", ["serve", "run"])
def test_console_level_warning_hides_the_servers_info_lines(tmp_path, command):
    console = tmp_path / "console.log"
    request_id = f"server-log-quiet-{command}"
    with server(command, tmp_path, flyer_console_log_level="warning") as process:
        port = wait_for("a listening socket", lambda: listening_port(process.pid), process,
                        console)
        url = f"http://127.0.0.1:{port}"
        wait_for("health", lambda: httpx.get(f"{url}/health_check", timeout=2).status_code
                 == 200, process, console)
        # A call answered 404: the call log's WARNING, which this level shows.
        assert _self_call(url, request_id, f"{url}/no-such-path").json()["data"] == {
            "status": 404}
        wait_for("the call's warning", lambda: f"| {request_id} |" in console.read_text(),
                 process, console)
        text = stop(process, console)

    records = console_records(text)
    assert [r["level"] for r in records if r["request_id"] == request_id] == ["WARNING"], text
    assert not [r for r in records if r["level"] in ("TRACE", "DEBUG", "INFO", "SUCCESS")], text
    for hidden in ("Booting worker", "Listening at", "Uvicorn running on",
                   "Started server process", "Application startup complete", "Shutting down"):
        assert hidden not in text


# --- the handler and gunicorn's logger, in this process --------------------------------------

@pytest.fixture
def captured() -> Iterator[list[str]]:
    """The lines loguru writes in the framework's format while the test runs."""
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message).rstrip("\n")),
                      level="DEBUG", format=TEXT_FORMAT, colorize=False)
    yield lines
    logger.remove(sink)


@pytest.fixture
def std_logger() -> Iterator[logging.Logger]:
    """A standard logger writing only through :class:`InterceptHandler`."""
    log = logging.getLogger("tests.serverlog")
    handler = InterceptHandler()
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    log.removeHandler(handler)


def test_a_standard_record_is_a_framework_line_with_its_logger_name_and_request_id(
        captured, std_logger):
    std_logger.info("outside %s", "any request")
    with bind_request_id("rid-123"):
        std_logger.warning("inside a request")

    records = [_record(line) for line in captured]
    assert records[0] is not None and records[1] is not None, captured
    assert records[0]["request_id"] == "-"
    assert records[1]["request_id"] == "rid-123"
    for record in records:
        assert record["name"] == "tests.serverlog"
        # the caller's location, not the handler's
        assert record["function"] == ("test_a_standard_record_is_a_framework_line_with_its_"
                                      "logger_name_and_request_id")
    assert [r["level"] for r in records] == ["INFO", "WARNING"]
    assert records[0]["message"] == "outside any request"


def test_a_standard_record_keeps_its_exception_and_masks_secrets_in_urls(captured, std_logger):
    try:
        raise ConnectionError("refused")
    except ConnectionError:
        std_logger.exception("cannot reach %s or %s", "redis://:hunter2@cache:6379/0",
                             "http://api/v1?access_token=abc123&page=2")
    text = "\n".join(captured)
    assert "hunter2" not in text and "abc123" not in text, text
    assert "redis://:***@cache:6379/0" in text and "access_token=***&page=2" in text, text
    assert "ConnectionError: refused" in text  # the traceback follows the line
    first = _record(captured[0].splitlines()[0])
    assert first is not None and first["level"] == "ERROR"


def test_gunicorn_logger_writes_its_error_log_through_the_handler_only(tmp_path):
    cfg = GunicornConfig()
    for key, value in gunicorn_options(FlyerSettings(), tmp_path).items():
        if key in cfg.settings and key != "bind":
            cfg.set(key, value)
    assert cfg.logger_class is GunicornLogger
    error_log, access_log = logging.getLogger("gunicorn.error"), logging.getLogger(
        "gunicorn.access")
    before = list(error_log.handlers), list(access_log.handlers)
    try:
        log = GunicornLogger(cfg)
        log.setup(cfg)  # a HUP reload sets up again: still one handler
        assert [type(h) for h in error_log.handlers] == [InterceptHandler]
        assert access_log.handlers == []  # no access log (the app writes its own)
        assert error_log.level == logging.INFO
    finally:
        error_log.handlers, access_log.handlers = before
