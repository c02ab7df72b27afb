"""``Client`` and ``AsyncClient``: httpx clients with FastKit's defaults and retry keys.

They are httpx's own clients whose transport is a
:class:`~fastkit.httpx.RetryTransport` (retries, request id, call log), so everything
httpx offers works (``with``, ``close()``, ``stream()``, ``build_request()``/``send()``,
event hooks, ``base_url``, limits, proxies, mounts). What they add:

- the constructor takes the retry keys of :class:`~fastkit.httpx.RetryPolicy`,
  ``retry=`` (a policy, a dict or ``False``) and ``report_log``, and wraps the transport
  httpx would have used (or yours, ``transport=``/``mounts=``) in the retry transport;
- every request method takes ``retry=`` for that one call (it travels in the request's
  ``extensions``, as ``extensions={"retry": ...}`` does on a plain httpx client);
- defaults: redirects followed, ``User-Agent: fastkit/<version> httpx/<version>``, and
  :data:`DEFAULT_TIMEOUT`: 5 s to connect, to read, to write and to wait for a pooled
  connection (httpx's own default, set here explicitly); ``timeout=`` on the client or on
  a call sets others (``None`` turns them off: avoid it).
"""

from __future__ import annotations

import ipaddress
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import httpx

from fastkit._version import __version__
from fastkit.httpx._policy import RetryOption, looks_like_retry_key
from fastkit.httpx._transport import (
    RETRY_EXTENSION,
    AsyncRetryTransport,
    RetryTransport,
    build_policy,
    check_report_log,
)

__all__ = ["DEFAULT_TIMEOUT", "DEFAULT_USER_AGENT", "AsyncClient", "Client"]

DEFAULT_TIMEOUT = httpx.Timeout(5.0)
DEFAULT_USER_AGENT = f"fastkit/{__version__} httpx/{httpx.__version__}"

# Keywords of httpx's clients that configure the connection pool: they go to the
# transports built here.
_POOL_KEYS = ("verify", "cert", "http1", "http2", "limits")

_T = TypeVar("_T")


def _environment_proxies() -> dict[str, str | None]:
    """Mount patterns for the proxies of the environment (``HTTP(S)_PROXY``, ``ALL_PROXY``,
    ``NO_PROXY``), read as httpx reads them when it builds its own transport."""
    info = urllib.request.getproxies()
    mounts: dict[str, str | None] = {}
    for scheme in ("http", "https", "all"):
        if info.get(scheme):
            host = info[scheme]
            mounts[f"{scheme}://"] = host if "://" in host else f"http://{host}"
    for host in (h.strip() for h in info.get("no", "").split(",")):
        if host == "*":
            return {}
        if not host:
            continue
        if "://" in host:
            mounts[host] = None
            continue
        try:
            address = ipaddress.ip_address(host.split("/")[0])
        except ValueError:
            mounts[f"all://{host}" if host.lower() == "localhost" else f"all://*{host}"] = None
        else:
            mounts[f"all://[{host}]" if address.version == 6 else f"all://{host}"] = None
    return mounts


def _wrap_transports(kwargs: dict[str, Any], make_inner: Callable[..., _T],
                     wrap: Callable[[_T], _T], kind: type) -> None:
    """Give httpx's client retrying transports: around ``transport=`` (or the one httpx
    would build from the pool keys and ``proxy=``), around each of ``mounts=``, and around
    the proxies of the environment when httpx would have used them (``trust_env``)."""
    pool = {key: kwargs.pop(key) for key in _POOL_KEYS if key in kwargs}
    proxy = kwargs.pop("proxy", None)
    transport = kwargs.get("transport")
    mounts: dict[str, Any] = {}
    if transport is None:
        transport = make_inner(proxy=proxy, **pool)
        if proxy is None and kwargs.get("trust_env", True):
            mounts = {pattern: None if url is None else wrap(make_inner(proxy=url, **pool))
                      for pattern, url in _environment_proxies().items()}
    elif proxy is not None:
        raise TypeError("pass either transport= or proxy=, not both")
    kwargs["transport"] = transport if isinstance(transport, kind) else wrap(transport)
    for pattern, mounted in (kwargs.get("mounts") or {}).items():
        mounts[pattern] = (mounted if mounted is None or isinstance(mounted, kind)
                           else wrap(mounted))
    if mounts:
        kwargs["mounts"] = mounts


