"""fastkit.logging: importing configures nothing; configure()/get_logger() set up the
console and lazily opened rotating files, levels from flyer_* variables."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastflyer.settings import FlyerSettings, SettingsError, load_settings
from fastkit.logging import LogConfigError, log_settings_from_env, logger, parse_flag, parse_level

CONFIGURE = "import fastkit.logging as fl\nfl.configure(fl.log_settings_from_env())\n"


def run(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("flyer_")}
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=environ,
                          capture_output=True, text=True, timeout=60)


def test_warn_alias_and_request_id(logs):
    from fastkit.request_id import bind_request_id

    with bind_request_id("rid-w"):
        logger.warn("careful")
    (record,) = [r for r in logs.records if r["message"] == "careful"]
    assert record["level"] == "WARNING"
    assert record["extra"]["request_id"] == "rid-w"


def test_files_open_at_first_line_not_at_configure(tmp_path):
    log_dir = tmp_path / "logs"
    result = run(
        CONFIGURE + "import os\n"
        f"assert not os.path.exists({str(log_dir)!r}), 'created by configure'\n"
        "fl.logger.info('first line')\n"
        "fl.logger.error('bad thing')\n",
        tmp_path, flyer_log_path=str(log_dir),
    )
    assert result.returncode == 0, result.stderr
    main = (log_dir / "fastkit.log").read_text()
    errors = (log_dir / "fastkit.error.log").read_text()
    assert "first line" in main
    assert "bad thing" in main
    assert "bad thing" in errors
    assert "first line" not in errors
    # Milliseconds printed once: "HH:MM:SS.mmm |"
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| INFO", main)
    assert "first line" in result.stderr  # the console too


def test_file_level_below_console_level_still_writes_files(tmp_path):
    result = run(CONFIGURE + "fl.logger.debug('quiet detail')\n", tmp_path,
                 flyer_log_path=str(tmp_path), flyer_console_log_level="error",
                 flyer_file_log_level="debug")
    assert result.returncode == 0, result.stderr
    assert "quiet detail" in (tmp_path / "fastkit.log").read_text()
    assert "quiet detail" not in result.stderr


def test_unusable_log_path_falls_back_without_crashing(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    result = run(CONFIGURE + "from fastkit.logging import logger, log_directory\n"
                 "logger.info('still logged')\nprint(log_directory())\n", tmp_path,
                 flyer_log_path=str(blocker / "logs"))
    assert result.returncode == 0, result.stderr
    fallback = Path(result.stdout.strip())
    assert fallback != blocker / "logs"
    assert "still logged" in (fallback / "fastkit.log").read_text()
    assert "log files written to" in result.stderr


def test_json_switch(tmp_path):
    result = run(CONFIGURE + "fl.logger.info('as json')\n", tmp_path,
                 flyer_log_path=str(tmp_path), flyer_log_json="1")
    assert result.returncode == 0, result.stderr
    line = json.loads((tmp_path / "fastkit.log").read_text().splitlines()[0])
    assert line["record"]["message"] == "as json"
    assert line["record"]["extra"]["request_id"] == "-"


def test_no_files_when_switched_off(tmp_path):
    result = run(CONFIGURE + "fl.logger.info('console only')\n", tmp_path,
                 flyer_log_path=str(tmp_path / "logs"), flyer_log_to_file="0")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "logs").exists()


def test_get_logger_signature_of_the_original(tmp_path):
    result = run(
        "from fastkit.logging import get_logger\n"
        f"log = get_logger('svc', 'debug', 'warn', {str(tmp_path / 'out')!r})\n"
        "log.debug('to file only')\nlog.warn('both')\n",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "out" / "svc.log").read_text()
    assert "to file only" in text
    assert "both" in text
    assert "to file only" not in result.stderr
    assert "both" in result.stderr


@pytest.mark.parametrize(("variable", "value"), [
    ("flyer_console_log_level", "verbose"),
    ("flyer_file_log_level", "loud"),
    ("flyer_log_json", "maybe"),
])
def test_bad_values_name_the_variable(variable, value):
    with pytest.raises(ValueError, match=f"{variable}={value!r}"):
        log_settings_from_env({variable: value})


def test_levels_accept_the_seed_names():
    assert [parse_level(v, "x") for v in ("debug", "INFO", "warn", "error")] == \
        ["DEBUG", "INFO", "WARNING", "ERROR"]


def test_a_bad_variable_never_breaks_the_import_and_configure_names_it(tmp_path):
    result = run("from fastkit.logging import logger\nlogger.info('first line')\n"
                 "from fastkit.logging import get_logger, LogConfigError\n"
                 "try:\n    get_logger()\nexcept LogConfigError as exc:\n    print(exc)\n",
                 tmp_path, flyer_console_log_level="loud", flyer_log_path=str(tmp_path / "logs"))
    assert result.returncode == 0, result.stderr
    assert "first line" in result.stderr
    assert result.stdout.strip() == ("flyer_console_log_level='loud' is not a log level; "
                                     "use one of debug, info, warn, error, critical")
    assert not (tmp_path / "logs").exists()


def test_the_seeds_logger_prints_with_nothing_configured(tmp_path):
    """The seed's two lines print (loguru's own stderr sink), and nothing is written."""
    result = run("from fastkit.logging import logger\nlogger.info('hello')\n"
                 "logger.warn('careful')\nlogger.bind(k=1).warn('bound')\n"
                 "logger.info('Authorization: Bearer sekrit-token')\n", tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 4, lines
    assert "INFO" in lines[0] and lines[0].endswith("hello")
    assert "WARNING" in lines[1] and lines[1].endswith("careful")
    assert "<module>:3" in lines[1]  # the caller's line, not warn's
    assert "WARNING" in lines[2] and lines[2].endswith("bound")
    assert "sekrit-token" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no ./logs


# An application that set loguru up its own way, then imports and uses FastKit and
# FastFlyer as libraries (a call through the shared client logs a line).
HOST_APP = """
import io, sys, threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from loguru import logger

