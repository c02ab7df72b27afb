"""The response envelope: ``{"code", "message", "data"}``.

    from fastflyer.schemas import DataResponse

    @router.get("/demo", response_model=DataResponse)
    async def demo(id: int):
        return {"code": status.HTTP_200_OK, "data": {"itemId": id}}

``code`` is a value of :mod:`fastflyer.status` (the HTTP codes plus the 60x
third-party codes); ``message`` defaults to ``"success"``. ``detail`` says more about an
error and is left out of the body when it is ``None``. ``DataResponse[Item]`` types
``data`` for the OpenAPI schema; plain ``DataResponse`` takes anything.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BaseResponse", "DataResponse", "ErrorResponse", "PageDataResponse", "PageInfo"]

T = TypeVar("T")


def _is_none(value: Any) -> bool:
    return value is None


class BaseResponse(BaseModel):
    """``{"code": 200, "message": "success"}``, plus ``detail`` when there is one."""

    model_config = ConfigDict(populate_by_name=True)

    code: int = Field(default=200, description="Result code: an HTTP code, or 600-606 for a "
                      "third-party failure.")
    message: str = Field(default="success", description="What happened, for people.")
    detail: Any = Field(default=None, description="More about an error.", exclude_if=_is_none)


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

    code: int = Field(default=500, description="The error's code.")
    message: str = Field(default="Internal Server Error", description="What went wrong.")
