"""A private Prometheus (Debian's ``prometheus``) on a reserved loopback port with a temporary
data directory, scraping the targets a test gives it every second, for the metrics tests:
started by the tests, stopped (and restarted, for outages) by them."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from redis_server import ChildServer
from waiting import wait_for

__all__ = ["PrometheusServer"]


class PrometheusServer(ChildServer):
    """``start()``, ``stop()``, ``close()``, ``url`` and the HTTP API (``query``,
    ``targets``) of one Prometheus with one scrape job.

    ``targets`` are ``"host:port"`` strings scraped at ``metrics_path`` over plain HTTP
    every second (timeout 1 s) under the job name ``job``. Its port is reserved for the
    object's lifetime (Prometheus, written in Go, sets SO_REUSEADDR on its listener), so a
    restart after ``stop()`` finds it free and keeps the data scraped so far.

    Ready is not scraping: Prometheus hands its targets to the scraper about 5 s after a
    start (its service discovery sends updates every 5 s, with no flag to change that), so
    the first sample comes 5 to 6 s after ``start()`` returns: ``wait_for_scrape`` waits
    for it."""

    def __init__(self, targets: list[str], metrics_path: str = "/metrics",
                 job: str = "app") -> None:
        self.binary = self.program("prometheus", "prometheus")
        self.port = self.reserve()
        self.url = f"http://127.0.0.1:{self.port}"
        self.job = job
        self.directory = Path(tempfile.mkdtemp(prefix="fastflyer-prometheus-"))
        self.config = self.directory / "prometheus.yml"
        self.log = self.directory / "prometheus.log"
        config = {  # JSON is YAML
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": job, "metrics_path": metrics_path,
                                "scheme": "http", "static_configs": [{"targets": targets}]}]}
        self.config.write_text(json.dumps(config, indent=2))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start Prometheus and return once ``/-/ready`` answers 200 (RuntimeError, with its
        log, when it is not ready within 30 s)."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, f"--config.file={self.config}",
                 f"--storage.tsdb.path={self.directory / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prometheus did not start on {self.url}: "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)  # polling to the deadline above
        self.check_listening(self.port)

    def close(self) -> None:
        """Stop it and remove its directory (configuration, data)."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus refused {path} {params}: "
                               f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of the PromQL instant query ``expr`` at the current time
        (``/api/v1/query``): for a vector, one ``{"metric": {label: value},
        "value": [unix_seconds, "sample as a string"]}`` per series, [] when none.
        RuntimeError with Prometheus's reason when it refuses the query."""
        result: list[dict[str, Any]] = self._api("query", query=expr)["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        """The active targets (``/api/v1/targets``), each a dict with ``scrapeUrl``,
        ``labels``, ``health`` ("up", "down" or "unknown" before the first scrape),
        ``lastError``, ``lastScrape`` (RFC 3339) and ``lastScrapeDuration`` (seconds)."""
        targets: list[dict[str, Any]] = self._api("targets", state="active")["activeTargets"]
        return targets

    def wait_for_scrape(self, after: float | None = None, health: str = "up",
                        timeout: float = 20) -> list[dict[str, Any]]:
        """The active targets once every one of them has been scraped since ``after`` (Unix
        seconds, default now) with the outcome ``health`` ("up" or "down"): what it
        scraped is then queryable. AssertionError, with the targets, after ``timeout``
        seconds."""
        since = time.time() if after is None else after
        found: list[dict[str, Any]] = []

        def scraped() -> bool:
            found[:] = self.targets()
            return bool(found) and all(
                target["health"] == health and _unix(target["lastScrape"]) > since
                for target in found)

        try:
            wait_for(scraped, timeout, f"a scrape of every target ({health}) by {self.url}")
        except AssertionError as error:
            raise AssertionError(f"{error}; targets: {found}") from None
        return found


def _unix(timestamp: str) -> float:
    """Unix seconds of an RFC 3339 ``timestamp`` as Go writes it (up to nanoseconds; a
    trailing Z)."""
    return datetime.fromisoformat(timestamp).timestamp()
