"""The project's default database and Redis: SQLite with nothing configured, the
``flyer_db_url`` / ``flyer_redis_*`` settings, and their readiness (real servers)."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy
from starlette.testclient import TestClient

import fastflyer.database
from fastflyer.cache import CachePoolError, default_redis
from fastflyer.database import get_async_mysql_pool, get_dataset_pool, get_mysql_pool
from fastflyer.settings import SettingsError, load_settings
from mariadb import URL as MARIADB_URL
from mariadb import answering_or_fail, sql
from redis_server import closed_port


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project (main.py beside app/), its data directory not yet there."""
    root = tmp_path / "svc"
    (root / "app").mkdir(parents=True)
    (root / "app" / "__init__.py").write_text("")
    (root / "main.py").write_text("")
    monkeypatch.setattr(fastflyer.database, "_project", None)
    monkeypatch.chdir(tmp_path)
    return root


def test_with_nothing_configured_the_default_is_sqlite_in_the_project_data_dir(build, project):
    app = build(project)
    assert "database" not in app.readiness.names and "redis" not in app.readiness.names
    assert not (project / "data").exists()  # building the app creates nothing
    data_set = get_dataset_pool()
    data_set["items"].upsert({"key_item": 0, "item1": 1}, keys=["key_item"])
    assert (project / "data" / "fastflyer.sqlite3").is_file()
    assert get_dataset_pool()["items"].find_one(key_item=0)["item1"] == 1
    with get_mysql_pool().get_session() as session:
        assert session.execute(sqlalchemy.text("SELECT item1 FROM items")).scalar_one() == 1
    data_set.close()


async def test_the_asyncio_default_runs_on_aiosqlite(build, project):
    build(project)
    pool = get_async_mysql_pool()
    assert pool.url.drivername == "sqlite+aiosqlite"
    async with pool.get_session() as session:
        await session.execute(sqlalchemy.text("CREATE TABLE t (a INTEGER)"))
        await session.execute(sqlalchemy.text("INSERT INTO t VALUES (7)"))
    async with pool.get_session() as session:
        assert (await session.execute(sqlalchemy.text("SELECT a FROM t"))).scalar_one() == 7
    await pool.close()


def test_flyer_data_dir_moves_the_default(build, project, tmp_path):
    build(project, data_dir=str(tmp_path / "elsewhere"))
    get_dataset_pool()["t"].insert({"a": 1})
    assert (tmp_path / "elsewhere" / "fastflyer.sqlite3").is_file()


def test_flyer_db_url_is_the_default_and_reported_ready(build, project, table_name_mariadb):
    answering_or_fail()
    app = build(project, db_url=MARIADB_URL)
    get_dataset_pool()[table_name_mariadb].insert({"a": 1})
    assert sql(f"SELECT a FROM `{table_name_mariadb}`") == ((1,),)
    assert not (project / "data").exists()
    with TestClient(app) as client:
        body = client.get("/health_check/ready").json()
    database = body["data"]["components"]["database"]
    assert database["status"] == "up" and database["latency_ms"] > 0


def test_a_database_that_does_not_answer_is_reported_down_without_its_password(build, project):
    secret = "Db-pass-4471"
    with closed_port() as port, TestClient(build(
            project, db_url=f"mysql+pymysql://flyer:{secret}@127.0.0.1:{port}/flyer"),
            raise_server_exceptions=False) as client:
        response = client.get("/health_check/ready")
    assert response.status_code == 503
    database = response.json()["data"]["components"]["database"]
    assert database["status"] == "down"
    assert "Can't connect" in database["error"] and secret not in response.text


def test_flyer_redis_host_gives_the_default_client_and_its_readiness(build, project):
    with pytest.raises(CachePoolError, match="flyer_redis_host is not set"):
        default_redis()
    app = build(project, redis_host="127.0.0.1", redis_port=6379, redis_db=15)
    client = default_redis()
    client.set("fastflyer-test:default", "1")
    assert client.get("fastflyer-test:default") == "1"
    client.delete("fastflyer-test:default")
    with TestClient(app) as http:
        redis = http.get("/health_check/ready").json()["data"]["components"]["redis"]
    assert redis["status"] == "up" and redis["latency_ms"] > 0


def test_an_unreachable_redis_is_reported_down(build, project):
    with closed_port() as port, TestClient(
            build(project, redis_host="127.0.0.1", redis_port=port),
            raise_server_exceptions=False) as client:
        response = client.get("/health_check/ready")
    assert response.status_code == 503
    redis = response.json()["data"]["components"]["redis"]
    assert redis["status"] == "down" and f"127.0.0.1:{port}" in redis["error"]


@pytest.mark.parametrize(("name", "value", "shown"), [
    # The password of a URL is masked, and only the password: the rest says what is wrong.
    ("db_url", "mysql+pymysql://u:Sec-ret-1@h:x/db", "'mysql+pymysql://u:***@h:x/db'"),
    ("db_url", "notaurl", "'notaurl'"),
    ("redis_port", "0", "'0'"),
    ("redis_db", "-1", "'-1'"),
])
def test_bad_data_settings_stop_start_up_naming_the_variable(monkeypatch, name, value, shown):
    monkeypatch.setenv(f"flyer_{name}", value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith(f"flyer_{name}={shown} is not allowed")
    assert "Sec-ret-1" not in str(caught.value)


@pytest.fixture
def table_name_mariadb():
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    sql(f"DROP TABLE IF EXISTS `{name}`")
