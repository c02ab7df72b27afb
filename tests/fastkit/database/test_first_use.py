"""Database pools start once under concurrent first use (threads and tasks), and close()
leaves no connection open: counted on the real MariaDB's PROCESSLIST, filtered by a
database of the test's own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy

import fastflyer.database
from fastkit.database import get_async_mysql_pool, get_dataset_pool, get_mysql_pool
from mariadb import HOST, PORT, USER, sql
from waiting import at_once, wait_for

THREADS, TASKS = 32, 50


@pytest.fixture
def database() -> Iterator[str]:
    """A database of the test's own: its connections are those whose DB it is."""
    name = f"fk_first_{uuid.uuid4().hex[:12]}"
    sql(f"CREATE DATABASE `{name}`")
    yield name
    sql(f"DROP DATABASE IF EXISTS `{name}`")


def open_connections(database: str) -> int:
    rows = sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s", database)
    return int(str(rows[0][0]))


def url(database: str, driver: str = "pymysql") -> str:
    return f"mysql+{driver}://{USER}@{HOST}:{PORT}/{database}"


def test_threads_at_first_use_share_one_mysql_pool(database):
    pools = at_once(THREADS, lambda: get_mysql_pool(USER, "", HOST, PORT, database, 900, 4, 4))
    assert len({id(pool) for pool in pools}) == 1
    pools[0].close()


def test_threads_at_first_use_share_one_dataset(database):
    pools = at_once(THREADS, lambda: get_dataset_pool(HOST, PORT, database, USER, ""))
    assert len({id(pool) for pool in pools}) == 1
    assert get_dataset_pool(url=url(database)) is not pools[0]  # other arguments
    pools[0].close()
    replacement = get_dataset_pool(HOST, PORT, database, USER, "")  # closed: a new one
    assert replacement is not pools[0]
    assert list(replacement.query("SELECT 1 AS one")) == [{"one": 1}]
    replacement.close()


def test_the_fastflyer_default_dataset_starts_once(database, monkeypatch):
    monkeypatch.setenv("flyer_db_url", url(database))
    pools = at_once(THREADS, fastflyer.database.get_dataset_pool)
    assert len({id(pool) for pool in pools}) == 1
    pools[0].close()


def test_tasks_at_first_use_share_one_async_pool_per_loop(database):
    async def main() -> set[int]:
        async def first_use() -> int:
            pool = get_async_mysql_pool(USER, "", HOST, PORT, database, 900, 4, 4)
            await pool.ping()
            return id(pool)

        return set(await asyncio.gather(*(first_use() for _ in range(TASKS))))

    pools = at_once(4, lambda: asyncio.run(main()))
    assert all(len(in_loop) == 1 for in_loop in pools)  # one pool in each loop...
    assert len(set().union(*pools)) == 4  # ...and one for each loop
    wait_for(lambda: open_connections(database) == 0)  # disposed of with each loop


def test_close_of_a_mysql_pool_closes_every_connection(database):
    pool = get_mysql_pool(url(database), db_pool_size=8, db_max_overflow=0)
    at_once(8, pool.ping)
    assert open_connections(database) >= 1
    pool.close()
    wait_for(lambda: open_connections(database) == 0)


def test_close_of_a_dataset_closes_every_thread_connection(database):
    data_set = get_dataset_pool(url=url(database))
    at_once(8, lambda: list(data_set.query("SELECT 1")))  # one connection per thread
    assert open_connections(database) >= 1
    data_set.close()
    wait_for(lambda: open_connections(database) == 0)


def test_close_of_an_async_pool_closes_every_connection(database):
    async def main() -> None:
        pool = get_async_mysql_pool(url(database, "aiomysql"), db_pool_size=8,
                                    db_max_overflow=0)
        await asyncio.gather(*(pool.ping() for _ in range(TASKS)))
        assert await asyncio.to_thread(open_connections, database) >= 1
        await pool.close()
        await asyncio.to_thread(wait_for, lambda: open_connections(database) == 0)

    asyncio.run(main())


def test_tasks_reflecting_one_table_at_once_reflect_it_once(database):
    async def main() -> tuple[int, int]:
        pool = get_async_mysql_pool(url(database, "aiomysql"), db_pool_size=8,
                                    db_max_overflow=0)
        async with pool.engine.begin() as connection:
            await connection.execute(sqlalchemy.text("CREATE TABLE t_first (a INT)"))
        await pool.close()  # no connection pooled: every task's reflection waits for one
        reflections = []

        @sqlalchemy.event.listens_for(pool.engine.sync_engine, "before_cursor_execute")
        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.upper().startswith("SHOW CREATE TABLE"):
                reflections.append(statement)

        tables = await asyncio.gather(*(pool.get_table("t_first") for _ in range(TASKS)))
        # Every task gets the table reflected in full, never one still being reflected.
        columns = {tuple(column.name for column in table.columns) for table in tables}
        await pool.close()
        return len({id(table) for table in tables}), columns, len(reflections)

    assert asyncio.run(main()) == (1, {("a",)}, 1)
