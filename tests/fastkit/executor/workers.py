"""Start ``locked_worker.py`` processes (several "instances") and collect their ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).with_name("locked_worker.py")
RECORDS = "redis://127.0.0.1:6379/15"


def start(kind: str, prefix: str, *options: str,
          env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start one worker; :func:`ready` waits for it."""
    return subprocess.Popen([sys.executable, str(WORKER), kind, RECORDS, prefix, *options],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=None if env is None else {**os.environ, **env})


def ready(process: subprocess.Popen[str]) -> subprocess.Popen[str]:
    """Wait until ``process`` says it runs (its job added, its pool started)."""
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == "ready", process.stderr.read() if process.stderr else line
    return process


def spawn(kind: str, prefix: str, *options: str) -> subprocess.Popen[str]:
    return ready(start(kind, prefix, *options))


def finish(processes: list[subprocess.Popen[str]], timeout: float = 30) -> list[str]:
    errors = []
    for process in processes:
        _, err = process.communicate(timeout=timeout)
        assert process.returncode in (0, -signal.SIGKILL), err
        errors.append(err)
    return errors
