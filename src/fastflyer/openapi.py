"""How a FastFlyer app documents its answers in its OpenAPI schema: as they are sent.

FastAPI documents each operation's success answer from its ``response_model``, and a 422
wherever a request can fail validation (an operation with parameters or a body) as its own
``HTTPValidationError``: a bare ``detail`` list whose items carry ``input`` and ``ctx``.
FastFlyer answers errors in the envelope instead, so :func:`document_answers` corrects the
schema FastAPI generated (``FlyerAPI.openapi()`` calls it):

=========================  ===================================================================
answer                     documented as
=========================  ===================================================================
422, where FastAPI puts    :class:`~fastflyer.schemas.ValidationErrorResponse`, the envelope
one                        with ``detail: [{loc, msg, type}]``; FastAPI's own 422 models go
``default``, every         :class:`~fastflyer.schemas.ErrorResponse`: any other error (401,
operation                  404, 405, 409, 413, 500, 502, 504...) in the envelope
success                    the route's ``response_model``, untouched (the envelope models
                           leave ``detail`` out of their schema)
=========================  ===================================================================

What a route declares itself (``responses={422: ...}``, its own ``default``) is kept. With
``flyer_always_http_200=1`` every error answers HTTP 200: the 200 answer is then documented
as the success model *or* the error envelope, and no 422 or ``default`` is added.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic.json_schema import models_json_schema

from fastflyer.schemas import ErrorResponse, ValidationErrorResponse

__all__ = ["REF_PREFIX", "document_answers"]

REF_PREFIX = "#/components/schemas/"
_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
# What FastAPI adds for the 422 it documents (fastapi.openapi.utils, since 0.100).
_FASTAPI_422 = {"$ref": f"{REF_PREFIX}HTTPValidationError"}
_FASTAPI_MODELS = ("HTTPValidationError", "ValidationError")
_CLASH_PREFIX = "fastflyer__schemas__"  # FastAPI's long-name form, for a name already taken


def document_answers(schema: dict[str, Any], *, always_http_200: bool = False) -> dict[str, Any]:
    """Correct ``schema`` (FastAPI's, changed in place) to what the app answers; returns it."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    names = _add_components(components, _envelope_definitions())
    error = {"$ref": REF_PREFIX + names["ErrorResponse"]}
    validation = {"$ref": REF_PREFIX + names["ValidationErrorResponse"]}
    for operation in _operations(schema):
        responses = operation.setdefault("responses", {})
        if _documents_fastapi_422(responses.get("422")):
            if always_http_200:
                del responses["422"]
            else:
                responses["422"] = {
                    "description": "Validation Error: the parameters or the body are invalid",
                    "content": {"application/json": {"schema": dict(validation)}}}
        if always_http_200:
            _errors_at_200(responses, error)
        elif "default" not in responses:
            responses["default"] = {
                "description": "Error, in the envelope (401, 404, 405, 413, 500, 502, 504...)",
                "content": {"application/json": {"schema": dict(error)}}}
    for name in _FASTAPI_MODELS:
        if name in components and not _referenced(schema, REF_PREFIX + name):
            del components[name]
    return schema


def _envelope_definitions() -> dict[str, Any]:
    """The error envelopes' JSON schemas (and what they refer to), as answers are sent."""
    _, top = models_json_schema(
        [(ErrorResponse, "serialization"), (ValidationErrorResponse, "serialization")],
        ref_template=REF_PREFIX + "{model}")
    definitions: dict[str, Any] = top["$defs"]
    return definitions


def _add_components(components: dict[str, Any], definitions: Mapping[str, Any]) -> dict[str, str]:
    """Add ``definitions`` to ``components``; the name each has there.

    A schema already there (an app may document ``ErrorResponse`` itself, and FastAPI may
    have named it in its long form) is shared; a name taken by another model makes ours
    take FastAPI's long form.
    """
    names: dict[str, str] = {}
    pending = dict(definitions)
    while pending:
        ready = [name for name, schema in pending.items() if _refs(schema) <= names.keys()]
        if not ready:
            raise ValueError(f"definitions refer to each other in a loop: {sorted(pending)}")
        for name in ready:
            schema = _rename_refs(pending.pop(name), {REF_PREFIX + old: REF_PREFIX + new
                                                      for old, new in names.items()})
            same = [key for key, value in components.items() if value == schema]
            if name in same or (not same and name not in components):
                final = name
            elif same:
                final = same[0]
            else:
                final = _CLASH_PREFIX + name
            components.setdefault(final, schema)
            names[name] = final
    return names


def _refs(value: Any) -> set[str]:
    """The component names ``value`` refers to."""
    if isinstance(value, dict):
        found = {item[len(REF_PREFIX):] for key, item in value.items()
                 if key == "$ref" and isinstance(item, str) and item.startswith(REF_PREFIX)}
        return found.union(*(_refs(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(_refs(item) for item in value))
    return set()


def _rename_refs(value: Any, renamed: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: (renamed.get(item, item) if key == "$ref" and isinstance(item, str)
                      else _rename_refs(item, renamed)) for key, item in value.items()}
    if isinstance(value, list):
        return [_rename_refs(item, renamed) for item in value]
    return copy.copy(value)


def _operations(schema: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for path_item in (schema.get("paths") or {}).values():
        for method, operation in path_item.items():
            if method in _HTTP_METHODS and isinstance(operation, dict):
                yield operation


def _documents_fastapi_422(response: Any) -> bool:
    if not isinstance(response, dict):
        return False
    media = (response.get("content") or {}).get("application/json") or {}
    return media.get("schema") == _FASTAPI_422


def _errors_at_200(responses: dict[str, Any], error: dict[str, Any]) -> None:
    """``flyer_always_http_200``: an error answers 200 with the envelope."""
    ok = responses.get("200")
    if ok is None:
        responses["200"] = {"description": "Error, in the envelope (flyer_always_http_200=1)",
                            "content": {"application/json": {"schema": dict(error)}}}
        return
    media = ok.setdefault("content", {}).setdefault("application/json", {})
    success = media.get("schema")
    if success:  # an empty schema already takes anything
        media["schema"] = {"anyOf": [success, dict(error)]}
    elif success is None:
        media["schema"] = dict(error)
    ok["description"] = f"{ok.get('description') or 'Success'}, or an error in the envelope"


def _referenced(value: Any, ref: str) -> bool:
    if isinstance(value, dict):
        return value.get("$ref") == ref or any(_referenced(item, ref) for item in value.values())
    if isinstance(value, list):
        return any(_referenced(item, ref) for item in value)
    return False
