"""FastKit's HTTP toolkit: httpx clients with real retries and request logging.

    from fastkit.httpx import requests, aiorequests, Client, AsyncClient, status

    resp = requests.get(url, params={"q": 1})                 # sync, shared pool
    resp = await aiorequests.post(url, json=payload)          # async, one pool per loop
    client = Client(stop_max_attempt_number=5, timeout=10)    # your own, with retry keys
    client.get(url, retry=False)                              # no retry for this call

    plain = httpx.Client(transport=RetryTransport(stop_max_attempt_number=5))  # plain httpx
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

from fastkit._lazy import lazy_exports
from fastkit.httpx import status

if TYPE_CHECKING:
    from fastkit.httpx._client import DEFAULT_USER_AGENT, AsyncClient, Client
    from fastkit.httpx._engine import instant_waits, parse_retry_after, set_testing
    from fastkit.httpx._instances import LazyClient, LoopLocalAsyncClient
    from fastkit.httpx._log import INSTANCE_EXTENSION
    from fastkit.httpx._policy import (
        DEFAULT_RETRY_METHODS,
        DEFAULT_RETRY_STATUSES,
        RETRY_KEYS,
        RetryOption,
        RetryPolicy,
        UrllibExceptionWarning,
    )
    from fastkit.httpx._transport import RETRY_EXTENSION, AsyncRetryTransport, RetryTransport

    # The shared instances are typed as the clients they stand for.
    requests: Client
    client: Client
    aiorequests: AsyncClient
    aioclient: AsyncClient

__all__ = [
    "DEFAULT_RETRY_METHODS",
    "DEFAULT_RETRY_STATUSES",
    "DEFAULT_USER_AGENT",
    "INSTANCE_EXTENSION",
    "RETRY_EXTENSION",
    "RETRY_KEYS",
    "AsyncClient",
    "AsyncRetryTransport",
    "Client",
    "LazyClient",
    "LoopLocalAsyncClient",
    "RetryOption",
    "RetryPolicy",
    "RetryTransport",
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

# httpx is imported on first use of a client, so `status` alone stays cheap (httpx pulls in
# its command line, click and rich when they are installed: ~100 ms).
_WHERE = {
    "DEFAULT_USER_AGENT": "_client", "AsyncClient": "_client", "Client": "_client",
    "instant_waits": "_engine", "parse_retry_after": "_engine", "set_testing": "_engine",
    "LazyClient": "_instances", "LoopLocalAsyncClient": "_instances",
    "DEFAULT_RETRY_METHODS": "_policy", "DEFAULT_RETRY_STATUSES": "_policy",
    "RETRY_KEYS": "_policy", "RetryOption": "_policy", "RetryPolicy": "_policy",
    "UrllibExceptionWarning": "_policy",
    "RETRY_EXTENSION": "_transport", "AsyncRetryTransport": "_transport",
    "RetryTransport": "_transport", "INSTANCE_EXTENSION": "_log",
}
_SHARED = {"requests", "client", "aiorequests", "aioclient"}
_LOCK = threading.Lock()


_exported = lazy_exports(__name__, globals(), {
    name: f".{module}" for name, module in _WHERE.items()})


def __getattr__(name: str) -> Any:
    if name in _SHARED:
        with _LOCK:  # one pair of shared instances, whichever thread asks first
            if name not in globals():
                instances = importlib.import_module("fastkit.httpx._instances")
                shared_sync = instances.LazyClient()
                shared_async = instances.LoopLocalAsyncClient()
                globals().update(requests=shared_sync, client=shared_sync,
                                 aiorequests=shared_async, aioclient=shared_async)
        return globals()[name]
    return _exported(name)


def __dir__() -> list[str]:
    return sorted(__all__)
