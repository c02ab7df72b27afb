"""``Client`` and ``AsyncClient``: real httpx clients with retries and request logging.

They run httpx's own constructor, so everything httpx offers works (``with``,
``close()``, ``stream()``, ``build_request()``/``send()``, event hooks,
``base_url``, limits, transports). The constructor also takes the retry keys of
:class:`~fastkit.httpx.RetryPolicy`, ``retry=`` (a policy, a dict or ``False``)
and ``report_log``. Every request method takes ``retry=`` for that one call.
Timeouts default to :data:`DEFAULT_TIMEOUT`: 5 s to connect, to read, to write and to
wait for a pooled connection (httpx's own default, set here explicitly); ``timeout=``
on the client or on a call sets others (``None`` turns them off: avoid it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, TypedDict

import httpx

from fastkit._version import __version__
from fastkit.httpx._engine import Attempts, asleep, sleep
from fastkit.httpx._log import CallLog
from fastkit.httpx._policy import RetryOption, RetryPolicy, looks_like_retry_key, resolve
from fastkit.request_id import REQUEST_ID_HEADER, get_request_id

if TYPE_CHECKING:
    from httpx._client import UseClientDefault
    from httpx._types import (
        AuthTypes,
        CookieTypes,
        HeaderTypes,
        QueryParamTypes,
        RequestContent,
        RequestData,
        RequestExtensions,
        RequestFiles,
        TimeoutTypes,
    )
    from typing_extensions import Unpack

__all__ = ["DEFAULT_TIMEOUT", "DEFAULT_USER_AGENT", "AsyncClient", "Client"]

DEFAULT_TIMEOUT = httpx.Timeout(5.0)
DEFAULT_USER_AGENT = f"fastkit/{__version__} httpx/{httpx.__version__}"

_POLICY = "fastkit.retry"  # request extension carrying a per-call policy


class RequestOptions(TypedDict, total=False):
    """Keyword arguments of a request without a body (httpx's own)."""

    params: QueryParamTypes | None
    headers: HeaderTypes | None
    cookies: CookieTypes | None
    auth: AuthTypes | UseClientDefault | None
    follow_redirects: bool | UseClientDefault
    timeout: TimeoutTypes | UseClientDefault
    extensions: RequestExtensions | None


class BodyOptions(RequestOptions, total=False):
    """Keyword arguments of a request with a body (httpx's own)."""

    content: RequestContent | None
    data: RequestData | None
    files: RequestFiles | None
    json: Any


class _Cookies(httpx.Cookies):
    """httpx's cookie jar, minus the cost of parsing responses that set no cookie.

    httpx hands every response to ``http.cookiejar`` (about 40 µs a call); a
    response without ``Set-Cookie``/``Set-Cookie2`` would add nothing, so it skips that.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        headers = response.headers
        if "set-cookie" in headers or "set-cookie2" in headers:
            super().extract_cookies(response)


class _FastCookies:
    """Keeps the client's jar a :class:`_Cookies`, also when ``client.cookies`` is assigned."""

    _cookies: httpx.Cookies

    @property
    def cookies(self) -> httpx.Cookies:
        return self._cookies

    @cookies.setter
    def cookies(self, cookies: CookieTypes) -> None:
        self._cookies = _Cookies(cookies)


def _split_kwargs(kwargs: dict[str, Any]) -> tuple[RetryPolicy, CallLog, dict[str, Any]]:
    """Separate FastKit's keywords from httpx's and apply FastKit's defaults."""
    options = {k: kwargs.pop(k) for k in [k for k in kwargs if looks_like_retry_key(k)]}
    retry = kwargs.pop("retry", None)
    policy = RetryPolicy.from_options(options)
    if retry is not None:
        if options:
            raise TypeError("pass either retry= or the retry keys, not both")
        policy = resolve(policy, retry)
    report_log = kwargs.pop("report_log", True)
    if not isinstance(report_log, bool):
        raise TypeError(f"report_log must be a bool, not {type(report_log).__name__}")
    headers = httpx.Headers({"User-Agent": DEFAULT_USER_AGENT})
    headers.update(kwargs.get("headers") or {})  # case-insensitive: a caller's header wins
    kwargs["headers"] = headers
    kwargs.setdefault("follow_redirects", True)
    kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
    return policy, CallLog.from_env(report_log), kwargs


def _with_policy(kwargs: dict[str, Any], retry: RetryOption) -> dict[str, Any]:
    if retry is not None:
        kwargs["extensions"] = {**(kwargs.get("extensions") or {}), _POLICY: retry}
    return kwargs


def _start(client_policy: RetryPolicy, request: httpx.Request) -> Attempts:
    """Bind the request id and resolve the call's policy."""
    request_id = get_request_id()
    if request_id is not None and REQUEST_ID_HEADER not in request.headers:
        request.headers[REQUEST_ID_HEADER] = request_id
    option = request.extensions.get(_POLICY)
    policy = client_policy if option is None else resolve(client_policy, option)
    return Attempts(policy, request)


def _describe(request: httpx.Request) -> str:
    return f"{request.method} {CallLog._url(request.url)}"


class Client(_FastCookies, httpx.Client):
    """A synchronous httpx client that retries and logs each call.

    ``Client(timeout=60, headers={...}, stop_max_attempt_number=5, report_log=False)``
    """

    def __init__(self, **kwargs: Any) -> None:
        self.retry_policy, self._call_log, kwargs = _split_kwargs(kwargs)
        super().__init__(**kwargs)
        self.cookies = self._cookies

    def __del__(self) -> None:
        # A client dropped without close() releases its sockets instead of leaking them.
        if "_transport" in self.__dict__:
            # At interpreter exit module globals may be gone (httpx's, this module's):
            # builtins only here, and no error out of it.
            try:
                if not self.is_closed:
                    self.close()
            except Exception:
                pass

    def send(self, request: httpx.Request, *, stream: bool = False,
             auth: AuthTypes | UseClientDefault | None = httpx.USE_CLIENT_DEFAULT,
             follow_redirects: bool | UseClientDefault = httpx.USE_CLIENT_DEFAULT,
             ) -> httpx.Response:
        """Send ``request``, retrying as the policy says; log the call once."""
        attempts = _start(self.retry_policy, request)
        log = self._call_log
        while True:
            try:
                response = super().send(request, stream=stream, auth=auth,
                                        follow_redirects=follow_redirects)
            except Exception as error:
                wait = attempts.after_error(error)
                if wait is None:
                    attempts.annotate(error, _describe(request))
                    log.finished(request, None, error, attempts)
                    raise
                log.retrying(request, attempts, wait)
                sleep(wait)
                continue
            wait = attempts.after_response(response)
            if wait is None:
                log.finished(request, response, None, attempts)
                return response
            response.close()
            log.retrying(request, attempts, wait)
            sleep(wait)

    def request(self, method: str, url: httpx.URL | str, *, retry: RetryOption = None,
                **kwargs: Unpack[BodyOptions]) -> httpx.Response:
        """Build and send a request; ``retry=`` overrides the client's policy for this call."""
        return super().request(method, url, **_with_policy(dict(kwargs), retry))

    @contextmanager
    def stream(self, method: str, url: httpx.URL | str, *, retry: RetryOption = None,
               **kwargs: Unpack[BodyOptions]) -> Iterator[httpx.Response]:
        """Stream the response body; retries happen only before it reaches the caller."""
        with super().stream(method, url, **_with_policy(dict(kwargs), retry)) as response:
            yield response

    def get(self, url: httpx.URL | str, *, retry: RetryOption = None,
            **kwargs: Unpack[RequestOptions]) -> httpx.Response:
        return self.request("GET", url, retry=retry, **kwargs)

    def options(self, url: httpx.URL | str, *, retry: RetryOption = None,
                **kwargs: Unpack[RequestOptions]) -> httpx.Response:
        return self.request("OPTIONS", url, retry=retry, **kwargs)

    def head(self, url: httpx.URL | str, *, retry: RetryOption = None,
             **kwargs: Unpack[RequestOptions]) -> httpx.Response:
        return self.request("HEAD", url, retry=retry, **kwargs)

    def delete(self, url: httpx.URL | str, *, retry: RetryOption = None,
               **kwargs: Unpack[RequestOptions]) -> httpx.Response:
        return self.request("DELETE", url, retry=retry, **kwargs)

    def post(self, url: httpx.URL | str, *, retry: RetryOption = None,
             **kwargs: Unpack[BodyOptions]) -> httpx.Response:
        return self.request("POST", url, retry=retry, **kwargs)

    def put(self, url: httpx.URL | str, *, retry: RetryOption = None,
            **kwargs: Unpack[BodyOptions]) -> httpx.Response:
        return self.request("PUT", url, retry=retry, **kwargs)

    def patch(self, url: httpx.URL | str, *, retry: RetryOption = None,
              **kwargs: Unpack[BodyOptions]) -> httpx.Response:
        return self.request("PATCH", url, retry=retry, **kwargs)


class AsyncClient(_FastCookies, httpx.AsyncClient):
    """An asynchronous httpx client that retries and logs each call.

    ``AsyncClient(timeout=60, headers={...}, stop_max_attempt_number=5, report_log=False)``
    """

    def __init__(self, **kwargs: Any) -> None:
        self.retry_policy, self._call_log, kwargs = _split_kwargs(kwargs)
        super().__init__(**kwargs)
        self.cookies = self._cookies

    async def send(self, request: httpx.Request, *, stream: bool = False,
                   auth: AuthTypes | UseClientDefault | None = httpx.USE_CLIENT_DEFAULT,
                   follow_redirects: bool | UseClientDefault = httpx.USE_CLIENT_DEFAULT,
                   ) -> httpx.Response:
        """Send ``request``, retrying as the policy says; log the call once."""
        attempts = _start(self.retry_policy, request)
        log = self._call_log
        while True:
            try:
                response = await super().send(request, stream=stream, auth=auth,
                                              follow_redirects=follow_redirects)
            except Exception as error:
                wait = attempts.after_error(error)
                if wait is None:
                    attempts.annotate(error, _describe(request))
                    log.finished(request, None, error, attempts)
                    raise
                log.retrying(request, attempts, wait)
                await asleep(wait)
                continue
            wait = attempts.after_response(response)
            if wait is None:
                log.finished(request, response, None, attempts)
                return response
            await response.aclose()
            log.retrying(request, attempts, wait)
            await asleep(wait)

    async def request(self, method: str, url: httpx.URL | str, *, retry: RetryOption = None,
                      **kwargs: Unpack[BodyOptions]) -> httpx.Response:
        """Build and send a request; ``retry=`` overrides the client's policy for this call."""
        return await super().request(method, url, **_with_policy(dict(kwargs), retry))

    @asynccontextmanager
    async def stream(self, method: str, url: httpx.URL | str, *, retry: RetryOption = None,
                     **kwargs: Unpack[BodyOptions]) -> AsyncIterator[httpx.Response]:
        """Stream the response body; retries happen only before it reaches the caller."""
        async with super().stream(method, url, **_with_policy(dict(kwargs), retry)) as response:
            yield response

    async def get(self, url: httpx.URL | str, *, retry: RetryOption = None,
                  **kwargs: Unpack[RequestOptions]) -> httpx.Response:
        return await self.request("GET", url, retry=retry, **kwargs)

    async def options(self, url: httpx.URL | str, *, retry: RetryOption = None,
                      **kwargs: Unpack[RequestOptions]) -> httpx.Response:
        return await self.request("OPTIONS", url, retry=retry, **kwargs)

    async def head(self, url: httpx.URL | str, *, retry: RetryOption = None,
                   **kwargs: Unpack[RequestOptions]) -> httpx.Response:
        return await self.request("HEAD", url, retry=retry, **kwargs)

    async def delete(self, url: httpx.URL | str, *, retry: RetryOption = None,
                     **kwargs: Unpack[RequestOptions]) -> httpx.Response:
        return await self.request("DELETE", url, retry=retry, **kwargs)

    async def post(self, url: httpx.URL | str, *, retry: RetryOption = None,
                   **kwargs: Unpack[BodyOptions]) -> httpx.Response:
        return await self.request("POST", url, retry=retry, **kwargs)

    async def put(self, url: httpx.URL | str, *, retry: RetryOption = None,
                  **kwargs: Unpack[BodyOptions]) -> httpx.Response:
        return await self.request("PUT", url, retry=retry, **kwargs)

    async def patch(self, url: httpx.URL | str, *, retry: RetryOption = None,
                    **kwargs: Unpack[BodyOptions]) -> httpx.Response:
        return await self.request("PATCH", url, retry=retry, **kwargs)
