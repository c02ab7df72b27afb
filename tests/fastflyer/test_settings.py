"""Settings: every flyer_* variable read, validated, and reported in one line each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fastflyer.settings import FlyerSettings, SettingsError, load_settings

DEMO = Path(__file__).parent / "demo_project"

SEED_TABLE = ["host", "port", "base_url", "version", "reload", "workers", "threads",
              "worker_connections", "enable_max_requests", "max_requests",
              "max_requests_jitter", "timeout", "graceful_timeout", "keepalive",
              "console_log_level", "file_log_level", "access_log", "access_logfile"]


def test_every_variable_of_the_seed_table_is_a_setting():
    assert set(SEED_TABLE) <= set(FlyerSettings.model_fields)
    for extra in ["log_path", "access_log_exclude_uris", "auth_enable", "auth_user", "auth_pass",
                  "docs_enabled", "cors_origins", "gzip_min_size", "max_body_size",
                  "trusted_proxies", "always_http_200"]:
        assert extra in FlyerSettings.model_fields


def test_defaults_are_the_seed_defaults():
    settings = load_settings()
    assert (settings.host, settings.port, settings.base_url, settings.version) == \
        ("0.0.0.0", 8080, "/flyer", "v1")
    assert (settings.reload, settings.threads, settings.worker_connections) == (False, 5, 1000)
    assert (settings.max_requests, settings.max_requests_jitter) == (0, 0)
    assert (settings.timeout, settings.graceful_timeout, settings.keepalive) == (60, 1, 5)
    assert (settings.console_log_level, settings.file_log_level) == ("INFO", "INFO")
    assert settings.access_logfile == "-"
    assert settings.workers is None  # the CPU count is decided at launch


def test_values_come_from_the_environment_in_any_case(monkeypatch):
    monkeypatch.setenv("flyer_port", "9001")
    monkeypatch.setenv("FLYER_BASE_URL", "/api/v2")
    monkeypatch.setenv("flyer_console_log_level", "WARN")
    monkeypatch.setenv("flyer_access_log_exclude_uris", "/health_check, /metrics*")
    monkeypatch.setenv("flyer_trusted_proxies", "10.0.0.0/8,127.0.0.1")
    settings = load_settings()
    assert settings.port == 9001
    assert settings.base_url == "/api/v2"
    assert settings.console_log_level == "WARNING"
    assert settings.access_log_exclude_uris == ["/health_check", "/metrics*"]
    assert settings.trusted_proxies == ["10.0.0.0/8", "127.0.0.1"]


def test_an_empty_variable_counts_as_unset(monkeypatch):
    monkeypatch.setenv("flyer_workers", "")
    assert load_settings().workers is None


@pytest.mark.parametrize(("name", "value", "allowed"), [
    ("workers", "0", "an integer ≥ 1"),
    ("threads", "4", "an integer ≥ 5"),
    ("port", "70000", "an integer from 1 to 65535"),
    ("port", "http", "an integer from 1 to 65535"),
    ("base_url", "flyer", "a path like /flyer"),
    ("base_url", "/flyer/", "a path like /flyer"),
    ("base_url", "/fl yer", "a path like /flyer"),
    ("console_log_level", "loud", "one of debug, info, warn, error"),
    ("file_log_level", "verbose", "one of debug, info, warn, error"),
    ("reload", "maybe", "1 or 0"),
    ("access_log", "2", "1 or 0"),
    ("timeout", "-1", "a number of seconds ≥ 0"),
    ("max_requests", "-5", "an integer ≥ 0"),
    ("trusted_proxies", "10.0.0.0/8,not-an-ip", "IP addresses or networks"),
])
def test_a_bad_value_is_one_line_naming_variable_value_and_rule(monkeypatch, name, value, allowed):
    monkeypatch.setenv(f"flyer_{name}", value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.count("\n") == 0
    assert message.startswith(f"flyer_{name}={value!r} is not allowed: ")
    assert allowed in message


def test_every_bad_variable_is_reported(monkeypatch):
    monkeypatch.setenv("flyer_workers", "0")
    monkeypatch.setenv("flyer_threads", "1")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert [line.split("=")[0] for line in caught.value.lines] == ["flyer_workers",
                                                                    "flyer_threads"]


def test_auth_without_credentials_stops_start_up_and_hides_the_password(monkeypatch):
    monkeypatch.setenv("flyer_auth_enable", "1")
    monkeypatch.setenv("flyer_auth_pass", "hunter2")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "flyer_auth_user" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(load_settings(auth_user="admin"))


@pytest.mark.parametrize(("name", "value", "line"), [
    ("workers", "0", "flyer_workers='0' is not allowed: an integer ≥ 1"),
    ("console_log_level", "loud", "flyer_console_log_level='loud' is not allowed: one of debug"),
])
def test_a_bad_value_stops_the_server_before_binding_with_one_line(tmp_path, name, value, line):
    env = {f"flyer_{name}": value, "PATH": "/usr/bin:/bin", "flyer_log_path": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "main:app", "--app-dir", str(DEMO), "--port", "1"],
        env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(line)
    assert "Traceback" not in result.stderr
    assert "Uvicorn running" not in result.stderr
