"""dataset pools that survive lost connections and never read a stale snapshot.

    data_set = get_dataset_pool(db_host, db_port, db_name, db_user, db_pass,
                                db_recycle_rate, db_pool_size)       # the seed's first order
    data_set = get_dataset_pool(db_user, db_pass, db_host, db_port, db_name)   # its second
    data_set = get_dataset_pool(db_host="db", db_port=3306, db_name="flyer", db_user="app")
    data_set = get_dataset_pool("mysql+pymysql://app:pw@db:3306/flyer")
    table = data_set["t_users"]

The seed calls it with two argument orders; which one is meant is told by where the port
stands (second or fourth). A call where both or neither could be the port is refused with
an error saying so, never guessed; keywords and a URL are always clear.

:class:`Dataset` is a ``dataset.Database``. dataset keeps one connection per thread, and
alone it has two faults this class removes:

- Outside ``with db:`` a read leaves its transaction open, so on MySQL/MariaDB the thread
  keeps reading the snapshot of its first read (other writers' rows stay invisible) and
  holds metadata locks that block ``ALTER``/``DROP`` from anyone else. Here, outside
  ``with db:``, the connection is in autocommit: each statement is its own transaction.
- A connection the server dropped (``KILL``, restart, ``wait_timeout``) fails every later
  call on that thread. Here each operation first pings the thread's connection and
  replaces a dead one, so the call succeeds
  as soon as the server answers. Inside ``with db:`` a lost connection raises: the
  transaction is gone and is never silently retried.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable
from typing import Any

import dataset
from sqlalchemy import Connection
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from fastkit.database._engine import engine_options
from fastkit.database._metrics import watch_engine
from fastkit.database._url import DatabaseConfigError, as_url, masked, mysql_url
from fastkit.logging import logger

__all__ = ["Dataset", "get_dataset_pool"]

_HOST_FIRST = ("db_host", "db_port", "db_name", "db_user", "db_pass", "db_recycle_rate",
               "db_pool_size", "db_max_overflow")
_USER_FIRST = ("db_user", "db_pass", "db_host", "db_port", "db_name", "db_recycle_rate",
               "db_pool_size", "db_max_overflow")


class Dataset(dataset.Database):
    """A ``dataset.Database`` that replaces dead connections and holds no read snapshot.

    ``Dataset(url, **kwargs)`` takes ``dataset.Database``'s arguments; its engine keeps
    the pool gauge while metrics are on (:mod:`fastkit.database._metrics`)."""

    def __init__(self, url: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(url, *args, **kwargs)
        if self.engine is not None:
            watch_engine(self.engine, as_url(url), kwargs.get("engine_kwargs") or {})

    @property
    def executable(self) -> Connection:
        """This thread's connection, checked (outside ``with db:``) before it is used."""
        tid = threading.get_ident()
        with self.lock:
            connection = self.connections.get(tid)
        if connection is not None and not self.in_transaction and not self._alive(connection):
            with self.lock:
                self.connections.pop(tid, None)
            connection = None
        if connection is None:
            if self.engine is None:
                raise RuntimeError("Database is closed")
            connection = self.engine.connect()  # pre-pinged: a live connection or an error
            # Outside `with db:` each statement commits on the server as it runs: no
            # transaction (snapshot, metadata locks) outlives the statement.
            connection.execution_options(isolation_level="AUTOCOMMIT")
            with self.lock:
                self.connections[tid] = connection
        return connection

    def _alive(self, connection: Connection) -> bool:
        """Ping the connection (not SQLite's); ``False``, and it is dropped, when dead."""
        try:
            if connection.invalidated:
                raise ConnectionError("invalidated")
            if not self.is_sqlite:
                dbapi_connection = connection.connection.dbapi_connection
                if dbapi_connection is None or not connection.dialect.do_ping(dbapi_connection):
                    raise ConnectionError("no answer to ping")
        except Exception as exc:
            logger.warning("database connection lost ({}), reconnecting: {}",
                           type(exc).__name__, masked(self.url))
            try:
                connection.invalidate()
                connection.close()
            except Exception:
                pass
            return False
        return True

    def close(self) -> None:
        """Close every thread's connection and the pool. A connection the server has
        already dropped (a restart, a ``KILL``) is discarded: closing never raises for it."""
        with self.lock:
            connections = list(self.connections.values())
            self.connections.clear()
        for connection in connections:
            # Its rollback fails on a dead socket; the driver has closed it by then.
            with contextlib.suppress(SQLAlchemyError):
                connection.close()
        super().close()

    def begin(self) -> None:
        """Enter a transaction (``with db:``): the thread's connection leaves autocommit
        until the outermost transaction ends and the connection goes back to the pool."""
        if not hasattr(self.local, "tx"):
            self.local.tx = []
        if self.local.tx:
            self.local.tx.append(True)  # nested: the outermost one commits
            return
        connection = self.executable
        if connection.in_transaction():
            connection.rollback()  # the autocommit statements' bookkeeping: nothing pending
        connection.execution_options(isolation_level=connection.default_isolation_level)
        self.local.tx.append(connection.begin())

    def _auto_commit(self) -> None:
        # Outside `with db:` the statement committed itself (autocommit): nothing to send.
        return None

    def __repr__(self) -> str:
        return f"<Dataset({masked(self.url)})>"


