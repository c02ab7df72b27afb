"""Settings of the etcd config center (``flyer_config_*``) and service registry
(``flyer_registry_*``): defaults, the seed's names for them (``flyer_rainbow_*``,
``flyer_polaris_*``), validation in one line per bad variable, the registry's metadata
labels, and the unknown-variable warnings."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from fastflyer.settings import (
    ConfigCenterSettings,
    FlyerSettings,
    SettingsError,
    load_config_center_settings,
    load_settings,
    unknown_variable_warnings,
)

CONFIG_FIELDS = {"config_enabled", "config_endpoints", "config_app_id", "config_env_name",
                 "config_group_name", "config_user", "config_password",
                 "config_sync_enabled", "config_sync_interval", "config_allow_unreachable"}

# Every flyer_rainbow_* and flyer_polaris_* name of the seed's tables (document 004), the
# setting it sets, a value for it and what the setting then holds.
SEED_NAMES: list[tuple[str, str, str, Any]] = [
    ("flyer_rainbow_enabled", "config_enabled", "1", True),
    ("flyer_rainbow_host", "config_endpoints", "etcd.example:8080",
     ["http://etcd.example:8080"]),
    ("flyer_rainbow_app_id", "config_app_id", "orders", "orders"),
    ("flyer_rainbow_user_id", "config_user", "reader", "reader"),
    ("flyer_rainbow_secret_key", "config_password", "hunter2", "hunter2"),
    ("flyer_rainbow_group_name", "config_group_name", "main.v2", "main.v2"),
    ("flyer_rainbow_env_name", "config_env_name", "Production", "Production"),
    ("flyer_rainbow_sync_enabled", "config_sync_enabled", "0", False),
    ("flyer_rainbow_sync_interval", "config_sync_interval", "30", 30.0),
    ("flyer_polaris_enabled", "registry_enabled", "1", True),
    ("flyer_polaris_namespace", "registry_namespace", "Pre-release", "Pre-release"),
    ("flyer_polaris_service", "registry_service", "orders-api", "orders-api"),
    ("flyer_polaris_token", "registry_token", "root:hunter2", "root:hunter2"),
    ("flyer_polaris_heartbeat_interval", "registry_heartbeat_interval", "7", 7.0),
]
# What the setting holds when its own name is set too (to another value): that one.
OWN_VALUES: dict[str, tuple[str, Any]] = {
    "config_enabled": ("0", False),
    "config_endpoints": ("https://other.example:2379", ["https://other.example:2379"]),
    "config_app_id": ("billing", "billing"),
    "config_user": ("writer", "writer"),
    "config_password": ("s3cret", "s3cret"),
    "config_group_name": ("other", "other"),
    "config_env_name": ("Test", "Test"),
    "config_sync_enabled": ("1", True),
    "config_sync_interval": ("60", 60.0),
    "registry_enabled": ("0", False),
    "registry_namespace": ("Development", "Development"),
    "registry_service": ("billing-api", "billing-api"),
    "registry_token": ("admin:s3cret", "admin:s3cret"),
    "registry_heartbeat_interval": ("3", 3.0),
}


def _value(settings: FlyerSettings, field: str) -> Any:
    value = getattr(settings, field)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _error(monkeypatch: pytest.MonkeyPatch, **env: str) -> SettingsError:
    """The error that loading the settings with ``env`` set raises."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings(warn_unknown=False)
    return raised.value


def test_defaults() -> None:
    settings = load_settings(warn_unknown=False)
    assert settings.config_enabled is False
    assert settings.config_endpoints == ["http://127.0.0.1:2379"]
    assert (settings.config_app_id, settings.config_env_name, settings.config_group_name) == \
        ("", "", "")
    assert settings.config_user == ""
    assert settings.config_password.get_secret_value() == ""
    assert settings.config_sync_enabled is True
    assert settings.config_sync_interval == 10
    assert settings.config_allow_unreachable is False
    assert settings.registry_enabled is False
    assert settings.registry_endpoints == ["http://127.0.0.1:2379"]
    assert settings.registry_namespace == "default"
    assert settings.registry_service is None
    assert settings.registry_token.get_secret_value() == ""
    assert settings.registry_heartbeat_interval == 5
    assert settings.registry_host is None
    assert settings.registry_metadata == {}
    # Left at their defaults, none counts as set (the app tells explicit settings apart).
    assert not {name for name in settings.model_fields_set
                if name.startswith(("config_", "registry_"))}


