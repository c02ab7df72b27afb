"""The connection gauge of SQLAlchemy engines, through the pool's public events.

:func:`watch_engine` listens to the engine's ``connect``, ``checkout``, ``checkin``,
``close`` and ``detach`` pool events (they follow the engine's pool across ``dispose()``)
and keeps ``db_client_connections_usage{pool,state}`` (:mod:`fastkit._pool_metrics`) while
metrics are on; while they are off, each event costs one boolean test. ``pool`` is the
``pool_logging_name`` given to the engine, else ``host:port/database`` of its URL (the
file's path for SQLite), never the URL itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import URL

from fastkit import metrics
from fastkit._pool_metrics import PoolUsage, pool_name

__all__ = ["engine_pool_name", "watch_engine"]


def engine_pool_name(url: URL, options: Mapping[str, Any]) -> str:
    """The ``pool`` label of an engine made from ``url`` with ``create_engine`` keyword
    arguments ``options``."""
    given = options.get("pool_logging_name")
    if given:
        return str(given)
    database = url.database
    if url.get_backend_name() == "sqlite" and database in (None, "", ":memory:"):
        return ":memory:"
    return pool_name(url.host, url.port, database)


def watch_engine(engine: Engine, url: URL, options: Mapping[str, Any]) -> PoolUsage:
    """Keep the connection gauge of ``engine`` (a sync ``Engine``; for an ``AsyncEngine``,
    its ``sync_engine``), made from ``url`` and ``options``; returns its :class:`PoolUsage`."""
    usage = PoolUsage(engine_pool_name(url, options))
    on = metrics.enabled

    def connected(dbapi_connection: Any, record: Any) -> None:
        if on():
            usage.opened(record)

    def checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if on():
            usage.checked_out(record)

    def checked_in(dbapi_connection: Any, record: Any) -> None:
        if on():
            usage.checked_in(record)

    def closed(dbapi_connection: Any, record: Any) -> None:  # closed, invalidated, detached
        if on():
            usage.closed(record)

    event.listen(engine, "connect", connected)
    event.listen(engine, "checkout", checked_out)
    event.listen(engine, "checkin", checked_in)
    event.listen(engine, "close", closed)
    event.listen(engine, "detach", closed)
    usage.watch(engine)
    return usage
