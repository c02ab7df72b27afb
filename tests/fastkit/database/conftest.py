"""Database tests run against the real MariaDB; they fail, never skip, without it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from fastkit.database import Dataset, MySQL
from mariadb import MariaDBServer, answering_or_fail, sql


@pytest.fixture(scope="session", autouse=True)
def _mariadb_answers() -> None:
    answering_or_fail()


@pytest.fixture
def table_name() -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    sql(f"DROP TABLE IF EXISTS `{name}`")


@pytest.fixture(autouse=True)
def _close_pools(monkeypatch) -> Iterator[None]:
    """Close every pool a test opened, before a later test restarts the server."""
    created: list[Any] = []
    for cls in (Dataset, MySQL):
        original = cls.__init__

        def tracking(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> None:
            __original(self, *args, **kwargs)
            created.append(self)

        monkeypatch.setattr(cls, "__init__", tracking)
    yield
    for pool in created:
        pool.close()


@pytest.fixture
def private_mariadb() -> Iterator[MariaDBServer]:
    """A MariaDB of the test's own, to stop or restart without disturbing anything else."""
    server = MariaDBServer()
    server.start()
    yield server
    server.remove()
