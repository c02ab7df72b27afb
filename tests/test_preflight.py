"""``make test`` stops at once, one line per missing piece, naming what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PREFLIGHT = Path(__file__).resolve().parent / "preflight.py"


def test_a_machine_without_the_programs_gets_one_line_each(tmp_path):
    result = subprocess.run([sys.executable, str(PREFLIGHT)], capture_output=True, text=True,
                            env={"PATH": str(tmp_path)}, timeout=30)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any(line.endswith("apt-get install chromium") for line in lines), lines
    assert any(line.endswith("apt-get install redis-server") for line in lines), lines
    assert any(line.endswith("apt-get install etcd-server") for line in lines), lines
    assert any(line.endswith("apt-get install prometheus") for line in lines), lines
    assert all(line.startswith("make test needs ") for line in lines), lines
    assert result.stdout == ""


def test_this_machine_has_what_the_tests_need():
    result = subprocess.run([sys.executable, str(PREFLIGHT)], capture_output=True, text=True,
                            timeout=30)
    assert (result.returncode, result.stderr) == (0, "")
