"""The auth guard (``fastflyer.middleware.auth``) and what is closed by default, through
real ``fastflyer run --port 0`` servers of a project written in ``tmp_path``.

With ``flyer_auth_enable=1`` every route the app serves needs the credentials, however it
was added (a discovered app, ``include_app``, ``include_router`` with and without a
prefix, ``app.get`` and ``add_api_route`` at the root, the task API, the docs, the schema,
their assets), and the answer is 401 before routing or any body is read. The health checks
stay open. The task API is closed (403) unless auth is on or ``flyer_task_api_open=1``.
"""

from __future__ import annotations

import base64
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocket
from test_launch import FASTFLYER, env_for, healthy_address, started

from fastflyer import FlyerAPI
from fastflyer.settings import load_settings

USER, PASSWORD = "ops", "s3cret-pass"
CHALLENGE = 'Basic realm="fastflyer"'
TIMEOUT = 10  # seconds per request

MAIN = '''
from fastapi import APIRouter
from pydantic import BaseModel
from fastflyer import FlyerAPI, background_scheduler

app = FlyerAPI(app_path=__file__)


class Item(BaseModel):
    name: str


orders = APIRouter()


@orders.get("/orders")
def list_orders():
    return {"orders": []}


app.include_app("orders", orders)          # the README's one-file form

plain = APIRouter()


@plain.get("/plain")
def plain_route():
    return {"plain": True}


@plain.post("/plain-items")
def plain_items(item: Item):
    return {"name": item.name}


app.include_router(plain)                  # at the root, no prefix

stock = APIRouter()


@stock.get("/stock")
def stock_route():
    return {"stock": 1}


app.include_router(stock, prefix="/inventory")


@app.get("/root-status")
def root_status():
    return {"status": "ok"}


def added():
    return {"added": True}


app.add_api_route("/added", added, methods=["GET"])
background_scheduler.add_job(print, "interval", seconds=3600, id="nightly")
'''

SHOP = '''
from fastapi import APIRouter
from pydantic import BaseModel

router = APIRouter()


class Item(BaseModel):
    name: str


@router.get("/shop")
def shop():
    return {"shop": True}


@router.post("/items")
def create_item(item: Item):
    return {"name": item.name}
'''

# How each route was added -> (method, path, status with the right credentials).
ROUTES: dict[str, tuple[str, str, int]] = {
    "discovered-app": ("GET", "/flyer/shop", 200),
    "include_app": ("GET", "/flyer/orders", 200),
    "include_router-no-prefix": ("GET", "/plain", 200),
    "include_router-prefix": ("GET", "/inventory/stock", 200),
    "app.get-at-root": ("GET", "/root-status", 200),
    "add_api_route-at-root": ("GET", "/added", 200),
    "task-api-list": ("GET", "/flyer/tasks", 200),
    "task-api-job": ("GET", "/flyer/tasks/background/nightly", 200),
    "docs": ("GET", "/flyer/docs", 200),
    "openapi.json": ("GET", "/flyer/openapi.json", 200),
    "redoc": ("GET", "/flyer/redoc", 200),
    "docs-asset": ("GET", "/flyer/static/swagger-ui.css", 200),
    "root-redirect": ("GET", "/", 307),
    "unknown-path": ("GET", "/flyer/nothing-here", 404),
}
CREDENTIALS: dict[str, tuple[str, str] | None] = {
    "none": None, "wrong-user": ("other", PASSWORD), "wrong-password": (USER, "wrong"),
    "empty": ("", ""), "right": (USER, PASSWORD)}
HEALTH = ["/health_check", "/health_check/async", "/health_check/ready",
          "/flyer/health_check", "/flyer/health_check/ready"]
HUGE = 20 * 1024 * 1024  # bytes: over flyer_max_body_size (10 MiB), which would be a 413
BODIES: dict[str, tuple[bytes, str]] = {
    "malformed-json": (b'{"name": ', "application/json"),
    "huge-json": (b'{"name": "' + b"x" * HUGE + b'"}', "application/json"),
    "form": (b"name=widget", "application/x-www-form-urlencoded"),
    "empty": (b"", "application/json"),
}


def write_project(root: Path) -> Path:
    """A one-file project (``main.py``) with one discovered app (``app/shop``)."""
    (root / "app" / "shop").mkdir(parents=True)
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "shop" / "__init__.py").write_text(textwrap.dedent(SHOP))
    (root / "main.py").write_text(textwrap.dedent(MAIN))
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("guarded") / "proj")


def _server(tmp_path: Path, project: Path, **env: str) -> Iterator[str]:
    log = tmp_path / "run.log"
    environment = env_for(tmp_path, flyer_host="127.0.0.1", HOME=str(tmp_path),
                          flyer_log_path=str(tmp_path / "logs"), **env)
    with started([FASTFLYER, "run", "--port", "0"], project, environment, log) as process:
        yield healthy_address(process, log)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, project: Path) -> Iterator[str]:
    """The URL of the project served with auth on."""
    yield from _server(tmp_path_factory.mktemp("secured"), project, flyer_auth_enable="1",
                       flyer_auth_user=USER, flyer_auth_pass=PASSWORD)


