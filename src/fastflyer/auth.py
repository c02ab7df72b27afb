"""Authentication and exposure: what needs credentials, and what is closed by default.

HTTP Basic auth (``flyer_auth_enable=1``, with ``flyer_auth_user`` and
``flyer_auth_pass``; enabling it without both stops start-up) is enforced by
:class:`~fastflyer.middleware.auth.BasicAuthMiddleware` before routing: every route the
app serves, however it was added, except the health checks. This module holds what goes
with it:

- :func:`document_basic_auth`: the OpenAPI schema names the ``HTTPBasic`` security
  scheme on every protected operation (Swagger UI's "Authorize" button);
- :func:`task_api_closed`: the task API (``{base_url}/tasks``) answers 403 unless auth is
  on or ``flyer_task_api_open=1`` opens it without credentials; see
  :func:`task_api_is_open`;
- :func:`authorize`: the same check as a dependency, for a route of your own in an app
  that is not a ``FlyerAPI`` (inside one, the middleware has already checked)::

    @router.get("/admin", dependencies=[Depends(authorize)])
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import Depends
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from starlette.exceptions import HTTPException
from starlette.requests import Request

from fastflyer.middleware.auth import REALM, is_protected
from fastflyer.settings import FlyerSettings

__all__ = ["SECURITY_SCHEME", "authorize", "document_basic_auth", "task_api_closed",
           "task_api_is_open"]

SECURITY_SCHEME = "HTTPBasic"
_DESCRIPTION = "flyer_auth_user / flyer_auth_pass"
_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
_basic = HTTPBasic(auto_error=False, realm=REALM, description=_DESCRIPTION)
_CHALLENGE = {"WWW-Authenticate": f'Basic realm="{REALM}"'}
TASK_API_CLOSED = ("The task API is closed: set flyer_auth_enable=1 (with flyer_auth_user "
                   "and flyer_auth_pass) to open it behind credentials, or flyer_task_api_open=1 "
                   "to open it without")


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode(), expected.encode())


async def authorize(
    request: Request, credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> None:
    """Let the request through when auth is off or its Basic credentials match; raises
    ``HTTPException(401)`` with the Basic challenge otherwise."""
    settings: FlyerSettings | None = getattr(request.app.state, "settings", None)
    if settings is None or not settings.auth_enable:
        return
    if credentials is not None:
        user_ok = _same(credentials.username, settings.auth_user)
        pass_ok = _same(credentials.password, settings.auth_pass.get_secret_value())
        if user_ok and pass_ok:
            return
    raise HTTPException(401, "Authentication required", headers=_CHALLENGE)


def document_basic_auth(schema: dict[str, Any], base_url: str) -> dict[str, Any]:
    """Name the ``HTTPBasic`` scheme in ``schema`` (an OpenAPI dict, changed in place)
    and require it on every operation of a protected path (see
    :func:`~fastflyer.middleware.auth.is_protected`); returns ``schema``."""
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes.setdefault(SECURITY_SCHEME, {"type": "http", "scheme": "basic",
                                         "description": _DESCRIPTION})
    for path, item in schema.get("paths", {}).items():
        if not is_protected(path, base_url):
            continue
        for method, operation in item.items():
            if method not in _HTTP_METHODS:
                continue
            security = operation.setdefault("security", [])
            if {SECURITY_SCHEME: []} not in security:
                security.append({SECURITY_SCHEME: []})
    return schema


def task_api_is_open(settings: FlyerSettings) -> bool:
    """Whether the task API serves: behind auth, or opened by ``flyer_task_api_open=1``."""
    return settings.auth_enable or settings.task_api_open


async def task_api_closed() -> None:
    """A dependency of the task API's routes while it is closed: always raises
    ``HTTPException(403)``, naming the settings that open it."""
    raise HTTPException(403, TASK_API_CLOSED)
