"""``FlyerAPI`` takes FastAPI's own arguments; where the framework sets one too, the
caller's value wins (``version``, ``middleware``, the docs pages' paths)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.middleware import Middleware
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastflyer import FlyerAPI
from fastflyer.settings import load_settings


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