def _port_like(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0 < value < 65536
    return isinstance(value, str) and value.strip().isdigit() and 0 < int(value) < 65536


def _positional(args: tuple[Any, ...]) -> dict[str, Any]:
    """Name the positional arguments by where the port stands."""
    if len(args) > len(_HOST_FIRST):
        raise DatabaseConfigError(
            f"get_dataset_pool takes at most {len(_HOST_FIRST)} positional arguments, "
            f"got {len(args)}")
    second = len(args) > 1 and _port_like(args[1])
    fourth = len(args) > 3 and _port_like(args[3])
    if second == fourth:
        why = "both could be" if second else "neither is"
        raise DatabaseConfigError(
            "get_dataset_pool: cannot tell the argument order: the port stands second in "
            "(host, port, name, user, pass, ...) and fourth in (user, pass, host, port, name, "
            f"...), and here {why} a port number. Pass keywords (db_host=, db_port=, db_name=, "
            "db_user=, db_pass=) or a URL instead")
    return dict(zip(_HOST_FIRST if second else _USER_FIRST, args, strict=False))


def get_dataset_pool(*args: Any, url: str | URL | None = None, charset: str = "utf8mb4",
                     engine_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> Dataset:
    """A :class:`Dataset` (a ``dataset.Database``) from either of the seed's argument
    orders, keywords (``db_host``, ``db_port``, ``db_name``, ``db_user``, ``db_pass``,
    ``db_recycle_rate``, ``db_pool_size``, ``db_max_overflow``) or a SQLAlchemy URL.

    The same arguments give the same :class:`Dataset` (one engine, one pool), made once
    however many threads ask at once; after its ``close()`` the next call makes a new one."""
    if len(args) == 1 and (isinstance(args[0], URL) or "://" in str(args[0])):
        url, args = args[0], ()
    unknown = set(kwargs) - set(_HOST_FIRST)
    if unknown:
        raise DatabaseConfigError(
            f"get_dataset_pool got unexpected keyword arguments {sorted(unknown)}; "
            f"it takes {', '.join(_HOST_FIRST)}, url, charset and engine_kwargs")
    named = _positional(args) if args else {}
    twice = set(named) & set(kwargs)
    if twice:
        raise DatabaseConfigError(f"get_dataset_pool got {sorted(twice)} both by position "
                                  "and by keyword")
    named.update(kwargs)
    if url is not None:
        parts = set(named) & {"db_host", "db_port", "db_name", "db_user", "db_pass"}
        if parts:
            raise DatabaseConfigError(
                f"get_dataset_pool got a URL and {sorted(parts)}: give one or the other")
        target = as_url(url)
    else:
        target = mysql_url(named.get("db_user", "root"), named.get("db_pass", ""),
                           named.get("db_host", "localhost"), named.get("db_port", 3306),
                           named.get("db_name", "flyer"), charset)
    options = engine_options(target, named.get("db_recycle_rate", 900),
                             named.get("db_pool_size", 32), named.get("db_max_overflow", 64),
                             engine_kwargs or {})
    rendered = target.render_as_string(hide_password=False)
    key = (rendered, tuple(sorted((k, repr(v)) for k, v in options.items())))
    with _lock:  # one Dataset per arguments, however many threads ask at once
        pool = _pools.get(key)
        if pool is None or pool.engine is None:  # none yet, or closed: a new one
            pool = _pools[key] = Dataset(rendered, engine_kwargs=options)
    return pool


_lock = threading.Lock()
_pools: dict[Hashable, Dataset] = {}
