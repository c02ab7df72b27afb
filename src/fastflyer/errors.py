"""Errors answer in the envelope, with a truthful HTTP status and nothing leaked.

    from fastflyer import FlyerError, status

    raise FlyerError(status.HTTP_604_THIRD_PARTY_TIMEOUT_ERROR, "inventory service timed out")
    # HTTP 504, body {"code": 604, "message": "inventory service timed out"}

Every error the app can meet answers ``{"code", "message"[, "detail"]}``:

=========================  ===========  ==============================================
error                      HTTP status  body
=========================  ===========  ==============================================
``HTTPException(404)``     404          code 404, message from ``detail`` or the phrase
no route (404), method     404 / 405    the same envelope (405 keeps ``Allow``)
request validation         422          ``detail``: ``[{"loc": [...], "msg": ...}]`` only
``FlyerError(code)``       see below    code, message, detail as given (none for a
                                        204, 205 or 304, which carry no content)
client gone mid-request    499          (nobody reads it); one INFO line, no traceback
anything else              500          "Internal Server Error"; traceback to the log only
=========================  ===========  ==============================================

A client that closes the connection before its request body has been read (Starlette's
``ClientDisconnect``, raised where the body is read: FastAPI's parameter parsing, which
turns it into a 400 "There was an error parsing the body", the planned route handler of
:mod:`fastflyer.routing`, or the route's own ``await request.body()``) is not a server
error: it ends as 499, the status nginx named "client closed request", so the access log
tells it apart from a 400 or a 500.

The traceback of a 500 is one ERROR record (:func:`log_unhandled`): the request id, the
method and route path, the exception's type and message, and the frames of the app's
own code and of fastflyer/fastkit only (Starlette, FastAPI, anyio, uvicorn and the
standard library are left out; the frame that raised is always kept). No local
variables: they may hold secrets.

``FlyerError``'s HTTP status: an HTTP code (100-599) is itself; 604 answers 504 and the
other 60x codes 502 (the failure is upstream); any other business code answers 400
unless ``http_status=`` says otherwise. With ``flyer_always_http_200=1`` every error
answers HTTP 200 as the original framework did, the body still telling the error.
"""

from __future__ import annotations

import functools
import json
import re
import site
import sysconfig
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from fastkit.httpx import status
from fastkit.logging import logger
from fastkit.request_id import get_request_id

__all__ = [
    "CLIENT_CLOSED_REQUEST",
    "STOPPING_MESSAGE",
    "ErrorRenderer",
    "FlyerError",
    "client_went_away",
    "error_body",
    "http_status_for",
    "log_unhandled",
    "loggable",
    "short_traceback",
    "validation_detail",
]


#: Statuses whose answer has no content (RFC 9110, 15.3.5, 15.3.6 and 15.4.5): answered
#: without the envelope, as Starlette answers ``HTTPException(204)``.
_WITHOUT_CONTENT = frozenset({204, 205, 304})

#: The 503's message when the server's stop cuts a request off.
STOPPING_MESSAGE = "Service Unavailable: the server is stopping"

CLIENT_CLOSED_REQUEST = 499
"""The status of a request whose client went away before it was read (nginx's 499)."""


