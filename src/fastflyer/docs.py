"""Swagger UI and ReDoc served from files shipped with the package: no CDN, no internet.

The assets (Swagger UI's bundle and CSS, ReDoc's standalone bundle, a favicon) come
from the ``fastapi-offline`` package, served under ``{base_url}/static/``. Pages:
``{base_url}/docs``, ``{base_url}/redoc``, schema at ``{base_url}/openapi.json``.
ReDoc's Google fonts and Swagger UI's online validator are turned off, and the pages'
Content-Security-Policy keeps images and fonts on this origin (ReDoc's bundle links a
logo on its CDN), so nothing leaves the machine.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.staticfiles import StaticFiles

__all__ = ["assets_directory", "install_docs", "with_root_server"]


def assets_directory() -> Path:
    """The directory of the shipped Swagger UI and ReDoc files."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the docs assets are missing: install fastflyer[web] "
                           "(it brings fastapi-offline)")
    directory = Path(next(iter(spec.submodule_search_locations))) / "static"
    if not (directory / "swagger-ui-bundle.js").is_file():
        raise RuntimeError(f"the docs assets are missing from {directory}")
    return directory


_DEFAULT: Any = object()  # a page left at its default path (None: no page)


def install_docs(app: FastAPI, base_url: str, *, openapi_url: str | None = _DEFAULT,
                 docs_url: str | None = _DEFAULT, redoc_url: str | None = _DEFAULT,
                 oauth2_redirect_url: str | None = _DEFAULT) -> None:
    """Add the schema, Swagger UI, ReDoc and their assets under ``base_url``.

    Each page's path defaults to ``{base_url}/openapi.json``, ``{base_url}/docs``,
    ``{base_url}/redoc`` and ``{docs_url}/oauth2-redirect``; ``None`` leaves that page out,
    and no ``openapi_url`` leaves out the two pages that read it, as in FastAPI."""
    static = f"{base_url}/static"
    if openapi_url is _DEFAULT:
        openapi_url = f"{base_url}/openapi.json"
    if docs_url is _DEFAULT:
        docs_url = f"{base_url}/docs"
    if redoc_url is _DEFAULT:
        redoc_url = f"{base_url}/redoc"
    if oauth2_redirect_url is _DEFAULT:
        oauth2_redirect_url = f"{docs_url.rstrip('/')}/oauth2-redirect" if docs_url else None
    if openapi_url is None:
        return
    app.mount(static, StaticFiles(directory=assets_directory()), name="fastflyer-docs-assets")

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(with_root_server(app.openapi(), request.scope.get("root_path", ""),
                                             app.root_path_in_servers))

    async def swagger(request: Request) -> HTMLResponse:
        return _local_only(get_swagger_ui_html(
            openapi_url=_rooted(request, openapi_url),
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=(_rooted(request, oauth2_redirect_url)
                                 if oauth2_redirect_url else None),
            swagger_js_url=_rooted(request, f"{static}/swagger-ui-bundle.js"),
            swagger_css_url=_rooted(request, f"{static}/swagger-ui.css"),
            swagger_favicon_url=_rooted(request, f"{static}/favicon.png"),
            swagger_ui_parameters=_swagger_parameters(app),
        ))

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        return _local_only(get_redoc_html(
            openapi_url=_rooted(request, openapi_url),
            title=f"{app.title} - ReDoc",
            redoc_js_url=_rooted(request, f"{static}/redoc.standalone.js"),
            redoc_favicon_url=_rooted(request, f"{static}/favicon.png"),
            with_google_fonts=False,
        ))

    app.add_api_route(openapi_url, openapi, include_in_schema=False)
    if docs_url:
        app.add_api_route(docs_url, swagger, include_in_schema=False)
        if oauth2_redirect_url:
            app.add_api_route(oauth2_redirect_url, oauth2_redirect, include_in_schema=False)
    if redoc_url:
        app.add_api_route(redoc_url, redoc, include_in_schema=False)


# ReDoc's bundle draws a "by Redocly" logo from cdn.redoc.ly that no option removes: the
# page's policy keeps images and fonts on this origin, so the browser never asks.
_LOCAL_ONLY = "img-src 'self' data: blob:; font-src 'self' data:"


def _local_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = _LOCAL_ONLY
    return page


def with_root_server(schema: dict[str, Any], root_path: str,
                     root_path_in_servers: bool = True) -> dict[str, Any]:
    """``schema`` as served at ``root_path`` (the ASGI scope's, e.g. ``/api`` under
    ``uvicorn --root-path /api``): as FastAPI's own ``openapi.json`` route does, a
    ``{"url": root_path}`` server comes first in ``servers`` unless it is there already or
    ``root_path_in_servers`` is off, so that "Try it out" calls the API where it is.
    The cached ``schema`` is not changed (one app may be reached under several paths)."""
    root = root_path.rstrip("/")
    servers = schema.get("servers") or []
    if not root or not root_path_in_servers or any(s.get("url") == root for s in servers):
        return schema
    return {**schema, "servers": [{"url": root}, *servers]}


def _rooted(request: Request, path: str) -> str:
    return f"{request.scope.get('root_path', '').rstrip('/')}{path}"


def _swagger_parameters(app: FastAPI) -> dict[str, Any]:
    # validatorUrl None: no badge fetched from validator.swagger.io.
    return {"validatorUrl": None, **(app.swagger_ui_parameters or {})}