@pytest.fixture(scope="module")
def defaults(tmp_path_factory: pytest.TempPathFactory, project: Path) -> Iterator[str]:
    """The URL of the project served with every setting at its default."""
    yield from _server(tmp_path_factory.mktemp("defaults"), project)


@pytest.fixture(scope="module")
def task_api_opened(tmp_path_factory: pytest.TempPathFactory, project: Path) -> Iterator[str]:
    """The URL of the project served without auth and with ``flyer_task_api_open=1``."""
    yield from _server(tmp_path_factory.mktemp("opened"), project, flyer_task_api_open="1")


def assert_refused(response: httpx.Response, request_id: str | None = None) -> None:
    """A 401 in the envelope with the Basic challenge and the request id."""
    assert response.status_code == 401, response.text[:300]
    assert response.headers["www-authenticate"] == CHALLENGE
    assert response.json() == {"code": 401, "message": "Authentication required"}
    assert response.headers["x-request-id"]
    if request_id is not None:
        assert response.headers["x-request-id"] == request_id


# --- every route, however it was added, × credentials --------------------------------------

@pytest.mark.parametrize("credentials", list(CREDENTIALS), ids=list(CREDENTIALS))
@pytest.mark.parametrize("route", list(ROUTES), ids=list(ROUTES))
def test_every_route_needs_the_credentials(secured, route, credentials):
    method, path, expected = ROUTES[route]
    auth = CREDENTIALS[credentials]
    response = httpx.request(method, f"{secured}{path}", auth=auth, timeout=TIMEOUT,
                             headers={"X-Request-ID": "guard-test-1"})
    if credentials == "right":
        assert response.status_code == expected, response.text[:300]
        assert "www-authenticate" not in response.headers
    else:
        assert_refused(response, "guard-test-1")


@pytest.mark.parametrize("header", ["Basic !!notbase64", "Bearer x", "Basic",
                                    "Basic " + base64.b64encode(b"no-colon").decode(),
                                    "basic " + base64.b64encode(
                                        f"{USER}:{PASSWORD}x".encode()).decode()])
def test_malformed_authorization_headers_are_refused(secured, header):
    assert_refused(httpx.get(f"{secured}/flyer/orders", headers={"Authorization": header},
                             timeout=TIMEOUT))


def test_the_scheme_name_is_case_insensitive(secured):
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    answer = httpx.get(f"{secured}/flyer/orders", headers={"Authorization": f"basic {token}"},
                       timeout=TIMEOUT)
    assert answer.status_code == 200


# --- bodies: 401 before any is parsed ------------------------------------------------------

@pytest.mark.parametrize("body", list(BODIES), ids=list(BODIES))
@pytest.mark.parametrize("path", ["/flyer/items", "/plain-items"])
def test_a_body_is_never_parsed_without_credentials(secured, path, body):
    content, content_type = BODIES[body]
    refused = httpx.post(f"{secured}{path}", content=content, timeout=TIMEOUT,
                         headers={"Content-Type": content_type})
    assert_refused(refused)
    # With the credentials the same body reaches the route: parsed, limited or accepted.
    answered = httpx.post(f"{secured}{path}", content=content, timeout=TIMEOUT,
                          headers={"Content-Type": content_type}, auth=(USER, PASSWORD))
    assert answered.status_code == {"malformed-json": 422, "huge-json": 413, "form": 422,
                                    "empty": 422}[body], answered.text[:300]


def test_a_good_body_with_credentials_is_served(secured):
    answer = httpx.post(f"{secured}/flyer/items", json={"name": "widget"}, auth=(USER, PASSWORD),
                        timeout=TIMEOUT)
    assert answer.status_code == 200
    assert answer.json() == {"name": "widget"}


# --- open: the health checks -------------------------------------------------------------

