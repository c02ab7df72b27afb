"""Closing a pool whose server has gone (stopped, restarted) discards its connections: no
error, and no wait beyond a bound. Each pool runs against a private MariaDB it can stop."""

from __future__ import annotations

import asyncio
import time

import pytest

from fastkit.database import get_async_mysql_pool, get_dataset_pool, get_mysql_pool
from mariadb import HOST, NAME, USER, MariaDBServer


def _use_and_close_dataset(server: MariaDBServer) -> None:
    data_set = get_dataset_pool(db_host=HOST, db_port=server.port, db_name=NAME, db_user=USER)
    data_set["t"].insert({"k": 1})  # a connection held by this thread
    server.stop()
    data_set.close()


def _use_and_close_mysql(server: MariaDBServer) -> None:
    pool = get_mysql_pool(USER, "", HOST, server.port, NAME)
    pool.ping()
    server.stop()
    pool.close()


def _use_and_close_async_mysql(server: MariaDBServer) -> None:
    async def main() -> None:
        pool = get_async_mysql_pool(USER, "", HOST, server.port, NAME)
        await pool.ping()
        server.stop()
        await pool.close()

    asyncio.run(main())


@pytest.mark.parametrize("use_and_close", [_use_and_close_dataset, _use_and_close_mysql,
                                           _use_and_close_async_mysql])
def test_closing_a_pool_after_its_server_stopped(private_mariadb, use_and_close):
    started = time.monotonic()
    use_and_close(private_mariadb)  # raises if closing raises
    assert time.monotonic() - started < 15
