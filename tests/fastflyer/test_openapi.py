"""fastflyer.openapi: answers documented as they are sent, and what an app declares kept.

The served projects are checked end to end in test_schemathesis.py; these build small apps
in-process for the cases the projects do not have.
"""

from __future__ import annotations

import datetime
from typing import Any

import httpx
import schemathesis
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.testclient import TestClient

from fastflyer import APIRouter, FlyerAPI
from fastflyer.openapi import REF_PREFIX, document_answers
from fastflyer.schemas import (
    DataResponse,
    ErrorResponse,
    PageDataResponse,
    ValidationErrorResponse,
)


def answers(schema: dict[str, Any], path: str, method: str = "get") -> Any:
    return {status: (answer.get("content", {}).get("application/json", {}).get("schema"))
            for status, answer in schema["paths"][path][method]["responses"].items()}


def errors(schema: dict[str, Any], path: str, method: str = "get") -> dict[str, Any]:
    return {status: answer for status, answer in answers(schema, path, method).items()
            if not status.startswith("2")}


def conforms(schema: dict[str, Any], path: str, method: str, response: httpx.Response) -> None:
    if not hasattr(response, "_elapsed"):
        response.elapsed = datetime.timedelta(0)
    schemathesis.openapi.from_dict(schema)[path][method].validate_response(response)


class Problem(BaseModel):
    reason: str


def _model_of_the_app() -> type[BaseModel]:
    class ErrorResponse(BaseModel):  # an app's own model, with the envelope's name
        error: str

    return ErrorResponse


ErrorResponseOfTheApp = _model_of_the_app()


def test_what_an_app_declares_itself_is_kept():
    app = FlyerAPI()
    router = APIRouter()

    @router.get("/own-422", responses={422: {"model": Problem}})
    async def own_422(q: int) -> Any:
        return {}

    @router.get("/own-default", responses={"default": {"model": Problem}})
    async def own_default() -> Any:
        return {}

    @router.get("/clash", responses={409: {"model": ErrorResponseOfTheApp}})
    async def clash(q: int) -> Any:
        return {}

    app.include_router(router)
    schema = app.openapi()
    components = schema["components"]["schemas"]
    assert answers(schema, "/own-422")["422"] == {"$ref": f"{REF_PREFIX}Problem"}
    assert errors(schema, "/own-default") == {"default": {"$ref": f"{REF_PREFIX}Problem"}}
    # FastAPI names the two "ErrorResponse" models apart (the task API documents the
    # envelope); the envelope's default answer refers to FastAPI's copy, not a second one.
    clash_answers = answers(schema, "/clash")
    theirs = components[clash_answers["409"]["$ref"][len(REF_PREFIX):]]
    ours = components[clash_answers["default"]["$ref"][len(REF_PREFIX):]]
    assert set(theirs["properties"]) == {"error"}
    assert set(ours["properties"]) == {"code", "message", "detail"}
    assert [schema for schema in components.values() if schema == ours] == [ours]
    assert clash_answers["422"] == {"$ref": f"{REF_PREFIX}ValidationErrorResponse"}
    assert "HTTPValidationError" not in components and "ValidationError" not in components


def test_a_plain_fastapi_schema_is_corrected_too():
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> Any:
        return {}

    @app.get("/ping")
    async def ping() -> Any:
        return {}

    schema = document_answers(app.openapi())
    assert errors(schema, "/items/{item_id}") == {
        "422": {"$ref": f"{REF_PREFIX}ValidationErrorResponse"},
        "default": {"$ref": f"{REF_PREFIX}ErrorResponse"}}
    assert errors(schema, "/ping") == {"default": {"$ref": f"{REF_PREFIX}ErrorResponse"}}
    item_schema = schema["components"]["schemas"]["ValidationErrorItem"]
    assert set(item_schema["properties"]) == {"loc", "msg", "type"}


