"""Health fast path, readiness, offline docs, docs switch, HTTP Basic auth."""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path

import httpx
import pytest
from starlette.middleware import Middleware
from starlette.testclient import TestClient

from fastflyer import FlyerAPI
from fastflyer.docs import assets_directory

DEMO = Path(__file__).parent / "demo_project"

HEALTH = ["/health_check", "/health_check/async", "/flyer/health_check"]


@pytest.mark.parametrize("path", HEALTH)
def test_health_checks_answer_get_and_head(http, path):
    response = http.get(path)
    assert response.status_code == 200
    assert response.json() == {"code": 200, "message": "success"}
    assert response.headers["x-request-id"]
    head = http.head(path)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(response.content))


def recorder(seen: list[str]) -> Middleware:
    """A user middleware (inside the app, before routing) appending "METHOD path" of each
    HTTP request it sees to ``seen``."""

    class Recorder:
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] == "http":
                seen.append(f"{scope['method']} {scope['path']}")
            await self.app(scope, receive, send)

    return Middleware(Recorder)


def test_health_checks_skip_routing_and_auth(build, monkeypatch):
    seen: list[str] = []
    for name, value in {"auth_enable": "1", "auth_user": "admin", "auth_pass": "pw"}.items():
        monkeypatch.setenv(f"flyer_{name}", value)
    app = FlyerAPI(app_path=DEMO, middlewares=[recorder(seen)])
    with TestClient(app) as client:
        for path in HEALTH:
            assert client.get(path).status_code == 200  # no credentials needed
            assert client.head(path).status_code == 200
        assert client.get("/flyer/demo?id=1").status_code == 401  # refused before it
        assert client.get("/flyer/demo?id=1", auth=("admin", "pw")).status_code == 200
    assert seen == ["GET /flyer/demo"]  # the one let through


def test_health_checks_use_the_base_url(build):
    with TestClient(build(base_url="/svc")) as client:
        assert client.get("/svc/health_check").status_code == 200
        assert client.get("/flyer/health_check").status_code == 404


def test_other_methods_on_a_health_path_are_405(http):
    response = http.post("/health_check")
    assert response.status_code == 405
    assert response.json()["code"] == 405


def test_readiness_with_nothing_registered_is_ready(http):
    response = http.get("/flyer/health_check/ready")
    assert response.status_code == 200
    assert response.json()["data"] == {"ready": True, "components": {}}


