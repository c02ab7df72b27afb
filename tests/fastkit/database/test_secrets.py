"""Passwords never reach a repr, a log line or an error message (a real account with one)."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from fastkit.database import (
    DatabaseConfigError,
    get_async_mysql_pool,
    get_dataset_pool,
    get_mysql_pool,
)
from mariadb import HOST, NAME, PORT, kill, sql

USER, PASSWORD = "flyer_secret_user", "Pw-9f3k!xyz@#"


@pytest.fixture(scope="module")
def account():
    for host in ("localhost", "127.0.0.1"):
        sql(f"CREATE OR REPLACE USER '{USER}'@'{host}' IDENTIFIED BY %s", PASSWORD)
        sql(f"GRANT ALL ON `{NAME}`.* TO '{USER}'@'{host}'")
    yield
    for host in ("localhost", "127.0.0.1"):
        sql(f"DROP USER IF EXISTS '{USER}'@'{host}'")


def test_reprs_show_no_password(account):
    pools = [get_mysql_pool(USER, PASSWORD, HOST, PORT, NAME),
             get_dataset_pool(HOST, PORT, NAME, USER, PASSWORD),
             get_async_mysql_pool(USER, PASSWORD, HOST, PORT, NAME)]
    pools[0].ping()  # the password works
    for pool in pools:
        shown = f"{pool!r} {pool.engine!r} {pool.engine.url!s}"
        assert PASSWORD not in shown and "***" in shown


def test_log_lines_show_no_password(account, logs, table_name):
    data_set = get_dataset_pool(USER, PASSWORD, HOST, PORT, NAME)
    data_set[table_name].insert({"a": 1})
    kill(int(data_set.query("SELECT CONNECTION_ID() AS id").next()["id"]))
    assert data_set[table_name].count() == 1
    assert f"{USER}:***@{HOST}" in logs.text()
    assert PASSWORD not in logs.text()


def test_errors_show_no_password(account):
    wrong = "Wrong-pw-8812"
    with pytest.raises(OperationalError) as caught:
        get_mysql_pool(USER, wrong, HOST, PORT, NAME).ping()
    assert "Access denied" in str(caught.value) and wrong not in str(caught.value)
    with pytest.raises(OperationalError) as direct:
        get_dataset_pool(HOST, PORT, NAME, USER, wrong)["t"].count()
    assert wrong not in str(direct.value)
    with pytest.raises(DatabaseConfigError) as config:
        get_dataset_pool(f"mysql+pymysql://{USER}:{PASSWORD}@{HOST}:port/{NAME}")
    assert PASSWORD not in str(config.value)
