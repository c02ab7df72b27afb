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
``FlyerError(code)``       see below    code, message, detail as given
anything else              500          "Internal Server Error"; traceback to the log only
=========================  ===========  ==============================================

``FlyerError``'s HTTP status: an HTTP code (100-599) is itself; 604 answers 504 and the
other 60x codes 502 (the failure is upstream); any other business code answers 400
unless ``http_status=`` says otherwise. With ``flyer_always_http_200=1`` every error
answers HTTP 200 as the original framework did, the body still telling the error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from fastkit.httpx import status
from fastkit.logging import logger

__all__ = [
    "ErrorRenderer",
    "FlyerError",
    "error_body",
    "http_status_for",
    "validation_detail",
]


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
    """The envelope as JSON bytes; ``detail`` is left out when ``None``."""
    body: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        body["detail"] = detail
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def validation_detail(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Where each validation error is and what it says: no input echo, no repr, no URL."""
    out = []
    for error in errors:
        loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
        out.append({"loc": loc, "msg": str(error.get("msg", "")),
                    "type": str(error.get("type", ""))})
    return out


class ErrorRenderer:
    """Builds the envelope responses and holds the handlers the app installs."""

    def __init__(self, *, always_http_200: bool = False) -> None:
        self.always_http_200 = always_http_200

    def response(self, http_status: int, code: int, message: str, detail: Any = None,
                 headers: Mapping[str, str] | None = None) -> Response:
        shown = status.HTTP_200_OK if self.always_http_200 else http_status
        if not 200 <= shown < 600:  # 1xx or beyond: not a final status a client accepts
            shown = status.HTTP_500_INTERNAL_SERVER_ERROR
        return Response(error_body(code, message, detail), status_code=shown,
                        headers=dict(headers or {}), media_type="application/json")

    async def send(self, scope: Scope, receive: Receive, send: Send, http_status: int,
                   message: str | None = None) -> None:
        """Answer a raw ASGI request with an error envelope (for middleware)."""
        response = self.response(http_status, http_status, message or _phrase(http_status))
        await response(scope, receive, send)

    async def http_exception(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
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
        logger.opt(exception=exc).error(
            "unhandled {} in {} {}", type(exc).__name__, request.method, request.url.path)
        return self.response(status.HTTP_500_INTERNAL_SERVER_ERROR,
                             status.HTTP_500_INTERNAL_SERVER_ERROR, "Internal Server Error")
