"""App discovery: every package under app/, sorted; disabled, router-less and broken apps."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from fastflyer import AppLoadError, DuplicateRouteError, FlyerAPI

ROUTER = """
from fastflyer import APIRouter
router = APIRouter()

@router.get("{path}")
async def handler():
    return {{"code": 200, "data": "{name}"}}
"""


def make_project(root: Path, files: dict[str, str]) -> Path:
    for name, text in {"app/__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def app_with(name: str, path: str, extra: str = "") -> str:
    return ROUTER.format(path=path, name=name) + extra


def test_the_demo_project_mounts_its_apps_in_sorted_order(build):
    app = build()
    assert [a.name for a in app.apps] == ["items", "legacy", "tasks", "users", "zz_errors"]
    assert [a.name for a in app.apps if not a.enabled] == ["legacy"]
    assert app.apps[2].router is None  # tasks: imported only
    assert app.apps[2].module.IMPORTED is True
    paths = {path for _, path, _ in app.route_table()}
    assert {"/flyer/demo", "/flyer/users", "/flyer/errors/crash"} <= paths
    assert "/flyer/legacy" not in paths


def test_load_order_is_sorted_not_filesystem_order(tmp_path):
    log = tmp_path / "order.txt"
    write = "import pathlib\nwith pathlib.Path({log!r}).open('a') as f:\n    f.write('{name} ')\n"
    files = {f"app/{name}/__init__.py": write.format(log=str(log), name=name)
             for name in ["zeta", "alpha", "mid", "beta"]}
    files["app/_private/__init__.py"] = "raise RuntimeError('never imported')"
    FlyerAPI(app_path=make_project(tmp_path, files))
    assert log.read_text().split() == ["alpha", "beta", "mid", "zeta"]


def test_routers_mount_under_the_base_url(tmp_path, build):
    project = make_project(tmp_path, {"app/one/__init__.py": app_with("one", "/one")})
    with TestClient(build(project, base_url="/api/v2")) as client:
        assert client.get("/api/v2/one").json() == {"code": 200, "data": "one"}
        assert client.get("/flyer/one").status_code == 404
        assert client.get("/api/v2/health_check").status_code == 200
        assert client.get("/api/v2/docs").status_code == 200


def test_app_path_may_be_main_py_the_project_or_the_app_dir(tmp_path):
    project = make_project(tmp_path, {"app/one/__init__.py": app_with("one", "/one")})
    for path in [project, project / "main.py", project / "app", str(project)]:
        (project / "main.py").touch()
        app = FlyerAPI(app_path=path)
        assert [a.name for a in app.apps] == ["one"]


def test_a_project_without_app_package_is_an_error(tmp_path):
    with pytest.raises(AppLoadError, match="no app package"):
        FlyerAPI(app_path=tmp_path)


def test_an_app_that_fails_to_import_stops_start_up_with_its_traceback(tmp_path):
    project = make_project(tmp_path, {
        "app/good/__init__.py": app_with("good", "/good"),
        "app/broken/__init__.py": "import no_such_module_anywhere\n",
    })
    with pytest.raises(AppLoadError, match=r"app 'broken'.*No module named") as caught:
        FlyerAPI(app_path=project)
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)


def test_a_router_that_is_not_an_apirouter_is_refused(tmp_path):
    project = make_project(tmp_path, {"app/odd/__init__.py": "router = 'not a router'\n"})
    with pytest.raises(AppLoadError, match="`router` is a str"):
        FlyerAPI(app_path=project)


def test_two_apps_with_the_same_route_stop_start_up_naming_both(tmp_path):
    project = make_project(tmp_path, {
        "app/first/__init__.py": app_with("first", "/same"),
        "app/second/__init__.py": app_with("second", "/same"),
    })
    with pytest.raises(DuplicateRouteError,
                       match=r"GET /flyer/same is declared by both app 'first' and app 'second'"):
        FlyerAPI(app_path=project)


def test_an_app_cannot_shadow_a_framework_route(tmp_path):
    project = make_project(tmp_path, {"app/sneaky/__init__.py": app_with("sneaky", "/docs")})
    with pytest.raises(DuplicateRouteError, match="GET /flyer/docs is declared by both "
                       "app 'sneaky' and app 'fastflyer'"):
        FlyerAPI(app_path=project)


def test_same_path_with_other_methods_is_fine(tmp_path):
    project = make_project(tmp_path, {
        "app/reader/__init__.py": app_with("reader", "/thing"),
        "app/writer/__init__.py": ROUTER.replace("router.get", "router.post").format(
            path="/thing", name="writer"),
    })
    with TestClient(FlyerAPI(app_path=project)) as client:
        assert client.get("/flyer/thing").json()["data"] == "reader"
        assert client.post("/flyer/thing").json()["data"] == "writer"


def test_project_settings_override_title_version_and_prefix(tmp_path, build):
    project = make_project(tmp_path, {
        "app/one/__init__.py": app_with("one", "/one"),
        "settings.py": """
            from fastflyer.settings import BaseConfig

            class CustomConfig(BaseConfig):
                API_TITLE = "Orders API"
                DESCRIPTION = "Orders."
                VERSION = "3.1"
                PREFIX = "/orders"
        """,
    })
    app = build(project)
    assert (app.title, app.description, app.version, app.base_url) == \
        ("Orders API", "Orders.", "3.1", "/orders")
    with TestClient(app) as client:
        assert client.get("/orders/one").status_code == 200
        assert client.get("/orders/openapi.json").json()["info"]["title"] == "Orders API"


def test_an_explicit_environment_variable_wins_over_the_project(tmp_path, build):
    project = make_project(tmp_path, {
        "app/one/__init__.py": app_with("one", "/one"),
        "settings.py": "from fastflyer.settings import BaseConfig\n"
                       "class C(BaseConfig):\n    PREFIX = '/orders'\n",
    })
    assert build(project, base_url="/env").base_url == "/env"


def test_the_demo_project_title_comes_from_its_settings(build):
    assert build().title == "Demo API"
