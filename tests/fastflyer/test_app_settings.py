"""Settings are owned by the app: what runs for an app (its requests, its lifespan, the
import of its project's apps) sees that app's ``FlyerSettings``, and two apps in one
process never see each other's (real Redis, databases 1 and 2)."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from fastflyer import FlyerAPI
from fastflyer.app_context import current_project, current_settings
from fastflyer.cache import default_async_redis, default_redis
from fastflyer.database import data_dir, default_url
from fastflyer.executor import lock_backend, lock_prefix
from fastflyer.message import default_async_producer
from fastflyer.settings import FlyerSettings, load_settings
from fastkit.executor import LocalLockBackend, RedisLockBackend

PROBE_APP = '''
    from fastflyer import APIRouter
    from fastflyer.app_context import current_settings
    from fastflyer.database import data_dir

    AT_IMPORT = str(data_dir())
    SETTINGS_AT_IMPORT = current_settings()
    router = APIRouter()


    @router.get("/where")
    def where() -> dict:  # a sync route: run in the thread pool
        return {"code": 200, "message": "success",
                "data": {"import": AT_IMPORT, "request": str(data_dir())}}
'''


def make_project(root: Path) -> Path:
    """A project whose app ``probe`` records the data directory at import and per request."""
    (root / "app" / "probe").mkdir(parents=True)
    (root / "main.py").write_text("")
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "probe" / "__init__.py").write_text(textwrap.dedent(PROBE_APP))
    return root


def test_the_app_s_settings_are_the_instance_it_was_given(tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path / "app-data"))
    app = FlyerAPI(settings=settings)
    assert app.settings is settings and app.state.settings is settings
    assert app.app_context.settings is settings


def test_settings_given_to_the_app_move_its_data_dir_outside_any_request(tmp_path: Path) -> None:
    # The case: the environment says nothing, the app's settings do.
    FlyerAPI(settings=load_settings(data_dir=str(tmp_path / "app-data")))
    assert data_dir() == tmp_path / "app-data"
    assert default_url() == f"sqlite:///{tmp_path / 'app-data' / 'fastflyer.sqlite3'}"


def test_the_app_s_data_dir_at_import_in_a_request_and_in_the_lifespan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("flyer_data_dir", str(tmp_path / "from-the-environment"))
    wanted = tmp_path / "app-data"
    seen: dict[str, Path] = {}

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        seen["user lifespan"] = data_dir()
        yield

    app = FlyerAPI(app_path=make_project(tmp_path / "svc"), lifespan=lifespan,
                   settings=load_settings(data_dir=str(wanted)))

    @app.lifecycle.on_startup
    def sync_start() -> None:
        seen["sync start"] = data_dir()

    @app.lifecycle.on_startup
    async def async_start() -> None:
        seen["async start"] = data_dir()

    @app.lifecycle.on_shutdown
    def sync_stop() -> None:  # run on a daemon thread
        seen["sync stop"] = data_dir()

    @app.lifecycle.on_shutdown
    async def async_stop() -> None:
        seen["async stop"] = data_dir()

    module = app.apps[0].module
    assert module.SETTINGS_AT_IMPORT is app.settings
    with TestClient(app) as client:
        answer = client.get("/flyer/where").json()["data"]
    assert answer == {"import": str(wanted), "request": str(wanted)}
    assert seen == dict.fromkeys(("user lifespan", "sync start", "async start", "sync stop",
                                  "async stop"), wanted)


def test_a_relative_data_dir_is_under_each_app_s_own_project(tmp_path: Path) -> None:
    first = FlyerAPI(app_path=make_project(tmp_path / "one"),
                     settings=load_settings(data_dir="store"))
    second = FlyerAPI(app_path=make_project(tmp_path / "two"),
                      settings=load_settings(data_dir="store"))
    with TestClient(first) as one, TestClient(second) as two:
        for _ in range(2):  # interleaved, both lifespans running
            assert one.get("/flyer/where").json()["data"] == {
                "import": str(tmp_path / "one" / "store"),
                "request": str(tmp_path / "one" / "store")}
            assert two.get("/flyer/where").json()["data"] == {
                "import": str(tmp_path / "two" / "store"),
                "request": str(tmp_path / "two" / "store")}
    assert current_project() == tmp_path / "two"  # outside: the last app built


def test_outside_any_app_the_environment_is_read_until_an_app_is_built(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("flyer_data_dir", str(tmp_path / "env"))
    assert data_dir() == tmp_path / "env"
    monkeypatch.setenv("flyer_data_dir", str(tmp_path / "env-later"))
    assert data_dir() == tmp_path / "env-later"  # read at each call
    app = FlyerAPI(settings=load_settings(data_dir=str(tmp_path / "app")))
    assert current_settings() is app.settings and data_dir() == tmp_path / "app"


# --- two apps, one process: every entry point that takes no settings --------------------

KEY = f"fastflyer-test:app-settings:{uuid.uuid4().hex}"


def _database() -> str:
    return default_url()


def _cache() -> str:
    """The Redis database the default client wrote to, found with clients of our own."""
    default_redis().set(KEY, "written", ex=60)
    found = [db for db in (1, 2) if redis.Redis(db=db).get(KEY) is not None]
    for db in found:
        redis.Redis(db=db).delete(KEY)
    return ",".join(map(str, found))


async def _async_cache() -> str:
    client = default_async_redis()
    await client.set(KEY, "written", ex=60)
    found = [db for db in (1, 2) if redis.Redis(db=db).get(KEY) is not None]
    await client.delete(KEY)
    return ",".join(map(str, found))


def _lock_backend() -> str:
    backend = lock_backend()
    if isinstance(backend, LocalLockBackend):
        return "in-process"
    assert isinstance(backend, RedisLockBackend)
    return f"db {backend.client.connection_pool.connection_kwargs['db']} {backend.prefix}"


def _message_servers() -> str:
    return default_async_producer().servers


PROBES: dict[str, Callable[[], Any]] = {
    "database": _database, "cache": _cache, "async cache": _async_cache,
    "executor lock backend": _lock_backend, "message servers": _message_servers}


def _redis(db: int) -> dict[str, Any]:
    return {"redis_host": "127.0.0.1", "redis_port": 6379, "redis_db": db}


# entry point -> (app A's settings, app B's settings, what A sees, what B sees)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], str, str]] = {
    "database": ({"data_dir": "{tmp}/a"}, {"data_dir": "{tmp}/b"},
                 "sqlite:///{tmp}/a/fastflyer.sqlite3", "sqlite:///{tmp}/b/fastflyer.sqlite3"),
    "cache": (_redis(1), _redis(2), "1", "2"),
    "async cache": (_redis(1), _redis(2), "1", "2"),
    "executor lock backend": (_redis(1), {}, f"db 1 {lock_prefix('fastflyer')}",
                              "in-process"),
    "message servers": ({"kafka_servers": "127.0.0.1:19091"},
                        {"kafka_servers": "127.0.0.1:19092,127.0.0.1:19093"},
                        "127.0.0.1:19091", "127.0.0.1:19092,127.0.0.1:19093"),
}


def _probed_app(settings: FlyerSettings) -> FlyerAPI:
    app = FlyerAPI(settings=settings)

    @app.get("/probe/{entry}")
    async def probe(entry: str) -> dict[str, Any]:
        found = PROBES[entry]()
        if not isinstance(found, str):
            found = await found
        return {"code": 200, "message": "success", "data": found}

    return app


def _filled(values: dict[str, Any], tmp: Path) -> dict[str, Any]:
    return {k: v.format(tmp=tmp) if isinstance(v, str) else v for k, v in values.items()}


@pytest.mark.parametrize("entry", list(CASES))
def test_two_apps_in_one_process_each_see_their_own_settings_in_their_requests(
        entry: str, tmp_path: Path) -> None:
    a_env, b_env, a_sees, b_sees = CASES[entry]
    app_a = _probed_app(load_settings(**_filled(a_env, tmp_path)))
    app_b = _probed_app(load_settings(**_filled(b_env, tmp_path)))
    with TestClient(app_a) as a, TestClient(app_b) as b:
        for _ in range(2):  # interleaved, both lifespans running
            assert a.get(f"/probe/{entry}").json()["data"] == a_sees.format(tmp=tmp_path)
            assert b.get(f"/probe/{entry}").json()["data"] == b_sees.format(tmp=tmp_path)


def test_a_project_prefix_is_checked_among_the_app_s_settings_not_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project(tmp_path / "svc")
    (project / "settings.py").write_text("from fastflyer.settings import BaseConfig\n\n\n"
                                         "class Orders(BaseConfig):\n    PREFIX = '/orders'\n")
    settings = load_settings(data_dir=str(tmp_path / "d"))
    monkeypatch.setenv("flyer_workers", "0")  # not allowed: read again, it would stop the build
    app = FlyerAPI(app_path=project, settings=settings)
    assert app.base_url == "/orders" and app.settings is settings
    with TestClient(app) as client:
        assert client.get("/orders/where").json()["data"]["request"] == str(tmp_path / "d")
