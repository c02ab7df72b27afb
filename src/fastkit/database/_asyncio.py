"""The asyncio SQLAlchemy pool, ``AsyncMySQL``: ``mysql+aiomysql`` or ``sqlite+aiosqlite``.

    pool = get_async_mysql_pool("root", "", "127.0.0.1", 3306, "flyer")
    async with pool.get_session() as session:         # commit on success, rollback on error
        ...

Under aiomysql the whole login (TCP connect and handshake) has a deadline of the connect
plus the read timeout (5 + 60 s unless set; see ``_timeouts``); aiomysql has no read
timeout for queries: bound a query with ``asyncio.timeout()``.

SQLAlchemy's asyncio layer needs greenlet (``sqlalchemy[asyncio]``; FastFlyer's default install
and its ``mysql`` extra bring it). It is imported only here, so sync pools never need it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from fastkit._loop_local import LoopLocal
from fastkit.database._engine import engine_options
from fastkit.database._metrics import watch_engine
from fastkit.database._sqlalchemy import _pool_key, _Tables, _url
from fastkit.database._timeouts import BoundedLogin
from fastkit.database._url import async_url, masked

__all__ = ["AsyncMySQL", "get_async_mysql_pool"]


class _AsyncSession(AsyncSession):
    """An ``AsyncSession`` whose ``async with`` block commits or rolls back, then closes."""

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        try:
            if type_ is None:
                await self.commit()
            else:
                await self.rollback()
        finally:
            await self.close()


class AsyncMySQL:
    """The asyncio counterpart of :class:`MySQL` (``mysql+aiomysql``, ``sqlite+aiosqlite``).

    Create it where it is used, or in the app's start-up: asyncio connections belong to
    the event loop that opened them.
    """

    def __init__(self, url: str | URL, *, recycle: int | str = 900, pool_size: int | str = 32,
                 max_overflow: int | str = 64, **engine_kwargs: Any) -> None:
        self.url = async_url(url)
        options = engine_options(self.url, recycle, pool_size, max_overflow, engine_kwargs)
        login = None
        if self.url.get_driver_name() == "aiomysql" and not (
                {"creator", "async_creator"} & set(options)):
            login = options["async_creator"] = BoundedLogin(self.url,
                                                            options.pop("connect_args", {}))
        self.engine = create_async_engine(self.url, **options)
        if login is not None:
            login.dialect = self.engine.sync_engine.dialect
        watch_engine(self.engine.sync_engine, self.url, options)  # the pool gauge, metrics on
        self.session_factory = async_sessionmaker(self.engine, class_=_AsyncSession,
                                                  expire_on_commit=False)
        self._tables = _Tables()

    def get_session(self) -> AsyncSession:
        """A new session: ``async with pool.get_session() as s:`` commits or rolls back."""
        return self.session_factory()

    async def get_table(self, name: str, schema: str | None = None) -> Table:
        """The table ``name`` as it is in the database (reflected on first use)."""
        key = f"{schema}.{name}" if schema else name
        table = self._tables.metadata.tables.get(key)
        if table is None:
            async with self.engine.connect() as connection:
                table = await connection.run_sync(
                    lambda sync: Table(name, self._tables.metadata, schema=schema,
                                       autoload_with=sync))
        return table

    async def ping(self) -> None:
        """Run ``SELECT 1``; raises when the database is down."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def close(self, session: AsyncSession | None = None) -> None:
        """Close ``session``; with none, close every pooled connection."""
        if session is not None:
            await session.close()
        else:
            await self.engine.dispose()

    def __repr__(self) -> str:
        return f"AsyncMySQL({masked(self.url)})"


async def _dispose(pool: AsyncMySQL) -> None:
    await pool.close()


# Per running loop: an asyncio engine's connections belong to the loop that opened them.
_pools: LoopLocal[AsyncMySQL] = LoopLocal(_dispose)


def get_async_mysql_pool(db_user: str | URL = "root", db_pass: str | None = "",
                         db_host: str = "localhost", db_port: int | str = 3306,
                         db_name: str = "flyer", db_recycle_rate: int | str = 900,
                         db_pool_size: int | str = 32, db_max_overflow: int | str = 64, *,
                         charset: str = "utf8mb4", **engine_kwargs: Any) -> AsyncMySQL:
    """As :func:`get_mysql_pool`, for async code. In a running event loop the same
    arguments give the same :class:`AsyncMySQL` (made once however many tasks ask at once),
    disposed of when that loop shuts down; outside a loop, a new one each call."""
    url = _url(db_user, db_pass, db_host, db_port, db_name, charset)
    key = _pool_key("get_async_mysql_pool", url, db_recycle_rate, db_pool_size,
                    db_max_overflow, engine_kwargs)
    return _pools.get(key, lambda: AsyncMySQL(url, recycle=db_recycle_rate,
                                              pool_size=db_pool_size,
                                              max_overflow=db_max_overflow, **engine_kwargs))
