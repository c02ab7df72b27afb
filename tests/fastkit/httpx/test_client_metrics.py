"""Client metrics against a real local server: one count per logical call, every attempt,
every retry and its reason, the call's duration; nothing at all while metrics are off.

Every test runs over the entry points: the shared ``requests`` and ``aiorequests``, a
``Client``, an ``AsyncClient``, and a plain ``httpx.Client`` over a ``RetryTransport``.
Counts accumulate across tests in one process: each test compares before and after.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import httpx
import pytest
from client_entries import ENTRIES, call
from prometheus_client import REGISTRY

from fastkit import metrics
from fastkit.httpx import Client


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Figures:
    """The client metrics of one ``(method, host)``, read before and after a call."""

    def __init__(self, method: str, host: str) -> None:
        self.method = method
        self.host = host
        self.before = self.read()

    def read(self) -> dict[str, float]:
        found = {}
        for family in REGISTRY.collect():
            if not family.name.startswith("http_client_"):
                continue
            for sample in family.samples:
                labels = dict(sample.labels)
                if labels.get("method") == self.method and labels.get("host") == self.host:
                    rest = ",".join(f"{k}={v}" for k, v in sorted(labels.items())
                                    if k not in ("method", "host", "le"))
                    if "le" not in labels and not sample.name.endswith("_created"):
                        found[f"{sample.name}{{{rest}}}"] = sample.value
        return found

    def delta(self) -> dict[str, float]:
        """What changed since the start, durations' sums left out (times vary)."""
        after = self.read()
        return {name: after[name] - self.before.get(name, 0.0) for name in after
                if after[name] != self.before.get(name, 0.0)
                and not name.startswith("http_client_request_duration_seconds_sum")}


def host_of(server: Any) -> str:
    return str(server.url).removeprefix("http://")


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_call_counts_once(entry, server, key, metrics_on):
    figures = Figures("GET", host_of(server))
    response = call(entry, "GET", f"{server.url}/get?key={key}")
    assert response.status_code == 200
    assert figures.delta() == {
        "http_client_requests_total{status=200}": 1.0,
        "http_client_attempts_total{}": 1.0,
        "http_client_request_duration_seconds_count{}": 1.0,
    }


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_retried_503_counts_one_call_two_attempts_one_retry(entry, server, key, metrics_on):
    figures = Figures("GET", host_of(server))
    response = call(entry, "GET", f"{server.url}/flaky?key={key}&fail=1&status=503")
    assert response.status_code == 200
    assert server.hits(key) == 2
    assert figures.delta() == {
        "http_client_requests_total{status=200}": 1.0,
        "http_client_attempts_total{}": 2.0,
        "http_client_retries_total{reason=503}": 1.0,
        "http_client_request_duration_seconds_count{}": 1.0,
    }


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_refused_connection_counts_as_error(entry, refused_port, metrics_on):
    figures = Figures("GET", f"127.0.0.1:{refused_port}")
    with pytest.raises(httpx.ConnectError):
        call(entry, "GET", f"http://127.0.0.1:{refused_port}/get")
    assert figures.delta() == {  # the default policy: 3 attempts, 2 retries
        "http_client_requests_total{status=error}": 1.0,
        "http_client_attempts_total{}": 3.0,
        "http_client_retries_total{reason=ConnectError}": 2.0,
        "http_client_request_duration_seconds_count{}": 1.0,
    }


@pytest.mark.parametrize("entry", ["Client", "AsyncClient"])
def test_a_final_error_status_is_its_code(entry, server, key, metrics_on):
    figures = Figures("DELETE", host_of(server))
    call(entry, "DELETE", f"{server.url}/status/404?key={key}")
    assert figures.delta() == {
        "http_client_requests_total{status=404}": 1.0,
        "http_client_attempts_total{}": 1.0,
        "http_client_request_duration_seconds_count{}": 1.0,
    }


def test_a_method_outside_the_standard_set_is_other(server, key, metrics_on):
    figures = Figures("_OTHER", host_of(server))
    with Client() as client:
        response = client.request("PURGE", f"{server.url}/get?key={key}")
    assert response.status_code == 501  # the stdlib server knows no PURGE
    assert figures.delta() == {
        "http_client_requests_total{status=501}": 1.0,
        "http_client_attempts_total{}": 1.0,
        "http_client_request_duration_seconds_count{}": 1.0,
    }
    assert value("http_client_attempts_total", method="PURGE", host=host_of(server)) == 0


def test_the_duration_spans_the_retries(server, key, metrics_on):
    """Two retries under real waits of 0.1 s: the call's duration holds both."""
    from fastkit.httpx import set_testing

    set_testing(False)
    host = host_of(server)
    before = value("http_client_request_duration_seconds_sum", method="GET", host=host)
    with Client(wait_exponential_multiplier=0.1, wait_exponential_max=0.1) as client:
        client.get(f"{server.url}/flaky?key={key}&fail=2")
    spent = value("http_client_request_duration_seconds_sum", method="GET", host=host) - before
    assert spent >= 0.2


@pytest.mark.parametrize("entry", ENTRIES)
def test_nothing_is_recorded_while_metrics_are_off(entry, server, key):
    assert not metrics.enabled()
    figures = Figures("GET", host_of(server))
    call(entry, "GET", f"{server.url}/flaky?key={key}&fail=1")
    assert server.hits(key) == 2
    assert figures.delta() == {}


def test_off_registers_no_family(server, tmp_path):
    """A fresh process making calls of every kind with metrics off registers nothing."""
    script = tmp_path / "calls.py"
    script.write_text(textwrap.dedent(f"""
        import asyncio, json, sys
        import httpx
        from fastkit.httpx import AsyncClient, Client, aiorequests, requests, set_testing

        set_testing(True)
        url = "{server.url}/flaky?fail=1"
        requests.get(url)
        with Client() as client:
            client.get(url)
            try:
                client.get("http://127.0.0.1:9/")
            except httpx.ConnectError:
                pass

        async def run():
            await aiorequests.get(url)
            async with AsyncClient() as client:
                await client.get(url)

        asyncio.run(run())
        names = []
        if "prometheus_client" in sys.modules:
            from prometheus_client import REGISTRY
            names = [f.name for f in REGISTRY.collect()]
        print(json.dumps({{"imported": "prometheus_client" in sys.modules,
                           "families": [n for n in names if n.startswith("http_client")]}}))
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"imported": False,
                                                                "families": []}