def test_every_setting_is_read_under_its_own_name(monkeypatch: pytest.MonkeyPatch) -> None:
    own = {"flyer_config_allow_unreachable": "1", "flyer_registry_endpoints": "etcd:2379",
           "flyer_registry_host": "10.0.0.7",
           **{f"flyer_{field}": raw for field, (raw, _) in OWN_VALUES.items()}}
    for name, value in own.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(warn_unknown=False)
    for field, (_, expected) in OWN_VALUES.items():
        assert _value(settings, field) == expected, field
    assert settings.config_allow_unreachable is True
    assert settings.registry_endpoints == ["http://etcd:2379"]
    assert settings.registry_host == "10.0.0.7"


@pytest.mark.parametrize(("alias", "field", "raw", "expected"), SEED_NAMES,
                         ids=[alias for alias, *_ in SEED_NAMES])
def test_each_seed_name_sets_its_setting(monkeypatch: pytest.MonkeyPatch, alias: str,
                                         field: str, raw: str, expected: Any) -> None:
    monkeypatch.setenv(alias, raw)
    if field == "config_password":  # a password needs its user
        monkeypatch.setenv("flyer_config_user", "reader")
    if field == "config_enabled":  # an enabled config center needs its key
        for name in ("config_app_id", "config_env_name", "config_group_name"):
            monkeypatch.setenv(f"flyer_{name}", "x")
    # Validation only: the config center itself is read in test_config_center.py.
    settings = load_settings(warn_unknown=False, config_center=False)
    assert _value(settings, field) == expected
    assert field in settings.model_fields_set


@pytest.mark.parametrize(("alias", "field"), [(alias, field) for alias, field, *_ in SEED_NAMES],
                         ids=[alias for alias, *_ in SEED_NAMES])
def test_the_own_name_wins_over_the_seed_name(monkeypatch: pytest.MonkeyPatch, alias: str,
                                              field: str) -> None:
    seed_raw = next(raw for name, _, raw, _ in SEED_NAMES if name == alias)
    own_raw, own_expected = OWN_VALUES[field]
    # Set in either order, in other cases: the names are case-insensitive.
    monkeypatch.setenv(f"FLYER_{field.upper()}", own_raw)
    monkeypatch.setenv(alias.upper(), seed_raw)
    if field == "config_password":  # a password needs its user
        monkeypatch.setenv("flyer_config_user", "reader")
    settings = load_settings(warn_unknown=False)
    assert _value(settings, field) == own_expected


def test_seed_names_are_read_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYER_RAINBOW_HOST", "10.1.2.3:2379")
    monkeypatch.setenv("Flyer_Polaris_Heartbeat_Interval", "9")
    settings = load_settings(warn_unknown=False)
    assert settings.config_endpoints == ["http://10.1.2.3:2379"]
    assert settings.registry_heartbeat_interval == 9