@pytest.mark.parametrize("path", HEALTH)
def test_health_checks_stay_open(secured, path):
    answer = httpx.get(f"{secured}{path}", timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    assert "www-authenticate" not in answer.headers


def test_a_path_that_only_starts_like_a_health_check_is_protected(secured):
    assert_refused(httpx.get(f"{secured}/health_checkx", timeout=TIMEOUT))
    assert_refused(httpx.get(f"{secured}/flyer/health_check_admin", timeout=TIMEOUT))


# --- the schema documents the scheme -----------------------------------------------------

def test_openapi_documents_basic_auth_on_protected_operations(secured):
    schema = httpx.get(f"{secured}/flyer/openapi.json", auth=(USER, PASSWORD),
                       timeout=TIMEOUT).json()
    scheme = schema["components"]["securitySchemes"]["HTTPBasic"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "basic")
    for path, method in [("/flyer/shop", "get"), ("/flyer/items", "post"),
                         ("/flyer/orders", "get"), ("/plain", "get"), ("/inventory/stock", "get"),
                         ("/root-status", "get"), ("/added", "get"), ("/flyer/tasks", "get"),
                         ("/flyer/tasks/{scheduler}/{job_id}", "delete")]:
        assert schema["paths"][path][method]["security"] == [{"HTTPBasic": []}], path
    assert "security" not in schema["paths"]["/flyer/health_check/ready"]["get"]


# --- the task API: closed by default --------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/flyer/tasks"), ("GET", "/flyer/tasks/background/nightly"),
    ("POST", "/flyer/tasks/background/nightly/pause"),
    ("POST", "/flyer/tasks/background/nightly/run"),
    ("DELETE", "/flyer/tasks/background/nightly")])
def test_the_task_api_is_closed_by_default(defaults, method, path):
    answer = httpx.request(method, f"{defaults}{path}", timeout=TIMEOUT)
    assert answer.status_code == 403, answer.text
    body = answer.json()
    assert body["code"] == 403
    assert "flyer_task_api_open=1" in body["message"] and "flyer_auth_enable=1" in body["message"]
    assert "nightly" not in answer.text and "print" not in answer.text


def test_with_defaults_the_rest_is_open_and_the_schema_names_the_refusal(defaults):
    assert httpx.get(f"{defaults}/flyer/orders", timeout=TIMEOUT).status_code == 200
    assert httpx.get(f"{defaults}/flyer/docs", timeout=TIMEOUT).status_code == 200
    schema = httpx.get(f"{defaults}/flyer/openapi.json", timeout=TIMEOUT).json()
    assert "403" in schema["paths"]["/flyer/tasks"]["get"]["responses"]
    assert "securitySchemes" not in schema.get("components", {})


def test_flyer_task_api_open_opens_it_without_credentials(task_api_opened):
    listed = httpx.get(f"{task_api_opened}/flyer/tasks", timeout=TIMEOUT)
    assert listed.status_code == 200, listed.text
    assert "nightly" in listed.text
    gone = httpx.delete(f"{task_api_opened}/flyer/tasks/background/nightly", timeout=TIMEOUT)
    assert gone.status_code == 200, gone.text
    missing = httpx.get(f"{task_api_opened}/flyer/tasks/background/nightly", timeout=TIMEOUT)
    assert missing.status_code == 404


def test_with_auth_a_delete_needs_the_credentials(secured):
    assert_refused(httpx.delete(f"{secured}/flyer/tasks/background/nightly", timeout=TIMEOUT))
    url = f"{secured}/flyer/tasks/background/nightly"
    assert httpx.get(url, auth=(USER, PASSWORD), timeout=TIMEOUT).status_code == 200  # still there


# --- in process: always_http_200, WebSocket, CORS preflight ---------------------------------

def _app(project: Path, **env: object) -> FlyerAPI:
    values = {"auth_enable": True, "auth_user": USER, "auth_pass": PASSWORD, **env}
    return FlyerAPI(app_path=project / "app", settings=load_settings(**values))


def test_always_http_200_keeps_the_envelope_code(project):
    with TestClient(_app(project, always_http_200=True)) as client:
        answer = client.get("/flyer/shop")
    assert answer.status_code == 200
    assert answer.json()["code"] == 401
    assert answer.headers["www-authenticate"] == CHALLENGE


def test_a_websocket_handshake_without_credentials_is_refused(project):
    app = _app(project)

    @app.websocket("/ws")
    async def echo(socket: WebSocket) -> None:
        await socket.accept()
        await socket.send_text("hello")
        await socket.close()

    with TestClient(app) as client:
        with pytest.raises(WebSocketDenialResponse) as refused, client.websocket_connect("/ws"):
            pass
        denial = refused.value
        assert denial.status_code == 401
        assert denial.headers["www-authenticate"] == CHALLENGE
        assert denial.json() == {"code": 401, "message": "Authentication required"}
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        with client.websocket_connect("/ws", headers={"Authorization": f"Basic {token}"}) as ws:
            assert ws.receive_text() == "hello"


def test_a_cors_preflight_passes_only_with_cors(project):
    preflight = {"Origin": "https://shop.example", "Access-Control-Request-Method": "GET"}
    with TestClient(_app(project, cors_origins="https://shop.example")) as client:
        answer = client.options("/flyer/shop", headers=preflight)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://shop.example"
        assert client.get("/flyer/shop", headers={"Origin": "https://shop.example"}
                          ).status_code == 401
    with TestClient(_app(project)) as client:
        assert client.options("/flyer/shop", headers=preflight).status_code == 401
