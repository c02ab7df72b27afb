"""Settings: every flyer_* variable read, validated, and reported in one line each."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fastflyer.settings
from fastflyer import FlyerAPI
from fastflyer.settings import (
    BaseConfig,
    FlyerSettings,
    SettingsError,
    load_settings,
    unknown_variable_warnings,
)

DEMO = Path(__file__).parent / "demo_project"
SRC = Path(fastflyer.settings.__file__).parents[1]

SEED_TABLE = ["host", "port", "base_url", "version", "reload", "workers", "threads",
              "worker_connections", "enable_max_requests", "max_requests",
              "max_requests_jitter", "timeout", "graceful_timeout", "keepalive",
              "console_log_level", "file_log_level", "access_log", "access_logfile"]


def test_every_variable_of_the_seed_table_is_a_setting():
    assert set(SEED_TABLE) <= set(FlyerSettings.model_fields)
    for extra in ["log_path", "access_log_exclude_uris", "auth_enable", "auth_user", "auth_pass",
                  "docs_enabled", "cors_origins", "gzip_min_size", "max_body_size",
                  "trusted_proxies", "always_http_200", "metrics_enabled", "metrics_path"]:
        assert extra in FlyerSettings.model_fields


def test_defaults_are_the_seed_defaults():
    settings = load_settings()
    assert (settings.host, settings.port, settings.base_url, settings.version) == \
        ("0.0.0.0", 8080, "/flyer", "v1")
    assert (settings.reload, settings.threads, settings.worker_connections) == (False, 5, 1000)
    assert (settings.max_requests, settings.max_requests_jitter) == (0, 0)
    assert (settings.timeout, settings.graceful_timeout, settings.keepalive) == (60, None, 5)
    # unset, the drain lets ordinary requests finish; while reloading it is the seed's 1 s
    assert (settings.drain_timeout, settings.shutdown_timeout) == (30, 10)
    assert load_settings(reload=True).drain_timeout == 1
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
    ("timeout", "-1", "a number of seconds from 0 to 86400"),
    # No duration means "wait forever": inf, overflowing and out-of-range numbers are refused.
    *[(name, value, "86400") for name in ("timeout", "graceful_timeout", "shutdown_timeout",
                                          "keepalive", "lock_ttl")
      for value in ("inf", "1e400", "nan", "86401")],
    ("max_requests", "-5", "an integer ≥ 0"),
    ("trusted_proxies", "10.0.0.0/8,not-an-ip", "IP addresses or networks"),
    ("metrics_enabled", "yes please", "1 or 0"),
    ("metrics_path", "metrics", "a path starting with '/'"),
    ("metrics_path", "/metrics/", "no trailing '/'"),
    ("metrics_path", "/health_check/metrics", "are the health checks'"),
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


def started_with(tmp_path: Path, name: str, value: str,
                 *command: str) -> subprocess.CompletedProcess[str]:
    """``python -m <command> --app-dir DEMO --port 1`` with ``flyer_<name>=value``."""
    env = {f"flyer_{name}": value, "PATH": "/usr/bin:/bin", "flyer_log_path": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", *command, "--app-dir", str(DEMO),
                           "--port", "1"], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("name", "value", "line"), [
    ("workers", "0", "flyer_workers='0' is not allowed: an integer ≥ 1"),
    ("console_log_level", "loud", "flyer_console_log_level='loud' is not allowed: one of debug"),
    ("host", "not_a_host", "flyer_host='not_a_host' is not allowed: an IP address (v4 or v6) "
     "or a host name"),
    ("db_url", "mysql+pymysql://u:secret@h:x/db",
     "flyer_db_url='mysql+pymysql://u:***@h:x/db' is not allowed: a SQLAlchemy URL"),
])
def test_a_bad_value_stops_the_server_before_binding_with_one_line(tmp_path, name, value, line):
    result = started_with(tmp_path, name, value, "fastflyer", "run")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(line)
    assert "Traceback" not in result.stderr
    assert "Uvicorn running" not in result.stderr


@pytest.mark.parametrize(("name", "value", "line"), [
    ("workers", "0", "flyer_workers='0' is not allowed: an integer ≥ 1"),
    ("db_url", "mysql+pymysql://u:secret@h:x/db",
     "flyer_db_url='mysql+pymysql://u:***@h:x/db' is not allowed: a SQLAlchemy URL"),
])
def test_under_plain_uvicorn_a_bad_value_is_an_error_naming_it(tmp_path, name, value, line):
    # A library raises no SystemExit: uvicorn shows the SettingsError (a ValueError) as it
    # shows any error of an app's import, and stops before binding; its last line is ours.
    result = started_with(tmp_path, name, value, "uvicorn", "main:app")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"fastflyer.settings.SettingsError: {line}"), result.stderr
    assert "secret" not in result.stderr  # no chained pydantic error showing the input
    assert "Uvicorn running" not in result.stderr


# --- Typos: flyer_* variables that are no setting ----------------------------------------

@pytest.mark.parametrize(("name", "line"), [
    ("flyer_wokers", "flyer_wokers is not a FastFlyer setting (did you mean flyer_workers?); "
                     "it is ignored"),
    ("flyer_prot", "flyer_prot is not a FastFlyer setting (did you mean flyer_port?); "
                   "it is ignored"),
    ("FLYER_BASE_ULR", "FLYER_BASE_ULR is not a FastFlyer setting (did you mean "
                       "flyer_base_url?); it is ignored"),
    ("flyer_redis_password", "flyer_redis_password is not a FastFlyer setting (did you mean "
                             "flyer_redis_pass?); it is ignored"),
    ("flyer_zzz", "flyer_zzz is not a FastFlyer setting; it is ignored"),
    # A name that is no identifier is quoted, so the space shows; a long one is cut.
    ("flyer_port ", "'flyer_port ' is not a FastFlyer setting (did you mean flyer_port?); "
                    "it is ignored"),
    ("flyer_" + "x" * 10_000, f"flyer_{'x' * 74}... is not a FastFlyer setting; it is ignored"),
])
def test_a_variable_that_is_no_setting_is_named_with_the_closest_setting(name, line):
    assert unknown_variable_warnings({name: "4", "flyer_port": "9000", "HOME": "/"}) == [line]


def test_settings_and_variables_read_elsewhere_are_no_typos():
    settings = {f"flyer_{name}": "1" for name in FlyerSettings.model_fields}
    upper = {name.upper(): "1" for name in settings}
    assert unknown_variable_warnings({**settings, **upper, "PATH": "/bin"}) == []
    # Every flyer_* name the sources read (FastKit's own, the templates' scripts, the seed's
    # project settings.py): none is warned about.
    read = set()
    for path in SRC.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".sh", "") and "__pycache__" not in path.parts:
            text = path.read_text(errors="replace")
            read |= set(re.findall(r"[\"']\$?\{?(flyer_[a-z0-9_]+)[\"'}:=-]", text))
            read |= set(re.findall(r"\$\{?(flyer_[a-z0-9_]+)", text))
            read |= set(re.findall(r"(?m)^\s*(flyer_[a-z0-9_]+)=", text))
    assert {"flyer_log_json", "flyer_max_body_log_length", "flyer_db_user", "flyer_reload"} <= read
    assert unknown_variable_warnings(dict.fromkeys(read, "1")) == []


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the warnings this test process logged before (they are logged once each)."""
    monkeypatch.setattr(fastflyer.settings, "_warned", set())


