"""``FlyerAPI`` takes FastAPI's own arguments; where the framework sets one too, the
caller's value wins (``version``, ``middleware``, the docs pages' paths)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.middleware import Middleware
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastflyer import FlyerAPI
from fastflyer.settings import SettingsError, load_settings


class Tag:
    """Appends its name to ``X-Layers`` on every answer: the order shows the nesting."""

    def __init__(self, app: ASGIApp, name: str) -> None:
        self.app = app
        self.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-layers", self.name.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, tagged)


def app_with(**kwargs: Any) -> FlyerAPI:
    settings = kwargs.pop("settings", None) or load_settings()
    app = FlyerAPI(settings=settings, **kwargs)

    @app.get("/flyer/ping")
    async def ping() -> dict[str, str]:
        return {"ping": "pong"}

    return app


def test_version_title_and_description_are_the_callers() -> None:
    app = app_with(version="9.9.9", title="Orders", description="The order service")
    with TestClient(app) as client:
        info = client.get("/flyer/openapi.json").json()["info"]
    assert info == {"title": "Orders", "description": "The order service", "version": "9.9.9"}


def test_version_wins_over_the_setting() -> None:
    app = app_with(settings=load_settings(version="1.0.0"), version="2.0.0")
    assert app.version == "2.0.0"


def test_middleware_and_middlewares_both_run_middleware_first() -> None:
    app = FlyerAPI(None, [Middleware(Tag, name="middlewares")],
                   middleware=[Middleware(Tag, name="middleware")], settings=load_settings())

    @app.get("/flyer/ping")
    async def ping() -> dict[str, str]:
        return {"ping": "pong"}

    with TestClient(app) as client:
        response = client.get("/flyer/ping")
    assert response.json() == {"ping": "pong"}
    # The inner layer tags first: `middleware` is outside `middlewares`.
    assert response.headers.get_list("x-layers") == ["middlewares", "middleware"]
    assert "x-request-id" in response.headers  # the framework's layers are still outside


def test_docs_paths_are_the_callers() -> None:
    app = app_with(openapi_url="/schema.json", docs_url="/api-docs", redoc_url=None)
    with TestClient(app) as client:
        page = client.get("/api-docs")
        assert page.status_code == 200 and "/schema.json" in page.text
        assert "cdn" not in page.text.lower()  # still the offline page
        assert client.get("/schema.json").json()["paths"]["/flyer/ping"]
        assert client.get("/api-docs/oauth2-redirect").status_code == 200
        for gone in ("/flyer/docs", "/flyer/redoc", "/flyer/openapi.json"):
            assert client.get(gone).status_code == 404, gone
        assert client.get("/", follow_redirects=False).headers["location"] == "/api-docs"
    assert (app.openapi_url, app.docs_url, app.redoc_url) == ("/schema.json", "/api-docs",
                                                              None)


def test_no_docs_page_redirects_the_root_to_redoc() -> None:
    with TestClient(app_with(docs_url=None)) as client:
        assert client.get("/flyer/docs").status_code == 404
        assert client.get("/flyer/redoc").status_code == 200
        assert client.get("/", follow_redirects=False).headers["location"] == "/flyer/redoc"


def test_no_schema_leaves_out_every_docs_page() -> None:
    app = app_with(openapi_url=None)
    with TestClient(app) as client:
        for gone in ("/flyer/docs", "/flyer/redoc", "/flyer/openapi.json", "/"):
            assert client.get(gone, follow_redirects=False).status_code == 404, gone
        assert client.get("/flyer/ping").json() == {"ping": "pong"}
    assert (app.openapi_url, app.docs_url, app.redoc_url) == (None, None, None)


def test_the_setting_still_turns_the_docs_off() -> None:
    app = app_with(settings=load_settings(docs_enabled=False), docs_url="/api-docs")
    with TestClient(app) as client:
        assert client.get("/api-docs").status_code == 404


@pytest.mark.parametrize("path", ["/api-docs", "/schema.json"])
def test_moved_docs_stay_behind_auth(path: str) -> None:
    app = app_with(settings=load_settings(auth_enable=True, auth_user="u", auth_pass="p"),
                   openapi_url="/schema.json", docs_url="/api-docs")
    with TestClient(app) as client:
        assert client.get(path).status_code == 401
        assert client.get(path, auth=("u", "p")).status_code == 200


@pytest.mark.parametrize(("argument", "path", "why"), [
    ("docs_url", "/health_check/docs", "outside the health checks"),
    ("openapi_url", "/flyer/health_check/openapi.json", "outside the health checks"),
    ("redoc_url", "/health_check", "outside the health checks"),
    ("docs_url", "docs", "starting with '/'"),
    ("openapi_url", "openapi.json", "starting with '/'"),
    ("docs_url", "/flyer/static/docs", "outside /flyer/static"),
])
def test_a_docs_path_it_could_not_serve_as_asked_is_refused(argument: str, path: str,
                                                             why: str) -> None:
    # Under a health prefix, a page would be open with auth on: the health checks are.
    with pytest.raises(SettingsError) as caught:
        FlyerAPI(settings=load_settings(auth_enable=True, auth_user="u", auth_pass="p"),
                 **{argument: path})
    assert len(caught.value.lines) == 1
    assert caught.value.lines[0].startswith(f"{argument}={path!r} is not allowed: a path {why}")


@pytest.mark.parametrize(("argument", "value"), [("title", None), ("title", ""),
                                                 ("version", None), ("version", "")])
def test_the_schema_needs_a_title_and_a_version(argument: str, value: Any) -> None:
    with pytest.raises(SettingsError, match=f"{argument}={value!r} is not allowed: text"):
        FlyerAPI(settings=load_settings(), **{argument: value})
    FlyerAPI(settings=load_settings(), openapi_url=None, **{argument: value})  # no schema


def test_the_oauth2_redirect_follows_a_docs_path_with_a_trailing_slash() -> None:
    with TestClient(app_with(docs_url="/api-docs/")) as client:
        assert client.get("/api-docs/oauth2-redirect").status_code == 200


def test_app_dependencies_guard_the_apps_routes_not_the_probes_or_the_docs() -> None:
    from fastapi import Depends, Header, HTTPException

    def api_key(x_key: str | None = Header(default=None)) -> None:
        if x_key != "k":
            raise HTTPException(status_code=403, detail="no key")

    app = app_with(dependencies=[Depends(api_key)])
    with TestClient(app) as client:
        assert client.get("/flyer/ping").status_code == 403
        assert client.get("/flyer/ping", headers={"x-key": "k"}).status_code == 200
        for open_path in ("/health_check", "/flyer/health_check", "/health_check/ready",
                          "/flyer/health_check/ready", "/flyer/docs", "/flyer/redoc",
                          "/flyer/openapi.json"):
            assert client.get(open_path).status_code == 200, open_path
