"""Configuration: every ``flyer_*`` environment variable, read and validated in one place.

    from fastflyer.settings import load_settings
    settings = load_settings()            # reads os.environ now, never at import
    settings.port, settings.base_url

A bad value stops start-up before anything binds: :class:`SettingsError` (a ``ValueError``
and a :class:`~fastflyer.exceptions.FastFlyerError`) has one line per bad variable, naming
it, its value and what is allowed::

    flyer_workers='0' is not allowed: an integer ≥ 1

A value given another way names that way instead: ``load_settings({"workers": "--workers"},
workers=0)`` says ``--workers 0 is not allowed: ...``. Passwords are masked (``***``; in
a URL, its password only). Host names, IP addresses and URLs (``flyer_host``,
``flyer_db_url``, ``flyer_redis_host``, ``flyer_kafka_servers``, ``flyer_cors_origins``)
are checked here, not when something first connects.

The etcd config center (``flyer_config_*``, also read under the seed's ``flyer_rainbow_*``
names) and service registry (``flyer_registry_*``, also ``flyer_polaris_*``) are checked
here too: their endpoints (``http(s)://host[:port]``, no user or password in them), the
key segments (letters, digits, ``.``, ``_``, ``-``), the intervals, and that what an
enabled config center needs is set. Where both a name and the seed's name are set, the
name wins; an error line names the variable that was set. The registry's metadata labels
come one per variable, ``flyer_registry_metadata_<NAME>`` (or the seed's
``flyer_polaris_metadata_<NAME>``). :class:`ConfigCenterSettings` holds the config
center's own variables, so that it can be read before the rest.

:func:`load_settings` also warns, once per process, about every ``flyer_*`` variable
that is no setting (a typo such as ``flyer_wokers``), naming the closest real one.

A project overrides the framework's defaults (title, description, version, prefix)
in its ``settings.py`` by subclassing :class:`BaseConfig`; an explicitly set
environment variable still wins over the project's default.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import shlex
from collections.abc import Mapping
from typing import Annotated, Any, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from fastflyer.exceptions import FastFlyerError
from fastkit.logging import LogSettings, parse_flag, parse_level

__all__ = ["BaseConfig", "ConfigCenterSettings", "FlyerSettings", "SettingsError",
           "describe_errors", "load_config_center_settings", "load_settings",
           "unknown_variable_warnings", "variable_name", "warn_unknown_variables"]

# Segments of letters, digits, ".", "_", "-"; never "." or "..", which clients resolve away.
BASE_URL_PATTERN = (r"^(/(?:[A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*"
                    r"|\.\.[A-Za-z0-9._-]+))+$")

CommaList = Annotated[list[str], NoDecode]
# Seconds a stopping process gets beyond its drain and stop hooks (log flush, exit).
STOP_MARGIN = 2.0
# The longest any duration setting may be: "wait forever" (inf) is no value.
DAY = 86400

# A label of a host name (RFC 1123): letters, digits and inner '-', at most 63 characters.
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# A host this process connects to may also hold '_' (Docker Compose service names do).
_PEER_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
# One segment of an etcd key (the config center's and the registry's): no '/', which
# separates them.
_KEY_SEGMENT = r"^[A-Za-z0-9._-]*$"
_ETCD = "http://127.0.0.1:2379"
# The registry's metadata labels, one variable each: flyer_registry_metadata_<NAME>, or
# the seed's flyer_polaris_metadata_<NAME>; on the same NAME, the first prefix wins.
# (Prefixes, not variables: a variable named just so is warned about.)
_METADATA_PREFIXES = tuple(f"flyer_{group}_metadata_" for group in ("registry", "polaris"))


def _allowed(default: Any, allowed: str, **constraints: Any) -> Any:
    """A field whose description says what is allowed (quoted in error lines)."""
    return Field(default, description=allowed, **constraints)


def _read_as(*names: str) -> AliasChoices:
    """The variables a field is read from, ``flyer_<name>`` for each of ``names``: the
    first one set wins (with a validation alias, pydantic-settings adds no prefix)."""
    return AliasChoices(*(f"flyer_{name}" for name in names))


class _Needs(ValueError):
    """A model-level finding: setting ``field`` to ``value`` needs the settings
    ``missing`` too; the error line names each as the variable that is (or may be) set."""

    def __init__(self, field: str, value: Any, missing: list[str]) -> None:
        self.field, self.value, self.missing = field, value, missing
        super().__init__(f"{field} needs {', '.join(missing)}")


class _Reason(ValueError):
    """A validator's finding that the error line quotes after what is allowed."""


class _MissingPackage(_Reason):
    """The value is allowed, but what it turns on needs a package that is not installed:
    the error line says so alone (``flyer_x=1 needs <package>...: pip install ...``)."""


def _is_host(host: str, *, peer: bool = False) -> bool:
    """``host`` is an IP address or a host name (``peer``: one that may hold ``_``)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    name = host.removesuffix(".")
    labels = name.split(".")
    label = _PEER_LABEL if peer else _LABEL
    return (0 < len(name) <= 253 and all(label.fullmatch(part) for part in labels)
            and not labels[-1].isdigit())  # 1.2.3.999 is a bad address, not a name


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported (``sys.modules[module] = None`` blocks it)."""
    import importlib.util
    import sys

    if module in sys.modules:
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def _app_name(name: str | None) -> str | None:
    """``name`` when it is a syslog APP-NAME (RFC 5424: 1-48 printable US-ASCII), else None."""
    return name if name and re.fullmatch(r"[!-~]{1,48}", name) else None


