"""fastkit.logging against what a careless or hostile caller sends: ``warn`` after ``opt``,
secrets hidden behind an exception's class name or in a line's keywords and bound values,
settings that cannot work given to ``configure``/``get_logger``, a log file that cannot be
opened, and ``configure`` from threads at once and after a fork."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fastkit.logging import LogConfigError, LogSettings, configure, get_logger, logger
from fastkit.logging.redact import redact_text


def run(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("flyer_")}
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=60)


# --- warn: loguru's warning, with what opt gave -----------------------------------------

def _helper_warns() -> None:
    logger.opt(depth=1).warn("from the helper's caller")


def test_warn_after_opt_keeps_depth_exception_and_lazy():
    records: list[Any] = []
    handler_id = logger.add(lambda message: records.append(message.record), level="DEBUG")
    try:
        _helper_warns()
        line_of_call = sys._getframe().f_lineno - 1
        try:
            raise KeyError("gone")
        except KeyError as exc:
            logger.opt(exception=exc).warn("with the exception")
        logger.opt(lazy=True).warn("lazy {}", lambda: "evaluated")
    finally:
        logger.remove(handler_id)
    by_message = {r["message"].splitlines()[0]: r for r in records}
    depth = by_message["from the helper's caller"]
    assert (depth["function"], depth["line"]) == (
        "test_warn_after_opt_keeps_depth_exception_and_lazy", line_of_call)
    assert "KeyError: 'gone'" in by_message["with the exception"]["message"]
    assert "lazy evaluated" in by_message
    assert all(r["level"].name == "WARNING" for r in records)


# --- secrets --------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "shown"), [
    ("ValueError: password=zq1", "ValueError: password=***"),
    ("login failed: token=zq2 for bob", "login failed: token=*** for bob"),
    ("detail: Authorization: Bearer zq3", "detail: Authorization: ***"),
    ("a: b: c: api_key=zq4", "a: b: c: api_key=***"),
    ("reason='secret=zq5'", "reason='secret=***'"),
    # a URL is masked as a URL: a user name holding a secret's stem hides no host
    ("lost: mysql+pymysql://app_secret_user:zq6@db.internal:3306/x",
     "lost: mysql+pymysql://app_secret_user:***@db.internal:3306/x"),
])
def test_a_secret_pair_in_the_value_of_another_is_masked(text, shown):
    assert redact_text(text) == shown


@pytest.mark.parametrize("line", ["a:" * 50_000 + "token", "x: " * 33_000 + "password=1"],
                         ids=["colons", "blanks"])
def test_masking_pairs_inside_pairs_stays_linear(line):
    started = time.perf_counter()
    redact_text(line)
    assert time.perf_counter() - started < 1.0  # quadratic: tens of seconds


def test_an_exception_message_with_a_secret_pair_is_masked_in_the_traceback(logs):
    try:
        raise ValueError("password=zqE1")
    except ValueError:
        logger.exception("login")
    (record,) = [r for r in logs.records if r["message"].startswith("login")]
    assert "zqE1" not in record["message"]
    assert "ValueError: password=***" in record["message"]


def test_keywords_and_bound_values_are_masked_in_a_serializing_sink():
    lines: list[str] = []
    handler_id = logger.add(lines.append, serialize=True, level="DEBUG")
    try:
        logger.info("login with token={t}", t="zqK1")
        logger.bind(password="zqK2", user="bob").info("bound")
        with logger.contextualize(session_id="zqK3"):
            logger.info("in context")
        logger.bind(url="redis://:zqK4@cache:6379/0").info("connecting")
    finally:
        logger.remove(handler_id)
    text = "".join(lines)
    assert not [s for s in ("zqK1", "zqK2", "zqK3", "zqK4") if s in text], text
    extras = [json.loads(line)["record"]["extra"] for line in lines]
    assert extras[1]["user"] == "bob"
    assert extras[3]["url"] == "redis://:***@cache:6379/0"


HOST_PATCHER = """
import io, json
from loguru import logger
logger.remove()
def snapshot(record):  # the application's own patcher, run before FastKit's
    record["extra"]["copy"] = record["message"]
    record["extra"]["as_json"] = json.dumps({"message": record["message"]})
