"""The client's entry points, for tests that run over each of them: the shared ``requests``
and ``aiorequests``, a ``Client``, an ``AsyncClient``, and a plain ``httpx.Client`` over a
``RetryTransport``."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from fastkit.httpx import AsyncClient, Client, RetryTransport, aiorequests, requests

ENTRIES = ["requests", "Client", "AsyncClient", "aiorequests", "RetryTransport"]


def call(entry: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request through ``entry`` (an async one runs in a task that inherits the
    caller's context: its current span and request id)."""
    if entry == "requests":
        return requests.request(method, url, **kwargs)
    if entry == "Client":
        with Client() as client:
            return client.request(method, url, **kwargs)
    if entry == "RetryTransport":
        with httpx.Client(transport=RetryTransport()) as plain:
            return plain.request(method, url, **kwargs)

    async def run() -> httpx.Response:
        if entry == "aiorequests":
            return await aiorequests.request(method, url, **kwargs)
        async with AsyncClient() as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(run())
