"""Configuration: every ``flyer_*`` environment variable, read and validated in one place.

    from fastflyer.settings import load_settings
    settings = load_settings()            # reads os.environ now, never at import
    settings.port, settings.base_url

A bad value stops start-up before anything binds: :class:`SettingsError` is a
``SystemExit`` whose message has one line per bad variable, naming it, its value
and what is allowed::

    flyer_workers='0' is not allowed: an integer ≥ 1

A project overrides the framework's defaults (title, description, version, prefix)
in its ``settings.py`` by subclassing :class:`BaseConfig`; an explicitly set
environment variable still wins over the project's default.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["BaseConfig", "FlyerSettings", "SettingsError", "load_settings"]

_LEVELS = {"debug": "DEBUG", "info": "INFO", "warn": "WARNING", "warning": "WARNING",
           "error": "ERROR", "critical": "CRITICAL"}
BASE_URL_PATTERN = r"^(/[A-Za-z0-9._-]+)+$"

CommaList = Annotated[list[str], NoDecode]


def _allowed(default: Any, allowed: str, **constraints: Any) -> Any:
    """A field whose description says what is allowed (quoted in error lines)."""
    return Field(default, description=allowed, **constraints)


class SettingsError(SystemExit):
    """A ``flyer_*`` variable holds a value that is not allowed.

    A ``SystemExit``: raised while the app is built, it stops the process with its
    message (one line per bad variable) and no traceback, before any port is bound.
    """

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))

    def __str__(self) -> str:
        return "\n".join(self.lines)


class FlyerSettings(BaseSettings):
    """The framework's configuration, from ``flyer_<name>`` variables (any case)."""

    model_config = SettingsConfigDict(env_prefix="flyer_", case_sensitive=False,
                                      extra="ignore", validate_default=True,
                                      env_ignore_empty=True)

    # The seed's base table.
    host: str = _allowed("0.0.0.0", "a host name or IP address", min_length=1)
    port: int = _allowed(8080, "an integer from 1 to 65535", ge=1, le=65535)
    base_url: str = _allowed("/flyer", "a path like /flyer or /api/v1 "
                             "(letters, digits, '.', '_', '-'; no trailing '/')",
                             pattern=BASE_URL_PATTERN)
    version: str = _allowed("v1", "any text", min_length=1)
    reload: bool = _allowed(False, "1 or 0")
    workers: int | None = _allowed(None, "an integer ≥ 1 (unset: the CPUs this process may use)",
                                   ge=1)
    threads: int = _allowed(5, "an integer ≥ 5", ge=5)
    worker_connections: int = _allowed(1000, "an integer ≥ 1", ge=1)
    enable_max_requests: bool = _allowed(False, "1 or 0")
    max_requests: int = _allowed(0, "an integer ≥ 0", ge=0)
    max_requests_jitter: int = _allowed(0, "an integer ≥ 0", ge=0)
    timeout: float = _allowed(60, "a number of seconds ≥ 0", ge=0)
    graceful_timeout: float = _allowed(1, "a number of seconds ≥ 0", ge=0)
    keepalive: float = _allowed(5, "a number of seconds ≥ 0", ge=0)
    console_log_level: str = _allowed("info", "one of debug, info, warn, error, critical")
    file_log_level: str = _allowed("info", "one of debug, info, warn, error, critical")
    access_log: bool = _allowed(True, "1 or 0")
    access_logfile: str = _allowed("-", "a file path, or - for the console", min_length=1)

    # Read by the original too.
    log_path: str | None = _allowed(None, "a directory path")
    access_log_exclude_uris: CommaList = _allowed(
        [], "comma-separated paths (a trailing * matches a prefix)")
    auth_enable: bool = _allowed(False, "1 or 0")
    auth_user: str = _allowed("", "a user name")
    auth_pass: SecretStr = _allowed(SecretStr(""), "a password")

    # New here.
    docs_enabled: bool = _allowed(True, "1 or 0")
    always_http_200: bool = _allowed(False, "1 or 0 (1: errors answer HTTP 200, as the "
                                     "original did; the body code still tells the error)")
    cors_origins: CommaList = _allowed([], "comma-separated origins, or * (unset: no CORS)")
    cors_allow_credentials: bool = _allowed(False, "1 or 0")
    cors_methods: CommaList = _allowed(["*"], "comma-separated HTTP methods, or *")
    cors_headers: CommaList = _allowed(["*"], "comma-separated header names, or *")
    gzip_min_size: int = _allowed(0, "a size in bytes ≥ 0 (0: no compression)", ge=0)
    max_body_size: int = _allowed(10 * 1024 * 1024, "a size in bytes ≥ 0 (0: no limit)", ge=0)
    opentelemetry_enabled: bool = _allowed(
        False, "1 or 0 (1: FastAPI's OpenTelemetry spans and metrics, where FastAPI has them)")
    fast_path: bool = _allowed(True, "1 or 0 (0: every route through FastAPI's full handling)")
    trusted_proxies: CommaList = _allowed(
        [], "comma-separated IP addresses or networks (unset: trust no X-Forwarded-For)")

    # Data components (the seed's Redis section; any SQLAlchemy URL for the database).
    redis_host: str | None = _allowed(None, "a host name or IP address, or a redis:// URL "
                                      "(unset: no default Redis)")
    redis_port: int = _allowed(6379, "an integer from 1 to 65535", ge=1, le=65535)
    redis_pass: SecretStr = _allowed(SecretStr(""), "a password")
    redis_db: int = _allowed(0, "an integer ≥ 0", ge=0)
    db_url: SecretStr = _allowed(SecretStr(""), "a SQLAlchemy URL such as "
                                 "mysql+pymysql://user:password@host:3306/name "
                                 "(unset: SQLite in the data directory)")
    data_dir: str | None = _allowed(None, "a directory path (unset: data/ in the project)")

    # Kafka (fastflyer.message).
    kafka_servers: str | None = _allowed(
        None, "host:port[,host:port...] (unset: no Kafka)",
        pattern=r"^\s*[^\s,:]+:\d{1,5}\s*(,\s*[^\s,:]+:\d{1,5}\s*)*$")
    kafka_security_protocol: str = _allowed(
        "PLAINTEXT", "one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
        pattern=r"^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$")
    kafka_sasl_mechanism: str = _allowed(
        "PLAIN", "one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512",
        pattern=r"^(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512)$")
    kafka_sasl_username: str = _allowed("", "a user name")
    kafka_sasl_password: SecretStr = _allowed(SecretStr(""), "a password")

    # Schedulers and the thread pool.
    lock_ttl: float = _allowed(30, "a number of seconds > 0 (how long a lock outlives a "
                               "holder that died)", gt=0)

    @field_validator("console_log_level", "file_log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> str:
        level = _LEVELS.get(str(value).strip().lower())
        if level is None:
            raise ValueError("not a log level")
        return level

    @field_validator("access_log_exclude_uris", "cors_origins", "cors_methods", "cors_headers",
                     "trusted_proxies", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # ValueError names the bad item
        return value

    @field_validator("db_url")
    @classmethod
    def _sqlalchemy_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if url and not re.match(r"^[A-Za-z][A-Za-z0-9+_.-]*://", url):
            raise ValueError("not a URL")
        return value

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("kafka_servers")
    @classmethod
    def _kafka_servers(cls, value: str | None) -> str | None:
        return ",".join(part.strip() for part in value.split(",")) if value else value

    @model_validator(mode="after")
    def _kafka_sasl_complete(self) -> FlyerSettings:
        if self.kafka_security_protocol.startswith("SASL") and not (
                self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()):
            raise ValueError(f"kafka_security_protocol={self.kafka_security_protocol} needs "
                             "flyer_kafka_sasl_username and flyer_kafka_sasl_password")
        return self

    @model_validator(mode="after")
    def _auth_complete(self) -> FlyerSettings:
        if self.auth_enable and not (self.auth_user and self.auth_pass.get_secret_value()):
            raise ValueError("auth_enable needs flyer_auth_user and flyer_auth_pass")
        return self


class BaseConfig:
    """Framework defaults a project overrides in its ``settings.py``::

        from fastflyer.settings import BaseConfig

        class CustomConfig(BaseConfig):
            API_TITLE = "Orders API"
            PREFIX = "/orders"

    ``None`` means: take it from the environment (``flyer_version``, ``flyer_base_url``).
    An environment variable that is explicitly set wins over the project's value.
    """

    API_TITLE: str = "FastFlyer"
    DESCRIPTION: str = "An API service built on FastFlyer."
    VERSION: str | None = None
    PREFIX: str | None = None


_SECRETS = ("auth_pass", "redis_pass", "db_url", "kafka_sasl_password")


def _describe_error(error: Mapping[str, Any]) -> str:
    loc = error.get("loc") or ()
    name = str(loc[0]) if loc else ""
    if not name:  # a model-level rule
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        return f"flyer_{message}" if message.startswith(("auth_", "kafka_")) else message
    field = FlyerSettings.model_fields.get(name)
    allowed = field.description if field is not None else error.get("msg", "")
    shown = error.get("input")
    if name in _SECRETS:
        shown = "***"
    return f"flyer_{name}={str(shown)!r} is not allowed: {allowed}"


def load_settings(**overrides: Any) -> FlyerSettings:
    """Read and validate the ``flyer_*`` variables from ``os.environ`` now.

    ``overrides`` take the place of variables (``load_settings(port=9000)``); an empty
    variable counts as unset. Raises :class:`SettingsError` naming every bad variable.
    """
    try:
        return FlyerSettings(**overrides)
    except ValidationError as exc:
        raise SettingsError([_describe_error(e) for e in exc.errors()]) from None