logger.configure(patcher=snapshot)
out = io.StringIO()
logger.add(out, serialize=True)
logger.add(out, format="{message}|{extra[copy]}|{extra[as_json]}")
from fastkit.logging import logger as fk
fk.info("calling with Authorization: Bearer zqH1")
fk.warn("login failed: password=zqH2")
print(out.getvalue())
"""


def test_fastkit_lines_copied_by_the_application_s_patcher_are_masked(tmp_path):
    result = run(HOST_PATCHER, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "zqH1" not in result.stdout and "zqH2" not in result.stdout, result.stdout
    assert "Authorization: ***" in result.stdout
    assert list(tmp_path.iterdir()) == []


# --- settings that cannot work ----------------------------------------------------------

@pytest.mark.parametrize(("field", "value"), [
    ("console_level", "verbose"), ("file_level", "10"), ("rotation", "banana"),
    ("rotation", 0), ("retention", 0), ("retention", "10 days"), ("log_path", "logs\0x"),
    ("log_path", 5), ("name", "../../elsewhere"), ("name", ""), ("to_file", "no"),
])
def test_configure_refuses_a_bad_setting_naming_it_and_changes_nothing(tmp_path, field, value):
    code = (
        "import io\nfrom loguru import logger\n"
        "logger.remove()\nout = io.StringIO()\nlogger.add(out, format='{message}')\n"
        "from fastkit.logging import LogConfigError, LogSettings, configure\n"
        "try:\n"
        f"    configure(LogSettings(**{{'log_path': 'logs', {field!r}: {value!r}}}))\n"
        "except LogConfigError as exc:\n"
        "    print('refused:', exc)\n"
        "logger.info('still mine')\n"
        "print(out.getvalue(), end='')\n"
    )
    result = run(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"refused: {field}="), result.stdout
    assert result.stdout.endswith("still mine\n")  # the application's sink, as it was
    assert result.stderr == ""  # no sink of FastKit's was added
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("argument", "value"), [
    ("log_path", "logs\0x"), ("log_path", 5), ("name", "a/b"), ("rotation", -1),
    ("rotation", "1e400 GB"), ("rotation", "99999999999999999999 days"),
    ("retention", True), ("file_log_level", "loud"), ("console_log_level", 7),
])
def test_get_logger_refuses_a_bad_argument_naming_it(argument, value):
    with pytest.raises(LogConfigError, match=f"^{argument}="):
        get_logger(**{argument: value})


def test_configure_takes_fastkit_level_names_and_the_application_s_own_levels(tmp_path):
    code = (
        "import sys\nfrom loguru import logger\n"
        "logger.level('NOTICE', no=25)\n"
        "from fastkit.logging import LogSettings, configure, logger as fk\n"
        "configure(LogSettings(console_level='warn', file_level='NOTICE', log_path='logs'))\n"
        "fk.info('not on the console')\nfk.warn('on the console')\n"
        "fk.log('NOTICE', 'notice in the file')\n"
    )
    result = run(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "on the console" in result.stderr and "not on the console" not in result.stderr
    main = (tmp_path / "logs" / "fastkit.log").read_text()
    assert "notice in the file" in main and "not on the console" not in main


# --- files that cannot be written, threads, fork ----------------------------------------

def test_a_log_file_that_cannot_be_opened_is_reported_once_and_logging_goes_on(tmp_path):
    (tmp_path / "logs" / "fastkit.log").mkdir(parents=True)  # a directory in its place
    result = run("from fastkit.logging import get_logger\nlog = get_logger(log_path='logs')\n"
                 "for i in range(20):\n    log.info('line {}', i)\nprint('done')\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    assert result.stderr.count("cannot write") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("line 19") == 1  # the console still has every line


THREADS_THEN_FORK = """
import os, threading
from fastkit.logging import LogSettings, configure, logger
barrier = threading.Barrier(8)
def go(i):
    barrier.wait()
    configure(LogSettings(log_path=os.path.abspath("logs"), name="svc"))
    logger.info("thread line {}", i)
threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
logger.info("after the threads")
pid = os.fork()
if pid == 0:
    logger.info("child line")
    configure(LogSettings(log_path=os.path.abspath("logs"), name="svc"))
    logger.info("child line after configure")
    os._exit(0)
os.waitpid(pid, 0)
logger.info("parent line")
"""


def test_configure_from_threads_at_once_then_after_a_fork_writes_each_line_once(tmp_path):
    result = run(THREADS_THEN_FORK, tmp_path)
    assert result.returncode == 0, result.stderr
    main = (tmp_path / "logs" / "svc.log").read_text()
    for line in ("after the threads", "child line\n", "child line after configure",
                 "parent line", *(f"thread line {i}\n" for i in range(8))):
        assert main.count(line) == 1, (line, main)
        assert result.stderr.count(line) == 1, (line, result.stderr)


def test_a_bad_setting_never_reaches_the_first_logged_line():
    """Checked in configure: with files on, the line that opens them cannot raise."""
    with pytest.raises(LogConfigError):
        configure(LogSettings(rotation="banana"))
    logger.info("a line after a refused configure")  # nothing pending: no raise
