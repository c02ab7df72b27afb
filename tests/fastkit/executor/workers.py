"""Start ``locked_worker.py`` processes (several "instances") and collect their ends."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).with_name("locked_worker.py")
RECORDS = "redis://127.0.0.1:6379/15"


def spawn(kind: str, prefix: str, *options: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, str(WORKER), kind, RECORDS, prefix, *options],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == "ready", process.stderr.read() if process.stderr else line
    return process


def finish(processes: list[subprocess.Popen[str]], timeout: float = 30) -> list[str]:
    errors = []
    for process in processes:
        _, err = process.communicate(timeout=timeout)
        assert process.returncode in (0, -signal.SIGKILL), err
        errors.append(err)
    return errors