def test_a_name_the_app_took_leaves_the_envelope_the_long_form():
    app = FastAPI()

    @app.get("/clash", responses={409: {"model": ErrorResponseOfTheApp}})
    async def clash() -> Any:
        return {}

    schema = document_answers(app.openapi())
    components = schema["components"]["schemas"]
    assert errors(schema, "/clash") == {
        "409": {"$ref": f"{REF_PREFIX}ErrorResponse"},
        "default": {"$ref": f"{REF_PREFIX}fastflyer__schemas__ErrorResponse"}}
    assert set(components["ErrorResponse"]["properties"]) == {"error"}
    assert components["fastflyer__schemas__ErrorResponse"]["required"] == ["code", "message"]


def test_always_http_200_puts_the_errors_in_the_200_answer():
    app = FastAPI()

    @app.get("/ok")
    async def ok(q: int) -> DataResponse[int]:
        return DataResponse(data=q)

    @app.post("/made", status_code=201)
    async def made() -> DataResponse[int]:
        return DataResponse(data=1)

    schema = document_answers(app.openapi(), always_http_200=True)
    error = {"$ref": f"{REF_PREFIX}ErrorResponse"}
    assert answers(schema, "/ok") == {"200": {"anyOf": [
        {"$ref": f"{REF_PREFIX}DataResponse_int_"}, error]}}
    assert answers(schema, "/made", "post") == {
        "201": {"$ref": f"{REF_PREFIX}DataResponse_int_"}, "200": error}


def test_a_success_may_still_carry_detail():
    # Success models leave ``detail`` out of their schema, not out of the body: a handler
    # that sets it sends it, and the schema (open to extra keys) takes the answer.
    app = FlyerAPI()
    router = APIRouter()

    @router.get("/noted", response_model=DataResponse[int])
    async def noted() -> Any:
        return {"data": 1, "detail": "cached"}

    @router.get("/plain", response_model=DataResponse[int])
    async def plain() -> Any:
        return {"data": 1}

    app.include_router(router)
    schema = app.openapi()
    assert "detail" not in schema["components"]["schemas"]["DataResponse_int_"]["properties"]
    with TestClient(app) as client:
        noted_answer, plain_answer = client.get("/noted"), client.get("/plain")
    assert noted_answer.json() == {"code": 200, "message": "success", "data": 1,
                                   "detail": "cached"}
    assert plain_answer.json() == {"code": 200, "message": "success", "data": 1}
    conforms(schema, "/noted", "GET", noted_answer)
    conforms(schema, "/plain", "GET", plain_answer)


def test_the_envelopes_serialise_as_before():
    assert DataResponse[int](data=1).model_dump_json() == \
        '{"code":200,"message":"success","data":1}'
    assert PageDataResponse[list[int]](data=[1]).model_dump() == {
        "code": 200, "message": "success", "data": [1],
        "pageInfo": {"total": 0, "offset": 0, "size": 0}}
    assert ErrorResponse().model_dump() == {"code": 500, "message": "Internal Server Error"}
    assert ErrorResponse(code=404, message="gone", detail={"id": 1}).model_dump() == {
        "code": 404, "message": "gone", "detail": {"id": 1}}
    assert ValidationErrorResponse(
        detail=[{"loc": ["query", "id"], "msg": "Field required", "type": "missing"}],
    ).model_dump() == {"code": 422, "message": "Request validation failed", "detail": [
        {"loc": ["query", "id"], "msg": "Field required", "type": "missing"}]}


def test_the_error_schemas_say_detail_is_never_null():
    error = ErrorResponse.model_json_schema(mode="serialization")
    assert error["required"] == ["code", "message"]
    assert "default" not in error["properties"]["detail"]
    assert error["properties"]["detail"]["not"] == {"type": "null"}
    validation = ValidationErrorResponse.model_json_schema(mode="serialization")
    assert validation["properties"]["detail"]["type"] == "array"
    assert "default" not in validation["properties"]["detail"]
    assert validation["examples"][0]["code"] == 422
