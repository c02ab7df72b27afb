"""The README's Python examples run as tests, against the servers the README names.

Every fenced block says its language; every ``python`` block runs, each in a fresh namespace
with the two names the README's prose defines: ``base_url``, the echo server that
``make echo-server`` runs (``examples/echo_server.py``, started here the same way on a free
port), and ``kafka_servers``, a real broker (tansu). Redis and MariaDB are the machine's
(127.0.0.1:6379 and :3306). A block of another language that parses as Python would escape
this test, so it fails one.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The README's echo server, run as `make echo-server` runs it, on a free port."""
    log = tmp_path_factory.mktemp("echo") / "echo.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, str(ECHO_SERVER), "--port", "0"],
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r'base_url = "(http://[^"]+)"', log.read_text())):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no address within 30 s: {log.read_text()}"
            time.sleep(0.05)
        yield found.group(1)
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
def test_readme_example(index, echo_server, request):
    names = {"__name__": "readme", "base_url": echo_server}
    if "kafka_servers" in BLOCKS[index]:  # a real broker (tansu) for the messaging examples
        names["kafka_servers"] = request.getfixturevalue("broker").servers
    exec(compile(BLOCKS[index], f"<README block {index}>", "exec"), names)
