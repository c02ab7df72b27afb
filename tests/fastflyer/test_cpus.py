"""The CPUs a process may use: affinity capped by the cgroup quota, from real file layouts."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from fastflyer.cpus import cgroup_cpu_limit, usable_cpus
from fastflyer.launch import gunicorn_options
from fastflyer.settings import load_settings

AFFINITY = len(os.sched_getaffinity(0))


def layout(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


CASES = {
    "v2 quota in the process's own group": ({
        "proc/self/cgroup": "0::/kubepods/pod1/ctr\n",
        "sys/fs/cgroup/kubepods/pod1/ctr/cpu.max": "150000 100000\n",
        "sys/fs/cgroup/cpu.max": "max 100000\n",
    }, 1.5),
    # A container sees its own group at the root, whatever /proc/self/cgroup says.
    "v2 seen from inside a container": ({
        "proc/self/cgroup": "0::/docker/abc\n",
        "sys/fs/cgroup/cpu.max": "50000 100000\n",
    }, 0.5),
    "v2 without a limit": ({
        "proc/self/cgroup": "0::/\n",
        "sys/fs/cgroup/cpu.max": "max 100000",
    }, None),
    "v1 quota": ({
        "proc/self/cgroup": "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n",
        "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "100000\n",
        "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
    }, 1.0),
    "v1 unlimited": ({
        "proc/self/cgroup": "4:cpu:/\n",
        "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
        "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
    }, None),
    "no cgroup files at all": ({}, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cgroup_layouts(tmp_path, case):
    files, limit = CASES[case]
    root = layout(tmp_path, files)
    assert cgroup_cpu_limit(root) == limit
    expected = AFFINITY if limit is None else max(1, min(AFFINITY, math.ceil(limit)))
    assert usable_cpus(root) == expected


def test_this_machine():
    assert 1 <= usable_cpus() <= AFFINITY


def test_gunicorn_options_follow_the_settings(monkeypatch, tmp_path):
    for name, value in {"workers": "3", "worker_connections": "500", "timeout": "30",
                        "graceful_timeout": "10", "keepalive": "7", "enable_max_requests": "1",
                        "max_requests": "1000", "max_requests_jitter": "50",
                        "host": "127.0.0.1", "port": "9000"}.items():
        monkeypatch.setenv(f"flyer_{name}", value)
    options = gunicorn_options(load_settings(), tmp_path)
    assert options["bind"] == ["127.0.0.1:9000"]
    assert options["workers"] == 3
    assert "worker_connections" not in options  # the app's own limit (uvicorn ignores it)
    # SIGTERM to SIGKILL: the drain (10), the stop hooks (10 by default), a margin
    assert (options["timeout"], options["graceful_timeout"], options["keepalive"]) == (30, 23, 7)
    assert (options["max_requests"], options["max_requests_jitter"]) == (1000, 50)
    assert options["worker_class"] == "fastflyer.worker.FlyerWorker"
    assert options["chdir"] == str(tmp_path)
    monkeypatch.setenv("flyer_enable_max_requests", "0")
    monkeypatch.delenv("flyer_workers")
    options = gunicorn_options(load_settings(), tmp_path)
    assert options["max_requests"] == 0
    assert options["workers"] == usable_cpus()