def _check_extra(module: str, extra: str) -> None:
    """A :class:`_MissingPackage` when ``module``, which FastFlyer's ``extra`` installs, is not
    installed: found where the settings are checked, not as a traceback at first use."""
    if not _installed(module):
        raise _MissingPackage(f"{module}, which is not installed: pip install "
                      f"'fastflyer[{extra}]'")


def _check_port(port: int | None, what: str) -> None:
    if port is not None and not 0 < port < 65536:
        raise _Reason(f"{what} {port} is not between 1 and 65535")


def _check_peer(host: str | None, what: str) -> None:
    # The host is not quoted: in a mistyped URL it may hold part of the password.
    if host and not _is_host(host, peer=True):
        raise _Reason(f"{what} is not an IP address or host name")


def _check_userinfo(url: str) -> None:
    """A password holding an unescaped ``@ / ? #`` breaks the URL apart; say so first,
    quoting nothing (any part quoted could hold the rest of the password)."""
    rest = url.partition("://")[2]
    if "@" in rest:
        userinfo = rest[:rest.rfind("@")]
        if any(char in userinfo for char in "@/?#"):
            raise _Reason("its user or password holds '@', '/', '?' or '#': percent-encode "
                          "them (%40, %2F, %3F, %23)")
    if any(char.isspace() or not char.isprintable() for char in url):
        raise _Reason("it holds a space or a control character")


def _check_db_url(text: str) -> None:
    """Parse ``text`` as SQLAlchemy does when it connects; a :class:`_Reason` if it cannot."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    _check_userinfo(text)
    try:
        url = make_url(text)
    except ArgumentError:
        raise _Reason("it is no dialect[+driver]://... URL") from None
    except ValueError:  # the only number in a URL
        raise _Reason("its port is not a number") from None
    _check_port(url.port, "its port")
    _check_peer(url.host, "its host")
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        # SQLAlchemy keeps one per thread, so each worker thread would see its own, empty.
        raise _Reason("an in-memory SQLite database is private to one connection: give a "
                      "file (sqlite:///data/app.db), or leave the variable unset")
    try:
        dialect = url.get_dialect()  # the dialect's module: no connection
    except (NoSuchModuleError, ImportError):
        raise _Reason(f"SQLAlchemy has no dialect {url.drivername!r}") from None
    if dialect.is_async:
        raise _Reason(f"{url.drivername!r} is an asyncio driver: give the sync URL (such as "
                      "mysql+pymysql://...); the asyncio pools derive their driver from it")
    try:
        dialect.import_dbapi()  # the driver, imported now rather than at the first query
    except ImportError as exc:
        raise _Reason(f"its driver is not installed ({exc.name or exc}): install it, "
                      "e.g. pip install 'fastflyer[mysql]' for MySQL") from None


def _check_redis(value: str) -> None:
    """A host name or IP address, or a URL redis-py takes."""
    if "://" not in value:
        if not _is_host(value, peer=True):
            raise _Reason("it is neither an IP address, a host name nor a URL")
        return
    _check_userinfo(value)
    url = urlsplit(value)
    if url.scheme.lower() not in _REDIS_SCHEMES:
        raise _Reason(f"its scheme {url.scheme!r} is none of redis, rediss, unix")
    if url.scheme.lower() == "unix":
        if not url.path:
            raise _Reason("a unix:// URL needs the socket's path")
        return
    try:
        port = url.port
    except ValueError:
        raise _Reason("its port is not a number from 1 to 65535") from None
    _check_port(port, "its port")
    _check_peer(url.hostname, "its host")
    database = url.path.strip("/")
    if database and not database.isdigit():
        raise _Reason("its database (the path) is not a number")


def _check_kafka(value: str) -> None:
    """``host:port[,host:port...]``; an IPv6 address in brackets (``[::1]:9092``)."""
    if "@" in value:  # not quoted: what stands before it may be a password
        raise _Reason("a server is host:port, with no user or password (those go in "
                      "flyer_kafka_sasl_username and flyer_kafka_sasl_password)")
    for server in value.split(","):
        host, colon, port = server.rpartition(":")
        if not colon or not port.isdigit():
            raise _Reason(f"{server!r} is not host:port")
        _check_port(int(port), f"{server!r}: the port")
        if host.startswith("[") and host.endswith("]"):
            inside = host[1:-1]
            good = ":" in inside and _is_host(inside)
        else:
            good = ":" not in host and _is_host(host, peer=True)
        if not good:
            raise _Reason(f"{server!r}: {host!r} is not an IP address or host name")


def _normal_origin(origin: str) -> str:
    """``origin`` as browsers send it in ``Origin`` (lower-case scheme and host, no default
    port), which is what CORS compares it with, string for string; a :class:`_Reason` if it
    is no ``scheme://host[:port]``."""
    if "@" in origin:  # not quoted: it holds a user, perhaps a password
        raise _Reason("an origin is scheme://host[:port], with no user or password")
    url = urlsplit(origin)
    try:
        port = url.port
    except ValueError:
        raise _Reason(f"{origin!r}: its port is not a number from 1 to 65535") from None
    if (not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*$", url.scheme) or "://" not in origin
            or url.path or url.query or url.fragment or "@" in url.netloc
            or not url.hostname or not _is_host(url.hostname, peer=True)):
        raise _Reason(f"{origin!r} is not scheme://host[:port]")
    _check_port(port, f"{origin!r}: the port")
    scheme, host = url.scheme.lower(), (url.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def _split_list(value: Any) -> Any:
    """A comma-separated variable as its items, blanks dropped."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _normal_endpoint(endpoint: str, credentials: str) -> str:
    """``endpoint`` as ``scheme://host[:port]``, lower-case (``host[:port]`` alone is
    ``http://host[:port]``, as the seed writes it); a :class:`_Reason` if it is no
    ``http(s)://host[:port]``. ``credentials`` names where the user and password go."""
    if "@" in endpoint:  # not quoted: what stands before it may be a password
        raise _Reason("an endpoint is http(s)://host[:port], with no user or password "
                      f"(those go in {credentials})")
    if any(char.isspace() or not char.isprintable() for char in endpoint):
        raise _Reason("an endpoint holds a space or a control character")
    text = endpoint if "://" in endpoint else f"http://{endpoint}"
    try:
        url = urlsplit(text)
    except ValueError:  # a bracket left open
        raise _Reason(f"{endpoint!r} is not http(s)://host[:port]") from None
    try:
        port = url.port
    except ValueError:
        raise _Reason(f"{endpoint!r}: its port is not a number from 1 to 65535") from None
    if url.scheme.lower() not in ("http", "https"):
        raise _Reason(f"{endpoint!r}: its scheme is neither http nor https")
    if (url.path not in ("", "/") or "?" in text or "#" in text or not url.hostname
            or not _is_host(url.hostname, peer=True)):
        raise _Reason(f"{endpoint!r} is not http(s)://host[:port]")
    _check_port(port, f"{endpoint!r}: the port")
    host = url.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{url.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def _endpoints(value: list[str], credentials: str) -> list[str]:
    """Each of ``value`` as :func:`_normal_endpoint` gives it; at least one."""
    if not value:
        raise _Reason("it names no endpoint")
    return [_normal_endpoint(endpoint, credentials) for endpoint in value]


def _metadata_labels(environ: Mapping[str, str]) -> dict[str, str]:
    """The registry's metadata from ``environ``: ``{NAME: value}`` for each variable
    ``flyer_registry_metadata_<NAME>`` or ``flyer_polaris_metadata_<NAME>`` (the prefix in
    any case, ``NAME`` as written; empty values count as unset). On the same ``NAME``,
    ``flyer_registry_metadata_`` wins."""
    labels: dict[str, str] = {}
    for prefix in reversed(_METADATA_PREFIXES):  # the winner last
        for key in sorted(environ):
            if key.lower().startswith(prefix) and len(key) > len(prefix) and environ[key]:
                labels[key[len(prefix):]] = environ[key]
    return labels


class SettingsError(FastFlyerError, ValueError):
    """A ``flyer_*`` variable holds a value that is not allowed: one line per bad variable,
    naming it, the value and what is allowed.

    Raised while the app is built, before any port is bound. A ``ValueError`` (and a
    :class:`~fastflyer.exceptions.FastFlyerError`), never a ``SystemExit``: code that embeds
    an app (a test, a process manager) can catch it. The ``fastflyer`` command prints the
    lines and exits with status 1; a gunicorn worker exits with its boot-error status.
    """

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))

    def __str__(self) -> str:
        return "\n".join(self.lines)

    def __reduce__(self) -> tuple[type[SettingsError], tuple[list[str]]]:
        # Rebuilt from its lines (pickle, copy, another process), not from args[0].
        return type(self), (list(self.lines),)


