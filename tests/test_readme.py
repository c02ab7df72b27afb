"""The README's Python examples run as tests, against the servers the README names.

Every fenced block says its language; every ``python`` block runs, each in a fresh namespace
with the names the README's prose defines: ``base_url``, the echo server that
``make echo-server`` runs (``examples/echo_server.py``, started here the same way on a free
port), ``kafka_servers``, a real broker (tansu), and ``etcd_url``, a real etcd. Redis and
MariaDB are the machine's (127.0.0.1:6379 and :3306). The environment is restored after
each block. A block of another language that parses as Python would escape
this test, so it fails one.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCES = re.findall(r"^```([^\n]*)\n(.*?)^```", README, re.S | re.M)
BLOCKS = [code for language, code in FENCES if language == "python"]
ECHO_SERVER = ROOT / "examples" / "echo_server.py"


def test_readme_has_examples():
    assert len(BLOCKS) >= 12


def test_every_block_says_its_language():
    unnamed = [code.splitlines()[0] for language, code in FENCES if not language.strip()]
    assert unnamed == [], "fences without a language (python, sh, text...)"


@pytest.mark.parametrize("index", [i for i, (language, _) in enumerate(FENCES)
                                   if language != "python"])
def test_no_python_hides_in_another_language(index):
    language, code = FENCES[index]
    try:
        ast.parse(code)
    except SyntaxError:
        return
    pytest.fail(f"a ```{language} block is Python, so it is never run: "
                f"{code.splitlines()[0]!r}; mark it ```python")


class EchoServer(NamedTuple):
    url: str
    log: Path  # its output: the address line, then "METHOD /path STATUS" per request

    def requests(self) -> list[str]:
        """The requests it has answered so far, as "METHOD /path STATUS"."""
        return re.findall(r"^(?:GET|POST|PUT|PATCH|DELETE|HEAD) \S+ \d+$",
                          self.log.read_text(), re.M)


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EchoServer]:
    """The README's echo server, run as `make echo-server` runs it, on port 0: the port it
    got is read from the address line it prints."""
    log = tmp_path_factory.mktemp("echo") / "echo.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, str(ECHO_SERVER), "--port", "0"],
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r'base_url = "(http://[^"]+)"', log.read_text())):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no address within 30 s: {log.read_text()}"
            time.sleep(0.05)  # polling to the deadline above
        yield EchoServer(found.group(1), log)
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0, log.read_text()  # SIGTERM: a clean stop


def test_the_echo_server_is_the_one_make_runs_and_the_readme_names():
    planned = subprocess.run(["make", "--no-print-directory", "-n", "echo-server",
                              "ECHO_PORT=0"], cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
    assert planned.returncode == 0, planned.stderr
    assert f"{Path(ECHO_SERVER).relative_to(ROOT)} --port 0" in planned.stdout
    assert "`make echo-server`" in README and 'base_url = "http://127.0.0.1:8081"' in README


def test_the_echo_server_on_a_port_in_use_says_so_in_one_line():
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        result = subprocess.run([sys.executable, str(ECHO_SERVER), "--port", str(port)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"port {port} is already in use" in result.stderr
    assert "make echo-server ECHO_PORT=" in result.stderr


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example(index, echo_server, logs, request):
    block = BLOCKS[index]
    checks = [check for marker, check in CHECKS.items() if marker in block]
    # A block's own asserts (or pytest.raises) are what the run shows; one without any
    # needs a check of what it did, here: running it alone would show only "no exception".
    assert checks or re.search(r"^\s*assert |pytest\.raises\(", block, re.M), \
        f"README block {index} asserts nothing and has no check in CHECKS:\n{block}"
    names = {"__name__": "readme", "base_url": echo_server.url}
    if "kafka_servers" in block:  # a real broker (tansu) for the messaging examples
        names["kafka_servers"] = request.getfixturevalue("broker").servers
    if "etcd_url" in block:  # a real etcd for the config center and registry examples
        names["etcd_url"] = request.getfixturevalue("etcd").url
    answered = len(echo_server.requests())
    environment = dict(os.environ)  # a block may set variables (the config center's do)
    try:
        exec(compile(block, f"<README block {index}>", "exec"), names)
    finally:
        os.environ.clear()
        os.environ.update(environment)
    for check in checks:
        check(names, echo_server.requests()[answered:], logs)


def routes_are_flyer_routes(names: dict[str, Any], served: list[str], logs: Any) -> None:
    """The route class given to a router and to an app makes the routes added later."""
    from fastflyer.routing import FlyerRoute

    names["router"].get("/on-router")(lambda: None)
    names["app"].get("/on-app")(lambda: None)
    assert isinstance(names["router"].routes[-1], FlyerRoute)
    assert isinstance(names["app"].router.routes[-1], FlyerRoute)


def both_requests_answered(names: dict[str, Any], served: list[str], logs: Any) -> None:
    """The GET without retries and the POST with them both reached the server, once."""
    assert served == ["GET /get 200", "POST /post 200"]


def both_lines_logged(names: dict[str, Any], served: list[str], logs: Any) -> None:
    """``logger.info`` and the seed's ``logger.warn`` log at INFO and WARNING."""
    assert [(record["level"], record["message"]) for record in logs.records
            if record["message"] in ("INFO level", "WARN level")] == [
        ("INFO", "INFO level"), ("WARNING", "WARN level")]


# What the blocks that assert nothing themselves did, checked after they ran; each is
# found by a line of its own: the namespace it left, the echo server's requests during it,
# the log records during it.
CHECKS: dict[str, Callable[[dict[str, Any], list[str], Any], None]] = {
    "app.router.route_class = FlyerRoute": routes_are_flyer_routes,
    'retry={"retry_methods": {"POST"}}': both_requests_answered,
    'logger.warn("WARN level")': both_lines_logged,
}
