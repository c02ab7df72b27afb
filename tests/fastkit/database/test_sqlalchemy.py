"""SQLAlchemy 2 pools against the real MariaDB: the seed's settings and model blocks,
sessions that commit or roll back, reflection, lost connections, asyncio."""

from __future__ import annotations

from os import getenv

import pytest
import sqlalchemy
from sqlalchemy.exc import IntegrityError, MovedIn20Warning

from fastkit.database import (
    AsyncMySQL,
    DatabaseConfigError,
    MySQL,
    get_async_mysql_pool,
    get_mysql_pool,
)
from mariadb import HOST, NAME, PORT, URL, USER, kill, sql


@pytest.fixture
def seed_env(monkeypatch):
    monkeypatch.setenv("flyer_db_host", HOST)
    monkeypatch.setenv("flyer_db_name", NAME)
    monkeypatch.setenv("flyer_db_pool_size", "4")
    sql("DROP TABLE IF EXISTS t_table_name")
    yield
    sql("DROP TABLE IF EXISTS t_table_name")


def seed_settings() -> type:
    from fastflyer.database import get_mysql_pool

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
        db_max_overflow = int(getenv("flyer_threads", 64))
        mysql_pool = get_mysql_pool(db_user, db_pass, db_host, db_port,
                                    db_name, db_recycle_rate, db_pool_size,
                                    db_max_overflow)

    return DataBase


def seed_model() -> type:
    # db_tables.py 定义表结构, verbatim; SQLAlchemy 2 warns that declarative_base moved
    # to sqlalchemy.orm (the README uses that import).
    from sqlalchemy import Boolean, Column, Integer, String, Text
    from sqlalchemy.ext.declarative import declarative_base
    with pytest.warns(MovedIn20Warning):
        Base = declarative_base()

    class UserCallBackInfo(Base):
        """ 获取用户登记的回调信息
        """
        __tablename__ = "t_table_name"  # 自定义表名
        id = Column(Integer, primary_key=True, index=True)
        string_field = Column(String(64),
                              nullable=False,
                              unique=True,
                              index=True,
                              comment="字符串字段")
        int_field = Column(Integer,
                           nullable=False,
                           default=0,
                           comment="整型字段")
        bool_filed = Column(Boolean(), default=True, comment="Bool类型字段")
        comment = Column(Text, nullable=False, comment="Text类型字段")

        # 其他请查询手册
        def to_dict(self):
            return {c.name: getattr(self, c.name)
                    for c in self.__table__.columns}

    return UserCallBackInfo


def test_the_seed_blocks_run_verbatim_and_sessions_commit(seed_env):
    mysql_pool = seed_settings().mysql_pool
    assert isinstance(mysql_pool, MySQL)
    model = seed_model()
    model.metadata.create_all(mysql_pool.engine)
    with mysql_pool.get_session() as session:
        row = model(string_field="a", comment="first")
        session.add(row)
    # Committed by the block; the object stays readable after it.
    assert row.to_dict() == {"id": 1, "string_field": "a", "int_field": 0, "bool_filed": True,
                             "comment": "first"}
    assert sql("SELECT string_field, int_field, bool_filed FROM t_table_name") == \
        (("a", 0, 1),)


def test_a_session_block_that_raises_rolls_back(seed_env):
    mysql_pool = seed_settings().mysql_pool
    model = seed_model()
    model.metadata.create_all(mysql_pool.engine)
    with pytest.raises(IntegrityError), mysql_pool.get_session() as session:
        session.add(model(string_field="kept?", comment="x"))
        session.flush()
        session.add(model(string_field="kept?", comment="duplicate"))
    assert sql("SELECT COUNT(*) FROM t_table_name") == ((0,),)
    with pytest.raises(RuntimeError), mysql_pool.get_session() as session:
        session.add(model(string_field="b", comment="x"))
        session.flush()
        raise RuntimeError("business error")
    assert sql("SELECT COUNT(*) FROM t_table_name") == ((0,),)