def test_readiness_reports_each_component(build):
    app = build()

    async def fast_async():
        await asyncio.sleep(0)

    def down():
        raise ConnectionRefusedError("connect to 127.0.0.1:6390 refused")

    async def hangs():
        await asyncio.sleep(30)

    app.readiness.register("cache", fast_async)
    app.readiness.register("db", lambda: None)
    app.readiness.register("broker", down)
    app.readiness.register("slow", hangs, timeout=0.2)
    with TestClient(app) as client:
        response = client.get("/health_check/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == 503
    components = body["data"]["components"]
    assert body["data"]["ready"] is False
    assert components["cache"]["status"] == components["db"]["status"] == "up"
    assert components["broker"] == {"status": "down", "latency_ms": components["broker"]
                                    ["latency_ms"], "error": "ConnectionRefusedError: "
                                    "connect to 127.0.0.1:6390 refused"}
    assert components["slow"]["error"] == "no answer within 0.2 s"
    assert all(c["latency_ms"] >= 0 for c in components.values())


def test_readiness_rejects_a_bad_timeout(build):
    with pytest.raises(ValueError, match="timeout of readiness check 'x' must be > 0"):
        build().readiness.register("x", lambda: None, timeout=0)


# --- docs -------------------------------------------------------------------------------

def test_root_redirects_to_the_docs(http):
    response = http.get("/", follow_redirects=False)
    assert response.status_code in (302, 307)
    assert response.headers["location"] == "/flyer/docs"


def test_docs_pages_use_only_local_assets(http):
    for page in ["/flyer/docs", "/flyer/redoc"]:
        html = http.get(page).text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", html)
        flat = [u for pair in urls for u in pair if u]
        assert flat, html
        for url in flat:
            assert url.startswith("/flyer/"), f"{page} loads {url}"
        assert "cdn" not in html.lower()
        assert "fonts.googleapis" not in html
    for asset in ["swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js",
                  "favicon.png"]:
        response = http.get(f"/flyer/static/{asset}")
        assert response.status_code == 200, asset
        assert len(response.content) == (assets_directory() / asset).stat().st_size


def test_openapi_lists_the_apps_and_not_the_framework_plumbing(http):
    schema = http.get("/flyer/openapi.json").json()
    assert schema["info"]["title"] == "Demo API"
    assert schema["paths"]["/flyer/demo"]["get"]["summary"] == "Demo接口"
    assert "/flyer/docs" not in schema["paths"]
    assert "/flyer/legacy" not in schema["paths"]


def test_docs_can_be_turned_off(build):
    with TestClient(build(docs_enabled=0)) as client:
        for path in ["/flyer/docs", "/flyer/redoc", "/flyer/openapi.json", "/"]:
            assert client.get(path, follow_redirects=False).status_code == 404, path
        assert client.get("/flyer/demo?id=1").status_code == 200


# --- auth -------------------------------------------------------------------------------

def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def secured(build):
    app = build(auth_enable=1, auth_user="admin", auth_pass="s3cret-pass")
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("path", ["/flyer/demo?id=1", "/flyer/docs", "/flyer/redoc",
                                  "/flyer/openapi.json", "/flyer/users"])
def test_auth_protects_apps_and_docs(secured, path):
    for headers in [{}, basic("admin", "wrong"), basic("other", "s3cret-pass"),
                    {"Authorization": "Basic !!notbase64"}, {"Authorization": "Bearer x"}]:
        response = secured.get(path, headers=headers)
        assert response.status_code == 401, (path, headers)
        assert response.headers["www-authenticate"].startswith("Basic")
        assert response.json()["code"] == 401
    assert secured.get(path, headers=basic("admin", "s3cret-pass")).status_code == 200


def test_auth_never_protects_health_checks(secured):
    for path in HEALTH:
        assert secured.get(path).status_code == 200


def test_auth_over_a_real_server_and_no_password_in_logs(launch):
    server = launch({"flyer_auth_enable": "1", "flyer_auth_user": "admin",
                     "flyer_auth_pass": "s3cret-pass"})
    assert httpx.get(f"{server.url}/flyer/demo?id=1").status_code == 401
    ok = httpx.get(f"{server.url}/flyer/demo?id=1", auth=("admin", "s3cret-pass"))
    assert ok.status_code == 200
    output = server.stop()
    logs = output + "".join(server.access_lines())
    assert "s3cret-pass" not in logs
    assert base64.b64encode(b"admin:s3cret-pass").decode() not in logs


def test_under_a_root_path_health_checks_are_still_answered_before_everything(
        monkeypatch, tmp_path):
    seen: list[str] = []
    for name, value in {"auth_enable": "1", "auth_user": "admin", "auth_pass": "pw",
                        "access_log": "1",
                        "access_logfile": str(tmp_path / "access.log")}.items():
        monkeypatch.setenv(f"flyer_{name}", value)
    app = FlyerAPI(app_path=DEMO, middlewares=[recorder(seen)])
    # The server's root path (uvicorn --root-path): the path the app gets starts with it.
    with TestClient(app, root_path="/api") as client:
        for path in ["/api/health_check", "/api/health_check/async", "/api/flyer/health_check"]:
            got = client.get(path, headers={"X-Request-ID": "probe-7"})  # no credentials
            assert (got.status_code, got.json()) == (200, {"code": 200, "message": "success"})
            assert got.headers["x-request-id"] == "probe-7"
            assert got.headers["x-content-type-options"] == "nosniff"
            head = client.head(path)
            assert (head.status_code, head.content) == (200, b"")
        refused = client.post("/api/health_check")  # routing answers other methods
        assert refused.status_code == 405
        assert refused.headers["allow"] == "GET, HEAD, OPTIONS"
    assert seen == ["POST /api/health_check"]
    logged = [line for line in (tmp_path / "access.log").read_text().splitlines()
              if "probe-7" in line]
    assert len(logged) == 3  # one line each, as for every request
