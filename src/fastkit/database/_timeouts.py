"""Network timeouts of the database drivers: no connection waits for ever on a server.

Every pool of :mod:`fastkit.database` gives its driver a connect timeout of
:data:`CONNECT_TIMEOUT` (5 s: opening the TCP connection) and a read timeout of
:data:`READ_TIMEOUT` (60 s: each wait for the server's answer, the login handshake
included, and for writes where the driver has a write timeout), in the driver's own
parameters. A timeout the caller gives wins: in the URL's query (whole seconds, as
``mysql+pymysql://u:p@db/app?read_timeout=300``) or in ``connect_args`` (which wins over
the URL, as everywhere in SQLAlchemy); ``connect_args={"read_timeout": None}`` turns one
off.

======================  ===============================================================
driver                  parameters set
======================  ===============================================================
pymysql, mysqldb        ``connect_timeout``, ``read_timeout``, ``write_timeout``
aiomysql                ``connect_timeout`` (its own, for TCP); it has no read timeout,
                        so the whole login is bounded by ``connect_timeout +
                        read_timeout`` here. Queries then have none: bound them with
                        ``asyncio.timeout()``
asyncpg                 ``timeout`` (connect), ``command_timeout`` (read)
psycopg, psycopg2       ``connect_timeout`` (libpq has no read timeout)
sqlite and others       nothing (no network, or parameters fastkit does not know)
======================  ===============================================================
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import URL, Dialect

from fastkit.database._url import as_url

__all__ = ["CONNECT_TIMEOUT", "READ_TIMEOUT", "BoundedLogin", "timeout_arguments",
           "with_timeouts"]

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0


def _whole(seconds: float) -> int:
    return max(1, math.ceil(seconds))


# driver -> (connect timeout, read timeout) -> its keyword arguments
_DRIVERS: dict[str, Callable[[float, float], dict[str, Any]]] = {
    "pymysql": lambda c, r: {"connect_timeout": c, "read_timeout": r, "write_timeout": r},
    # mysqlclient takes whole seconds
    "mysqldb": lambda c, r: {"connect_timeout": _whole(c), "read_timeout": _whole(r),
                             "write_timeout": _whole(r)},
    "aiomysql": lambda c, r: {"connect_timeout": c, "read_timeout": r},
    "asyncpg": lambda c, r: {"timeout": c, "command_timeout": r},
    "psycopg": lambda c, r: {"connect_timeout": _whole(c)},
    "psycopg_async": lambda c, r: {"connect_timeout": _whole(c)},
    "psycopg2": lambda c, r: {"connect_timeout": _whole(c)},
}


def timeout_arguments(url: str | URL, connect_timeout: float = CONNECT_TIMEOUT,
                      read_timeout: float = READ_TIMEOUT) -> dict[str, Any]:
    """The ``connect_args`` that give ``url``'s driver these timeouts (seconds > 0).

    ``{}`` for a driver without network timeouts or whose parameters fastkit does not
    know (see the module). Raises ``ValueError`` for a timeout that is not > 0.
    """
    for what, seconds in (("connect timeout", connect_timeout), ("read timeout", read_timeout)):
        if not seconds > 0:
            raise ValueError(f"database {what} must be > 0 seconds, got {seconds!r}")
    arguments = _DRIVERS.get(as_url(url).get_driver_name())
    return arguments(connect_timeout, read_timeout) if arguments else {}


def with_timeouts(url: URL, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` (``create_engine`` keyword arguments) with the default timeouts added
    to ``connect_args`` where neither the URL's query nor ``connect_args`` sets them."""
    given = dict(options.get("connect_args") or {})
    defaults = {name: value for name, value in timeout_arguments(url).items()
                if name not in given and name not in url.query}
    if defaults:
        options["connect_args"] = {**defaults, **given}
    return options


class BoundedLogin:
    """aiomysql's connect with a deadline on the whole login (its ``async_creator``).

    aiomysql bounds the TCP connect (``connect_timeout``) but not the handshake that
    follows: a server that accepts and never answers would hold the login for ever.
    Here the login fails after ``connect_timeout + read_timeout`` seconds with aiomysql's
    ``OperationalError`` naming the server, and its socket is closed. ``dialect`` is the
    engine's, set once the engine exists: it turns the URL into aiomysql's arguments.
    """

    def __init__(self, url: URL, connect_args: dict[str, Any]) -> None:
        self.url = url
        self.connect_args = connect_args
        self.dialect: Dialect | None = None

    async def __call__(self) -> Any:
        import aiomysql  # type: ignore[import-untyped]

        if self.dialect is None:
            raise RuntimeError("BoundedLogin used before its engine was made")
        cargs, cparams = self.dialect.create_connect_args(self.url)
        cparams = {**cparams, **self.connect_args}
        read_timeout = cparams.pop("read_timeout", None)
        cparams.pop("write_timeout", None)  # aiomysql has neither
        connect_timeout = cparams.get("connect_timeout")
        deadline = (None if connect_timeout is None or read_timeout is None
                    else float(connect_timeout) + float(read_timeout))
        connection = aiomysql.Connection(*cargs, **cparams)
        try:
            # ping(reconnect=True) is aiomysql's public way to open a Connection made
            # unopened: the login, then one round trip.
            await asyncio.wait_for(connection.ping(reconnect=True), deadline)
        except BaseException as exc:
            connection.close()
            if isinstance(exc, asyncio.TimeoutError):
                where = f"{cparams.get('host', 'localhost')}:{cparams.get('port', 3306)}"
                raise aiomysql.OperationalError(
                    2013, f"no answer from the MySQL server at {where} within {deadline:g} s "
                    f"(connect_timeout {float(connect_timeout or 0):g} s + read_timeout "
                    f"{float(read_timeout or 0):g} s)") from None
            raise
        return connection
