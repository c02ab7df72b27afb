"""A readiness check that raises Degraded reports its component "degraded": the app stays
ready (200) and the component says why; any other failure is still "down" (503)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.testclient import TestClient

from fastflyer.health import Degraded, Readiness


class StaleConfig(Degraded):
    """A subclass, as a config center client might declare."""


def _ready(app: Any) -> tuple[int, dict[str, Any]]:
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/health_check/ready")
    return response.status_code, response.json()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_degraded_component_keeps_the_app_ready(build, kind):
    app = build()

    def sync_check() -> None:
        raise Degraded("config center unreachable; serving the last values")

    async def async_check() -> None:
        raise Degraded("config center unreachable; serving the last values")

    app.readiness.register("config", sync_check if kind == "sync" else async_check)
    code, body = _ready(app)
    assert code == 200, body
    assert body["code"] == 200
    assert body["message"] == "success"
    assert body["data"]["ready"] is True
    config = body["data"]["components"]["config"]
    assert config["status"] == "degraded"
    assert config["error"] == "config center unreachable; serving the last values"
    assert config["latency_ms"] >= 0


def test_one_degraded_and_one_down_is_not_ready(build):
    app = build()

    def stale() -> None:
        raise Degraded("stale")

    def broken() -> None:
        raise ConnectionError("refused")

    app.readiness.register("config", stale)
    app.readiness.register("registry", broken)
    code, body = _ready(app)
    assert code == 503, body
    assert body["data"]["ready"] is False
    components = body["data"]["components"]
    assert components["config"] == {"status": "degraded", "error": "stale",
                                    "latency_ms": components["config"]["latency_ms"]}
    assert components["registry"]["status"] == "down"
    assert components["registry"]["error"] == "ConnectionError: refused"


def test_an_up_component_beside_a_degraded_one_has_no_error(build):
    app = build()

    def stale() -> None:
        raise StaleConfig("values from 10:42")

    app.readiness.register("config", stale)
    app.readiness.register("cache", lambda: None)
    code, body = _ready(app)
    assert code == 200, body
    components = body["data"]["components"]
    assert components["config"]["status"] == "degraded"
    assert components["config"]["error"] == "values from 10:42"  # a subclass: the same
    assert components["cache"]["status"] == "up"
    assert "error" not in components["cache"]


async def test_a_degraded_check_that_overruns_its_timeout_is_down():
    readiness = Readiness()
    never = asyncio.Event()

    async def slow_then_degraded() -> None:
        await never.wait()
        raise Degraded("never reached")

    readiness.register("config", slow_then_degraded, timeout=0.2)
    report = await readiness.report()
    assert report["ready"] is False
    assert report["components"]["config"]["status"] == "down"
    assert report["components"]["config"]["error"] == "no answer within 0.2 s"


async def test_a_degraded_without_a_message_says_its_type():
    readiness = Readiness()

    def stale() -> None:
        raise StaleConfig

    readiness.register("config", stale)
    report = await readiness.report()
    assert report == {"ready": True, "components": {"config": {
        "status": "degraded", "error": "StaleConfig",
        "latency_ms": report["components"]["config"]["latency_ms"]}}}


def test_the_openapi_document_names_the_degraded_status(build):
    schema = build().openapi()
    component = schema["components"]["schemas"]["ComponentHealth"]
    assert component["properties"]["status"]["enum"] == ["up", "degraded", "down"]
    assert "Degraded" in component["properties"]["status"]["description"]
    report = schema["components"]["schemas"]["ReadinessReport"]
    assert "degraded" in report["properties"]["ready"]["description"]


def test_degraded_is_exported():
    import fastflyer.health

    assert "Degraded" in fastflyer.health.__all__
    assert issubclass(Degraded, Exception)
