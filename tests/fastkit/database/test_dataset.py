"""dataset pools against the real MariaDB: the seed's code, both argument orders, lost
connections, a restart, and fresh reads."""

from __future__ import annotations

import threading
from os import getenv

import dataset
import pytest

from fastkit.database import DatabaseConfigError, Dataset, get_dataset_pool
from mariadb import HOST, NAME, PORT, URL, USER, kill, sql


@pytest.fixture
def seed_env(monkeypatch):
    monkeypatch.setenv("flyer_db_host", HOST)
    monkeypatch.setenv("flyer_db_name", NAME)
    sql("DROP TABLE IF EXISTS `表名`")
    yield
    sql("DROP TABLE IF EXISTS `表名`")


def test_the_seed_settings_block_runs_verbatim(seed_env):
    from fastflyer.database import get_dataset_pool

    # 初始化 dataset
    class DataBase:
        # 如果启用 MySQL 请取消注释
        db_user = getenv("flyer_db_user", "root")
        db_pass = getenv("flyer_db_pass", "")
        db_host = getenv("flyer_db_host", "localhost")
        db_port = getenv("flyer_db_port", 3306)
        db_name = getenv("flyer_db_name", "flyer")
        db_chartset = getenv("flyer_db_chartset", "utf8")
        db_recycle_rate = int(getenv("flyer_db_recycle_rate", 900))
        db_pool_size = int(getenv("flyer_db_pool_size", 32))
        data_set = get_dataset_pool(db_host, db_port, db_name, db_user, db_pass,
                                    db_recycle_rate, db_pool_size)
        data_set = get_dataset_pool(db_user, db_pass, db_host, db_port, db_name)
        table = data_set["表名"]

    assert isinstance(DataBase.data_set, dataset.Database)
    assert DataBase.table.name == "表名"
    assert DataBase.data_set.engine.url.database == NAME


def test_the_seed_crud_class_runs_verbatim(seed_env, capsys):
    from dataset import Table

    class DataBase:
        data_set = get_dataset_pool(HOST, PORT, NAME, USER, "", 900, 32)

    class DemoClass:
        """
        演示代码
        """

        def __init__(self) -> None:
            # 定义为 Table,让IDE可以自动提示函数
            self.db_set: Table = DataBase.data_set["表名"]

        def upsert(self):
            """
            插入或更新数据
            """
            row = {"key_item": 0, "item1": 1, "item2": 2}
            self.db_set.upsert(row, keys=["key_item"])

        def upsert_many(self):
            """
            批量插入或更新数据
            """
            row = [{"key_item": 0, "item1": 1, "item2": 2},
                   {"key_item": 1, "item1": 2, "item2": 3}]
            self.db_set.upsert_many(row, keys=["key_item"])

        def select(self):
            """
            查询数据
            """
            row = {"key_item": 0, "item1": 1, "item2": 2}
            row["_limit"] = 100
            row["_offset"] = 0
            row["order_by"] = "key_item"
            result = self.db_set.find(**row)
            data = [item for item in result]
            print(data)

        def select_one(self):
            """
            查询1条数据
            """
            row = {"key_item": 0, "item1": 1, "item2": 2}
            row["order_by"] = "key_item"
            result = self.db_set.find_one(**row)
            print(result)

        def delete(self):
            """
            删除数据
            """
            row = {"key": "value"}
            result = self.db_set.delete(**row)
            if result == 0:
                print("未匹配到数据")
            print(result)

    demo = DemoClass()
    demo.upsert()
    demo.upsert()  # an update the second time
    assert sql("SELECT key_item, item1, item2 FROM `表名`") == ((0, 1, 2),)
    demo.upsert_many()
    assert sql("SELECT key_item, item1, item2 FROM `表名` ORDER BY key_item") == \
        ((0, 1, 2), (1, 2, 3))
    capsys.readouterr()
    demo.select()
    assert "'key_item', 0), ('item1', 1), ('item2', 2)" in capsys.readouterr().out
    demo.select_one()
    assert "'key_item', 0), ('item1', 1), ('item2', 2)" in capsys.readouterr().out
    demo.delete()
    assert capsys.readouterr().out.splitlines() == ["未匹配到数据", "False"]
    assert len(sql("SELECT * FROM `表名`")) == 2  # nothing matched, nothing deleted


@pytest.mark.parametrize("call", [
    lambda: get_dataset_pool(HOST, PORT, NAME, USER, ""),             # host first
    lambda: get_dataset_pool(HOST, str(PORT), NAME, USER, "", 60, 4),
    lambda: get_dataset_pool(USER, "", HOST, PORT, NAME),             # user first
    lambda: get_dataset_pool(USER, "", HOST, str(PORT), NAME, 60, 4),
    lambda: get_dataset_pool(db_host=HOST, db_port=PORT, db_name=NAME, db_user=USER),
    lambda: get_dataset_pool(URL),
    lambda: get_dataset_pool(url=URL, db_pool_size=4),
], ids=["host-first", "host-first-strings", "user-first", "user-first-strings", "keywords",
        "url", "url-keyword"])
