"""Lifecycle hooks and the public exports."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

import pytest
from starlette.testclient import TestClient


def test_hooks_start_in_order_and_stop_in_reverse(build):
    app = build()
    events: list[str] = []
    app.lifecycle.add("sync", start=lambda: events.append("start sync"),
                      stop=lambda: events.append("stop sync"))

    async def start_async():
        events.append("start async")

    async def stop_async():
        events.append("stop async")

    app.lifecycle.add("async", start=start_async, stop=stop_async)

    @app.lifecycle.on_shutdown
    def last_registered():
        events.append("shutdown hook")

    with TestClient(app) as client:
        assert events == ["start sync", "start async"]
        assert client.get("/flyer/demo?id=1").status_code == 200
    assert events == ["start sync", "start async", "shutdown hook", "stop async", "stop sync"]


def test_a_failing_start_stops_what_started_and_fails_start_up(build):
    app = build()
    events: list[str] = []
    app.lifecycle.add("first", start=lambda: events.append("start first"),
                      stop=lambda: events.append("stop first"))

    def broken():
        raise RuntimeError("cannot start")

    app.lifecycle.add("second", start=broken, stop=lambda: events.append("stop second"))
    with pytest.raises(RuntimeError, match="cannot start"), TestClient(app):
        pass
    assert events == ["start first", "stop first"]


def test_shutdown_is_bounded_by_the_shutdown_timeout(build):
    app = build(shutdown_timeout=0.3)
    events: list[str] = []

    async def hangs():
        await asyncio.sleep(30)

    app.lifecycle.add("after", stop=lambda: events.append("stopped after"))
    app.lifecycle.add("hangs", stop=hangs)
    app.lifecycle.add("raises", stop=lambda: 1 / 0)
    started = time.monotonic()
    with TestClient(app):
        pass
    assert time.monotonic() - started < 3
    assert events == ["stopped after"]  # the hook after the hung one still ran


def test_a_users_own_lifespan_runs_inside_ours(monkeypatch):
    from fastflyer import FlyerAPI

    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app):
        events.append("user start")
        yield {"answer": 42}
        events.append("user stop")

    app = FlyerAPI(lifespan=lifespan)
    app.lifecycle.on_startup(lambda: events.append("framework start"))

    @app.get("/answer")
    async def answer(request: __import__("starlette.requests").requests.Request):
        return {"answer": request.state.answer}

    with TestClient(app) as client:
        assert client.get("/answer").json() == {"answer": 42}
    assert events == ["framework start", "user start", "user stop"]


def test_a_component_needs_a_hook(build):
    with pytest.raises(ValueError, match="needs a start or a stop hook"):
        build().lifecycle.add("nothing")


def test_the_design_exports_import_as_written():
    from fastflyer import (  # noqa: F401
        APIRouter,
        AsyncClient,
        Client,
        aiorequests,
        env,
        logger,
        requests,
        status,
    )
    from fastflyer.schemas import BaseResponse, DataResponse, PageDataResponse  # noqa: F401
    from fastkit.httpx import status as kit_status

    assert status is kit_status
    assert status.HTTP_605_THIRD_PARTY_NEWORK_ERROR == 605
    logger.warn("warn works")


def test_an_unknown_name_is_an_attribute_error():
    import fastflyer

    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        fastflyer.nope  # noqa: B018
    assert "FlyerAPI" in dir(fastflyer)


def test_create_app_is_the_factory(tmp_path):
    from fastflyer import FlyerAPI, create_app

    assert isinstance(create_app(), FlyerAPI)


def test_fastapi_telemetry_is_opt_in(build):
    import inspect

    from fastapi import FastAPI

    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        pytest.fail("this FastAPI has no telemetry switch; the check below needs one")
    off, on = build(), build(opentelemetry_enabled=1)
    assert (off._telemetry["tracing"], off._telemetry["metrics"]) == (False, False)
    assert (on._telemetry["tracing"], on._telemetry["metrics"]) == (True, True)