def test_get_table_reflects_and_close_takes_a_session_or_the_pool(seed_env):
    mysql_pool = seed_settings().mysql_pool
    seed_model().metadata.create_all(mysql_pool.engine)
    table = mysql_pool.get_table("t_table_name")
    assert isinstance(table, sqlalchemy.Table)
    assert [c.name for c in table.columns] == ["id", "string_field", "int_field", "bool_filed",
                                               "comment"]
    assert mysql_pool.get_table("t_table_name") is table
    session = mysql_pool.get_session()
    session.execute(table.insert().values(string_field="s", int_field=0, comment="c"))
    session.commit()
    mysql_pool.close(session)  # the original ignored this argument
    assert session.get_bind() is mysql_pool.engine and not session.in_transaction()
    mysql_pool.close()  # every pooled connection; the pool opens new ones on demand
    with mysql_pool.get_session() as again:
        assert again.execute(sqlalchemy.select(table.c.string_field)).scalars().all() == ["s"]


def test_same_arguments_share_one_pool():
    first = get_mysql_pool(USER, "", HOST, PORT, NAME, 900, 4, 8)
    assert get_mysql_pool(USER, "", HOST, str(PORT), NAME, 900, 4, 8) is first
    assert get_mysql_pool(USER, "", HOST, PORT, NAME, 900, 5, 8) is not first
    assert get_mysql_pool(URL) is not first


def test_a_killed_pooled_connection_is_replaced_before_use():
    mysql_pool = get_mysql_pool(URL, db_pool_size=2)
    with mysql_pool.engine.connect() as connection:
        before = connection.execute(sqlalchemy.text("SELECT CONNECTION_ID()")).scalar_one()
    kill(before)
    with mysql_pool.get_session() as session:  # pre-ping replaced it
        after = session.execute(sqlalchemy.text("SELECT CONNECTION_ID()")).scalar_one()
    assert after != before


def test_any_sqlalchemy_url_works(tmp_path):
    pool = get_mysql_pool(f"sqlite:///{tmp_path / 'x.db'}")
    pool.ping()
    with pool.get_session() as session:
        session.execute(sqlalchemy.text("CREATE TABLE t (a INTEGER)"))
        session.execute(sqlalchemy.text("INSERT INTO t VALUES (1)"))
    assert pool.get_table("t").name == "t"


@pytest.mark.parametrize(("args", "message"), [
    ((USER, "", HOST, "port", NAME), "database port 'port' is not a number"),
    ((USER, "", HOST, 0, NAME), "database port 0 is not between 1 and 65535"),
    ((USER, "", "", 3306, NAME), "database host is empty"),
    ((USER, "", HOST, 3306, NAME, 900, "many"), "pool size 'many' is not a whole number"),
    ((USER, "", HOST, 3306, NAME, 900, 4, -2), "max overflow -2 is below -1"),
])
def test_bad_arguments_name_what_is_wrong(args, message):
    with pytest.raises(DatabaseConfigError, match=message):
        get_mysql_pool(*args)


@pytest.mark.parametrize("factory", [get_mysql_pool, get_async_mysql_pool])
@pytest.mark.parametrize(("given", "own"), [("pool_size", "db_pool_size"),
                                            ("max_overflow", "db_max_overflow"),
                                            ("pool_recycle", "db_recycle_rate")])
def test_a_pool_option_under_sqlalchemys_name_names_the_calls_own(factory, given, own):
    with pytest.raises(TypeError, match=f"takes '{given}' as '{own}'"):
        factory(USER, "", HOST, PORT, NAME, **{given: 8})


async def test_the_asyncio_pool_commits_reflects_and_recovers(table_name):
    pool = get_async_mysql_pool(USER, "", HOST, PORT, NAME, 900, 2, 2)
    assert isinstance(pool, AsyncMySQL)
    assert pool.url.drivername == "mysql+aiomysql"
    sql(f"CREATE TABLE `{table_name}` (id INT PRIMARY KEY, v VARCHAR(8))")
    table = await pool.get_table(table_name)
    async with pool.get_session() as session:
        await session.execute(table.insert().values(id=1, v="a"))
    assert sql(f"SELECT v FROM `{table_name}`") == (("a",),)
    with pytest.raises(RuntimeError):
        async with pool.get_session() as session:
            await session.execute(table.insert().values(id=2, v="b"))
            raise RuntimeError("business error")
    assert sql(f"SELECT COUNT(*) FROM `{table_name}`") == ((1,),)
    async with pool.engine.connect() as connection:
        before = (await connection.execute(sqlalchemy.text("SELECT CONNECTION_ID()"))
                  ).scalar_one()
    kill(before)
    await pool.ping()  # pre-ping replaced the killed connection
    async with pool.get_session() as session:
        rows = (await session.execute(sqlalchemy.select(table.c.v))).scalars().all()
    assert rows == ["a"]
    await pool.close()