def test_loading_the_settings_warns_once_in_the_log(monkeypatch, logs, fresh_warnings):
    monkeypatch.setenv("flyer_wokers", "4")
    monkeypatch.setenv("flyer_prot", "9000")
    settings = load_settings()
    FlyerAPI(app_path=DEMO)  # the app's own loading: no second warning
    load_settings()
    warnings = [r["message"] for r in logs.records if r["level"] == "WARNING"
                and "not a FastFlyer setting" in r["message"]]
    assert warnings == [
        "flyer_prot is not a FastFlyer setting (did you mean flyer_port?); it is ignored",
        "flyer_wokers is not a FastFlyer setting (did you mean flyer_workers?); it is ignored"]
    assert (settings.workers, settings.port) == (None, 8080)  # ignored indeed


@pytest.mark.parametrize(("command", "ready", "servers"), [
    ([sys.executable, "-m", "uvicorn", "main:app", "--app-dir", str(DEMO), "--host", "127.0.0.1",
      "--port", "0", "--log-level", "info"], "Application startup complete", 1),
    # gunicorn's workers are forked from the master, which has warned already
    ([str(Path(sys.executable).parent / "fastflyer"), "serve", "--app-dir", str(DEMO),
      "--host", "127.0.0.1", "--port", "0", "--workers", "2"], "Application startup complete", 2),
], ids=["uvicorn", "fastflyer-serve"])
def test_a_real_server_prints_the_warning_once(tmp_path, command, ready, servers):
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("flyer_")}
    env.update(flyer_wokers="4", flyer_prot="9000", flyer_log_path=str(tmp_path / "logs"),
               flyer_access_log="0")
    console = tmp_path / "console.log"
    with console.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while console.read_text().count(ready) < servers:  # every app built
                assert process.poll() is None, console.read_text()
                assert time.monotonic() < deadline, console.read_text()
                time.sleep(0.05)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    output = console.read_text()
    assert output.count("flyer_wokers is not a FastFlyer setting (did you mean "
                        "flyer_workers?); it is ignored") == 1, output
    assert output.count("flyer_prot is not a FastFlyer setting (did you mean "
                        "flyer_port?); it is ignored") == 1, output


