"""Databases: SQLAlchemy 2 pools (sync and asyncio) and dataset pools, as the seed uses them.

    from fastkit.database import get_mysql_pool, get_async_mysql_pool, get_dataset_pool

    mysql_pool = get_mysql_pool("root", "", "127.0.0.1", 3306, "flyer", 900, 32, 64)
    with mysql_pool.get_session() as session:      # commit on success, rollback on error
        ...
    data_set = get_dataset_pool("127.0.0.1", 3306, "flyer", "root", "")   # dataset.Database
    data_set["t_items"].upsert({"key_item": 0, "item1": 1}, keys=["key_item"])

Every pool takes a SQLAlchemy URL instead of the parts. Every driver connection has a
connect timeout (:data:`CONNECT_TIMEOUT`, 5 s) and a read timeout (:data:`READ_TIMEOUT`,
60 s) unless the URL's query or ``connect_args`` sets its own (``?read_timeout=300``);
:func:`timeout_arguments` names them for a URL's driver. Nothing connects at creation;
passwords appear in no repr, log line or error message of this package. SQLAlchemy and
dataset load on first use of these names; SQLAlchemy's asyncio layer (and greenlet) only
with ``AsyncMySQL`` / ``get_async_mysql_pool``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastkit._lazy import lazy_exports

if TYPE_CHECKING:
    from fastkit.database._asyncio import AsyncMySQL, get_async_mysql_pool
    from fastkit.database._dataset import Dataset, get_dataset_pool
    from fastkit.database._sqlalchemy import MySQL, get_mysql_pool
    from fastkit.database._timeouts import CONNECT_TIMEOUT, READ_TIMEOUT, timeout_arguments
    from fastkit.database._url import DatabaseConfigError, async_url, masked, mysql_url

__all__ = [
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "AsyncMySQL",
    "DatabaseConfigError",
    "Dataset",
    "MySQL",
    "async_url",
    "get_async_mysql_pool",
    "get_dataset_pool",
    "get_mysql_pool",
    "masked",
    "mysql_url",
    "timeout_arguments",
]

__getattr__ = lazy_exports(__name__, globals(), {
    "MySQL": "._sqlalchemy", "get_mysql_pool": "._sqlalchemy",
    "AsyncMySQL": "._asyncio", "get_async_mysql_pool": "._asyncio",
    "Dataset": "._dataset", "get_dataset_pool": "._dataset",
    "CONNECT_TIMEOUT": "._timeouts", "READ_TIMEOUT": "._timeouts",
    "timeout_arguments": "._timeouts",
    "DatabaseConfigError": "._url", "async_url": "._url", "masked": "._url", "mysql_url": "._url",
})
