"""The ready-made module instances: ``requests``/``client`` and ``aiorequests``/``aioclient``.

Nothing is built at import (httpx reads CA certificates when a client is made):
the sync client is created on first use, once, and shared by all threads. The
async one is created per event loop, because a connection pool belongs to the
loop that opened its sockets; it is closed when that loop shuts down through
``asyncio.run`` (or any runner that calls ``loop.shutdown_asyncgens()``), so
successive ``asyncio.run(...)`` calls each get a working pool.

They serve many callers, as python-requests' module functions do, so they keep no
cookies: a ``Set-Cookie`` one caller receives is never sent on another caller's request
(a ``Cookie`` header passed with a call is sent with that call only). A ``Client()`` of
one's own keeps its cookies as httpx does.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, TypeVar

import httpx

from fastkit.httpx._client import AsyncClient, Client

__all__ = ["LazyClient", "LoopLocalAsyncClient", "shared_async_client", "shared_client"]

_C = TypeVar("_C", Client, AsyncClient)


def _without_cookie_jar(client: _C) -> _C:
    """``client`` with a jar that takes no cookie from any response (no domain is allowed)."""
    client.cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    return client


def shared_client() -> Client:
    """A :class:`Client` for the module instance: FastKit's defaults, no cookie jar."""
    return _without_cookie_jar(Client())


def shared_async_client() -> AsyncClient:
    """An :class:`AsyncClient` for the module instance: FastKit's defaults, no cookie jar."""
    return _without_cookie_jar(AsyncClient())


class LazyClient:
    """A :class:`Client` made on first use (and again if someone closed it)."""

    def __init__(self, factory: Callable[[], Client] = shared_client) -> None:
        self._factory = factory
        self._client: Client | None = None
        self._lock = threading.Lock()

    def _get(self) -> Client:
        client = self._client
        if client is None or client.is_closed:
            with self._lock:
                client = self._client
                if client is None or client.is_closed:
                    client = self._client = self._factory()
                    atexit.register(client.close)
        return client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def __repr__(self) -> str:
        return f"<shared fastkit Client ({'ready' if self._client else 'not created yet'})>"


async def _close_with_loop(client: AsyncClient) -> AsyncGenerator[None, None]:
    """Suspended once; the loop's ``shutdown_asyncgens()`` resumes it to close ``client``."""
    try:
        yield
    finally:
        await client.aclose()


class LoopLocalAsyncClient:
    """An :class:`AsyncClient` per running event loop, closed when the loop shuts down."""

    def __init__(self, factory: Callable[[], AsyncClient] = shared_async_client) -> None:
        self._factory = factory
        self._clients: dict[asyncio.AbstractEventLoop,
                            tuple[AsyncClient, AsyncGenerator[None, None]]] = {}
        self._lock = threading.Lock()

    async def _get(self) -> AsyncClient:
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is not None and not entry[0].is_closed:
            return entry[0]
        client = self._factory()
        closer = _close_with_loop(client)
        await closer.__anext__()  # registers the generator with this loop's shutdown
        with self._lock:
            for old in [lp for lp in self._clients if lp.is_closed()]:
                del self._clients[old]
            self._clients[loop] = (client, closer)
        return client

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        client = await self._get()
        return await getattr(client, name)(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        attribute = getattr(AsyncClient, name)
        if asyncio.iscoroutinefunction(attribute):
            return functools.partial(self._call, name)
        raise AttributeError(
            f"aiorequests.{name} is not available on the shared client; "
            "create your own AsyncClient() for it"
        )

    def build_request(self, method: str, url: httpx.URL | str, **kwargs: Any) -> httpx.Request:
        return httpx.Request(method, url, **kwargs)

    @asynccontextmanager
    async def stream(self, method: str, url: httpx.URL | str,
                     **kwargs: Any) -> AsyncIterator[httpx.Response]:
        client = await self._get()
        async with client.stream(method, url, **kwargs) as response:
            yield response

    def __repr__(self) -> str:
        return f"<shared fastkit AsyncClient ({len(self._clients)} event loop(s))>"