# --- Host names and URLs, checked at start-up ---------------------------------------------

@pytest.mark.parametrize("host", ["0.0.0.0", "::", "::1", "127.0.0.1", "localhost",
                                  "api.example.com", "api.example.com.", "xn--bcher-kva.example",
                                  "a" * 63 + ".example"])
def test_a_bind_host_is_an_ip_address_or_rfc_1123_host_name(monkeypatch, host):
    monkeypatch.setenv("flyer_host", host)
    assert load_settings().host == host


@pytest.mark.parametrize("host", ["not_a_host", "a b", "-api.example.com", "api-.example.com",
                                  "api..example.com", "1.2.3.999", "[::1]", "http://api",
                                  "a" * 64 + ".example"])
def test_a_bad_bind_host_is_one_line_naming_it(monkeypatch, host):
    monkeypatch.setenv("flyer_host", host)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.lines == [
        f"flyer_host={host!r} is not allowed: an IP address (v4 or v6) or a host name "
        "(RFC 1123: dot-separated labels of letters, digits and inner '-')"]


@pytest.mark.parametrize(("name", "value"), [
    ("db_url", "sqlite:///data/app.db"),
    ("db_url", "mysql+pymysql://root:s%40cret@127.0.0.1:3306/test?charset=utf8mb4"),
    ("db_url", "mysql+pymysql://app:secret@mariadb_primary/flyer"),  # a Compose service name
    ("db_url", "mysql+pymysql://app@[::1]:3306/flyer"),
    ("redis_host", "127.0.0.1"),
    ("redis_host", "redis_cache"),
    ("redis_host", "redis://:secret@cache.internal:6380/2"),
    ("redis_host", "rediss://user:secret@cache.internal"),
    ("redis_host", "unix:///run/redis.sock?db=1"),
    ("kafka_servers", "k1:9092, k2.internal:9093,10.0.0.7:9094,[::1]:9095"),
    ("cors_origins", "https://shop.example.com, http://localhost:3000,http://[::1]:8080"),
    ("cors_origins", "*"),
])
def test_good_hosts_and_urls_pass(monkeypatch, name, value):
    monkeypatch.setenv(f"flyer_{name}", value)
    kept = getattr(load_settings(), name)
    kept = kept.get_secret_value() if hasattr(kept, "get_secret_value") else kept
    # Kept as given; lists lose only the blanks around their commas.
    parts = [part.strip() for part in value.split(",")]
    assert kept == {"kafka_servers": ",".join(parts), "cors_origins": parts}.get(name, value)


