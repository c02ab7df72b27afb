"""Two apps in one process, served in the ways that lose a context: scheduled jobs of the
process's shared schedulers, an app built after another started, apps mounted in one
another, work that outlives its request, streaming, websockets, a build that fails. Each
app's code sees its own settings (real schedulers, real event loops)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import BackgroundTasks, WebSocket
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse
from starlette.testclient import TestClient

from fastflyer import FlyerAPI
from fastflyer.app_context import current_settings
from fastflyer.database import data_dir
from fastflyer.executor import asyncio_scheduler, background_scheduler
from fastflyer.settings import SettingsError, load_settings
from fastkit.request_id import get_request_id
from waiting import wait_for


def _app(tmp: Path, tag: str) -> FlyerAPI:
    return FlyerAPI(settings=load_settings(data_dir=str(tmp / tag), access_log=False))


@pytest.fixture
def job_ids() -> Any:
    """Ids for jobs of the process's schedulers, removed after the test."""
    made: list[tuple[Any, str]] = []

    def make(scheduler: Any, tag: str) -> str:
        job_id = f"hostile-{tag}-{uuid.uuid4().hex[:8]}"
        made.append((scheduler, job_id))
        return job_id

    yield make
    for scheduler, job_id in made:
        if any(job.id == job_id for job in scheduler.get_jobs()):
            scheduler.remove_job(job_id)


def test_scheduled_jobs_see_the_settings_of_the_app_that_added_them(
        tmp_path: Path, job_ids: Callable[[Any, str], str]) -> None:
    """Both apps add jobs to the shared schedulers, from a start hook and from a request
    (with a request id); a third app is built, never served, while they run."""
    seen: dict[str, tuple[str, str | None]] = {}

    def probed(tag: str) -> FlyerAPI:
        app = _app(tmp_path, tag)

        def record(key: str) -> None:
            seen.setdefault(key, (str(data_dir()), get_request_id()))

        async def record_async(key: str) -> None:
            record(key)

        @app.lifecycle.on_startup
        async def add_jobs() -> None:
            asyncio_scheduler.add_job(record_async, "interval", seconds=0.2,
                                      args=[f"{tag} asyncio"],
                                      id=job_ids(asyncio_scheduler, tag))
            background_scheduler.add_job(record, "interval", seconds=0.2,
                                         args=[f"{tag} background"],
                                         id=job_ids(background_scheduler, tag))

        @app.post("/jobs")
        def add_job_now() -> dict[str, Any]:  # a sync route: in the thread pool
            background_scheduler.add_job(record, "interval", seconds=0.2,
                                         args=[f"{tag} from a request"],
                                         id=job_ids(background_scheduler, f"{tag}-r"))
            return {"code": 200, "message": "success"}

        return app

    app_a, app_b = probed("a"), probed("b")
    with TestClient(app_a) as a, TestClient(app_b) as b:
        _app(tmp_path, "built-later")  # the last app built, never served
        assert a.post("/jobs", headers={"X-Request-ID": "req-a"}).status_code == 200
        assert b.post("/jobs", headers={"X-Request-ID": "req-b"}).status_code == 200
        wait_for(lambda: len(seen) == 6, what=f"every job fired ({sorted(seen)})")
    for key, (directory, request_id) in seen.items():
        tag = key.split()[0]
        assert directory == str(tmp_path / tag), key
        assert request_id is None, key  # a scheduled fire is no request's


def test_a_mounted_app_and_the_work_its_requests_leave_see_its_settings(
        tmp_path: Path) -> None:
    seen: dict[str, str] = {}

    def probed(tag: str) -> FlyerAPI:
        app = _app(tmp_path, tag)
        release = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []

        @app.get("/probe")
        async def probe(background: BackgroundTasks) -> dict[str, Any]:
            async def outlives() -> None:
                await release.wait()
                seen[f"{tag} task after the request"] = str(data_dir())

            tasks.append(asyncio.create_task(outlives()))
            seen[f"{tag} thread pool"] = str(await run_in_threadpool(data_dir))
            background.add_task(lambda: seen.__setitem__(f"{tag} background task",
                                                          str(data_dir())))
            return {"code": 200, "message": "success", "data": str(data_dir())}

        @app.get("/release")
        async def release_tasks() -> dict[str, Any]:
            release.set()
            await asyncio.gather(*tasks)
            return {"code": 200, "message": "success"}

        @app.get("/stream")
        def stream() -> StreamingResponse:
            def chunks() -> Any:
                seen[f"{tag} sync stream"] = str(data_dir())
                yield b"x"
            return StreamingResponse(chunks())

        @app.get("/astream")
        async def astream() -> StreamingResponse:
            async def chunks() -> Any:
                seen[f"{tag} async stream"] = str(data_dir())
                yield b"x"
            return StreamingResponse(chunks())

        @app.websocket("/ws")
        async def ws(websocket: WebSocket) -> None:
            await websocket.accept()
            await websocket.send_text(str(data_dir()))
            await websocket.close()

        return app

    outer, inner = probed("outer"), probed("inner")
    outer.mount("/inner", inner)
    with TestClient(outer) as client:
        for prefix, tag in (("", "outer"), ("/inner", "inner")):
            assert client.get(f"{prefix}/probe").json()["data"] == str(tmp_path / tag)
            assert client.get(f"{prefix}/stream").content == b"x"
            assert client.get(f"{prefix}/astream").content == b"x"
            assert client.get(f"{prefix}/release").status_code == 200
            with client.websocket_connect(f"{prefix}/ws") as websocket:
                assert websocket.receive_text() == str(tmp_path / tag)
    assert len(seen) == 10, sorted(seen)  # five places per app
    for key, directory in seen.items():
        assert directory == str(tmp_path / key.split()[0]), key


def test_a_build_that_fails_leaves_the_last_app_built_in_place(tmp_path: Path) -> None:
    app = _app(tmp_path, "good")
    project = tmp_path / "bad"
    (project / "app").mkdir(parents=True)
    (project / "main.py").write_text("")
    (project / "app" / "__init__.py").write_text("")
    (project / "settings.py").write_text(
        "from fastflyer.settings import BaseConfig\n\n\n"
        "class Bad(BaseConfig):\n    PREFIX = 'no-leading-slash'\n")
    with pytest.raises(SettingsError):
        FlyerAPI(app_path=project, settings=load_settings(data_dir=str(tmp_path / "bad")))
    assert current_settings() is app.settings
    assert data_dir() == tmp_path / "good"
