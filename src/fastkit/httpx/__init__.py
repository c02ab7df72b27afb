"""FastKit's HTTP toolkit: httpx clients with real retries and request logging.

    from fastkit.httpx import requests, aiorequests, Client, AsyncClient, status

    resp = requests.get(url, params={"q": 1})                 # sync, shared pool
    resp = await aiorequests.post(url, json=payload)          # async, one pool per loop
    client = Client(stop_max_attempt_number=5, timeout=10)    # your own, with retry keys
    client.get(url, retry=False)                              # no retry for this call
"""

from __future__ import annotations

from fastkit.httpx import status
from fastkit.httpx._client import DEFAULT_USER_AGENT, AsyncClient, Client
from fastkit.httpx._engine import instant_waits, parse_retry_after, set_testing
from fastkit.httpx._instances import LazyClient, LoopLocalAsyncClient
from fastkit.httpx._policy import (
    DEFAULT_RETRY_METHODS,
    DEFAULT_RETRY_STATUSES,
    RETRY_KEYS,
    RetryOption,
    RetryPolicy,
    UrllibExceptionWarning,
)

__all__ = [
    "DEFAULT_RETRY_METHODS",
    "DEFAULT_RETRY_STATUSES",
    "DEFAULT_USER_AGENT",
    "RETRY_KEYS",
    "AsyncClient",
    "Client",
    "RetryOption",
    "RetryPolicy",
    "UrllibExceptionWarning",
    "aioclient",
    "aiorequests",
    "client",
    "instant_waits",
    "parse_retry_after",
    "requests",
    "set_testing",
    "status",
]

# The shared instances are typed as the clients they stand for.
requests: Client = LazyClient()  # type: ignore[assignment]
client: Client = requests
aiorequests: AsyncClient = LoopLocalAsyncClient()  # type: ignore[assignment]
aioclient: AsyncClient = aiorequests
