"""How many CPUs this process may really use: affinity and the cgroup CPU quota.

    >>> usable_cpus() >= 1
    True

The smallest of: the CPUs in the scheduler affinity mask, and the cgroup quota rounded
up (``cpu.max`` on cgroup v2, ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` on v1), found
through this process's own cgroup path in ``/proc/self/cgroup`` and then its parents. A
missing or unreadable file means no limit from it, never an error.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["cgroup_cpu_limit", "usable_cpus"]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _own_paths(proc_cgroup: str) -> tuple[str | None, str | None]:
    """This process's cgroup v2 path and v1 ``cpu`` controller path."""
    v2 = v1 = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _candidates(base: Path, path: str | None) -> list[Path]:
    """``base/path`` and each parent up to ``base`` (a container sees its own cgroup as /)."""
    if path is None:
        return [base]
    out, current = [], Path(path.lstrip("/"))
    while True:
        out.append(base / current)
        if current == Path("."):
            return out
        current = current.parent


def cgroup_cpu_limit(root: Path = Path("/")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs, or ``None`` when there is none."""
    proc = _read(root / "proc/self/cgroup") or ""
    v2_path, v1_path = _own_paths(proc)
    fs = root / "sys/fs/cgroup"
    for directory in _candidates(fs, v2_path):
        value = _read(directory / "cpu.max")
        if value is not None:
            quota, _, period = value.partition(" ")
            if quota != "max" and quota.isdigit() and period.isdigit() and int(period) > 0:
                return int(quota) / int(period)
            return None
    for base in (fs / "cpu", fs / "cpu,cpuacct", fs / "cpuacct,cpu"):
        for directory in _candidates(base, v1_path):
            quota_text = _read(directory / "cpu.cfs_quota_us")
            period_text = _read(directory / "cpu.cfs_period_us")
            if quota_text is None or period_text is None:
                continue
            try:
                v1_quota, v1_period = int(quota_text), int(period_text)
            except ValueError:
                return None
            return v1_quota / v1_period if v1_quota > 0 and v1_period > 0 else None
    return None


def usable_cpus(root: Path = Path("/")) -> int:
    """CPUs this process may use: affinity, capped by the cgroup quota (rounded up), ≥ 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        count = min(count, math.ceil(limit))
    return max(1, count)
