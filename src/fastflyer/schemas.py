"""The response envelope: ``{"code", "message", "data"}``.

    from fastflyer.schemas import DataResponse

    @router.get("/demo", response_model=DataResponse)
    async def demo(id: int):
        return {"code": status.HTTP_200_OK, "data": {"itemId": id}}

``code`` is a value of :mod:`fastflyer.status` (the HTTP codes plus the 60x
third-party codes); ``message`` defaults to ``"success"``. ``detail`` says more about an
error and is left out of the body when it is ``None``. ``DataResponse[Item]`` types
``data`` for the OpenAPI schema; plain ``DataResponse`` takes anything.

The OpenAPI schema shows what is sent: success models leave ``detail`` out (a handler may
still set it; the body then carries it), :class:`ErrorResponse` documents it as optional
and never ``null``, and :class:`ValidationErrorResponse` is the real 422 body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

__all__ = [
    "BaseResponse",
    "DataResponse",
    "ErrorResponse",
    "PageDataResponse",
    "PageInfo",
    "ValidationErrorItem",
    "ValidationErrorResponse",
]

T = TypeVar("T")


def _is_none(value: Any) -> bool:
    return value is None


def _never_null(schema: dict[str, Any]) -> None:
    """``detail`` in an error's schema: optional, and when present never ``null``."""
    schema.pop("default", None)  # a null default would show as ``"detail": null`` in samples
    if "type" not in schema and "$ref" not in schema and "items" not in schema:
        schema["not"] = {"type": "null"}  # ``Any``: any JSON value but null


def _error_schema(example: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """Every error body has ``code`` and ``message`` (``detail`` only when known); the
    example is what documentation tools show instead of a sample built from defaults."""

    def extra(schema: dict[str, Any]) -> None:
        schema["required"] = ["code", "message"]
        schema["examples"] = [example]

    return extra


class BaseResponse(BaseModel):
    """``{"code": 200, "message": "success"}``, plus ``detail`` when there is one."""

    model_config = ConfigDict(populate_by_name=True)

    code: int = Field(default=200, description="Result code: an HTTP code, or 600-606 for a "
                      "third-party failure.")
    message: str = Field(default="success", description="What happened, for people.")
    # Not in the success models' schema: a success body carries it only when a handler sets
    # it, and documenting it would show ``"detail": null`` in ReDoc's sample.
    detail: SkipJsonSchema[Any] = Field(default=None, description="More about an error.",
                                        exclude_if=_is_none)


class DataResponse(BaseResponse, Generic[T]):
    """The envelope with a ``data`` payload."""

    data: T | None = Field(default=None, description="The payload.")


class PageInfo(BaseModel):
    """Where a page sits in the whole result."""

    total: int = Field(default=0, ge=0, description="Number of items in the whole result.")
    offset: int = Field(default=0, ge=0, description="Index of this page's first item.")
    size: int = Field(default=0, ge=0, description="Number of items asked for per page.")


class PageDataResponse(DataResponse[T], Generic[T]):
    """The envelope for one page of a list: ``data`` plus ``pageInfo``."""

    pageInfo: PageInfo = Field(default_factory=lambda: PageInfo(total=0, offset=0, size=0))


class ErrorResponse(BaseResponse):
    """What every error answers: ``code`` and ``message``, ``detail`` when known.

    The HTTP status tells the same error as ``code`` (60x answer 502, or 504 for 604).
    """

    model_config = ConfigDict(json_schema_extra=_error_schema({"code": 404,
                                                               "message": "Not Found"}))

    code: int = Field(default=500, description="The error's code.")
    message: str = Field(default="Internal Server Error", description="What went wrong.")
    detail: Any = Field(default=None, description="More about the error (any JSON value); "
                        "left out when there is nothing more.", exclude_if=_is_none,
                        json_schema_extra=_never_null)


class ValidationErrorItem(BaseModel):
    """One reason a request was refused: where, and what is wrong (never the input)."""

    loc: list[str | int] = Field(description="Where: the request part (path, query, header, "
                                 "cookie, body), then field names and list indexes.")
    msg: str = Field(description="What is wrong, for people.")
    type: str = Field(description="The error's type, for programs (e.g. missing, int_parsing).")


class ValidationErrorResponse(ErrorResponse):
    """The 422 answer to a request whose parameters or body do not validate."""

    model_config = ConfigDict(json_schema_extra=_error_schema({
        "code": 422, "message": "Request validation failed",
        "detail": [{"loc": ["query", "id"], "msg": "Field required", "type": "missing"}]}))

    code: int = Field(default=422, description="The error's code: 422.")
    message: str = Field(default="Request validation failed", description="What went wrong.")
    detail: list[ValidationErrorItem] | SkipJsonSchema[None] = Field(
        default=None, description="Each reason the request was refused.", exclude_if=_is_none,
        json_schema_extra=_never_null)