def test_an_empty_own_name_leaves_the_seed_name_in_force(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("flyer_config_sync_interval", "")  # empty: unset, as everywhere
    monkeypatch.setenv("flyer_rainbow_sync_interval", "20")
    assert load_settings(warn_unknown=False).config_sync_interval == 20


def test_a_name_without_the_prefix_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("config_enabled", "1")
    monkeypatch.setenv("rainbow_enabled", "1")
    monkeypatch.setenv("registry_enabled", "1")
    settings = load_settings(warn_unknown=False)
    assert (settings.config_enabled, settings.registry_enabled) == (False, False)


def test_settings_given_in_code_by_their_own_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("flyer_rainbow_sync_interval", "20")
    settings = load_settings(warn_unknown=False, config_sync_interval=30,
                             registry_endpoints="a.example:1,https://b.example",
                             registry_metadata={"zone": "ap"})
    assert settings.config_sync_interval == 30  # over the variable
    assert settings.registry_endpoints == ["http://a.example:1", "https://b.example"]
    # The settings of an app are built again from their values (fastflyer.application).
    assert load_settings(warn_unknown=False, **dict(settings)) == settings


@pytest.mark.parametrize(("raw", "expected"), [
    ("127.0.0.1:2379", ["http://127.0.0.1:2379"]),  # as the seed writes it
    ("HTTPS://Etcd.Example:2379/", ["https://etcd.example:2379"]),
    ("http://[::1]:2379, etcd-2:2379 ,", ["http://[::1]:2379", "http://etcd-2:2379"]),
    ("https://etcd.example", ["https://etcd.example"]),
    ("etcd_1:2379", ["http://etcd_1:2379"]),  # a Docker Compose service name
])
def test_endpoints_are_normalised(monkeypatch: pytest.MonkeyPatch, raw: str,
                                  expected: list[str]) -> None:
    monkeypatch.setenv("flyer_config_endpoints", raw)
    monkeypatch.setenv("flyer_registry_endpoints", raw)
    settings = load_settings(warn_unknown=False)
    assert settings.config_endpoints == settings.registry_endpoints == expected


ENDPOINTS = ("comma-separated etcd URLs, each http(s)://host[:port] with no path, user or "
             "password (host[:port] alone means http://)")
SEGMENT = "a key segment: letters, digits, '.', '_', '-'"
NEEDED = " (needed with flyer_config_enabled=1)"


@pytest.mark.parametrize(("env", "line"), [
    ({"flyer_config_sync_interval": "2"},
     "flyer_config_sync_interval='2' is not allowed: a number of seconds from 5 to 86400 "
     "(how often the config center is read again)"),
    ({"flyer_rainbow_sync_interval": "2"},
     "flyer_rainbow_sync_interval='2' is not allowed: a number of seconds from 5 to 86400 "
     "(how often the config center is read again)"),
    ({"FLYER_RAINBOW_SYNC_INTERVAL": "inf"},
     "FLYER_RAINBOW_SYNC_INTERVAL='inf' is not allowed: a number of seconds from 5 to 86400 "
     "(how often the config center is read again)"),
    ({"flyer_registry_heartbeat_interval": "0"},
     "flyer_registry_heartbeat_interval='0' is not allowed: a number of seconds from 1 to "
     "86400 (how often the registration is renewed)"),
    ({"flyer_polaris_heartbeat_interval": "0"},
     "flyer_polaris_heartbeat_interval='0' is not allowed: a number of seconds from 1 to "
     "86400 (how often the registration is renewed)"),
    ({"flyer_config_enabled": "maybe"},
     "flyer_config_enabled='maybe' is not allowed: 1 or 0 (1: read the settings from the "
     "etcd config center at start)"),
    ({"flyer_config_endpoints": "ftp://etcd:2379"},
     f"flyer_config_endpoints='ftp://etcd:2379' is not allowed: {ENDPOINTS}; "
     "'ftp://etcd:2379': its scheme is neither http nor https"),
    ({"flyer_rainbow_host": "http://etcd:2379/v3"},
     f"flyer_rainbow_host='http://etcd:2379/v3' is not allowed: {ENDPOINTS}; "
     "'http://etcd:2379/v3' is not http(s)://host[:port]"),
    ({"flyer_registry_endpoints": "http://etcd:2379,http://etcd:0"},
     f"flyer_registry_endpoints='http://etcd:2379,http://etcd:0' is not allowed: "
     f"{ENDPOINTS}; 'http://etcd:0': the port 0 is not between 1 and 65535"),
    ({"flyer_registry_endpoints": "http://etcd host:2379"},
     f"flyer_registry_endpoints='http://etcd host:2379' is not allowed: {ENDPOINTS}; "
     "an endpoint holds a space or a control character"),
    ({"flyer_config_endpoints": ","},
     f"flyer_config_endpoints=',' is not allowed: {ENDPOINTS}; it names no endpoint"),
    ({"flyer_config_app_id": "orders/v2"},
     f"flyer_config_app_id='orders/v2' is not allowed: {SEGMENT}{NEEDED}"),
    ({"flyer_rainbow_group_name": "a/b"},
     f"flyer_rainbow_group_name='a/b' is not allowed: {SEGMENT}{NEEDED}"),
    ({"flyer_rainbow_env_name": "../prod"},
     f"flyer_rainbow_env_name='../prod' is not allowed: {SEGMENT}{NEEDED}"),
    ({"flyer_registry_namespace": "team/a"},
     f"flyer_registry_namespace='team/a' is not allowed: {SEGMENT}"),
    ({"flyer_polaris_service": "orders/api"},
     f"flyer_polaris_service='orders/api' is not allowed: {SEGMENT} (unset: the service's "
     "name)"),
    ({"flyer_registry_host": "not a host"},
     "flyer_registry_host='not a host' is not allowed: an IP address or host name other "
     "instances reach this one at (unset: this machine's address)"),
    ({"flyer_rainbow_enabled": "1", "flyer_rainbow_env_name": "Test",
      "flyer_config_group_name": "main"},
     "flyer_rainbow_enabled='1' needs flyer_config_app_id (or flyer_rainbow_app_id)"),
    ({"FLYER_CONFIG_ENABLED": "true"},
     "FLYER_CONFIG_ENABLED='true' needs flyer_config_app_id (or flyer_rainbow_app_id), "
     "flyer_config_env_name (or flyer_rainbow_env_name) and flyer_config_group_name (or "
     "flyer_rainbow_group_name)"),
    ({"flyer_registry_metadata": '{"zone": "ap"}'},
     "flyer_registry_metadata='{\"zone\": \"ap\"}' is not allowed: labels, one variable "
     "each: flyer_registry_metadata_<NAME>=value (or flyer_polaris_metadata_<NAME>=value); "
     "set flyer_registry_metadata_<NAME>=value for each label instead"),
])
def test_a_bad_value_is_one_line_naming_the_variable_set(
        monkeypatch: pytest.MonkeyPatch, env: dict[str, str], line: str) -> None:
    assert _error(monkeypatch, **env).lines == [line]


SECRET = "hunter2"


@pytest.mark.parametrize(("env", "line"), [
    ({"flyer_config_endpoints": f"http://root:{SECRET}@127.0.0.1:2379"},
     f"flyer_config_endpoints='***' is not allowed: {ENDPOINTS}; an endpoint is "
     "http(s)://host[:port], with no user or password (those go in flyer_config_user and "
     "flyer_config_password)"),
    # A password holding '@' or '/' breaks the URL apart: still nothing of it is shown.
    ({"flyer_rainbow_host": f"127.0.0.1:2379,http://root:{SECRET}@/x@etcd:2379"},
     f"flyer_rainbow_host='127.0.0.1:2379,***' is not allowed: {ENDPOINTS}; an endpoint is "
     "http(s)://host[:port], with no user or password (those go in flyer_config_user and "
     "flyer_config_password)"),
    ({"flyer_registry_endpoints": f"root:{SECRET}@etcd:2379"},
     f"flyer_registry_endpoints='***' is not allowed: {ENDPOINTS}; an endpoint is "
     "http(s)://host[:port], with no user or password (those go in flyer_registry_token)"),
    ({"flyer_rainbow_secret_key": SECRET},
     "flyer_rainbow_secret_key='***' needs flyer_config_user (or flyer_rainbow_user_id)"),
    ({"flyer_config_password": SECRET, "flyer_rainbow_app_id": "x"},
     "flyer_config_password='***' needs flyer_config_user (or flyer_rainbow_user_id)"),
    ({"flyer_polaris_token": SECRET},
     "flyer_polaris_token='***' is not allowed: etcd credentials as user:password (unset: "
     "no authentication); it is not user:password"),
    ({"flyer_registry_token": f"root:{SECRET}", "flyer_polaris_token": SECRET},  # own wins
     None),
    ({"flyer_registry_token": f"{SECRET}:"},
     "flyer_registry_token='***' is not allowed: etcd credentials as user:password (unset: "
     "no authentication); it is not user:password"),
])
def test_a_password_or_token_is_never_shown(monkeypatch: pytest.MonkeyPatch,
                                             env: dict[str, str], line: str | None) -> None:
    if line is None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert load_settings(warn_unknown=False).registry_token.get_secret_value() == \
            f"root:{SECRET}"
        return
    error = _error(monkeypatch, **env)
    assert error.lines == [line]
    assert SECRET not in str(error) and SECRET not in repr(error)
    assert error.__context__ is None and error.__cause__ is None


def test_a_value_given_in_code_names_its_source() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"config_sync_interval": "--sync-interval"}, warn_unknown=False,
                      config_sync_interval=1)
    assert raised.value.lines == [
        "--sync-interval 1 is not allowed: a number of seconds from 5 to 86400 (how often "
        "the config center is read again)"]
    with pytest.raises(SettingsError) as raised:
        load_settings(warn_unknown=False, config_password=SECRET)
    assert raised.value.lines == [
        "flyer_config_password='***' needs flyer_config_user (or flyer_rainbow_user_id)"]


