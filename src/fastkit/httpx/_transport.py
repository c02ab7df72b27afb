"""``RetryTransport`` and ``AsyncRetryTransport``: retries and the call log as an httpx transport.

They wrap an inner transport (httpx's own by default) and work under any httpx client::

    import httpx
    from fastkit.httpx import RetryTransport

    client = httpx.Client(transport=RetryTransport(stop_max_attempt_number=5))
    client.get(url, extensions={"retry": False})      # per call: off, a dict of keys, a policy

Each logical call (each request the client hands down, so each redirect hop) is tried
as the policy says, forwards the bound request id as ``X-Request-ID`` on every attempt,
and writes one log line (:mod:`fastkit.httpx._log`); with metrics or tracing on, it is
counted and timed once and traced as one span whose ``traceparent`` every attempt carries
(:mod:`fastkit.httpx._telemetry`). Every answer the loop discards is
closed before the wait. With ``retry_by_result``, each answer's body is read before the
predicate is asked, so the predicate sees a read response (``response.text`` works) and
a streamed call gets the body from memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from fastkit.httpx._engine import Attempts, asleep, sleep
from fastkit.httpx._log import CallLog
from fastkit.httpx._policy import RetryOption, RetryPolicy, resolve

__all__ = ["RETRY_EXTENSION", "AsyncRetryTransport", "RetryTransport"]

RETRY_EXTENSION = "retry"
"""The request extension holding a per-call :data:`~fastkit.httpx.RetryOption`."""


def build_policy(retry: RetryOption, keys: Mapping[str, Any]) -> RetryPolicy:
    """The policy from ``retry=`` (a policy, a dict of keys, ``True``/``False``) or the keys.

    Raises ``TypeError`` naming an unknown key, or when both are given.
    """
    policy = RetryPolicy.from_options(keys)
    if retry is not None:
        if keys:
            raise TypeError("pass either retry= or the retry keys, not both")
        policy = resolve(policy, retry)
    return policy


def check_report_log(report_log: object) -> bool:
    if not isinstance(report_log, bool):
        raise TypeError(f"report_log must be a bool, not {type(report_log).__name__}")
    return report_log


def _copies(response: httpx.Response, raw: bytes,
            request: httpx.Request) -> tuple[httpx.Response, httpx.Response]:
    """From an answer whose raw body is ``raw``: a fresh unread response for the client
    (it decodes and times it as usual) and a read one for the predicate and the log."""
    fresh = httpx.Response(response.status_code, headers=response.headers,
                           stream=httpx.ByteStream(raw), extensions=response.extensions)
    view = httpx.Response(response.status_code, headers=response.headers,
                          stream=httpx.ByteStream(raw), extensions=response.extensions,
                          request=request)
    view.read()
    return fresh, view


class _Retrying:
    """What both transports hold: the policy and the call log."""

    def __init__(self, retry: RetryOption, report_log: bool, keys: Mapping[str, Any]) -> None:
        self.retry_policy = build_policy(retry, keys)
        self.call_log = CallLog.from_env(check_report_log(report_log))

    def _attempts(self, request: httpx.Request) -> Attempts:
        option = request.extensions.get(RETRY_EXTENSION)
        policy = self.retry_policy if option is None else resolve(self.retry_policy, option)
        return Attempts(policy, request, self.call_log)


class RetryTransport(_Retrying, httpx.BaseTransport):
    """Retries and logs the calls sent through ``transport`` (an ``httpx.HTTPTransport()``
    when omitted).

    ``RetryTransport(transport=None, *, retry=None, report_log=True, **retry_keys)``:
    ``retry_keys`` are those of :class:`~fastkit.httpx.RetryPolicy` (seconds); ``retry`` a
    whole policy, a dict of keys or ``False``. Bad keys raise ``TypeError``/``ValueError``
    here. A request's ``extensions={"retry": ...}`` overrides the policy for that call.
    """

    def __init__(self, transport: httpx.BaseTransport | None = None, *,
                 retry: RetryOption = None, report_log: bool = True, **retry_keys: Any) -> None:
        super().__init__(retry, report_log, retry_keys)
        self.transport = transport if transport is not None else httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        attempts = self._attempts(request)
        inner = self.transport
        try:
            while True:
                view = None
                try:
                    response = inner.handle_request(request)
                    if attempts.buffers(response.status_code):
                        try:
                            raw = b"".join(response.iter_raw())
                        finally:
                            response.close()
                        response, view = _copies(response, raw, request)
                except Exception as error:
                    wait = attempts.after_error(error)
                    if wait is None:
                        raise
                    sleep(wait)
                    continue
                try:
                    wait = attempts.after_response(response, view)
                except BaseException:
                    response.close()  # the predicate raised: the connection goes back
                    raise
                if wait is None:
                    return response
                response.close()
                sleep(wait)
        except BaseException as error:  # cancelled or interrupted mid-call
            attempts.interrupted(error)
            raise

    def close(self) -> None:
        self.transport.close()


class AsyncRetryTransport(_Retrying, httpx.AsyncBaseTransport):
    """The asynchronous :class:`RetryTransport`, around ``transport`` (an
    ``httpx.AsyncHTTPTransport()`` when omitted); the same arguments."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None, *,
                 retry: RetryOption = None, report_log: bool = True, **retry_keys: Any) -> None:
        super().__init__(retry, report_log, retry_keys)
        self.transport = transport if transport is not None else httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        attempts = self._attempts(request)
        inner = self.transport
        try:
            while True:
                view = None
                try:
                    response = await inner.handle_async_request(request)
                    if attempts.buffers(response.status_code):
                        try:
                            raw = b"".join([chunk async for chunk in response.aiter_raw()])
                        finally:
                            await response.aclose()
                        response, view = _copies(response, raw, request)
                except Exception as error:
                    wait = attempts.after_error(error)
                    if wait is None:
                        raise
                    await asleep(wait)
                    continue
                try:
                    wait = attempts.after_response(response, view)
                except BaseException:
                    await response.aclose()
                    raise
                if wait is None:
                    return response
                await response.aclose()
                await asleep(wait)
        except BaseException as error:  # cancelled or interrupted mid-call
            attempts.interrupted(error)
            raise

    async def aclose(self) -> None:
        await self.transport.aclose()
