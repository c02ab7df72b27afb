"""The config center against a real etcd: values read at start win over the environment,
changes and deletions are followed, etcd down at start and during a run, authentication,
the seed's alias names, and no password in any log line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_launch import FASTFLYER, env_for, healthy_address, started
from test_launch import wait_for as wait_in_log

from etcd_server import EtcdServer
from fastflyer import env
from fastflyer.config_center import (
    FLAGS_VARIABLE,
    ORIGINALS_VARIABLE,
    ConfigCenterUnavailable,
    ConfigSync,
    load_config_center,
)
from fastflyer.health import Degraded
from fastflyer.settings import ConfigCenterSettings, SettingsError, load_settings
from fastkit.etcd import EtcdUnavailable
from redis_server import closed_port
from waiting import wait_for

from conftest import center_variables

# The config center writes os.environ itself: each test leaves it as it found it.
pytestmark = pytest.mark.usefixtures("restored_environ")


def test_values_are_read_at_start_and_win_over_the_environment(
        center: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    etcd, prefix = center["etcd"], center["prefix"]
    etcd.put(f"{prefix}FEATURE_X", "from the center")
    etcd.put(f"{prefix}ONLY_THERE", "新しい値")
    etcd.put(f"{prefix}flyer_version", "v9")
    monkeypatch.setenv("FEATURE_X", "from the environment")
    monkeypatch.setenv("FLYER_VERSION", "v1")  # another spelling of the same setting
    settings = load_settings()
    assert os.getenv("FEATURE_X") == "from the center"
    assert env.FEATURE_X == "from the center" and env.get("ONLY_THERE") == "新しい値"
    assert settings.version == "v9"  # framework variables come from the center too
    assert "FLYER_VERSION" not in os.environ  # one spelling: the center's


def test_a_deleted_key_brings_back_the_environment_or_unsets(
        center: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    etcd, prefix = center["etcd"], center["prefix"]
    etcd.put(f"{prefix}HAD_A_VALUE", "center")
    etcd.put(f"{prefix}HAD_NONE", "center")
    monkeypatch.setenv("HAD_A_VALUE", "environment")
    monkeypatch.delenv("HAD_NONE", raising=False)
    sync = load_config_center()
    assert sync is not None
    assert (os.environ["HAD_A_VALUE"], os.environ["HAD_NONE"]) == ("center", "center")
    etcd.delete(f"{prefix}HAD_A_VALUE")
    etcd.delete(f"{prefix}HAD_NONE")
    sync.read()
    assert os.environ["HAD_A_VALUE"] == "environment"
    assert "HAD_NONE" not in os.environ
    assert os.environ[ORIGINALS_VARIABLE] == "{}"  # nothing of the center's is left


def test_a_child_process_restores_the_originals_its_parent_saw(
        center: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker inherits the overlay: a deletion seen there brings back the environment's
    # value, not the center's value it inherited.
    etcd, prefix = center["etcd"], center["prefix"]
    etcd.put(f"{prefix}SHARED", "center")
    monkeypatch.setenv("SHARED", "environment")
    load_config_center()
    inherited = dict(os.environ)  # what a child starts with
    os.environ.clear()
    os.environ.update(inherited)
    sync = load_config_center()  # the child's own read at its start
    assert sync is not None and os.environ["SHARED"] == "center"
    etcd.delete(f"{prefix}SHARED")
    sync.read()
    assert os.environ["SHARED"] == "environment"


def test_a_running_sync_follows_changes_and_deletions(
        center: dict[str, Any], logs: Any) -> None:
    etcd, prefix = center["etcd"], center["prefix"]
    etcd.put(f"{prefix}LIVE", "1")
    sync = load_config_center()
    assert sync is not None
    sync.start()
    try:
        etcd.put(f"{prefix}LIVE", "2")  # a watch wakes the sync: well within the interval
        wait_for(lambda: os.environ.get("LIVE") == "2", timeout=8)
        etcd.put(f"{prefix}NEW_ONE", "added")
        wait_for(lambda: os.environ.get("NEW_ONE") == "added", timeout=8)
        etcd.delete(f"{prefix}LIVE")
        wait_for(lambda: "LIVE" not in os.environ, timeout=8)
    finally:
        sync.stop()
    lines = [record["message"] for record in logs.records]
    assert "config center: LIVE changed" in lines
    assert "config center: LIVE removed; the environment's value is back" in lines
    assert not any("added" in line for line in lines)  # values are never logged


def test_a_changed_framework_setting_takes_effect_at_restart(
        center: dict[str, Any], logs: Any) -> None:
    etcd, prefix = center["etcd"], center["prefix"]
    etcd.put(f"{prefix}flyer_workers", "2")
    sync = load_config_center()
    assert sync is not None
    etcd.put(f"{prefix}flyer_workers", "4")
    etcd.put(f"{prefix}flyer_port", "9001")
    sync.read()
    warnings = {record["message"] for record in logs.records if record["level"] == "WARNING"}
    assert {"flyer_workers changed in the config center; takes effect at restart",
            "flyer_port changed in the config center; takes effect at restart"} <= warnings


@pytest.mark.parametrize("name", ["flyer_config_app_id", "FLYER_RAINBOW_HOST", "BAD NAME",
                                  "FASTFLYER_CONFIG_ORIGINALS"])
def test_keys_that_cannot_be_variables_are_ignored_with_a_warning(
        center: dict[str, Any], logs: Any, name: str) -> None:
    etcd, prefix = center["etcd"], center["prefix"]
    etcd.put(f"{prefix}{name}", "x")
    etcd.put(f"{prefix}GOOD", "kept")
    sync = load_config_center()
    assert sync is not None
    sync.read()  # read twice, warned once
    assert os.environ["GOOD"] == "kept"
    assert os.environ.get(name) != "x"
    app_id = "flyer_config_app_id"
    assert os.environ[app_id] == center["variables"][app_id]
    warnings = [record["message"] for record in logs.records
                if record["level"] == "WARNING" and name in record["message"]]
    assert len(warnings) == 1, warnings


def test_the_command_line_wins_over_the_center_and_says_so(
        center: dict[str, Any], monkeypatch: pytest.MonkeyPatch, logs: Any) -> None:
    etcd, prefix = center["etcd"], center["prefix"]
    etcd.put(f"{prefix}flyer_port", "9001")
    monkeypatch.setenv(FLAGS_VARIABLE, "flyer_port")
    monkeypatch.setenv("flyer_port", "8123")
    assert load_settings().port == 8123
    assert load_settings().port == 8123  # read twice, told once
    told = [record["message"] for record in logs.records if record["level"] == "WARNING"
            and "command line" in record["message"]]
    assert told == [f"config center key {prefix + 'flyer_port'!r} is overridden by the "
                    "command line, which sets flyer_port: ignored"]


def test_a_process_started_while_etcd_is_away_takes_the_last_values_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker that gunicorn starts during an outage (after flyer_max_requests) inherits
    # its master's environment of the start; it takes the last values any worker read.
    server = EtcdServer()
    server.start()
    try:
        for name, value in center_variables(server.url).items():
            monkeypatch.setenv(name, value)
        server.put("/orders/prod/default/FEATURE", "at start")
        load_config_center()  # the master, at start
        inherited = dict(os.environ)  # what a worker it starts later inherits
        worker = load_config_center()
        assert worker is not None
        server.put("/orders/prod/default/FEATURE", "followed")
        worker.read()
        server.stop()
        with pytest.raises(EtcdUnavailable) as caught:
            worker.read()
        worker.outage(caught.value)
        os.environ.clear()
        os.environ.update(inherited)
        assert os.environ["FEATURE"] == "at start"
        late = load_config_center()  # the new worker: etcd is away
        assert late is not None and os.environ["FEATURE"] == "followed"
        assert late.down_since == worker.down_since  # the outage's start, not its own
        with pytest.raises(Degraded):
            late.check()
    finally:
        server.close()


def test_unreachable_at_start_stops_with_one_line_naming_the_endpoint(
        center: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    with closed_port() as port:
        monkeypatch.setenv("flyer_config_endpoints", f"http://127.0.0.1:{port}")
        with pytest.raises(ConfigCenterUnavailable) as caught:
            load_settings()
    line = str(caught.value)
    assert "\n" not in line
    assert f"127.0.0.1:{port} (connection refused)" in line
    assert "flyer_config_allow_unreachable=1" in line


def test_unreachable_at_start_may_be_allowed_and_is_degraded(
        center: dict[str, Any], monkeypatch: pytest.MonkeyPatch, logs: Any) -> None:
    with closed_port() as port:
        monkeypatch.setenv("flyer_config_endpoints", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("flyer_config_allow_unreachable", "1")
        monkeypatch.setenv("FROM_ENV", "kept")
        settings = load_settings()
        sync = load_config_center()
    assert settings.config_enabled and os.environ["FROM_ENV"] == "kept"
    assert sync is not None
    with pytest.raises(Degraded, match="serving the last values"):
        sync.check()
    assert any("starting with the values of the environment" in record["message"]
               for record in logs.records if record["level"] == "WARNING")


def test_an_outage_keeps_the_values_warns_once_and_recovers(
        monkeypatch: pytest.MonkeyPatch, logs: Any) -> None:
    server = EtcdServer()
    server.start()
    try:
        for name, value in center_variables(server.url).items():
            monkeypatch.setenv(name, value)
        server.put("/orders/prod/default/FEATURE", "before")
        sync = load_config_center()
        assert sync is not None
        sync.check()  # up
        sync.start()
        try:
            server.stop()
            wait_for(lambda: sync.down_since is not None, timeout=15)
            assert os.environ["FEATURE"] == "before"  # the last values stay
            with pytest.raises(Degraded):
                sync.check()
            server.start()
            server.put("/orders/prod/default/FEATURE", "after")
            wait_for(lambda: os.environ.get("FEATURE") == "after", timeout=15)
            sync.check()  # up again
        finally:
            sync.stop()
    finally:
        server.close()
    warned = [record for record in logs.records if record["level"] == "WARNING"
              and "config center cannot be read" in record["message"]]
    assert len(warned) == 1
    assert any("answers again" in record["message"] for record in logs.records)


@pytest.fixture(scope="module")
def secured() -> Iterator[EtcdServer]:
    server = EtcdServer()
    server.start()
    server.enable_auth("orders", "Config-Pa55word")
    yield server
    server.close()


@pytest.mark.parametrize("names", ["new", "seed"])
def test_a_user_and_password_read_the_center_and_the_password_is_never_logged(
        secured: EtcdServer, monkeypatch: pytest.MonkeyPatch, logs: Any, names: str,
        capfd: pytest.CaptureFixture[str]) -> None:
    secured.put("/orders/prod/default/SECURED", "yes")
    variables = {
        "new": {"flyer_config_enabled": "1", "flyer_config_endpoints": secured.url,
                "flyer_config_app_id": "orders", "flyer_config_env_name": "prod",
                "flyer_config_group_name": "default", "flyer_config_user": "orders",
                "flyer_config_password": "Config-Pa55word"},
        # The seed's names; its host is host:port, without a scheme.
        "seed": {"flyer_rainbow_enabled": "1",
                 "flyer_rainbow_host": secured.url.removeprefix("http://"),
                 "flyer_rainbow_app_id": "orders", "flyer_rainbow_env_name": "prod",
                 "flyer_rainbow_group_name": "default", "flyer_rainbow_user_id": "orders",
                 "flyer_rainbow_secret_key": "Config-Pa55word"},
    }[names]
    password = "flyer_config_password" if names == "new" else "flyer_rainbow_secret_key"
    for name, value in variables.items():
        monkeypatch.setenv(name, "Wrong-Pa55word" if name == password else value)
    # A wrong password at start: refused in one line, the password nowhere.
    with pytest.raises(ConfigCenterUnavailable) as caught:
        load_settings()
    assert "refused user 'orders'" in str(caught.value)
    user = "flyer_config_user" if names == "new" else "flyer_rainbow_user_id"
    # The variables named as they are set (the seed's, when those are).
    assert str(caught.value).endswith(f"fix {user} and {password}")
    monkeypatch.setenv(password, variables[password])
    settings = load_settings()
    assert os.environ["SECURED"] == "yes"
    assert settings.config_user == "orders"
    captured = capfd.readouterr()
    everything = "\n".join([str(caught.value), captured.out, captured.err,
                            *(str(record) for record in logs.records)])
    assert "Pa55word" not in everything


def test_bad_bootstrap_values_are_settings_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("flyer_config_enabled", "1")
    with pytest.raises(SettingsError) as caught:
        load_config_center()
    assert "flyer_config_app_id" in str(caught.value)


def test_off_by_default_reads_nothing() -> None:
    assert ConfigCenterSettings().config_enabled is False
    assert load_config_center() is None


def test_readiness_reports_config_up_then_degraded(center: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient

    from fastflyer import FlyerAPI

    center["etcd"].put(f"{center['prefix']}X", "1")
    app = FlyerAPI()
    with TestClient(app) as client:
        answer = client.get("/health_check/ready")
        assert answer.status_code == 200
        assert answer.json()["data"]["components"]["config"]["status"] == "up"
        sync = app.config_sync
        assert isinstance(sync, ConfigSync)
        sync.outage(ConnectionError("etcd cannot be reached"))
        answer = client.get("/health_check/ready")
        assert answer.status_code == 200  # degraded: it serves on the last values
        component = answer.json()["data"]["components"]["config"]
        assert component["status"] == "degraded"
        assert "serving the last values" in component["error"]


# --- a real multi-worker service -----------------------------------------------------

APP = '''
import os
from fastflyer import APIRouter

router = APIRouter()


@router.get("/probe")
def probe():
    return {"pid": os.getpid(), "feature": os.getenv("FEATURE")}
'''

MAIN = '''
from fastflyer import FlyerAPI

app = FlyerAPI(app_path=__file__)
'''


@pytest.fixture
def probe_project(tmp_path: Path) -> Path:
    path = tmp_path / "probe"
    (path / "app" / "probe").mkdir(parents=True)
    (path / "main.py").write_text(MAIN)
    (path / "app" / "__init__.py").write_text("")
    (path / "app" / "probe" / "__init__.py").write_text(APP)
    return path


def test_every_worker_of_serve_sees_a_change_within_the_interval(
        tmp_path: Path, probe_project: Path, center: dict[str, Any]) -> None:
    etcd, prefix = center["etcd"], center["prefix"]
    etcd.put(f"{prefix}FEATURE", "old")
    log = tmp_path / "serve.log"
    environment = env_for(tmp_path, flyer_log_path=str(tmp_path / "logs"),
                          flyer_config_sync_interval="5", FEATURE="environment",
                          **center["variables"])
    with started([FASTFLYER, "serve", "--host", "127.0.0.1", "--port", "0", "--workers", "2"],
                 probe_project, environment, log) as process:
        url = healthy_address(process, log)
        wait_in_log("two workers", lambda: log.read_text().count(
            "Application startup complete") >= 2, process, log)
        seen: dict[int, str] = {}

        def every_worker_says(value: str) -> bool:
            with httpx.Client(timeout=5) as client:  # a connection per call: both workers
                for _ in range(8):
                    answer = client.get(f"{url}/flyer/probe",
                                        headers={"Connection": "close"}).json()
                    seen[answer["pid"]] = answer["feature"]
            return len(seen) == 2 and set(seen.values()) == {value}

        wait_for(lambda: every_worker_says("old"), timeout=30)
        etcd.put(f"{prefix}FEATURE", "new")
        seen.clear()
        wait_for(lambda: every_worker_says("new"), timeout=5 + 3)  # one interval, and room
        etcd.delete(f"{prefix}FEATURE")
        seen.clear()
        wait_for(lambda: every_worker_says("environment"), timeout=5 + 3)


def test_serve_with_etcd_down_at_start_stops_with_one_line(
        tmp_path: Path, probe_project: Path, center: dict[str, Any]) -> None:
    import subprocess

    with closed_port() as port:
        variables = {**center["variables"],
                     "flyer_config_endpoints": f"http://127.0.0.1:{port}"}
        result = subprocess.run(
            [FASTFLYER, "serve", "--host", "127.0.0.1", "--port", "0"], cwd=probe_project,
            env=env_for(tmp_path, flyer_log_path=str(tmp_path / "logs"), **variables),
            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "Traceback" not in result.stderr


def test_a_bad_value_from_the_center_names_its_key(center: dict[str, Any]) -> None:
    etcd, prefix = center["etcd"], center["prefix"]
    etcd.put(f"{prefix}flyer_workers", "zero")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value) == (
        f"flyer_workers='zero' (from the config center's key {prefix}flyer_workers) is not "
        "allowed: an integer ≥ 1 (unset: the CPUs this process may use)")