def _prepare(kwargs: dict[str, Any], transport_class: type[RetryTransport | AsyncRetryTransport],
             make_inner: Callable[..., Any]) -> dict[str, Any]:
    """httpx's keywords, with FastKit's own taken out and its defaults applied."""
    options = {k: kwargs.pop(k) for k in [k for k in kwargs if looks_like_retry_key(k)]}
    if isinstance(kwargs.get("transport"), transport_class) and (
            options or "retry" in kwargs or "report_log" in kwargs):
        raise TypeError(f"transport= is already a {transport_class.__name__}: give the retry "
                        "options and report_log to it, not to the client")
    policy = build_policy(kwargs.pop("retry", None), options)
    report_log = check_report_log(kwargs.pop("report_log", True))
    headers = httpx.Headers({"User-Agent": DEFAULT_USER_AGENT})
    headers.update(kwargs.get("headers") or {})  # case-insensitive: a caller's header wins
    kwargs["headers"] = headers
    kwargs.setdefault("follow_redirects", True)
    kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
    _wrap_transports(kwargs, make_inner,
                     lambda inner: transport_class(inner, retry=policy, report_log=report_log),
                     transport_class)
    return kwargs


def _with_retry(kwargs: dict[str, Any], retry: RetryOption) -> dict[str, Any]:
    if retry is not None:
        kwargs["extensions"] = {**(kwargs.get("extensions") or {}), RETRY_EXTENSION: retry}
    return kwargs


class Client(httpx.Client):
    """A synchronous httpx client that retries and logs each call (its transport is a
    :class:`~fastkit.httpx.RetryTransport`).

    ``Client(timeout=60, headers={...}, stop_max_attempt_number=5, report_log=False)``:
    httpx's keywords plus the retry keys, ``retry=`` and ``report_log``. Bad retry keys
    raise ``TypeError``/``ValueError`` naming the key.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs = _prepare(kwargs, RetryTransport, httpx.HTTPTransport)
        transport = kwargs["transport"]
        self.retry_policy = transport.retry_policy
        super().__init__(**kwargs)

    def request(self, method: str, url: httpx.URL | str, *, retry: RetryOption = None,
                **kwargs: Any) -> httpx.Response:
        """Build and send a request; ``retry=`` overrides the client's policy for this call."""
        return super().request(method, url, **_with_retry(kwargs, retry))

    @contextmanager
    def stream(self, method: str, url: httpx.URL | str, *, retry: RetryOption = None,
               **kwargs: Any) -> Iterator[httpx.Response]:
        """Stream the response body; retries happen only before it reaches the caller."""
        with super().stream(method, url, **_with_retry(kwargs, retry)) as response:
            yield response

    def get(self, url: httpx.URL | str, *, retry: RetryOption = None,
            **kwargs: Any) -> httpx.Response:
        """``GET`` ``url``; httpx's keywords, and ``retry=`` for this call."""
        return self.request("GET", url, retry=retry, **kwargs)

    def options(self, url: httpx.URL | str, *, retry: RetryOption = None,
                **kwargs: Any) -> httpx.Response:
        """``OPTIONS`` ``url``; httpx's keywords, and ``retry=`` for this call."""
        return self.request("OPTIONS", url, retry=retry, **kwargs)

    def head(self, url: httpx.URL | str, *, retry: RetryOption = None,
             **kwargs: Any) -> httpx.Response:
        """``HEAD`` ``url``; httpx's keywords, and ``retry=`` for this call."""
        return self.request("HEAD", url, retry=retry, **kwargs)

    def delete(self, url: httpx.URL | str, *, retry: RetryOption = None,
               **kwargs: Any) -> httpx.Response:
        """``DELETE`` ``url``; httpx's keywords, and ``retry=`` for this call."""
        return self.request("DELETE", url, retry=retry, **kwargs)

    def post(self, url: httpx.URL | str, *, retry: RetryOption = None,
             **kwargs: Any) -> httpx.Response:
        """``POST`` ``url``; httpx's keywords, and ``retry=`` for this call."""
        return self.request("POST", url, retry=retry, **kwargs)

    def put(self, url: httpx.URL | str, *, retry: RetryOption = None,
            **kwargs: Any) -> httpx.Response:
        """``PUT`` ``url``; httpx's keywords, and ``retry=`` for this call."""
        return self.request("PUT", url, retry=retry, **kwargs)

    def patch(self, url: httpx.URL | str, *, retry: RetryOption = None,
              **kwargs: Any) -> httpx.Response:
        """``PATCH`` ``url``; httpx's keywords, and ``retry=`` for this call."""
        return self.request("PATCH", url, retry=retry, **kwargs)


