"""The metrics as an operator gets them: ``fastflyer serve`` with several workers, scraped by
a real Prometheus. Every request is counted exactly once, whichever worker served it and
whichever worker answers the scrape, a recycled worker's included; the multiprocess
directory the server made is gone once it has stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_launch import FASTFLYER, env_for, generate_project, healthy_address, started

from prometheus_server import PrometheusServer
from waiting import wait_for

N = 57  # requests, each to its own item id
ROUTE = "/flyer/items/{item_id}"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project made by ``fastflyer create_app`` (``GET /flyer/items/{item_id}``)."""
    return generate_project(tmp_path_factory.mktemp("metrics"))


@contextmanager
def serving(tmp_path: Path, project: Path, **extra: str
            ) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """``fastflyer serve --workers 2`` on 127.0.0.1, port 0, in its own process group; its
    process, URL and console log, once healthy."""
    log = tmp_path / "console.log"
    env = env_for(tmp_path, flyer_host="127.0.0.1", flyer_log_path=str(tmp_path / "logs"),
                  HOME=str(tmp_path))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra)
    with started([FASTFLYER, "serve", "--workers", "2", "--port", "0"], project, env, log,
                 new_session=True) as process:
        yield process, healthy_address(process, log), log


def metrics_directories(tmp_path: Path) -> list[Path]:
    """The multiprocess directories made in the server's temporary directory."""
    return sorted((tmp_path / "tmp").glob("fastflyer-metrics-*"))


def pids(directory: Path, kind: str) -> set[int]:
    """The processes with a ``kind`` file (``counter``, ``gauge_livesum``...) there."""
    return {int(found[1]) for path in directory.iterdir()
            if (found := re.fullmatch(rf"{kind}_(\d+)\.db", path.name))}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def send_requests(url: str) -> None:
    """``N`` requests to the path-parameter route, one connection each (so that every
    worker gets some), each to another item (none exists: 404 from the app)."""
    for item_id in range(1, N + 1):
        response = httpx.get(f"{url}/flyer/items/{item_id}", timeout=30)
        assert response.status_code == 404, response.text
        assert response.json()["message"] == f"item {item_id} not found"


def scraped_total(url: str, name: str = "http_server_requests_total",
                  **labels: str) -> float:
    """The sum of ``name``'s samples with ``labels`` in one scrape of ``url``/metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


def stop(process: subprocess.Popen[bytes], log: Path) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, log.read_text()


def test_prometheus_counts_the_requests_of_two_workers_exactly(tmp_path: Path,
                                                               project: Path) -> None:
    with serving(tmp_path, project) as (process, url, log):
        (directory,) = metrics_directories(tmp_path)
        prometheus = PrometheusServer([urlsplit(url).netloc])
        try:
            prometheus.start()
            prometheus.wait_for_scrape(timeout=30)
            send_requests(url)
            query = f'sum(http_server_requests_total{{route="{ROUTE}"}})'

            def counted() -> float:
                result = prometheus.query(query)
                return float(result[0]["value"][1]) if result else 0.0

            wait_for(lambda: counted() >= N, 30, f"{query} reaching {N} in Prometheus")
            assert counted() == N
            prometheus.wait_for_scrape()  # a later scrape: still N, never more
            assert counted() == N
            (series,) = prometheus.query(f'http_server_requests_total{{route="{ROUTE}"}}')
            assert (series["metric"]["method"], series["metric"]["status"]) == ("GET", "404")
        finally:
            prometheus.close()
        # Each scrape, whichever worker answers it, sums every worker's files.
        assert [scraped_total(url, route=ROUTE) for _ in range(8)] == [N] * 8
        assert pids(directory, "counter"), sorted(os.listdir(directory))
        stop(process, log)
    assert not directory.exists()
    assert metrics_directories(tmp_path) == []


def test_a_recycled_worker_leaves_its_counts_and_takes_its_gauges(tmp_path: Path,
                                                                  project: Path) -> None:
    # uvicorn stops a worker after 10 requests (health checks and scrapes included) and
    # gunicorn starts another: 57 requests go through several worker processes.
    with serving(tmp_path, project, flyer_enable_max_requests="1", flyer_max_requests="10",
                 flyer_max_requests_jitter="0") as (process, url, log):
        (directory,) = metrics_directories(tmp_path)
        send_requests(url)
        wait_for(lambda: len(pids(directory, "counter")) > 2, 30, "more than two workers")
        assert "Maximum request limit of 10 exceeded" in log.read_text()
        assert any(not alive(pid) for pid in pids(directory, "counter"))
        assert scraped_total(url, route=ROUTE) == N
        # The master drops the live gauges of each worker it reaps.
        wait_for(lambda: all(alive(pid) for pid in pids(directory, "gauge_livesum")), 30,
                 f"only live workers' gauges in {sorted(os.listdir(directory))}")
        assert scraped_total(url, "http_server_active_requests") == 0
        stop(process, log)
    assert not directory.exists()


def test_the_callers_directory_is_used_and_kept(tmp_path: Path, project: Path) -> None:
    mine = tmp_path / "my-metrics"
    with serving(tmp_path, project, PROMETHEUS_MULTIPROC_DIR=str(mine)) as (process, url, log):
        assert metrics_directories(tmp_path) == []
        assert httpx.get(f"{url}/flyer/items/1", timeout=10).status_code == 404
        assert scraped_total(url, route=ROUTE) == 1
        assert pids(mine, "counter")
        stop(process, log)
    assert mine.is_dir() and pids(mine, "counter")


def test_switched_off_serve_makes_no_directory(tmp_path: Path, project: Path) -> None:
    with serving(tmp_path, project, flyer_metrics_enabled="0") as (process, url, log):
        assert httpx.get(f"{url}/metrics", timeout=10).status_code == 404
        assert metrics_directories(tmp_path) == []
        stop(process, log)