def test_every_accepted_form_reaches_the_same_database(call, table_name):
    data_set = call()
    assert isinstance(data_set, Dataset)
    data_set[table_name].insert({"a": 1})
    assert sql(f"SELECT a FROM `{table_name}`") == ((1,),)
    data_set.close()


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    (("root", "8080", HOST, 3306, NAME), {}, "both could be a port number"),
    (("db.example", "root", "flyer", "pw", "x"), {}, "neither is a port number"),
    ((HOST,), {}, "neither is a port number"),
    ((HOST, 3306, NAME), {"db_port": 3307}, r"\['db_port'\] both by position and by keyword"),
    ((), {"url": URL, "db_host": HOST}, r"got a URL and \['db_host'\]"),
    ((), {"database": NAME}, "unexpected keyword arguments"),
    ((HOST, 99999, NAME, USER, ""), {}, "neither is a port number"),
    ((HOST, 3306, NAME, USER, "", "soon"), {}, "recycle rate .* 'soon' is not a whole number"),
    ((HOST, 3306, NAME, USER, "", 900, 0), {}, "pool size 0 is below 1"),
    (("not a url://x",), {}, "not a SQLAlchemy URL"),
])
def test_ambiguous_or_bad_calls_are_refused_with_a_clear_error(args, kwargs, message):
    with pytest.raises(DatabaseConfigError, match=message):
        get_dataset_pool(*args, **kwargs)


def test_reads_see_other_writers_rows(table_name):
    # dataset alone keeps the first read's transaction open: a REPEATABLE READ snapshot.
    data_set = get_dataset_pool(URL)
    table = data_set[table_name]
    table.insert({"k": 1, "v": "old"})
    assert table.find_one(k=1)["v"] == "old"
    sql(f"UPDATE `{table_name}` SET v = 'new' WHERE k = 1")
    assert table.find_one(k=1)["v"] == "new"
    assert [row["v"] for row in table.find(k=1)] == ["new"]


def test_plain_dataset_would_have_read_the_stale_snapshot(table_name):
    # The fault this class removes, shown on dataset itself.
    plain = dataset.connect(URL)
    table = plain[table_name]
    table.insert({"k": 1, "v": "old"})
    assert table.find_one(k=1)["v"] == "old"
    sql(f"UPDATE `{table_name}` SET v = 'new' WHERE k = 1")
    assert table.find_one(k=1)["v"] == "old"
    plain.close()


def connection_id(data_set: Dataset) -> int:
    return int(data_set.query("SELECT CONNECTION_ID() AS id").next()["id"])


@pytest.mark.parametrize("last", ["read", "write"])
def test_a_killed_connection_is_replaced_and_the_next_call_succeeds(table_name, logs, last):
    data_set = get_dataset_pool(HOST, PORT, NAME, USER, "")
    table = data_set[table_name]
    table.insert({"k": 1})
    if last == "read":
        assert table.find_one(k=1)["k"] == 1
    before = connection_id(data_set)
    kill(before)
    table.upsert({"k": 1, "v": "after kill"}, keys=["k"])
    assert table.find_one(k=1)["v"] == "after kill"
    assert connection_id(data_set) != before
    assert "database connection lost" in logs.text()


def test_every_thread_recovers_its_own_connection(table_name):
    data_set = get_dataset_pool(URL)
    data_set[table_name].insert({"k": 0})
    ids: dict[int, int] = {}
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            ids[n] = connection_id(data_set)
            barrier.wait()
            barrier.wait()  # the main thread kills every connection in between
            data_set[table_name].insert({"k": n + 1})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    barrier.wait()
    for value in ids.values():
        kill(value)
    barrier.wait()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(row[0] for row in sql(f"SELECT k FROM `{table_name}`")) == [0, 1, 2, 3]


def test_a_lost_connection_inside_a_transaction_raises_and_commits_nothing(table_name):
    data_set = get_dataset_pool(URL)
    table = data_set[table_name]
    table.insert({"k": 0})
    with pytest.raises(Exception, match=r"Lost connection|gone away"), data_set:
        table.insert({"k": 1})
        kill(connection_id(data_set))
        table.insert({"k": 2})
    assert sql(f"SELECT k FROM `{table_name}`") == ((0,),)
    table.insert({"k": 3})  # and the pool goes on
    assert sorted(row[0] for row in sql(f"SELECT k FROM `{table_name}`")) == [0, 3]


@pytest.mark.slow
def test_the_pool_survives_a_mariadb_restart(private_mariadb, table_name, logs):
    data_set = get_dataset_pool(HOST, private_mariadb.port, NAME, USER, "")
    table = data_set[table_name]
    table.insert({"k": 1})
    assert table.find_one(k=1)["k"] == 1
    before = private_mariadb.process.pid
    private_mariadb.restart()
    assert private_mariadb.process.pid != before
    table.insert({"k": 2})
    assert [row["k"] for row in table.find(order_by="k")] == [1, 2]
    assert "database connection lost" in logs.text()