def client_went_away(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised because of, the client closing the connection
    before its request was read (``ClientDisconnect``, itself or as the direct cause)."""
    return isinstance(exc, ClientDisconnect) or isinstance(exc.__cause__, ClientDisconnect)


class FlyerError(Exception):
    """A business error: raise it anywhere in a request to answer it in the envelope.

    ``code`` is the body's code (any :mod:`~fastflyer.status` value, 60x included);
    ``http_status`` overrides the HTTP status chosen for it; ``headers`` are added to
    the response.
    """

    def __init__(
        self,
        code: int = status.HTTP_500_INTERNAL_SERVER_ERROR,
        message: str | None = None,
        detail: Any = None,
        *,
        http_status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.code = int(code)
        self.message = message or _phrase(self.code)
        self.detail = detail
        self.http_status = http_status if http_status is not None else http_status_for(self.code)
        self.headers = dict(headers or {})
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"FlyerError(code={self.code}, message={self.message!r})"


def _phrase(code: int) -> str:
    try:
        return status.phrase(code)
    except KeyError:
        return "Error"


def http_status_for(code: int) -> int:
    """The HTTP status that tells the truth about body code ``code``."""
    if 100 <= code <= 599:
        return code
    if status.is_third_party(code):
        return status.HTTP_504_GATEWAY_TIMEOUT if code == 604 else status.HTTP_502_BAD_GATEWAY
    return status.HTTP_400_BAD_REQUEST


def error_body(code: int, message: str, detail: Any = None) -> bytes:
    """The envelope as JSON bytes; ``detail`` is left out when ``None``. A string holding
    a lone surrogate (no UTF-8 for it) is written as a JSON escape (``"\\ud800"``), the
    whole body then in ASCII, rather than failing the answer."""
    body: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        body["detail"] = detail
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(body, separators=(",", ":"), default=str).encode()


def validation_detail(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Where each validation error is and what it says: no input echo, no repr, no URL."""
    out = []
    for error in errors:
        loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
        out.append({"loc": loc, "msg": str(error.get("msg", "")),
                    "type": str(error.get("type", ""))})
    return out


def _roots(paths: Sequence[str | None]) -> tuple[str, ...]:
    return tuple(sorted({str(Path(p).resolve()) + "/" for p in paths if p}, key=len,
                        reverse=True))


@functools.cache
def _where() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The framework's directories, and those of the standard library and of installed
    packages (worked out at the first error, not at import)."""
    here = Path(__file__).resolve().parent
    own = _roots([str(here), str(here.parent / "fastkit")])
    library = _roots([*(sysconfig.get_paths().get(k) for k in
                        ("stdlib", "platstdlib", "purelib", "platlib")),
                      *site.getsitepackages(), site.getusersitepackages()])
    return own, library


@functools.lru_cache(maxsize=1024)
def _is_library(filename: str) -> bool:
    if filename.startswith("<"):  # <frozen runpy> is the library's; <string> may be the app's
        return filename.startswith("<frozen ")
    try:
        path = str(Path(filename).resolve())
    except (OSError, RuntimeError):
        return False
    own, library = _where()
    return not path.startswith(own) and path.startswith(library)


def _keep_own_frames(te: traceback.TracebackException, seen: set[int]) -> int:
    """Drop the library frames of ``te`` and of its chain; how many were dropped."""
    if id(te) in seen:
        return 0
    seen.add(id(te))
    frames = list(te.stack)
    kept = [f for i, f in enumerate(frames)
            if i == len(frames) - 1 or not _is_library(f.filename)]
    te.stack = traceback.StackSummary.from_list(kept)
    dropped = len(frames) - len(kept)
    for linked in (te.__cause__, te.__context__, *(te.exceptions or ())):
        if linked is not None:
            dropped += _keep_own_frames(linked, seen)
    return dropped


def short_traceback(exc: BaseException) -> tuple[str, int]:
    """``exc``'s traceback as Python prints it (chained exceptions included), with the
    frames of libraries and the standard library left out; and how many were left out.

    Kept: frames of the app's own files and of fastflyer/fastkit, and the frame that
    raised. Source lines, never local variables.
    """
    te = traceback.TracebackException.from_exception(exc, capture_locals=False)
    dropped = _keep_own_frames(te, set())
    return "".join(te.format()).rstrip("\n"), dropped


# What would break a log line: C0 controls (CR, LF), DEL, C1 controls and the Unicode
# line and paragraph separators.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def loggable(text: str) -> str:
    """``text`` from the request (its path: ``%0a`` arrives decoded) for a log line, with
    each character that would end the line or forge another (CR, LF, other controls, the
    Unicode separators) written as its ``\\xNN``/``\\uNNNN`` escape."""
    if _UNPRINTABLE.search(text) is None:
        return text
    return _UNPRINTABLE.sub(lambda found: found[0].encode("unicode_escape").decode("ascii"),
                            text)


def log_unhandled(exc: BaseException, method: str, path: str) -> None:
    """Log ``exc``, which nothing answered, as one ERROR record: the request id being
    served, ``method`` and ``path`` (the request's path, without its query string, which
    may hold secrets) and :func:`short_traceback`. Never raises."""
    try:
        text, dropped = short_traceback(exc)
    except Exception:  # a traceback that cannot be formatted still gets its line
        text, dropped = traceback.format_exception_only(type(exc), exc)[-1].rstrip("\n"), 0
    left_out = f", {dropped} library frames left out" if dropped else ""
    logger.error("unhandled {} in {} {} (request {}{}):\n{}", type(exc).__name__, method,
                 loggable(path), get_request_id() or "-", left_out, text)


class ErrorRenderer:
    """Builds the envelope responses and holds the handlers the app installs."""

    def __init__(self, *, always_http_200: bool = False) -> None:
        self.always_http_200 = always_http_200

    def response(self, http_status: int, code: int, message: str, detail: Any = None,
                 headers: Mapping[str, str] | None = None) -> Response:
        shown = status.HTTP_200_OK if self.always_http_200 else http_status
        if not 200 <= shown < 600:  # 1xx or beyond: not a final status a client accepts
            logger.error("an error answer with HTTP status {} (body code {}): not a final "
                         "status; answered 500", shown, code)
            shown = status.HTTP_500_INTERNAL_SERVER_ERROR
        if shown in _WITHOUT_CONTENT:  # a body here breaks the connection (the server refuses it)
            return Response(status_code=shown, headers=dict(headers or {}))
        return Response(error_body(code, message, detail), status_code=shown,
                        headers=dict(headers or {}), media_type="application/json")

    async def send(self, scope: Scope, receive: Receive, send: Send, http_status: int,
                   message: str | None = None,
                   headers: Mapping[str, str] | None = None) -> None:
        """Answer a raw ASGI request with an error envelope (for middleware), with
        ``headers`` added."""
        response = self.response(http_status, http_status, message or _phrase(http_status),
                                 headers=headers)
        await response(scope, receive, send)

    async def send_unanswered(self, scope: Scope, receive: Receive, send: Send,
                              exc: Exception) -> None:
        """Answer ``exc``, which escaped the app before anything was sent (for
        middleware): 499 and one INFO line when the client went away, else the 500 with
        :func:`log_unhandled`."""
        if client_went_away(exc):
            await self.client_closed(Request(scope))(scope, receive, send)
            return
        log_unhandled(exc, scope["method"], scope["path"])
        await self.send(scope, receive, send, 500)

    async def send_stopping(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The 503 of a request the server's stop cut off (for middleware)."""
        await self.send(scope, receive, send, 503, STOPPING_MESSAGE, headers={"Retry-After": "1"})

    def client_closed(self, request: Request) -> Response:
        """The 499 of a request whose client went away before it was read: logged as one
        INFO line (the client's doing, not the server's), whatever ``always_http_200``."""
        logger.info("{} {}: the client closed the connection before its request was read "
                    "(499)", request.method, loggable(request.scope["path"]))
        return Response(error_body(CLIENT_CLOSED_REQUEST, "Client Closed Request"),
                        status_code=CLIENT_CLOSED_REQUEST, media_type="application/json")

    async def http_exception(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if client_went_away(exc):  # FastAPI's 400 for a body it could not read
            return self.client_closed(request)
        phrase = _phrase(exc.status_code)
        detail: Any = exc.detail
        if isinstance(detail, str):
            message, detail = detail or phrase, None
        else:
            message = phrase
        return self.response(exc.status_code, exc.status_code, message, detail, exc.headers)

    async def validation_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return self.response(status.HTTP_422_UNPROCESSABLE_ENTITY,
                             status.HTTP_422_UNPROCESSABLE_ENTITY, "Request validation failed",
                             validation_detail(exc.errors()))

    async def flyer_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FlyerError)
        return self.response(exc.http_status, exc.code, exc.message, exc.detail, exc.headers)

    async def unhandled(self, request: Request, exc: Exception) -> Response:
        if client_went_away(exc):
            return self.client_closed(request)
        log_unhandled(exc, request.method, request.scope["path"])
        return self.response(status.HTTP_500_INTERNAL_SERVER_ERROR,
                             status.HTTP_500_INTERNAL_SERVER_ERROR, "Internal Server Error")