# validate_by_name: a field read under several names (validation_alias) is still given
# by its own name in code (FlyerSettings(config_enabled=True)).
_MODEL_CONFIG = SettingsConfigDict(env_prefix="flyer_", case_sensitive=False, extra="ignore",
                                   validate_default=True, env_ignore_empty=True,
                                   validate_by_name=True)


class ConfigCenterSettings(BaseSettings):
    """The etcd config center's variables (``flyer_config_*``, or the seed's
    ``flyer_rainbow_*`` names; where both are set, ``flyer_config_*`` wins): all that
    reading the config center needs, so that it can be read, and its values put in
    place, before the rest of :class:`FlyerSettings` is validated.
    """

    model_config = _MODEL_CONFIG

    config_enabled: bool = _allowed(
        False, "1 or 0 (1: read the settings from the etcd config center at start)",
        validation_alias=_read_as("config_enabled", "rainbow_enabled"))
    config_endpoints: CommaList = _allowed(
        [_ETCD], "comma-separated etcd URLs, each http(s)://host[:port] with no path, user "
        "or password (host[:port] alone means http://)",
        validation_alias=_read_as("config_endpoints", "rainbow_host"))
    config_app_id: str = _allowed(
        "", "a key segment: letters, digits, '.', '_', '-' (needed with "
        "flyer_config_enabled=1)", pattern=_KEY_SEGMENT,
        validation_alias=_read_as("config_app_id", "rainbow_app_id"))
    config_env_name: str = _allowed(
        "", "a key segment: letters, digits, '.', '_', '-' (needed with "
        "flyer_config_enabled=1)", pattern=_KEY_SEGMENT,
        validation_alias=_read_as("config_env_name", "rainbow_env_name"))
    config_group_name: str = _allowed(
        "", "a key segment: letters, digits, '.', '_', '-' (needed with "
        "flyer_config_enabled=1)", pattern=_KEY_SEGMENT,
        validation_alias=_read_as("config_group_name", "rainbow_group_name"))
    config_user: str = _allowed(
        "", "an etcd user name (unset: no authentication)",
        validation_alias=_read_as("config_user", "rainbow_user_id"))
    config_password: SecretStr = _allowed(
        SecretStr(""), "the etcd user's password (needs flyer_config_user)",
        validation_alias=_read_as("config_password", "rainbow_secret_key"))
    config_sync_enabled: bool = _allowed(
        True, "1 or 0 (1: changes made in the config center reach the running service)",
        validation_alias=_read_as("config_sync_enabled", "rainbow_sync_enabled"))
    config_sync_interval: float = _allowed(
        10, "a number of seconds from 5 to 86400 (how often the config center is read "
        "again)", ge=5, le=DAY, allow_inf_nan=False,
        validation_alias=_read_as("config_sync_interval", "rainbow_sync_interval"))
    config_allow_unreachable: bool = _allowed(
        False, "1 or 0 (1: start from the environment alone when the config center cannot "
        "be reached at start)")

    @field_validator("config_endpoints", mode="before")
    @classmethod
    def _split_endpoints(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("config_endpoints")
    @classmethod
    def _config_endpoints(cls, value: list[str]) -> list[str]:
        return _endpoints(value, "flyer_config_user and flyer_config_password")

    @field_validator("config_enabled")
    @classmethod
    def _config_client(cls, value: bool) -> bool:
        if value:
            _check_extra("etcd3gw", "etcd")
        return value

    @model_validator(mode="after")
    def _config_complete(self) -> Self:
        if self.config_enabled:
            missing = [name for name in ("config_app_id", "config_env_name",
                                         "config_group_name") if not getattr(self, name)]
            if missing:
                raise _Needs("config_enabled", self.config_enabled, missing)
        if self.config_password.get_secret_value() and not self.config_user:
            raise _Needs("config_password", self.config_password, ["config_user"])
        return self


_S = TypeVar("_S", bound=ConfigCenterSettings)


class FlyerSettings(ConfigCenterSettings):
    """The framework's configuration, from ``flyer_<name>`` variables (any case); the
    config center's (:class:`ConfigCenterSettings`) first."""

    model_config = _MODEL_CONFIG

    # The seed's base table.
    host: str = _allowed("0.0.0.0", "an IP address (v4 or v6) or a host name (RFC 1123: "
                         "dot-separated labels of letters, digits and inner '-')",
                         min_length=1)
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
    timeout: float = _allowed(60, "a number of seconds from 0 to 86400", ge=0, le=DAY,
                              allow_inf_nan=False)
    graceful_timeout: float | None = _allowed(
        None, "a number of seconds from 0 to 86400 (how long requests in flight get to "
        "finish after a stop signal; unset: 30, or 1 with flyer_reload=1)", ge=0, le=DAY,
        allow_inf_nan=False)
    shutdown_timeout: float = _allowed(
        10, "a number of seconds > 0, at most 86400 (how long the hooks get in total: "
        "the stopping hooks before the drain, the stop hooks after it)", gt=0, le=DAY,
        allow_inf_nan=False)
    keepalive: float = _allowed(5, "a number of seconds from 0 to 86400", ge=0, le=DAY,
                                allow_inf_nan=False)
    console_log_level: str = _allowed("info", "one of debug, info, warn, error, critical")
    file_log_level: str = _allowed("info", "one of debug, info, warn, error, critical")
    log_to_file: bool = _allowed(True, "1 or 0")
    log_json: bool = _allowed(False, "1 or 0")
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
    task_api_open: bool = _allowed(False, "1 or 0 (1: the task API under {base_url}/tasks "
                                   "answers without flyer_auth_enable; 0: it answers 403 "
                                   "unless auth is on)")
    always_http_200: bool = _allowed(False, "1 or 0 (1: errors answer HTTP 200, as the "
                                     "original did; the body code still tells the error)")
    cors_origins: CommaList = _allowed([], "comma-separated origins (scheme://host[:port], "
                                       "no path), or * (unset: no CORS)")
    cors_allow_credentials: bool = _allowed(False, "1 or 0")
    cors_methods: CommaList = _allowed(["*"], "comma-separated HTTP methods, or *")
    cors_headers: CommaList = _allowed(["*"], "comma-separated header names, or *")
    gzip_min_size: int = _allowed(0, "a size in bytes ≥ 0 (0: no compression)", ge=0)
    max_body_size: int = _allowed(10 * 1024 * 1024, "a size in bytes ≥ 0 (0: no limit)", ge=0)
    # The request head, refused by the server as it arrives (fastflyer.http_limits).
    max_url_length: int = _allowed(
        8192, "a size in bytes ≥ 1 (a longer request URL answers 414)", ge=1)
    max_header_field_size: int = _allowed(
        8192, "a size in bytes ≥ 1 (one header line, name and value; larger answers 431)",
        ge=1)
    max_header_size: int = _allowed(
        16384, "a size in bytes ≥ 1 (all header lines together; larger answers 431)", ge=1)
    max_headers: int = _allowed(
        100, "an integer ≥ 1 (more header fields answer 431)", ge=1)
    body_timeout: float = _allowed(
        30, "a number of seconds > 0, at most 86400 (how long a request body may go "
        "without a byte arriving; then 408 and the connection closed)", gt=0, le=DAY,
        allow_inf_nan=False)
    header_timeout: float = _allowed(
        10, "a number of seconds > 0, at most 86400 (how long a request head may take to "
        "arrive whole; then 408, or a close if nothing came, and the connection closed)",
        gt=0, le=DAY, allow_inf_nan=False)
    opentelemetry_enabled: bool = _allowed(
        False, "1 or 0 (1: OpenTelemetry traces: a span per request, trace_id and span_id "
        "in the logs; the SDK is set up from the OTEL_* variables)")
    fast_path: bool = _allowed(True, "1 or 0 (0: every route through FastAPI's full handling)")
    trusted_proxies: CommaList = _allowed(
        [], "comma-separated IP addresses or networks (unset: trust no X-Forwarded-For)")

    # Data components (the seed's Redis section; any SQLAlchemy URL for the database).
    redis_host: str | None = _allowed(None, "a host name or IP address, or a redis://, "
                                      "rediss:// or unix:// URL (unset: no default Redis)")
    redis_port: int = _allowed(6379, "an integer from 1 to 65535", ge=1, le=65535)
    redis_pass: SecretStr = _allowed(SecretStr(""), "a password")
    redis_db: int = _allowed(0, "an integer ≥ 0", ge=0)
    db_url: SecretStr = _allowed(SecretStr(""), "a SQLAlchemy URL such as "
                                 "mysql+pymysql://user:password@host:3306/name "
                                 "(unset: SQLite in the data directory)")
    data_dir: str | None = _allowed(None, "a directory path (unset: data/ in the project)")

    # Kafka (fastflyer.message).
    kafka_servers: str | None = _allowed(
        None, "host:port[,host:port...], a port from 1 to 65535 (unset: no Kafka)")
    kafka_security_protocol: str = _allowed(
        "PLAINTEXT", "one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
        pattern=r"^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$")
    kafka_sasl_mechanism: str = _allowed(
        "PLAIN", "one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512",
        pattern=r"^(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512)$")
    kafka_sasl_username: str = _allowed("", "a user name")
    kafka_sasl_password: SecretStr = _allowed(SecretStr(""), "a password")

    # Schedulers and the thread pool.
    lock_ttl: float = _allowed(30, "a number of seconds > 0, at most 86400 (how long a lock "
                               "outlives a holder that died)", gt=0, le=DAY,
                               allow_inf_nan=False)
    service_name: str | None = _allowed(
        None, "a name of letters, digits, '.', '_' and '-' shared by every worker and "
        "instance of the service (unset: the app's title, else the project directory's name)",
        pattern=r"^[\w.-]*[^\W_][\w.-]*$")

    # The etcd service registry (the seed's Polaris table: flyer_polaris_* names too).
    registry_enabled: bool = _allowed(
        False, "1 or 0 (1: register this instance in the etcd service registry)",
        validation_alias=_read_as("registry_enabled", "polaris_enabled"))
    registry_endpoints: CommaList = _allowed(
        [_ETCD], "comma-separated etcd URLs, each http(s)://host[:port] with no path, user "
        "or password (host[:port] alone means http://)")
    registry_namespace: str = _allowed(
        "default", "a key segment: letters, digits, '.', '_', '-'",
        pattern=_KEY_SEGMENT, min_length=1,
        validation_alias=_read_as("registry_namespace", "polaris_namespace"))
    registry_service: str | None = _allowed(
        None, "a key segment: letters, digits, '.', '_', '-' (unset: the service's name)",
        pattern=_KEY_SEGMENT, min_length=1,
        validation_alias=_read_as("registry_service", "polaris_service"))
    registry_token: SecretStr = _allowed(
        SecretStr(""), "etcd credentials as user:password (unset: no authentication)",
        validation_alias=_read_as("registry_token", "polaris_token"))
    registry_heartbeat_interval: float = _allowed(
        5, "a number of seconds from 1 to 86400 (how often the registration is renewed)",
        ge=1, le=DAY, allow_inf_nan=False,
        validation_alias=_read_as("registry_heartbeat_interval", "polaris_heartbeat_interval"))
    registry_host: str | None = _allowed(
        None, "an IP address or host name other instances reach this one at (unset: this "
        "machine's address)")
    # Log shipping over syslog (the seed's Zhiyan table: flyer_zhiyan_* names too).
    log_ship_enabled: bool = _allowed(
        False, "1 or 0 (1: ship application and access lines to a syslog collector)",
        validation_alias=_read_as("log_ship_enabled", "zhiyan_log_enabled"))
    log_ship_proto: str = _allowed(
        "udp", "one of udp, tcp, dev (dev: the console only)",
        validation_alias=_read_as("log_ship_proto", "zhiyan_log_proto"))
    log_ship_host: str | None = _allowed(
        None, "the collector's IP address or host name")
    log_ship_port: int = _allowed(514, "an integer from 1 to 65535", ge=1, le=65535)
    log_ship_topic: str | None = _allowed(
        None, "a syslog APP-NAME: at most 48 printable ASCII characters, no spaces "
        "(unset: the service's name: flyer_service_name, else the app's title or project "
        "directory)", pattern=r"^[!-~]{1,48}$",
        validation_alias=_read_as("log_ship_topic", "zhiyan_log_topic"))
    log_ship_my_ip: str | None = _allowed(
        None, "an IP address or host name sent as the syslog HOSTNAME (unset: the address "
        "of the default route)",
        validation_alias=_read_as("log_ship_my_ip", "zhiyan_my_ip"))
    # Prometheus metrics (fastflyer.metrics).
    metrics_enabled: bool = _allowed(
        True, "1 or 0 (1: record the HTTP server's and FastKit's metrics and serve them at "
        "flyer_metrics_path)")
    metrics_path: str = _allowed(
        "/metrics", "a path starting with '/', like /metrics or /internal/metrics (letters, "
        "digits, '.', '_', '-'; no trailing '/'), outside /health_check",
        pattern=BASE_URL_PATTERN)
    # Not read from one variable: see _registry_metadata_from_environment.
    registry_metadata: Annotated[dict[str, str], NoDecode] = _allowed(
        {}, "labels, one variable each: flyer_registry_metadata_<NAME>=value (or "
        "flyer_polaris_metadata_<NAME>=value)")

    @property
    def drain_timeout(self) -> float:
        """Seconds requests in flight get to finish after a stop signal
        (``flyer_graceful_timeout``; unset: 30, or 1 while reloading, so that a reload
        after an edit is quick)."""
        if self.graceful_timeout is not None:
            return self.graceful_timeout
        return 1.0 if self.reload else 30.0

    @property
    def stop_budget(self) -> float:
        """Seconds from a stop signal to the end of the process: the drain, then the stop
        hooks, then a margin for the interpreter's exit."""
        return self.drain_timeout + self.shutdown_timeout + STOP_MARGIN

    @field_validator("console_log_level", "file_log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> str:
        try:
            return parse_level(value, "level")  # FastKit's parser: one table of levels
        except ValueError:
            raise ValueError("not a log level") from None

    @field_validator("log_to_file", "log_json", "log_ship_enabled", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        try:
            return parse_flag(value, "flag")  # FastKit's parser of its own switches
        except ValueError:
            raise ValueError("not 1 or 0") from None

    def log_settings(self, name: str = "fastkit", service: str | None = None) -> LogSettings:
        """FastKit's log settings for these settings (:func:`fastkit.logging.configure`):
        levels, ``log_path``, ``log_to_file`` and ``log_json``; files ``<name>.log``;
        shipping, whose APP-NAME is ``flyer_log_ship_topic``, else ``service`` (the app's
        service name), else ``flyer_service_name``, else ``fastflyer`` (a name that is no
        APP-NAME, such as one in Chinese, is passed over)."""
        return LogSettings(name=name, console_level=self.console_log_level,
                           file_level=self.file_log_level, log_path=self.log_path or None,
                           to_file=self.log_to_file, json=self.log_json,
                           ship_enabled=self.log_ship_enabled, ship_proto=self.log_ship_proto,
                           ship_host=self.log_ship_host, ship_port=self.log_ship_port,
                           ship_topic=self.log_ship_topic or _app_name(service)
                           or _app_name(self.service_name) or "fastflyer",
                           ship_my_ip=self.log_ship_my_ip)

    @field_validator("log_ship_proto", mode="before")
    @classmethod
    def _ship_proto(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            if value not in ("udp", "tcp", "dev"):
                raise ValueError("not a protocol")
        return value

    @field_validator("log_ship_host", "log_ship_my_ip")
    @classmethod
    def _ship_hosts(cls, value: str | None) -> str | None:
        if value is not None and not _is_host(value, peer=True):
            raise ValueError("not a host")
        return value

    @model_validator(mode="after")
    def _ship_complete(self) -> Self:
        if self.log_ship_enabled and self.log_ship_proto != "dev" and not self.log_ship_host:
            raise _Needs("log_ship_enabled", self.log_ship_enabled, ["log_ship_host"])
        return self

    @field_validator("access_log_exclude_uris", "cors_origins", "cors_methods", "cors_headers",
                     "trusted_proxies", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("registry_endpoints", mode="before")
    @classmethod
    def _split_registry_endpoints(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("registry_endpoints")
    @classmethod
    def _registry_endpoints(cls, value: list[str]) -> list[str]:
        return _endpoints(value, "flyer_registry_token")

    @field_validator("registry_token")
    @classmethod
    def _etcd_credentials(cls, value: SecretStr) -> SecretStr:
        user, colon, password = value.get_secret_value().partition(":")
        if value.get_secret_value() and not (user and colon and password):
            raise _Reason("it is not user:password")  # quoting nothing of it
        return value

    @field_validator("registry_host")
    @classmethod
    def _registered_host(cls, value: str | None) -> str | None:
        if value is not None and not _is_host(value, peer=True):
            raise ValueError("not a host")
        return value

    @model_validator(mode="before")
    @classmethod
    def _registry_metadata_from_environment(cls, data: Any) -> Any:
        # Built from every flyer_registry_metadata_<NAME> variable, unless given in code
        # (FlyerSettings(registry_metadata={...}) replaces them all).
        if isinstance(data, dict) and "registry_metadata" not in data:
            labels = _metadata_labels(os.environ)
            if labels:  # else the default, as for any variable left unset
                data = {**data, "registry_metadata": labels}
        return data

    @field_validator("registry_metadata", mode="before")
    @classmethod
    def _one_variable_per_label(cls, value: Any) -> Any:
        if isinstance(value, str):  # flyer_registry_metadata itself
            raise _Reason("set flyer_registry_metadata_<NAME>=value for each label instead")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise _Reason(f"{item!r} is not an IP address or network") from None
        return value

    @field_validator("host")
    @classmethod
    def _bind_host(cls, value: str) -> str:
        if not _is_host(value):
            raise ValueError("not a host")
        return value

    @field_validator("metrics_path")
    @classmethod
    def _metrics_outside_health(cls, value: str) -> str:
        # The liveness paths are answered before routing (and stay open under auth).
        if value == "/health_check" or value.startswith("/health_check/"):
            raise _Reason("/health_check and the paths under it are the health checks'")
        return value

    @field_validator("db_url")
    @classmethod
    def _sqlalchemy_url(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value():
            _check_db_url(value.get_secret_value())
        return value

    @field_validator("redis_host")
    @classmethod
    def _redis_host(cls, value: str | None) -> str | None:
        if value:
            _check_redis(value)
            _check_extra("redis", "redis")
        return value

    @field_validator("registry_enabled")
    @classmethod
    def _registry_client(cls, value: bool) -> bool:
        if value:
            _check_extra("etcd3gw", "etcd")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        return [origin if origin == "*" else _normal_origin(origin) for origin in value]

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("kafka_servers")
    @classmethod
    def _kafka_servers(cls, value: str | None) -> str | None:
        if not value:
            return value
        value = ",".join(part.strip() for part in value.split(","))
        _check_kafka(value)
        _check_extra("aiokafka", "kafka")
        return value

    @model_validator(mode="after")
    def _kafka_sasl_complete(self) -> FlyerSettings:
        if self.kafka_security_protocol.startswith("SASL") and not (
                self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()):
            raise ValueError(f"kafka_security_protocol={self.kafka_security_protocol} needs "
                             "flyer_kafka_sasl_username and flyer_kafka_sasl_password")
        return self

    @model_validator(mode="after")
    def _cors_credentials_named(self) -> FlyerSettings:
        # Starlette answers a credentialed request under allow_origins=["*"] with the
        # caller's own Origin (browsers refuse "*" there), so every site on the web could
        # read the answers with the user's cookies or Basic credentials.
        if self.cors_allow_credentials and "*" in self.cors_origins:
            raise ValueError("cors_origins=* with flyer_cors_allow_credentials=1 lets every "
                             "site read answers with its users' credentials: list the "
                             "origins in flyer_cors_origins, or set "
                             "flyer_cors_allow_credentials=0")
        return self

    @model_validator(mode="after")
    def _auth_complete(self) -> FlyerSettings:
        if self.auth_enable and not (self.auth_user and self.auth_pass.get_secret_value()):
            raise ValueError("auth_enable needs flyer_auth_user and flyer_auth_pass")
        return self

    @field_validator("opentelemetry_enabled")
    @classmethod
    def _tracing_sdk(cls, value: bool) -> bool:
        if value:
            _check_extra("opentelemetry.sdk", "otel")
        return value

    @model_validator(mode="after")
    def _tracing_configured(self) -> FlyerSettings:
        # The OTEL_* variables each worker sets the SDK up from (fastkit.tracing.configure,
        # in the lifespan), checked here: one line at start, not a traceback per worker.
        # OTEL_PROPAGATORS whether tracing is on or not: FastAPI imports OpenTelemetry's
        # API, which raises at import for a propagator it cannot load.
        from fastkit.tracing import TracingConfigError, check, check_propagators

        try:
            check() if self.opentelemetry_enabled else check_propagators()
        except TracingConfigError as exc:
            raise ValueError(str(exc)) from None
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


_PASSWORDS = ("auth_pass", "redis_pass", "kafka_sasl_password",  # shown as *** whole
              "config_password", "registry_token")
# Shown with each endpoint holding '@' (a user, perhaps a password) as *** whole.
_ENDPOINTS = ("config_endpoints", "registry_endpoints")
# Shown with the password of a URL masked (Kafka servers and origins hold none, unless mistyped).
_URLS = ("db_url", "redis_host", "kafka_servers", "cors_origins")

# flyer_* variables read outside FlyerSettings: by FastKit itself, and by the project's
# settings.py as the seed writes it (its DataBase class). Not warned about.
_READ_ELSEWHERE = frozenset({
    "flyer_max_body_log_length", "flyer_max_params_log_length",  # fastkit.httpx
    "flyer_max_headers_log_length",
    "flyer_db_user", "flyer_db_pass", "flyer_db_host", "flyer_db_port", "flyer_db_name",
    "flyer_db_chartset", "flyer_db_recycle_rate", "flyer_db_pool_size",
})
_warned: set[str] = set()  # warnings logged in this process (forked workers inherit it)


def _shown(name: str, value: Any) -> str:
    """``value`` of setting ``name`` as an error line may show it."""
    if name in _PASSWORDS:
        return "***"
    if name in _ENDPOINTS:
        parts = value if isinstance(value, list) else str(value).split(",")
        return ",".join("***" if "@" in str(part) else str(part) for part in parts)
    if name in _URLS:
        from fastkit.logging.redact import redact_url

        parts = value if isinstance(value, list) else str(value).split(",")
        return ",".join(redact_url(str(part)) for part in parts)
    return str(value)


def _variable_names(name: str) -> list[str]:
    """The variables setting ``name`` is read from, the one that wins first."""
    field = FlyerSettings.model_fields.get(name)
    alias = field.validation_alias if field is not None else None
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"flyer_{name}"]


def _alias_fields() -> dict[str, str]:
    """Each variable a setting with several names is read from (lower-case): the setting."""
    return {alias: name for name in FlyerSettings.model_fields
            for alias in _variable_names(name)}


def _set_variable(name: str) -> tuple[str, str | None]:
    """The variable setting ``name`` was read from, spelt as it is set (the names are
    case-insensitive), and its value; its own name and ``None`` if none is set."""
    for variable in _variable_names(name):
        for key, value in os.environ.items():
            if key.lower() == variable and value:  # an empty one counts as unset
                return key, value
    return f"flyer_{name}", None


def variable_name(name: str) -> str:
    """The variable setting ``name`` is read from, as it is set (``flyer_rainbow_user_id``
    when the seed's name is the one set); its own name (``flyer_config_user``) when none
    is."""
    return _set_variable(name)[0]


def _given(name: str, shown: str, sources: Mapping[str, str]) -> str:
    """Setting ``name`` given as ``shown``, the way it was given: ``variable='value'``,
    ``--flag value`` or ``Source='value'``."""
    source = sources.get(name)
    if source is None:
        from fastflyer.config_center import source_key

        variable = _set_variable(name)[0]
        key = source_key(variable)
        where = f" (from the config center's key {key})" if key else ""
        return f"{variable}={shown!r}{where}"
    if source.startswith("-"):  # a command-line flag, shown as typed
        return f"{source} {shlex.quote(shown)}"
    return f"{source}={shown!r}"


def _describe_needs(needs: _Needs, sources: Mapping[str, str]) -> str:
    """``flyer_rainbow_enabled='1' needs flyer_config_app_id (or flyer_rainbow_app_id)``."""
    raw = _set_variable(needs.field)[1]  # as the variable has it, if it was set
    shown = _shown(needs.field, raw if raw is not None and needs.field not in sources
                   else needs.value)
    wanted = []
    for name in needs.missing:
        own, *others = _variable_names(name)
        wanted.append(f"{own} (or {', '.join(others)})" if others else own)
    listed = ", ".join(wanted[:-1]) + " and " if len(wanted) > 1 else ""
    return f"{_given(needs.field, shown, sources)} needs {listed}{wanted[-1]}"


def describe_errors(error: ValidationError, sources: Mapping[str, str] | None = None
                    ) -> list[str]:
    """The lines of a :class:`SettingsError` for ``error``, raised by
    :class:`FlyerSettings` or :class:`ConfigCenterSettings`: one per bad value, naming the
    variable that was set (or the source ``sources`` gives, as for :func:`load_settings`),
    its value (passwords and tokens masked) and what is allowed. Raise the
    :class:`SettingsError` outside the ``except`` block that caught ``error``: ``error``
    holds every raw value. :func:`load_config_center_settings` does all of this."""
    return [_describe_error(line, sources or {}) for line in error.errors()]


def _describe_error(error: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    loc = error.get("loc") or ()
    name = str(loc[0]) if loc else ""
    reason = (error.get("ctx") or {}).get("error")
    if not name:  # a model-level rule
        if isinstance(reason, _Needs):
            return _describe_needs(reason, sources)
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        return f"flyer_{message}" if message.startswith(("auth_", "kafka_", "cors_")) else message
    # Read under another name (the seed's): the error is filed under the field's first
    # name whichever was set.
    name = _alias_fields().get(name.lower(), name)
    field = FlyerSettings.model_fields.get(name)
    allowed = field.description if field is not None else error.get("msg", "")
    shown = _shown(name, error.get("input"))
    if isinstance(reason, _MissingPackage):
        return f"{_given(name, shown, sources)} needs {reason}"
    if isinstance(reason, _Reason):
        allowed = f"{allowed}; {reason}"
    return f"{_given(name, shown, sources)} is not allowed: {allowed}"


def unknown_variable_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """One line for each ``flyer_*`` variable (any case) of ``environ`` (default:
    ``os.environ``) that is neither a setting (under its name or the seed's, such as
    ``flyer_rainbow_host``), nor a label of the registry's metadata
    (``flyer_registry_metadata_<NAME>``, ``flyer_polaris_metadata_<NAME>``), nor read
    elsewhere by FastFlyer, naming the closest real one::

        flyer_wokers is not a FastFlyer setting (did you mean flyer_workers?); it is ignored
    """
    env = os.environ if environ is None else environ
    known = ({f"flyer_{name}" for name in FlyerSettings.model_fields} | set(_alias_fields())
             | _READ_ELSEWHERE)
    suffixes = sorted(name.removeprefix("flyer_") for name in known)
    lines = []
    for name in sorted(env, key=str.lower):
        lowered = name.lower()
        if not lowered.startswith("flyer_") or lowered in known or any(
                lowered.startswith(prefix) and len(lowered) > len(prefix)
                for prefix in _METADATA_PREFIXES):  # a label of the registry's metadata
            continue
        # Compared without the prefix, which every name shares.
        closest = difflib.get_close_matches(lowered.removeprefix("flyer_"), suffixes, n=1)
        hint = f" (did you mean flyer_{closest[0]}?)" if closest else ""
        shown = name if name.isidentifier() else repr(name)
        shown = shown if len(shown) <= 80 else f"{shown[:80]}..."
        lines.append(f"{shown} is not a FastFlyer setting{hint}; it is ignored")
    return lines


def warn_unknown_variables() -> None:
    """Log each line of :func:`unknown_variable_warnings` once per process (WARNING)."""
    lines = [line for line in unknown_variable_warnings() if line not in _warned]
    if lines:
        from fastkit.logging import logger

        for line in lines:
            logger.warning(line)
        _warned.update(lines)


def load_settings(sources: Mapping[str, str] | None = None, /, *, warn_unknown: bool = True,
                  config_center: bool = True, **overrides: Any) -> FlyerSettings:
    """Read and validate the ``flyer_*`` variables from ``os.environ`` now.

    ``overrides`` take the place of variables (``load_settings(port=9000)``); an empty
    variable counts as unset. ``sources`` says where an override came from, for the
    error line: ``{"port": "--port"}`` (a flag: ``--port 0 is not allowed: ...``) or
    ``{"base_url": "CustomConfig.PREFIX"}`` (``CustomConfig.PREFIX='x' is not allowed:
    ...``). Raises :class:`SettingsError` naming every bad value.

    Warns (once per process, in the log) about every ``flyer_*`` variable that is no
    setting (see :func:`unknown_variable_warnings`); ``warn_unknown=False`` checks only,
    for a caller that loads them again once logging is set up.

    With ``flyer_config_enabled=1`` the config center is read first, its values put in
    ``os.environ`` (:func:`fastflyer.config_center.load_config_center`, which raises
    :class:`~fastflyer.config_center.ConfigCenterUnavailable` when etcd cannot be read);
    ``config_center=False`` leaves it out (settings validated again from known values).
    """
    if config_center:
        from fastflyer.config_center import load_config_center

        load_config_center()
    if warn_unknown:
        warn_unknown_variables()
    return _validated(FlyerSettings, sources or {}, overrides)


def load_config_center_settings(sources: Mapping[str, str] | None = None, /,
                                **overrides: Any) -> ConfigCenterSettings:
    """Read and validate the config center's variables (:class:`ConfigCenterSettings`:
    ``flyer_config_*``, or the seed's ``flyer_rainbow_*``) from ``os.environ`` now, and no
    other: what the config center needs before its values are put in place and the rest
    is validated. ``sources`` and ``overrides`` as for :func:`load_settings`. Raises
    :class:`SettingsError` naming every bad value; warns about nothing (:func:`load_settings`
    does, later).
    """
    return _validated(ConfigCenterSettings, sources or {}, overrides)


def _validated(settings_cls: type[_S], sources: Mapping[str, str],
               overrides: Mapping[str, Any]) -> _S:
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        lines = describe_errors(exc, sources)
    # Raised outside the except block: pydantic's error, which holds every raw value
    # (passwords included), is then not even the SettingsError's __context__.
    raise SettingsError(lines)