class Quiet(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass

server = HTTPServer(("127.0.0.1", 0), Quiet)
threading.Thread(target=server.serve_forever, daemon=True).start()

logger.remove()
def mine(record):
    record["extra"]["app"] = "mine"
logger.configure(patcher=mine)
out = io.StringIO()
logger.add(out, format="{extra[app]}|{level}|{message}", level="DEBUG")
logger.info("before")
{imports}
logger.info("after")
logger.warning("token=abc123")
print(out.getvalue(), end="")
"""


@pytest.mark.parametrize("imports", [
    "import fastkit.logging",
    "from fastkit.httpx import requests\n"
    "requests.get(f'http://127.0.0.1:{server.server_port}/x?access_token=s3cr3t')",
    "import fastkit.cache, fastkit.database, fastkit.executor, fastkit.message, fastkit.utils",
    "from fastflyer import logger as fl_logger, status, requests, env\n"
    "fl_logger.warn('via fastflyer')",
], ids=["logging", "httpx-call", "every-fastkit-module", "fastflyer"])
def test_importing_and_using_fastkit_leaves_the_applications_logging_as_it_was(
        tmp_path, imports):
    result = run(HOST_APP.replace("{imports}", imports), tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert "mine|INFO|before" in out
    assert "mine|INFO|after" in out
    # The application's own line is as it wrote it: FastKit's masking is not imposed on it.
    assert "mine|WARNING|token=abc123" in out
    # FastKit's lines reach the application's sink, in its format, through its patcher,
    # and with FastKit's own secrets masked.
    fastkit_lines = [line for line in out if line not in (
        "mine|INFO|before", "mine|INFO|after", "mine|WARNING|token=abc123")]
    assert all(line.startswith("mine|") for line in fastkit_lines), fastkit_lines
    assert "s3cr3t" not in result.stdout
    if "httpx-call" in imports or "requests.get" in imports:
        assert any('"direction": "out"' in line for line in fastkit_lines), fastkit_lines
    if "fastflyer" in imports:
        assert "mine|WARNING|via fastflyer" in out
    assert result.stderr == ""  # no sink of FastKit's
    assert list(tmp_path.iterdir()) == []  # no ./logs


@pytest.mark.parametrize("variable", ["flyer_log_to_file", "flyer_console_log_level",
                                      "flyer_file_log_level", "flyer_log_json",
                                      "flyer_log_path"])
def test_an_empty_variable_counts_as_unset(tmp_path, monkeypatch, variable):
    result = run(CONFIGURE + "fl.logger.info('first line')\n"
                 "print(fl.log_directory())\n", tmp_path, **{variable: ""})
    assert result.returncode == 0, result.stderr
    assert log_settings_from_env({variable: ""}) == log_settings_from_env({})
    assert "WARNING" not in result.stderr
    assert "first line" in result.stderr  # the console at INFO, as text
    directory = Path(result.stdout.strip())
    assert directory == tmp_path / "logs"
    assert "first line" in (directory / "fastkit.log").read_text()  # files on, text
    assert not (directory / "fastkit.log").read_text().startswith("{")
    monkeypatch.setenv(variable, "")
    assert load_settings(warn_unknown=False) == FlyerSettings()


LEVEL_INPUTS = ["debug", "INFO", " warn ", "Warning", "error", "critical", "trace", "success",
                "verbose", "", "0", "warn,error"]
FLAG_INPUTS = ["1", "0", "true", "False", "yes", "NO", "on", "off", " 1 ", "maybe", "2",
               "t", "y"]


CASES = [(setting, parse_level, value) for setting in ("console_log_level", "file_log_level")
         for value in LEVEL_INPUTS] + \
        [(setting, parse_flag, value) for setting in ("log_to_file", "log_json")
         for value in FLAG_INPUTS]


@pytest.mark.parametrize(("setting", "parse", "value"), CASES)
def test_one_parser_per_log_setting_for_fastkit_and_fastflyer(monkeypatch, setting, parse,
                                                              value):
    monkeypatch.setenv(f"flyer_{setting}", value)
    default = FlyerSettings.model_fields[setting].default
    try:  # FastKit's reading of the variable (empty: the default)
        expected = parse(value or str(default), setting)
    except LogConfigError:
        with pytest.raises(SettingsError, match=f"flyer_{setting}"):
            load_settings(warn_unknown=False)
    else:
        assert getattr(load_settings(warn_unknown=False), setting) == expected