def test_an_enabled_config_center_with_its_key_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"flyer_rainbow_enabled": "1", "flyer_rainbow_app_id": "orders",
                        "flyer_rainbow_env_name": "Production",
                        "flyer_rainbow_group_name": "main", "flyer_rainbow_user_id": "reader",
                        "flyer_rainbow_secret_key": SECRET}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(warn_unknown=False, config_center=False)  # validation only
    assert settings.config_enabled is True
    assert (settings.config_app_id, settings.config_env_name, settings.config_group_name) == \
        ("orders", "Production", "main")
    assert SECRET not in repr(settings)


def test_metadata_labels_come_from_both_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("flyer_registry_metadata_zone", "ap-guangzhou")
    monkeypatch.setenv("FLYER_POLARIS_METADATA_zone", "ap-shanghai")  # the own prefix wins
    monkeypatch.setenv("Flyer_Polaris_Metadata_Canary", "1")  # the NAME kept as written
    monkeypatch.setenv("flyer_registry_metadata_team", "orders")
    monkeypatch.setenv("flyer_registry_metadata_empty", "")  # empty: unset
    monkeypatch.setenv("flyer_registry_metadata_", "no name")  # no label
    settings = load_settings(warn_unknown=False)
    assert settings.registry_metadata == {"zone": "ap-guangzhou", "Canary": "1",
                                          "team": "orders"}
    assert "registry_metadata" in settings.model_fields_set


