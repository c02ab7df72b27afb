"""Engine options shared by the SQLAlchemy and dataset pools.

Every engine checks a pooled connection before handing it out (``pool_pre_ping``), so a
connection the server closed (``KILL``, a restart, ``wait_timeout``) is replaced instead
of failing the caller, and recycles connections older than ``recycle`` seconds. Its
driver gets a connect and a read timeout unless the caller set them (see ``_timeouts``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import URL

from fastkit.database._timeouts import with_timeouts
from fastkit.database._url import DatabaseConfigError

__all__ = ["engine_options", "whole_number"]


def whole_number(value: Any, what: str, minimum: int) -> int:
    """``value`` as an int ≥ ``minimum``, or a :class:`DatabaseConfigError` naming it."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise DatabaseConfigError(f"{what} {value!r} is not a whole number") from None
    if number < minimum:
        raise DatabaseConfigError(f"{what} {number} is below {minimum}")
    return number


def engine_options(url: URL, recycle: Any, pool_size: Any, max_overflow: Any,
                   extra: dict[str, Any]) -> dict[str, Any]:
    """``create_engine`` keyword arguments: pre-ping, recycle and pool sizes, validated;
    the driver's default timeouts in ``connect_args``."""
    options: dict[str, Any] = {"pool_pre_ping": True}
    recycle = whole_number(recycle, "recycle rate (seconds)", -1)
    pool_size = whole_number(pool_size, "pool size", 1)
    max_overflow = whole_number(max_overflow, "max overflow", -1)
    if url.get_backend_name() != "sqlite":
        # SQLite's in-memory pool takes no sizes; its file pool needs no recycling.
        options.update(pool_recycle=recycle, pool_size=pool_size, max_overflow=max_overflow)
    options.update(extra)
    return with_timeouts(url, options)
