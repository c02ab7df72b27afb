"""``db_client_connections_usage{pool,state}``: the connections of FastKit's pools.

OpenTelemetry's ``db.client.connections.usage`` in Prometheus's spelling, a gauge per
pool name and ``state``: ``used`` (checked out by the code) and ``idle`` (open, in the
pool). The Redis pools (:mod:`fastkit.cache`) and the SQLAlchemy / dataset engines
(:mod:`fastkit.database`) report through a :class:`PoolUsage` each; their hooks call it
only while :func:`fastkit.metrics.enabled`, so a pool costs one boolean test per
checkout and checkin while metrics are off, and registers nothing.

``pool`` is bounded and holds no secret: the name the user gave the pool, else
``host:port/database`` as OpenTelemetry's ``db.client.connection.pool.name`` suggests
(a SQLite file's path). Pools of the same name add up. The gauge follows the connections
the pool has handed out or opened since metrics were enabled: a connection checked out
before is counted from its next checkout.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from fastkit import metrics

__all__ = ["USAGE_METRIC", "PoolUsage", "pool_name"]

USAGE_METRIC = "db_client_connections_usage"


def pool_name(host: str | None, port: int | str | None, database: str | int | None) -> str:
    """``host:port/database`` (parts that are missing left out): a pool's label. A host
    holding ``@`` (a URL whose password holds an unescaped ``@``, read by SQLAlchemy as
    ``u:pa`` then host ``ss@h``) is cut after its last ``@``: no part of a password."""
    if host and "@" in host:
        host = host.rpartition("@")[2]
    address = f"{host}:{port}" if host and port else (host or "")
    if database is None or database == "":
        return address or "default"
    return f"{address}/{database}" if address else str(database)


def _gauge() -> Any:
    return metrics.gauge(USAGE_METRIC,
                         "Connections of a client pool, by state: used (checked out) or "
                         "idle (open in the pool).", ("pool", "state"))


class PoolUsage:
    """The used and idle connections of one pool, kept on the gauge.

    ``PoolUsage(name)``; the pool's hooks call :meth:`opened`, :meth:`checked_out`,
    :meth:`checked_in` and :meth:`closed` with the object standing for one connection
    (a SQLAlchemy connection record, a redis-py connection), held weakly: a connection
    the pool drops and the collector frees stops counting. :meth:`watch` retires the
    pool's figures when the pool itself is collected. Thread-safe.
    """

    __slots__ = ("__weakref__", "_children", "_lock", "_name", "_open", "_shown", "_used")

    def __init__(self, name: str) -> None:
        self._name = name
        self._open: weakref.WeakSet[Any] = weakref.WeakSet()
        self._used: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._shown = (0, 0)  # (used, idle) as added to the gauge so far
        self._children: tuple[Any, Any] | None = None

    @property
    def name(self) -> str:
        """The ``pool`` label."""
        return self._name

    def watch(self, owner: object) -> None:
        """Take this pool's figures off the gauge once ``owner`` (the pool or engine) is
        garbage-collected."""
        weakref.finalize(owner, self.retire).atexit = False

    def opened(self, connection: object) -> None:
        """A new connection was opened (it is idle until checked out)."""
        with self._lock:
            self._open.add(connection)
            self._publish()

    def checked_out(self, connection: object) -> None:
        """``connection`` was handed to the code."""
        with self._lock:
            self._open.add(connection)
            self._used.add(connection)
            self._publish()

    def checked_in(self, connection: object) -> None:
        """``connection`` came back to the pool (idle)."""
        with self._lock:
            self._used.discard(connection)
            self._publish()

    def closed(self, connection: object) -> None:
        """``connection`` was closed or left the pool."""
        with self._lock:
            self._open.discard(connection)
            self._used.discard(connection)
            self._publish()

    def counts(self) -> tuple[int, int]:
        """``(used, idle)`` as this pool knows them."""
        with self._lock:
            used = len(self._used)
            return used, max(0, len(self._open) - used)

    def retire(self) -> None:
        """Forget every connection and take the pool's figures off the gauge."""
        with self._lock:
            self._open.clear()
            self._used.clear()
            if self._children is not None:
                self._publish()

    def _publish(self) -> None:
        # Each pool adds its own change, so pools of the same name add up.
        used = len(self._used)
        idle = max(0, len(self._open) - used)
        shown_used, shown_idle = self._shown
        if used == shown_used and idle == shown_idle:
            return
        children = self._children
        if children is None:
            gauge = _gauge()
            children = self._children = (gauge.labels(self._name, "used"),
                                         gauge.labels(self._name, "idle"))
        if used != shown_used:
            children[0].inc(used - shown_used)
        if idle != shown_idle:
            children[1].inc(idle - shown_idle)
        self._shown = (used, idle)
