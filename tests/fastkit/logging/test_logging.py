"""fastkit.logging: console and lazily opened rotating files, levels from flyer_* variables."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastkit.logging import logger
from fastkit.logging._setup import log_settings_from_env, parse_level


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


def test_files_open_at_first_line_not_at_import(tmp_path):
    log_dir = tmp_path / "logs"
    result = run(
        "import os, fastkit.logging as fl\n"
        f"assert not os.path.exists({str(log_dir)!r}), 'created at import'\n"
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
    result = run("from fastkit.logging import logger\nlogger.debug('quiet detail')\n", tmp_path,
                 flyer_log_path=str(tmp_path), flyer_console_log_level="error",
                 flyer_file_log_level="debug")
    assert result.returncode == 0, result.stderr
    assert "quiet detail" in (tmp_path / "fastkit.log").read_text()
    assert "quiet detail" not in result.stderr


def test_unusable_log_path_falls_back_without_crashing(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    result = run("from fastkit.logging import logger, log_directory\n"
                 "logger.info('still logged')\nprint(log_directory())\n", tmp_path,
                 flyer_log_path=str(blocker / "logs"))
    assert result.returncode == 0, result.stderr
    fallback = Path(result.stdout.strip())
    assert fallback != blocker / "logs"
    assert "still logged" in (fallback / "fastkit.log").read_text()
    assert "log files written to" in result.stderr


def test_json_switch(tmp_path):
    result = run("from fastkit.logging import logger\nlogger.info('as json')\n", tmp_path,
                 flyer_log_path=str(tmp_path), flyer_log_json="1")
    assert result.returncode == 0, result.stderr
    line = json.loads((tmp_path / "fastkit.log").read_text().splitlines()[0])
    assert line["record"]["message"] == "as json"
    assert line["record"]["extra"]["request_id"] == "-"


def test_no_files_when_switched_off(tmp_path):
    result = run("from fastkit.logging import logger\nlogger.info('console only')\n", tmp_path,
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


def test_a_bad_variable_never_breaks_the_import_and_is_told_at_the_first_line(tmp_path):
    result = run("from fastkit.logging import logger\nlogger.info('first line')\n", tmp_path,
                 flyer_console_log_level="loud", flyer_log_path=str(tmp_path / "logs"))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert "WARNING" in lines[0]
    assert "flyer_console_log_level='loud' is not a log level" in lines[0]
    assert "using info" in lines[0]
    assert "first line" in lines[1]