@pytest.mark.parametrize(("given", "compared"), [
    ("HTTPS://Shop.Example.COM", "https://shop.example.com"),
    ("https://shop.example.com:443", "https://shop.example.com"),
    ("http://shop.example.com:", "http://shop.example.com"),
    ("http://localhost:3000", "http://localhost:3000"),
])
def test_origins_are_kept_as_browsers_send_them(monkeypatch, given, compared):
    # CORS compares the Origin header string for string: a spelling no browser sends
    # would never match.
    monkeypatch.setenv("flyer_cors_origins", given)
    assert load_settings().cors_origins == [compared]


@pytest.mark.parametrize("host", ["localhost\n", "0.0.0.0\n", "a..b", "-a.com"])
def test_a_bind_host_with_a_trailing_newline_or_empty_label_is_refused(monkeypatch, host):
    monkeypatch.setenv("flyer_host", host)
    with pytest.raises(SettingsError):
        load_settings()


@pytest.mark.parametrize("prefix", ["/a/../b", "/..", "/.", "/a/./b"])
def test_a_prefix_with_dot_segments_is_refused(monkeypatch, prefix):
    # Clients resolve "." and ".." away (RFC 3986, 5.2.4): such an API is unreachable.
    monkeypatch.setenv("flyer_base_url", prefix)
    with pytest.raises(SettingsError):
        load_settings()


def test_a_variable_set_in_upper_case_is_named_as_set(monkeypatch):
    monkeypatch.setenv("FLYER_PORT", "abc")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.lines[0].startswith("FLYER_PORT='abc' is not allowed")