def test_metadata_given_in_code_replaces_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("flyer_registry_metadata_zone", "ap-guangzhou")
    assert FlyerSettings(registry_metadata={"rack": "r1"}).registry_metadata == {"rack": "r1"}
    assert load_settings(warn_unknown=False, registry_metadata={}).registry_metadata == {}


def test_no_warning_about_seed_names_or_metadata_labels() -> None:
    names = {alias: "1" for alias, *_ in SEED_NAMES}
    upper = {alias.upper(): "1" for alias in names}
    labels = {"flyer_registry_metadata_zone": "a", "FLYER_POLARIS_METADATA_Rack": "b",
              "flyer_config_allow_unreachable": "1", "flyer_registry_host": "h"}
    assert unknown_variable_warnings({**names, **upper, **labels}) == []


@pytest.mark.parametrize(("name", "line"), [
    ("flyer_rainbow_hots", "flyer_rainbow_hots is not a FastFlyer setting (did you mean "
                           "flyer_rainbow_host?); it is ignored"),
    ("flyer_polaris_metadata_", "flyer_polaris_metadata_ is not a FastFlyer setting (did you "
                                "mean flyer_registry_metadata?); it is ignored"),
    ("flyer_config_sync_intreval", "flyer_config_sync_intreval is not a FastFlyer setting "
                                   "(did you mean flyer_config_sync_interval?); it is ignored"),
])
def test_a_mistyped_name_is_still_warned_about(name: str, line: str) -> None:
    assert unknown_variable_warnings({name: "1"}) == [line]