class AsyncClient(httpx.AsyncClient):
    """An asynchronous httpx client that retries and logs each call (its transport is an
    :class:`~fastkit.httpx.AsyncRetryTransport`); the keywords of :class:`Client`."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs = _prepare(kwargs, AsyncRetryTransport, httpx.AsyncHTTPTransport)
        transport = kwargs["transport"]
        self.retry_policy = transport.retry_policy
        super().__init__(**kwargs)

    async def request(self, method: str, url: httpx.URL | str, *, retry: RetryOption = None,
                      **kwargs: Any) -> httpx.Response:
        """Build and send a request; ``retry=`` overrides the client's policy for this call."""
        return await super().request(method, url, **_with_retry(kwargs, retry))

    @asynccontextmanager
    async def stream(self, method: str, url: httpx.URL | str, *, retry: RetryOption = None,
                     **kwargs: Any) -> AsyncIterator[httpx.Response]:
        """Stream the response body; retries happen only before it reaches the caller."""
        async with super().stream(method, url, **_with_retry(kwargs, retry)) as response:
            yield response

    async def get(self, url: httpx.URL | str, *, retry: RetryOption = None,
                  **kwargs: Any) -> httpx.Response:
        """``GET`` ``url``; httpx's keywords, and ``retry=`` for this call."""
        return await self.request("GET", url, retry=retry, **kwargs)

    async def options(self, url: httpx.URL | str, *, retry: RetryOption = None,
                      **kwargs: Any) -> httpx.Response:
        """``OPTIONS`` ``url``; httpx's keywords, and ``retry=`` for this call."""
        return await self.request("OPTIONS", url, retry=retry, **kwargs)

    async def head(self, url: httpx.URL | str, *, retry: RetryOption = None,
                   **kwargs: Any) -> httpx.Response:
        """``HEAD`` ``url``; httpx's keywords, and ``retry=`` for this call."""
        return await self.request("HEAD", url, retry=retry, **kwargs)

    async def delete(self, url: httpx.URL | str, *, retry: RetryOption = None,
                     **kwargs: Any) -> httpx.Response:
        """``DELETE`` ``url``; httpx's keywords, and ``retry=`` for this call."""
        return await self.request("DELETE", url, retry=retry, **kwargs)

    async def post(self, url: httpx.URL | str, *, retry: RetryOption = None,
                   **kwargs: Any) -> httpx.Response:
        """``POST`` ``url``; httpx's keywords, and ``retry=`` for this call."""
        return await self.request("POST", url, retry=retry, **kwargs)

    async def put(self, url: httpx.URL | str, *, retry: RetryOption = None,
                  **kwargs: Any) -> httpx.Response:
        """``PUT`` ``url``; httpx's keywords, and ``retry=`` for this call."""
        return await self.request("PUT", url, retry=retry, **kwargs)

    async def patch(self, url: httpx.URL | str, *, retry: RetryOption = None,
                    **kwargs: Any) -> httpx.Response:
        """``PATCH`` ``url``; httpx's keywords, and ``retry=`` for this call."""
        return await self.request("PATCH", url, retry=retry, **kwargs)
