"""``db_client_connections_usage{pool,state}`` of the Redis and SQLAlchemy pools, against
the real Redis (127.0.0.1:6379), MariaDB (127.0.0.1:3306) and SQLite files.

Each test names its pool (``pool_logging_name``, ``client_name``) or uses a SQLite file of
its own, so it reads the gauge of its pool alone.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import make_url, text

from fastkit import metrics
from fastkit.cache import get_async_redis_pool, get_redis_pool
from fastkit.database import AsyncMySQL, MySQL, get_dataset_pool
from fastkit.database._metrics import engine_pool_name
from mariadb import URL as MARIADB_URL
from mariadb import answering_or_fail
from waiting import wait_for

REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 15


def usage(pool: str) -> tuple[float, float]:
    """(used, idle) of the pool labelled ``pool``."""
    def read(state: str) -> float:
        found = REGISTRY.get_sample_value("db_client_connections_usage",
                                          {"pool": pool, "state": state})
        return 0.0 if found is None else found
    return read("used"), read("idle")


def unique() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def mariadb() -> str:
    answering_or_fail()
    return MARIADB_URL


# --- SQLAlchemy ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["mariadb", "sqlite"])
def test_a_sync_engine_counts_checked_out_connections(backend, tmp_path, metrics_on, request):
    name = unique()
    url = request.getfixturevalue("mariadb") if backend == "mariadb" else \
        f"sqlite:///{tmp_path / 'pool.db'}"
    pool = MySQL(url, pool_logging_name=name)
    assert usage(name) == (0, 0)
    with pool.engine.connect() as first:
        first.execute(text("SELECT 1"))
        assert usage(name) == (1, 0)
        with pool.engine.connect() as second:
            second.execute(text("SELECT 1"))
            assert usage(name) == (2, 0)
        assert usage(name) == (1, 1)
    assert usage(name) == (0, 2)
    with pool.get_session() as session:
        session.execute(text("SELECT 1"))
        assert usage(name) == (1, 1)
    assert usage(name) == (0, 2)
    pool.close()  # dispose(): the pooled connections are closed
    assert usage(name) == (0, 0)


@pytest.mark.parametrize("backend", ["mariadb", "sqlite"])
async def test_an_asyncio_engine_counts_checked_out_connections(backend, tmp_path, metrics_on,
                                                                request):
    name = unique()
    url = request.getfixturevalue("mariadb") if backend == "mariadb" else \
        f"sqlite:///{tmp_path / 'pool.db'}"
    pool = AsyncMySQL(url, pool_logging_name=name)
    try:
        async with pool.engine.connect() as first:
            await first.execute(text("SELECT 1"))
            assert usage(name) == (1, 0)
            async with pool.engine.connect() as second:
                await second.execute(text("SELECT 1"))
                assert usage(name) == (2, 0)
            assert usage(name) == (1, 1)
        assert usage(name) == (0, 2)
    finally:
        await pool.close()
    assert usage(name) == (0, 0)


def test_a_dataset_holds_its_threads_connection(tmp_path, metrics_on):
    path = tmp_path / "data.db"
    data_set = get_dataset_pool(url=f"sqlite:///{path}")
    name = str(path)  # no name given: a SQLite file's pool is named by its path
    assert usage(name) == (0, 0)
    data_set["t_items"].insert({"item": 1})
    assert usage(name) == (1, 0)  # dataset keeps one connection per thread
    data_set.close()
    assert usage(name) == (0, 0)


def test_a_collected_engine_takes_its_figures_off(tmp_path, metrics_on):
    name = unique()
    pool = MySQL(f"sqlite:///{tmp_path / 'gone.db'}", pool_logging_name=name)
    with pool.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    assert usage(name) == (0, 1)
    del pool, connection

    def gone() -> bool:
        gc.collect()
        return usage(name) == (0, 0)

    wait_for(gone, what="the collected engine's connections off the gauge")


def test_an_engine_is_named_by_host_port_and_database_never_its_password():
    assert engine_pool_name(make_url("mysql+pymysql://app:s3cret@db.example:3306/orders"),
                            {}) == "db.example:3306/orders"
    assert engine_pool_name(make_url("mysql+pymysql://app:s3cret@db.example/orders"),
                            {}) == "db.example/orders"
    assert engine_pool_name(make_url("sqlite://"), {}) == ":memory:"
    assert engine_pool_name(make_url("mysql+pymysql://app:s3cret@db/orders"),
                            {"pool_logging_name": "orders-main"}) == "orders-main"


# --- Redis --------------------------------------------------------------------------------

def test_a_sync_redis_pool_counts_checked_out_connections(metrics_on):
    name = unique()
    client = get_redis_pool(REDIS_HOST, REDIS_PORT, "", REDIS_DB, client_name=name)
    assert usage(name) == (0, 0)
    assert client.ping()
    assert usage(name) == (0, 1)
    held = client.client()  # one connection of the pool, held until closed
    assert held.ping()
    assert usage(name) == (1, 0)
    other = client.client()
    assert other.ping()
    assert usage(name) == (2, 0)
    held.close()
    assert usage(name) == (1, 1)
    other.close()
    assert usage(name) == (0, 2)


async def test_an_asyncio_redis_pool_counts_checked_out_connections(metrics_on):
    name = unique()
    client = get_async_redis_pool(REDIS_HOST, REDIS_PORT, "", REDIS_DB, client_name=name)
    assert await client.ping()
    assert usage(name) == (0, 1)
    held = client.client()
    assert await held.ping()
    assert usage(name) == (1, 0)
    async with client.pipeline() as pipe:
        await pipe.ping().ping().execute()
        assert usage(name) == (1, 1)  # the pipeline's connection is back once it ran
    await held.aclose()
    assert usage(name) == (0, 2)


def test_a_redis_pool_is_named_by_host_port_and_db_never_its_password():
    url = f"redis://:s3cret@{REDIS_HOST}:{REDIS_PORT}/3"
    assert get_redis_pool(url).connection_pool.fastkit_usage.name == "127.0.0.1:6379/3"
    assert get_async_redis_pool(url).connection_pool.fastkit_usage.name == "127.0.0.1:6379/3"
    assert get_redis_pool(REDIS_HOST, REDIS_PORT, "pw", 4).connection_pool \
        .fastkit_usage.name == "127.0.0.1:6379/4"
    assert get_redis_pool(REDIS_HOST, REDIS_PORT, "", 4, client_name="orders") \
        .connection_pool.fastkit_usage.name == "orders"


# --- Off ----------------------------------------------------------------------------------

@pytest.mark.parametrize("use", ["redis", "sqlalchemy"])
def test_nothing_is_recorded_while_metrics_are_off(use, tmp_path):
    assert not metrics.enabled()
    name = unique()
    run: Callable[[], object]
    if use == "redis":
        client = get_redis_pool(REDIS_HOST, REDIS_PORT, "", REDIS_DB, client_name=name)
        run = client.ping
    else:
        pool = MySQL(f"sqlite:///{tmp_path / 'off.db'}", pool_logging_name=name)

        def run() -> object:
            with pool.engine.connect() as connection:
                return connection.execute(text("SELECT 1")).scalar()
    assert run()
    assert REGISTRY.get_sample_value("db_client_connections_usage",
                                     {"pool": name, "state": "idle"}) is None


def test_off_registers_no_family(tmp_path):
    """A fresh process using every kind of pool with metrics off registers nothing."""
    script = tmp_path / "pools.py"
    script.write_text(textwrap.dedent(f"""
        import asyncio, json, sys
        from sqlalchemy import text
        from fastkit.cache import get_async_redis_pool, get_redis_pool
        from fastkit.database import AsyncMySQL, MySQL, get_dataset_pool

        get_redis_pool("{REDIS_HOST}", {REDIS_PORT}, "", {REDIS_DB}).ping()
        pool = MySQL("sqlite:///{tmp_path / 'a.db'}")
        with pool.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        pool.close()
        data_set = get_dataset_pool(url="sqlite:///{tmp_path / 'b.db'}")
        data_set["t"].insert({{"a": 1}})
        data_set.close()

        async def run():
            await get_async_redis_pool("{REDIS_HOST}", {REDIS_PORT}, "", {REDIS_DB}).ping()
            engine = AsyncMySQL("sqlite:///{tmp_path / 'c.db'}")
            async with engine.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            await engine.close()

        asyncio.run(run())
        names = []
        if "prometheus_client" in sys.modules:
            from prometheus_client import REGISTRY
            names = [f.name for f in REGISTRY.collect()]
        print(json.dumps({{"imported": "prometheus_client" in sys.modules,
                           "families": [n for n in names if n.startswith("db_client")]}}))
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"imported": False,
                                                                "families": []}