def test_the_config_center_reads_only_its_own_variables(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(ConfigCenterSettings.model_fields) == CONFIG_FIELDS
    assert issubclass(FlyerSettings, ConfigCenterSettings)
    assert set(FlyerSettings.model_fields) > CONFIG_FIELDS
    # The rest may be bad (or put in place by the config center later): not read here.
    monkeypatch.setenv("flyer_port", "0")
    monkeypatch.setenv("flyer_registry_heartbeat_interval", "0")
    monkeypatch.setenv("flyer_rainbow_host", "etcd.example:2379")
    monkeypatch.setenv("flyer_rainbow_sync_interval", "15")
    for settings in (ConfigCenterSettings(), load_config_center_settings()):
        assert type(settings) is ConfigCenterSettings
        assert settings.config_endpoints == ["http://etcd.example:2379"]
        assert settings.config_sync_interval == 15
    with pytest.raises(SettingsError):
        load_settings(warn_unknown=False)


def test_the_config_center_settings_name_a_bad_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("flyer_rainbow_sync_interval", "2")
    monkeypatch.setenv("flyer_rainbow_secret_key", SECRET)
    monkeypatch.setenv("flyer_rainbow_user_id", "reader")
    with pytest.raises(SettingsError) as raised:
        load_config_center_settings()
    assert raised.value.lines == [
        "flyer_rainbow_sync_interval='2' is not allowed: a number of seconds from 5 to 86400 "
        "(how often the config center is read again)"]
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize(("variables", "module", "extra"), [
    ({"flyer_config_enabled": "1", "flyer_config_app_id": "a", "flyer_config_env_name": "b",
      "flyer_config_group_name": "c"}, "etcd3gw", "etcd"),
    ({"flyer_rainbow_enabled": "1", "flyer_rainbow_app_id": "a",
      "flyer_rainbow_env_name": "b", "flyer_rainbow_group_name": "c"}, "etcd3gw", "etcd"),
    ({"flyer_registry_enabled": "1"}, "etcd3gw", "etcd"),
    ({"flyer_polaris_enabled": "1"}, "etcd3gw", "etcd"),
    ({"flyer_redis_host": "127.0.0.1"}, "redis", "redis"),
    ({"flyer_kafka_servers": "127.0.0.1:9092"}, "aiokafka", "kafka"),
    ({"flyer_opentelemetry_enabled": "1"}, "opentelemetry.sdk", "otel"),
], ids=["config", "rainbow", "registry", "polaris", "redis", "kafka", "otel"])
def test_a_feature_whose_extra_is_not_installed_says_which_to_install(
        monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], module: str,
        extra: str) -> None:
    # Turned on without its client library: one line at start naming the extra, not a
    # traceback (or a WARNING repeated every heartbeat) at first use.
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # as in an install without the extra
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(warn_unknown=False)
    line = str(caught.value)
    assert line.count("\n") == 0
    assert line.startswith(f"{next(iter(variables))}=")
    # Only the missing package: the value itself is allowed.
    assert line.endswith(f" needs {module}, which is not installed: pip install "
                         f"'fastflyer[{extra}]'")
    assert "is not allowed" not in line
