"""HTTP Basic authentication for the apps and the docs (``flyer_auth_enable=1``).

Credentials come from ``flyer_auth_user`` and ``flyer_auth_pass``; enabling auth
without both stops start-up. Health checks are never behind it. A request without
valid credentials gets 401 in the envelope with ``WWW-Authenticate: Basic``.

``authorize`` is also a dependency for routes of your own::

    @router.get("/admin", dependencies=[Depends(authorize)])
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from starlette.exceptions import HTTPException
from starlette.requests import Request

from fastflyer.settings import FlyerSettings

__all__ = ["authorize"]

_basic = HTTPBasic(auto_error=False, realm="fastflyer",
                   description="flyer_auth_user / flyer_auth_pass")
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="fastflyer"'}


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode(), expected.encode())


async def authorize(
    request: Request, credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> None:
    """Let the request through when auth is off or its Basic credentials match."""
    settings: FlyerSettings | None = getattr(request.app.state, "settings", None)
    if settings is None or not settings.auth_enable:
        return
    if credentials is not None:
        user_ok = _same(credentials.username, settings.auth_user)
        pass_ok = _same(credentials.password, settings.auth_pass.get_secret_value())
        if user_ok and pass_ok:
            return
    raise HTTPException(401, "Authentication required", headers=_CHALLENGE)
