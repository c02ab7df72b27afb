"""SQLAlchemy 2 pools: ``MySQL`` (sync), as the seed calls it; ``AsyncMySQL`` is in
``_asyncio``, so that sync code never imports SQLAlchemy's asyncio layer (and greenlet).

    mysql_pool = get_mysql_pool(db_user, db_pass, db_host, db_port, db_name,
                                db_recycle_rate, db_pool_size, db_max_overflow)
    with mysql_pool.get_session() as session:        # commit on success, rollback on error
        session.add(UserCallBackInfo(string_field="a", comment="c"))
    table = mysql_pool.get_table("t_table_name")     # reflected, cached
    mysql_pool.close()

The name is the seed's; any SQLAlchemy URL works (``get_mysql_pool("sqlite:///x.db")``).
The same arguments give the same pool. Nothing connects until the first query.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Any

from sqlalchemy import MetaData, Table, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from fastkit.database._engine import engine_options
from fastkit.database._metrics import watch_engine
from fastkit.database._url import as_url, masked, mysql_url

__all__ = ["MySQL", "get_mysql_pool"]


class _Session(Session):
    """A ``Session`` whose ``with`` block commits on success and rolls back on error."""

    def __exit__(self, type_: Any, value: Any, traceback: Any) -> None:
        try:
            if type_ is None:
                self.commit()
            else:
                self.rollback()
        finally:
            self.close()


class _Tables:
    """Tables reflected once per name (thread-safe)."""

    def __init__(self) -> None:
        self.metadata = MetaData()
        self.lock = threading.Lock()


class MySQL:
    """A SQLAlchemy engine with sessions and reflected tables; any SQLAlchemy URL.

    ``recycle``: seconds after which a pooled connection is replaced; ``pool_size`` and
    ``max_overflow`` as in ``create_engine``. Other keyword arguments go to ``create_engine``.
    """

    def __init__(self, url: str | URL, *, recycle: int | str = 900, pool_size: int | str = 32,
                 max_overflow: int | str = 64, **engine_kwargs: Any) -> None:
        self.url = as_url(url)
        self.engine = create_engine(self.url, **engine_options(
            self.url, recycle, pool_size, max_overflow, engine_kwargs))
        watch_engine(self.engine, self.url, engine_kwargs)  # the pool gauge, metrics on
        # Objects stay readable after the session's block ends (to_dict() in a response).
        self.session_factory = sessionmaker(self.engine, class_=_Session, expire_on_commit=False)
        self._tables = _Tables()

    def get_session(self) -> Session:
        """A new session: ``with pool.get_session() as s:`` commits, or rolls back on error."""
        return self.session_factory()

    def get_table(self, name: str, schema: str | None = None) -> Table:
        """The table ``name`` as it is in the database (reflected on first use)."""
        key = f"{schema}.{name}" if schema else name
        with self._tables.lock:
            table = self._tables.metadata.tables.get(key)
            if table is None:
                table = Table(name, self._tables.metadata, schema=schema,
                              autoload_with=self.engine)
            return table

    def ping(self) -> None:
        """Run ``SELECT 1`` on a pooled connection; raises when the database is down."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def close(self, session: Session | None = None) -> None:
        """Close ``session``; with none, close every pooled connection (the pool stays
        usable and opens new ones on demand)."""
        if session is not None:
            session.close()
        else:
            self.engine.dispose()

    def __repr__(self) -> str:
        return f"MySQL({masked(self.url)})"


def _url(db_user: str | URL, db_pass: str | None, db_host: str, db_port: Any, db_name: str,
         charset: str) -> URL:
    if isinstance(db_user, URL) or "://" in str(db_user):
        return as_url(db_user)
    return mysql_url(str(db_user), db_pass, db_host, db_port, db_name, charset)


_lock = threading.Lock()
_pools: dict[Hashable, MySQL] = {}
_OWN_NAMES = {"pool_size": "db_pool_size", "max_overflow": "db_max_overflow",
              "recycle": "db_recycle_rate", "pool_recycle": "db_recycle_rate"}


def _pool_key(caller: str, url: URL, recycle: int | str, size: int | str,
              overflow: int | str, engine_kwargs: dict[str, Any]) -> Hashable:
    """What makes two calls share one pool; ``TypeError`` for a pool option passed in
    ``engine_kwargs`` under SQLAlchemy's name instead of the call's own."""
    for given, own in _OWN_NAMES.items():
        if given in engine_kwargs:
            raise TypeError(f"{caller}() takes {given!r} as {own!r}: "
                            f"{caller}(..., {own}={engine_kwargs[given]!r})")
    return (url.render_as_string(hide_password=False), str(recycle), str(size), str(overflow),
            tuple(sorted((k, repr(v)) for k, v in engine_kwargs.items())))


def get_mysql_pool(db_user: str | URL = "root", db_pass: str | None = "",
                   db_host: str = "localhost", db_port: int | str = 3306,
                   db_name: str = "flyer", db_recycle_rate: int | str = 900,
                   db_pool_size: int | str = 32, db_max_overflow: int | str = 64, *,
                   charset: str = "utf8mb4", **engine_kwargs: Any) -> MySQL:
    """The seed's call: a :class:`MySQL` for these credentials, shared by every call with
    the same arguments. ``db_user`` may instead be a SQLAlchemy URL.

    Raises ``TypeError`` when ``engine_kwargs`` names a pool option this call takes under
    its own name (``pool_size`` is ``db_pool_size``, and so on).
    """
    url = _url(db_user, db_pass, db_host, db_port, db_name, charset)
    key = _pool_key("get_mysql_pool", url, db_recycle_rate, db_pool_size, db_max_overflow,
                    engine_kwargs)
    with _lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = MySQL(url, recycle=db_recycle_rate,
                                       pool_size=db_pool_size,
                                       max_overflow=db_max_overflow, **engine_kwargs)
    return pool