@pytest.mark.parametrize(("name", "value", "shown", "why"), [
    ("db_url", "mysql+pymysql://u:secret@h:x/db", "mysql+pymysql://u:***@h:x/db",
     "its port is not a number"),
    ("db_url", "mysql+pymysql://u:secret@h:70000/db", "mysql+pymysql://u:***@h:70000/db",
     "its port 70000 is not between 1 and 65535"),
    ("db_url", "mysqll://u:secret@h/db", "mysqll://u:***@h/db",
     "SQLAlchemy has no dialect 'mysqll'"),
    ("db_url", "mysql+nodriver://h/db", "mysql+nodriver://h/db",
     "SQLAlchemy has no dialect 'mysql+nodriver'"),
    ("db_url", "mysql://u:secret@my host/db", "mysql://u:***@my host/db",
     "it holds a space or a control character"),
    ("db_url", "mysql+pymysql://u:secret@h\n/db", "mysql+pymysql://u:***@h\n/db",
     "it holds a space or a control character"),
    # A password with an unescaped '@' or '/' breaks the URL apart; no part of it is quoted.
    ("db_url", "mysql+pymysql://u:pw@secret@db:3306/app", "mysql+pymysql://u:***@db:3306/app",
     "percent-encode them (%40, %2F, %3F, %23)"),
    ("db_url", "mysql+pymysql//u:secret@h/db", "mysql+pymysql//u:***@h/db",
     "it is no dialect[+driver]://... URL"),
    ("db_url", "mysql+pymysql://u:secret", "mysql+pymysql://u:***",
     "its port is not a number"),
    # Accepted today, a 500 at every first query: the driver is checked at start-up.
    ("db_url", "postgresql://u:secret@h/db", "postgresql://u:***@h/db",
     "its driver is not installed"),
    ("db_url", "mysql+aiomysql://u:secret@h/db", "mysql+aiomysql://u:***@h/db",
     "'mysql+aiomysql' is an asyncio driver: give the sync URL"),
    ("db_url", "notaurl", "notaurl", "it is no dialect[+driver]://... URL"),
    ("db_url", "sqlite://", "sqlite://", "an in-memory SQLite database is private"),
    ("db_url", "sqlite:///:memory:", "sqlite:///:memory:", "an in-memory SQLite database"),
    ("db_url", "root:secret@db:3306/flyer", "root:***@db:3306/flyer",
     "it is no dialect[+driver]://... URL"),
    ("redis_host", "redis://:secret@cache:x/0", "redis://:***@cache:x/0",
     "its port is not a number from 1 to 65535"),
    ("redis_host", "redis://cache/zero", "redis://cache/zero",
     "its database (the path) is not a number"),
    ("redis_host", "redis://:12/secret@h/0", "redis://:***@h/0", "percent-encode them"),
    ("redis_host", "redis://:12#secret@h", "redis://:***@h", "percent-encode them"),
    ("redis_host", "redis://:secret", "redis://:***", "its port is not a number"),
    ("redis_host", "http://cache", "http://cache", "its scheme 'http' is none of redis"),
    ("redis_host", "unix://", "unix://", "a unix:// URL needs the socket's path"),
    ("redis_host", "cache host", "cache host",
     "it is neither an IP address, a host name nor a URL"),
    ("kafka_servers", "k1:9092,k2", "k1:9092,k2", "'k2' is not host:port"),
    ("kafka_servers", "u:secret@k1:9092", "u:***@k1:9092", "with no user or password"),
    ("kafka_servers", "k1:99999", "k1:99999", "'k1:99999': the port 99999 is not between"),
    ("kafka_servers", "bad host:9092", "bad host:9092",
     "'bad host:9092': 'bad host' is not an IP address or host name"),
    ("kafka_servers", "::1:9092", "::1:9092", "'::1:9092': '::1' is not an IP address"),
    ("cors_origins", "https://shop.example.com/", "https://shop.example.com/",
     "'https://shop.example.com/' is not scheme://host[:port]"),
    ("cors_origins", "https://u:secret@shop.example.com", "https://u:***@shop.example.com",
     "with no user or password"),
    ("cors_origins", "shop.example.com", "shop.example.com",
     "'shop.example.com' is not scheme://host[:port]"),
    ("cors_origins", "https://shop.example.com:0", "https://shop.example.com:0",
     "the port 0 is not between 1 and 65535"),
])
def test_a_bad_host_or_url_is_one_line_with_the_password_masked(monkeypatch, name, value,
                                                                  shown, why):
    monkeypatch.setenv(f"flyer_{name}", value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    [line] = caught.value.lines
    assert line.startswith(f"flyer_{name}={shown!r} is not allowed: "), line
    assert why in line
    assert "secret" not in line


# --- Values given another way name that way ----------------------------------------------

def test_an_override_names_where_it_came_from(monkeypatch):
    monkeypatch.setenv("flyer_threads", "1")
    with pytest.raises(SettingsError) as caught:
        load_settings({"workers": "--workers", "host": "--host", "base_url": "Config.PREFIX"},
                      workers=0, host="a b", base_url="shop/", port=0)
    assert caught.value.lines == [
        "--host 'a b' is not allowed: an IP address (v4 or v6) or a host name (RFC 1123: "
        "dot-separated labels of letters, digits and inner '-')",
        "flyer_port='0' is not allowed: an integer from 1 to 65535",  # no source given
        "Config.PREFIX='shop/' is not allowed: a path like /flyer or /api/v1 (letters, "
        "digits, '.', '_', '-'; no trailing '/')",
        "--workers 0 is not allowed: an integer ≥ 1 (unset: the CPUs this process may use)",
        "flyer_threads='1' is not allowed: an integer ≥ 5"]


def test_a_bad_prefix_in_the_projects_settings_names_the_class():
    class ShopConfig(BaseConfig):
        PREFIX = "shop/"

    with pytest.raises(SettingsError) as caught:
        FlyerAPI(config=ShopConfig)
    assert str(caught.value).startswith("ShopConfig.PREFIX='shop/' is not allowed: a path")
