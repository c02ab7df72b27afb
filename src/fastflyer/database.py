"""Databases for FastFlyer projects: :mod:`fastkit.database`, plus the project's default.

    from fastflyer.database import get_mysql_pool, get_dataset_pool

    mysql_pool = get_mysql_pool(db_user, db_pass, db_host, db_port, db_name,
                                db_recycle_rate, db_pool_size, db_max_overflow)  # the seed's
    data_set = get_dataset_pool()      # no arguments: the project's default database

The default database is ``flyer_db_url`` (any SQLAlchemy URL) when it is set, and
otherwise a SQLite file, ``fastflyer.sqlite3`` in the project's data directory
(``flyer_data_dir``, else ``data/`` beside the project's ``main.py``), so a new project
runs with no database server. Both are those of the app the code runs for (in its
requests, its lifespan, and while it imports the project's apps; see
:mod:`fastflyer.app_context`). Called with no arguments, ``get_mysql_pool``,
``get_async_mysql_pool`` and ``get_dataset_pool`` open that default. Every driver
connection has :mod:`fastkit.database`'s timeouts (connect 5 s, read 60 s) unless the
URL's query sets its own (``flyer_db_url=mysql+pymysql://...?read_timeout=300``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import fastkit.database
from fastflyer.app_context import current_project, current_settings

if TYPE_CHECKING:
    from fastflyer.settings import FlyerSettings
    from fastkit.database import (
        AsyncMySQL,
        DatabaseConfigError,
        Dataset,
        MySQL,
        async_url,
        masked,
        mysql_url,
    )

__all__ = [
    "AsyncMySQL",
    "DatabaseConfigError",
    "Dataset",
    "MySQL",
    "async_url",
    "data_dir",
    "default_url",
    "get_async_mysql_pool",
    "get_dataset_pool",
    "get_mysql_pool",
    "masked",
    "mysql_url",
    "use_project",
]

SQLITE_FILE = "fastflyer.sqlite3"
_project: Path | None = None


def use_project(project_dir: str | Path) -> None:
    """Make ``project_dir`` the project whose data directory holds the default database
    where no app says which (outside any app's context, or for an app built without a
    project; an app built with one uses its own). Before that, the current directory."""
    global _project
    _project = Path(project_dir).resolve()


def data_dir(settings: FlyerSettings | None = None) -> Path:
    """The data directory of the project (not created here): ``flyer_data_dir`` of
    ``settings`` (default: :func:`~fastflyer.app_context.current_settings`), relative to
    the project directory, else ``data/`` in it."""
    if settings is None:
        settings = current_settings()
    configured = settings.data_dir
    base = current_project() or _project or Path.cwd()
    return base / configured if configured else base / "data"


def default_url(settings: FlyerSettings | None = None) -> str:
    """``flyer_db_url`` of ``settings`` (default:
    :func:`~fastflyer.app_context.current_settings`), else the URL of the SQLite file in
    the data directory, which is created then."""
    if settings is None:
        settings = current_settings()
    url = settings.db_url.get_secret_value()
    if url:
        return url
    directory = data_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / SQLITE_FILE}"


def get_mysql_pool(*args: Any, **kwargs: Any) -> MySQL:
    """:func:`fastkit.database.get_mysql_pool`; with no arguments, the default database."""
    pool = fastkit.database.get_mysql_pool
    return pool(*args, **kwargs) if args or kwargs else pool(default_url())


def get_async_mysql_pool(*args: Any, **kwargs: Any) -> AsyncMySQL:
    """:func:`fastkit.database.get_async_mysql_pool`; with no arguments, the default."""
    pool = fastkit.database.get_async_mysql_pool
    return pool(*args, **kwargs) if args or kwargs else pool(default_url())


def get_dataset_pool(*args: Any, **kwargs: Any) -> Dataset:
    """:func:`fastkit.database.get_dataset_pool`; with no arguments, the default database."""
    pool = fastkit.database.get_dataset_pool
    return pool(*args, **kwargs) if args or kwargs else pool(default_url())


def __getattr__(name: str) -> Any:
    if name in fastkit.database.__all__:
        return getattr(fastkit.database, name)
    raise AttributeError(f"module 'fastflyer.database' has no attribute {name!r}")
