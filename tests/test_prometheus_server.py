"""The private Prometheus the metrics tests run against: it scrapes a metrics endpoint the test
serves and answers queries on what it scraped; a target that goes away is seen down; a stop
refuses connections and a restart takes the same port; a machine without Prometheus makes a
test fail rather than skip."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from prometheus_server import PrometheusServer
from redis_server import listens
from waiting import wait_for


class _Metrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/metrics":
            self.send_error(404)
            return
        body = b"# TYPE demo_total counter\ndemo_total 42\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_it_scrapes_an_endpoint_and_answers_queries_through_an_outage() -> None:
    endpoint = ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=endpoint.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    target = f"127.0.0.1:{endpoint.server_address[1]}"
    server = PrometheusServer(targets=[target])
    try:
        server.start()
        wait_for(lambda: [s["value"][1] for s in server.query("demo_total")] == ["42"],
                 20, "demo_total = 42 in Prometheus")
        (sample,) = server.query("demo_total")
        assert sample["metric"] == {"__name__": "demo_total", "instance": target, "job": "app"}
        (scraped,) = server.wait_for_scrape()
        assert scraped["scrapeUrl"] == f"http://{target}/metrics"
        assert scraped["lastError"] == ""
        with pytest.raises(RuntimeError, match="bad_data"):
            server.query("demo_total{")

        endpoint.shutdown()
        endpoint.server_close()  # the target goes away
        (down,) = server.wait_for_scrape(health="down")
        assert "connection refused" in down["lastError"]
        assert [s["value"][1] for s in server.query("up")] == ["0"]
        assert server.query("demo_total") == []  # marked stale

        pid = server.process.pid if server.process else 0
        server.stop()  # Prometheus's own outage
        assert not listens(pid, server.port)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/-/ready", timeout=2)
        server.start()  # back on the same address, with what it had scraped
        assert server.query("max_over_time(demo_total[5m])")[0]["value"][1] == "42"
    finally:
        server.close()
        endpoint.server_close()
    assert not server.directory.exists()


def test_without_prometheus_installed_a_test_fails_naming_the_package(
        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="apt-get install prometheus"):
        PrometheusServer(targets=["127.0.0.1:1"])
