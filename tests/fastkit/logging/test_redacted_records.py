"""Every record FastKit logs passes the redaction step before any sink: messages, exception
messages and tracebacks, on the console and in the files, text and JSON alike, whether the
application configured logging through FastKit or left loguru as it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CODE = """
from fastkit.logging import logger
logger.info("calling {}", "https://api.example/v1?api_key=zqK1&page=2")
try:
    raise ConnectionError("refused by redis://:zqP1@cache.internal:6379/0")
except ConnectionError:
    logger.exception("lost the cache, Authorization: Bearer zqB1")
try:
    raise ValueError({"password": "zqP2", "user": "bob"})
except ValueError as exc:
    logger.opt(exception=exc).error("bad login")
"""
PLANTED = ("zqK1", "zqP1", "zqB1", "zqP2")


def _run(tmp_path: Path, setup: str = "import fastkit.logging\nfastkit.logging.get_logger()",
         **env: str) -> tuple[str, dict[str, str]]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("flyer_")}
    environ.update({"flyer_log_path": str(tmp_path / "logs"), **env})
    result = subprocess.run([sys.executable, "-c", setup + CODE], cwd=tmp_path, env=environ,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    logs = tmp_path / "logs"
    files = {p.name: p.read_text() for p in logs.iterdir()
             if not p.name.startswith(".")} if logs.exists() else {}  # no lock files
    return result.stderr, files


def test_no_planted_secret_reaches_loguru_left_as_it_is(tmp_path):
    console, files = _run(tmp_path, setup="")
    assert files == {}
    assert not [s for s in PLANTED if s in console], console
    for shown in ("api_key=***&page=2", "redis://:***@cache.internal:6379/0",
                  "Authorization: ***", "ConnectionError: refused by", "'password': '***'"):
        assert shown in console, shown


@pytest.mark.parametrize("as_json", ["0", "1"], ids=["text", "json"])
def test_no_planted_secret_reaches_a_sink(tmp_path, as_json):
    console, files = _run(tmp_path, flyer_log_json=as_json)
    assert set(files) == {"fastkit.log", "fastkit.error.log"}
    for where, text in {"console": console, **files}.items():
        assert not [s for s in PLANTED if s in text], f"{where}:\n{text}"
    main = files["fastkit.log"]
    # the surroundings stay: hosts, names, the traceback
    for shown in ("https://api.example/v1?api_key=***&page=2",
                  "redis://:***@cache.internal:6379/0", "Authorization: ***",
                  "Traceback (most recent call last)", "ConnectionError: refused by",
                  "'password': '***'", "'user': 'bob'"):
        assert shown in main, shown
    if as_json == "1":
        records = [json.loads(line) for line in main.splitlines()]
        assert all(r["record"]["exception"] is None for r in records)  # told in the message
        assert "ConnectionError" in records[1]["record"]["message"]
