"""Database URLs: built from the seed's parts, checked, and shown with the password masked.

    mysql_url("root", "s3cret", "127.0.0.1", "3306", "flyer")
    # mysql+pymysql://root:***@127.0.0.1:3306/flyer?charset=utf8mb4  (as str(masked(...)))

Every message and log line of :mod:`fastkit.database` shows URLs through :func:`masked`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from fastkit.exceptions import FastKitError

__all__ = ["DatabaseConfigError", "as_url", "async_url", "masked", "mysql_url", "port_number"]

# Drivers whose asyncio counterpart SQLAlchemy knows: the sync driver of each backend
# (or none) maps to the asyncio one.
_ASYNC_DRIVERS = {"mysql": "aiomysql", "mariadb": "aiomysql", "sqlite": "aiosqlite",
                  "postgresql": "asyncpg"}
_ASYNC_ALREADY = {"aiomysql", "asyncmy", "aiosqlite", "asyncpg", "psycopg", "psycopg_async"}


class DatabaseConfigError(FastKitError, ValueError):
    """Database settings that cannot work: the message names what is wrong (never a password)."""


def masked(url: str | URL) -> str:
    """``url`` as text with its password replaced by ``***``.

    Text SQLAlchemy cannot parse is masked by :func:`fastkit.logging.redact.redact_url`:
    its password only, the rest shown as it is (``notaurl`` stays ``notaurl``).
    """
    try:
        return as_url(url).render_as_string(hide_password=True)
    except DatabaseConfigError:
        from fastkit.logging.redact import redact_url

        return redact_url(str(url))


def as_url(url: str | URL) -> URL:
    """A SQLAlchemy ``URL`` from text or a ``URL``; a clear error for anything else."""
    if isinstance(url, URL):
        return url
    try:
        return make_url(str(url))
    except (ArgumentError, ValueError):
        # SQLAlchemy's message quotes the whole string, password included.
        raise DatabaseConfigError(
            "database URL is not a SQLAlchemy URL (dialect+driver://user:password@host:port/"
            "database or sqlite:///path)") from None


def port_number(value: Any, what: str = "database port") -> int:
    """``value`` (int or digits) as a TCP port, or a :class:`DatabaseConfigError`."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise DatabaseConfigError(f"{what} {value!r} is not a number") from None
    if not 0 < number < 65536:
        raise DatabaseConfigError(f"{what} {number} is not between 1 and 65535")
    return number


def mysql_url(user: str, password: str | None, host: str, port: Any, name: str,
              charset: str = "utf8mb4", driver: str = "pymysql") -> URL:
    """A MySQL/MariaDB URL from its parts; the password needs no escaping."""
    if not host:
        raise DatabaseConfigError("database host is empty")
    if not name:
        raise DatabaseConfigError("database name is empty")
    return URL.create(f"mysql+{driver}", username=user or None, password=password or None,
                      host=str(host), port=port_number(port), database=str(name),
                      query={"charset": charset} if charset else {})


def async_url(url: str | URL) -> URL:
    """The asyncio driver's URL for ``url`` (``mysql+pymysql`` → ``mysql+aiomysql``,
    ``sqlite`` → ``sqlite+aiosqlite``); one already asyncio is kept."""
    parsed = as_url(url)
    backend, _, driver = parsed.drivername.partition("+")
    if driver in _ASYNC_ALREADY:
        return parsed
    asyncio_driver = _ASYNC_DRIVERS.get(backend)
    if asyncio_driver is None:
        raise DatabaseConfigError(
            f"no asyncio driver known for {parsed.drivername!r}: give the URL with one "
            "(for example postgresql+asyncpg://...)")
    return parsed.set(drivername=f"{backend}+{asyncio_driver}")
