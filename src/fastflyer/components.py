"""The data components the settings name, wired to the app's readiness and shutdown.

With ``flyer_redis_host`` set, readiness reports ``redis`` (a ``PING``); with
``flyer_db_url`` set, ``database`` (a ``SELECT 1``). Each is up or down with its latency.
Nothing connects before the first readiness probe; on shutdown the pools the checks
opened are closed. Each check has a deadline of ``CHECK_TIMEOUT`` (2 s), and so do its
network calls: the database check runs on a pool of its own whose driver connect and
read timeouts are that deadline (whatever ``flyer_db_url`` sets for the app's queries),
so a server that accepts and never answers leaves no check running past it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastflyer.health import Readiness
    from fastflyer.lifespan import Lifecycle
    from fastflyer.settings import FlyerSettings

__all__ = ["register_components"]

CHECK_TIMEOUT = 2.0


def register_components(settings: FlyerSettings, readiness: Readiness,
                        lifecycle: Lifecycle) -> None:
    """Register the configured Redis and database with ``readiness`` and ``lifecycle``."""
    if settings.redis_host:
        _register_redis(settings, readiness, lifecycle)
    if settings.db_url.get_secret_value():
        _register_database(settings, readiness, lifecycle)


def _register_redis(settings: FlyerSettings, readiness: Readiness,
                    lifecycle: Lifecycle) -> None:
    clients: list[Any] = []

    async def redis_ping() -> None:
        if not clients:
            from fastflyer.cache import default_async_redis

            clients.append(default_async_redis(settings))
        await clients[0].ping()

    async def close() -> None:
        for client in clients:
            await client.connection_pool.disconnect()

    readiness.register("redis", redis_ping, timeout=CHECK_TIMEOUT)
    lifecycle.add("redis", stop=close)


def _register_database(settings: FlyerSettings, readiness: Readiness,
                       lifecycle: Lifecycle) -> None:
    pools: list[Any] = []

    def database_ping() -> None:
        if not pools:
            from fastkit.database import get_mysql_pool, timeout_arguments

            url = settings.db_url.get_secret_value()
            # The check's own pool: its driver gives up when the check does.
            pools.append(get_mysql_pool(url, connect_args=timeout_arguments(
                url, CHECK_TIMEOUT, CHECK_TIMEOUT)))
        pools[0].ping()

    def close() -> None:
        for pool in pools:
            pool.close()

    readiness.register("database", database_ping, timeout=CHECK_TIMEOUT)
    lifecycle.add("database", stop=close)
