"""The config center: variables kept in etcd, written into ``os.environ`` before the
settings are read, and followed while the service runs.

    flyer_config_enabled=1
    flyer_config_endpoints=http://10.0.0.1:2379,http://10.0.0.2:2379
    flyer_config_app_id=orders  flyer_config_env_name=prod  flyer_config_group_name=default

Every key under ``/{app_id}/{env_name}/{group_name}/`` is a variable: its last segment the
name, its value the text. At start (:func:`load_config_center`, which
:func:`~fastflyer.settings.load_settings` calls first) every key is read and set in
``os.environ``, so ``os.getenv``, ``env`` and the ``flyer_*`` settings see it: the config
center wins over the environment, and the command line's flags win over both. Its own
variables (``flyer_config_*`` and their ``flyer_rainbow_*`` aliases) only come from the
environment.

While the app runs (:class:`ConfigSync`, started in its lifespan when
``flyer_config_sync_enabled=1``), each process follows the keys: a watch wakes it on a
change, and it reads them all again at least every ``flyer_config_sync_interval`` seconds.
A changed key changes the variable; a deleted key brings back the environment's own value,
or unsets the variable. A changed ``flyer_*`` variable is logged as taking effect at
restart (the app read its settings when it was built). Values are never logged.

etcd unreachable at start: start-up stops with one line naming the endpoints
(:class:`ConfigCenterUnavailable`), unless ``flyer_config_allow_unreachable=1``; a worker
started later by ``fastflyer serve`` keeps the values its master read. Unreachable later:
the last values stay, one WARNING per outage, readiness reports ``config`` degraded, and
following resumes when etcd answers again.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from fastflyer.exceptions import FastFlyerError
from fastkit.logging import logger

if TYPE_CHECKING:
    from fastflyer.health import Readiness
    from fastflyer.lifespan import Lifecycle
    from fastflyer.settings import ConfigCenterSettings
    from fastkit.etcd import EtcdClient, Snapshot

__all__ = [
    "FLAGS_VARIABLE",
    "ORIGINALS_VARIABLE",
    "ConfigCenterUnavailable",
    "ConfigSync",
    "config_prefix",
    "current_sync",
    "load_config_center",
    "register_config_center",
]

#: The environment's own values of the variables the config center set (JSON), for the
#: processes this one starts (workers, the reloader's server), which inherit the overlay;
#: set once the config center has been read.
ORIGINALS_VARIABLE = "FASTFLYER_CONFIG_ORIGINALS"
#: The ``flyer_*`` names the command line set (comma-separated): the config center does
#: not override them.
FLAGS_VARIABLE = "FASTFLYER_FLAGS"
#: A file holding the last values any process of this server read, and when etcd was
#: last found away (JSON; in a private temporary directory, readable by this user only,
#: removed when the process that made it exits): a worker started while etcd is away
#: takes these, not the older values its parent read at start.
CACHE_VARIABLE = "FASTFLYER_CONFIG_CACHE"
# Seconds each etcd call may take (to connect, between bytes).
CALL_TIMEOUT = 3.0
# The longest one watch waits before the loop looks at its stop event again.
_WATCH_SLICE = 1.0
# A portable variable name (POSIX): what a key's last segment must be.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The longest "NAME=value" the kernel passes to a program it starts (Linux's
# MAX_ARG_STRLEN, 32 pages of 4 KiB, with the final NUL): one longer and no program starts.
_MAX_VARIABLE = 32 * 4096 - 1
# The config center's own variables (flyer_config_*, flyer_rainbow_*): the environment's.
_BOOTSTRAP = tuple(f"flyer_{group}_" for group in ("config", "rainbow"))


class ConfigCenterUnavailable(FastFlyerError, ConnectionError):
    """The config center could not be read at start: etcd is unreachable or refused the
    credentials. One line naming the endpoints (never the password)."""


def config_prefix(settings: ConfigCenterSettings) -> str:
    """``/{app_id}/{env_name}/{group_name}/``."""
    return (f"/{settings.config_app_id}/{settings.config_env_name}/"
            f"{settings.config_group_name}/")


def _client(settings: ConfigCenterSettings) -> EtcdClient:
    from fastkit.etcd import EtcdClient

    return EtcdClient(settings.config_endpoints, user=settings.config_user or None,
                      password=settings.config_password.get_secret_value() or None,
                      timeout=CALL_TIMEOUT)


class _Overlay:
    """The variables the config center set in ``os.environ`` and the environment's own
    values they replaced (carried to child processes in ``ORIGINALS_VARIABLE``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: The key and value of each variable the last read set.
        self.keys: dict[str, tuple[str, str]] = {}

    @staticmethod
    def originals() -> dict[str, dict[str, str]]:
        """``{name: {spelling: original value}}``: an empty dict when it was unset."""
        try:
            value = json.loads(os.environ.get(ORIGINALS_VARIABLE, "{}"))
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    @staticmethod
    def _save(originals: Mapping[str, Mapping[str, str]]) -> None:
        # Set once the config center was read, even with nothing of its own in place: a
        # later read that fails (this process's, or a child's) then keeps these values.
        os.environ[ORIGINALS_VARIABLE] = json.dumps(originals, sort_keys=True)

    def apply(self, values: Mapping[str, str], prefix: str = "") -> tuple[list[str], list[str]]:
        """Make ``os.environ`` hold ``values`` (read under ``prefix``) over the environment;
        ``(changed, removed)`` names (removed: no longer in the config center, the original
        value back)."""
        self.keys = {name: (f"{prefix}{name}", value) for name, value in values.items()}
        flags = {name.strip().lower() for name in
                 os.environ.get(FLAGS_VARIABLE, "").split(",") if name.strip()}
        changed, removed = [], []
        with self.lock:
            originals = self.originals()
            for name, value in values.items():
                if name.lower() in flags:  # the command line wins
                    _warn_once(self.keys[name][0],
                               f"is overridden by the command line, which sets {name}")
                    continue
                if name not in originals:
                    originals[name] = {spelling: os.environ[spelling]
                                       for spelling in _spellings(name)}
                for spelling in _spellings(name):
                    if spelling != name:
                        del os.environ[spelling]  # one spelling: flyer_* are case-insensitive
                if os.environ.get(name) != value:
                    os.environ[name] = value
                    changed.append(name)
            for name in [name for name in originals if name not in values]:
                os.environ.pop(name, None)
                for spelling, original in originals.pop(name).items():
                    os.environ[spelling] = original
                removed.append(name)
            self._save(originals)
        return changed, removed


_overlay = _Overlay()


def _cache_path() -> Path:
    """The cache file of this server's processes (see ``CACHE_VARIABLE``), made on first
    use by the first process that reads the config center."""
    path = os.environ.get(CACHE_VARIABLE)
    if path:
        return Path(path)
    directory = tempfile.mkdtemp(prefix="fastflyer-config-")  # mode 0700
    atexit.register(shutil.rmtree, directory, True)
    os.environ[CACHE_VARIABLE] = str(Path(directory) / "values.json")
    return Path(os.environ[CACHE_VARIABLE])


def _remember(prefix: str, values: Mapping[str, str], down_since: float | None) -> None:
    """Write the cache (atomically; a failure is logged, never raised)."""
    path = _cache_path()
    try:
        temporary = path.with_name(f".{os.getpid()}.{threading.get_ident()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump({"prefix": prefix, "values": dict(values), "down_since": down_since},
                      file)
        os.replace(temporary, path)
    except OSError as exc:
        logger.warning("config center: cannot keep the last values in {} ({}); a worker "
                       "started while etcd is away gets its parent's", path, exc)


def _remembered(prefix: str) -> tuple[dict[str, str], float | None] | None:
    """The values and outage start the cache holds for ``prefix`` (``None``: none)."""
    path = os.environ.get(CACHE_VARIABLE)
    try:
        cached = json.loads(Path(path).read_text(encoding="utf-8")) if path else None
    except (OSError, ValueError):
        return None
    if not isinstance(cached, dict) or cached.get("prefix") != prefix:
        return None
    values, down_since = cached.get("values"), cached.get("down_since")
    if not isinstance(values, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
        return None
    return values, float(down_since) if isinstance(down_since, (int, float)) else None


def source_key(variable: str) -> str | None:
    """The config center key variable ``variable`` (as spelt in ``os.environ``) was set
    from in this process, or ``None``: for error lines that name where a value came from."""
    key, value = _overlay.keys.get(variable, ("", None))
    return key if key and os.environ.get(variable) == value else None


def _spellings(name: str) -> list[str]:
    """The variables of ``os.environ`` that are ``name``: itself, and for a ``flyer_*``
    name (read case-insensitively) every other spelling."""
    if not name.lower().startswith("flyer_"):
        return [name] if name in os.environ else []
    return [key for key in os.environ if key.lower() == name.lower()]


def _usable(snapshot: Mapping[str, str], prefix: str) -> dict[str, str]:
    """The variables of ``snapshot`` (keys under ``prefix``); keys that cannot be a
    variable (a NUL, a value too large for a program's environment), that name the config
    center's own settings, or that spell a ``flyer_*`` variable another key already set
    (in key order: the first wins), are left out with a WARNING (once per key), and so
    are the keys the snapshot could not decode (not UTF-8)."""
    values = {}
    spelt: dict[str, str] = {}  # a flyer_* name in lower case -> the key it was read from
    for key, value in sorted(snapshot.items()):
        name = key[len(prefix):]
        why = None
        if not _NAME.fullmatch(name):
            why = ("is no variable name (letters, digits and '_', not starting with a "
                   "digit)")
        elif name.lower().startswith(_BOOTSTRAP) or name.upper() in (ORIGINALS_VARIABLE,
                                                                     FLAGS_VARIABLE):
            why = "names a setting of the config center itself, which only the environment sets"
        elif "\0" in value:
            why = "holds a NUL character, which no variable can"
        elif len(f"{name}={value}".encode(errors="surrogateescape")) > _MAX_VARIABLE:
            why = (f"holds a value too large for a variable (at most {_MAX_VARIABLE} bytes "
                   "with its name: a longer one stops every program this process starts)")
        elif name.lower() in spelt:  # flyer_* variables are read in any case: one of them
            why = f"is another spelling of {spelt[name.lower()]!r}, which is used"
        if why is None:
            values[name] = value
            if name.lower().startswith("flyer_"):
                spelt[name.lower()] = key
        else:
            _warn_once(key, why)
    for key in getattr(snapshot, "undecodable", ()):
        _warn_once(key, "holds a value (or is a key) that is not UTF-8 text")
    return values


def _warn_once(key: str, why: str) -> None:
    if (key, why) not in _warned:
        _warned.add((key, why))
        logger.warning("config center key {!r} {}: ignored", key, why)


_warned: set[tuple[str, str]] = set()


def _log_changes(changed: list[str], removed: list[str]) -> None:
    for name in changed:
        if name.lower().startswith("flyer_"):
            logger.warning("{} changed in the config center; takes effect at restart", name)
        else:
            logger.info("config center: {} changed", name)
    for name in removed:
        if name.lower().startswith("flyer_"):
            logger.warning("{} removed from the config center; takes effect at restart", name)
        else:
            logger.info("config center: {} removed; the environment's value is back", name)


def load_config_center() -> ConfigSync | None:
    """Read the config center into ``os.environ`` if ``flyer_config_enabled=1``; the
    :class:`ConfigSync` that follows it in this process (``None`` when it is off).

    Raises :class:`~fastflyer.settings.SettingsError` for a bad ``flyer_config_*`` value and
    :class:`ConfigCenterUnavailable` when etcd cannot be read, unless
    ``flyer_config_allow_unreachable=1`` or this process inherited values a parent read
    (a worker of ``fastflyer serve``): then a WARNING, and the environment as it is.
    """
    from fastflyer.settings import load_config_center_settings
    from fastkit.etcd import EtcdError

    settings = load_config_center_settings()
    if not settings.config_enabled:
        return None
    sync = ConfigSync(settings)
    try:
        sync.read()
    except EtcdError as exc:
        inherited = ORIGINALS_VARIABLE in os.environ
        if not (settings.config_allow_unreachable or inherited):
            raise ConfigCenterUnavailable(
                f"the config center cannot be read: {exc}; {_fix(exc)}") from None
        cached = _remembered(sync.prefix) if inherited else None
        if cached is None:
            sync.outage(exc, "starting with the values of the environment"
                        + (" (as the parent process read them)" if inherited else ""))
        else:  # the last values any process of this server read, and since when it is away
            _overlay.apply(cached[0], sync.prefix)  # checked when they were read
            sync.outage(exc, "starting with the last values read")
            sync.down_since = cached[1] or sync.down_since
    if not settings.config_sync_enabled:
        sync.client.close()  # read once: nothing follows it
    global _current
    _current = sync
    return sync


def _fix(error: BaseException) -> str:
    """What to do about ``error`` at start, naming the variables as they are set."""
    from fastflyer.settings import variable_name
    from fastkit.etcd import EtcdAuthError

    if isinstance(error, EtcdAuthError):
        return (f"fix {variable_name('config_user')} and "
                f"{variable_name('config_password')}")
    return (f"start it, fix {variable_name('config_endpoints')}, or set "
            "flyer_config_allow_unreachable=1 to start from the environment alone")


_current: ConfigSync | None = None


def current_sync() -> ConfigSync | None:
    """The config center this process read last (``None``: off, or not read yet)."""
    return _current


class ConfigSync:
    """Follows one config center into ``os.environ`` (see the module docstring).

    ``read()`` reads every key once; ``start()`` follows them on a daemon thread until
    ``stop()``; ``check()`` is the readiness check (raises
    :class:`~fastflyer.health.Degraded` while etcd is unreachable).
    """

    def __init__(self, settings: ConfigCenterSettings, client: EtcdClient | None = None) -> None:
        self.settings = settings
        self.prefix = config_prefix(settings)
        self.client = client or _client(settings)
        self.revision = 0
        #: When the current outage began (``time.time()``), ``None`` while etcd answers.
        self.down_since: float | None = None
        self._why = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._remembered: dict[str, str] | None = None  # the values last written to the cache

    def read(self) -> Snapshot:
        """Read every key now and apply it to ``os.environ``. Raises
        :class:`~fastkit.etcd.EtcdError`."""
        snapshot = self.client.get_prefix(self.prefix)
        values = _usable(snapshot, self.prefix)
        changed, removed = _overlay.apply(values, self.prefix)
        if values != self._remembered or self.down_since is not None:
            _remember(self.prefix, values, None)
            self._remembered = values
        if self.revision:  # a change while running; the first read is the start's values
            _log_changes(changed, removed)
        self.revision = snapshot.revision
        if self.down_since is not None:
            logger.info("the config center answers again at {}; following it",
                        self.client.endpoint)
            self.down_since = None
        return snapshot

    def outage(self, error: BaseException, doing: str = "keeping the last values") -> None:
        """Record that etcd did not answer: one WARNING per outage."""
        if self.down_since is None:
            self.down_since = time.time()
            self._why = str(error)
            logger.warning("the config center cannot be read ({}); {}", error, doing)
            cached = _remembered(self.prefix)
            if cached is not None and cached[1] is None:  # the first to find it away
                _remember(self.prefix, cached[0], self.down_since)

    def check(self) -> None:
        """Readiness: nothing while etcd answers; ``Degraded`` during an outage."""
        if self.down_since is not None:
            from fastflyer.health import Degraded

            since = time.strftime("%H:%M:%S", time.localtime(self.down_since))
            raise Degraded(f"unreachable since {since} ({self._why}); serving the last values")

    # --- following --------------------------------------------------------------------
    def start(self) -> None:
        """Follow the keys on a daemon thread (once)."""
        if self._thread is None:
            # A stop event per thread: one that outlived stop()'s wait (a read still
            # waiting on etcd) ends at its next turn instead of following alongside.
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._follow, args=(self._stop,),
                                            name="fastflyer-config", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop following, waiting up to ``timeout`` seconds for the thread."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        self.client.close()

    def _follow(self, stop: threading.Event) -> None:
        from fastkit.etcd import EtcdError

        interval = self.settings.config_sync_interval
        due = time.monotonic()  # the start's read may be old by now (a worker's boot)
        while not stop.is_set():
            try:
                if time.monotonic() >= due or self.down_since is not None:
                    self.read()
                    due = time.monotonic() + interval
                elif self.client.wait_for_change(self.prefix, self.revision,
                                                 timeout=min(_WATCH_SLICE, max(
                                                     due - time.monotonic(), 0.01))):
                    due = time.monotonic()  # read now
            except EtcdError as exc:
                self.outage(exc)
                due = time.monotonic() + interval
                stop.wait(min(interval, 1.0))
            except Exception:  # never let the thread die: the values would freeze silently
                logger.exception("following the config center failed; trying again")
                stop.wait(interval)



def register_config_center(settings: ConfigCenterSettings, readiness: Readiness,
                           lifecycle: Lifecycle) -> ConfigSync | None:
    """With ``flyer_config_enabled=1``: readiness reports ``config`` (degraded while etcd is
    unreachable) and, with ``flyer_config_sync_enabled=1``, the app's lifespan follows the
    config center. The :class:`ConfigSync` (the one :func:`load_config_center` made when
    it read these settings' keys, else a new one); ``None`` when it is off."""
    if not settings.config_enabled:
        return None
    sync = current_sync()
    if sync is None or sync.prefix != config_prefix(settings) or sync.client.endpoints != [
            endpoint.rstrip("/") for endpoint in settings.config_endpoints]:
        sync = ConfigSync(settings)
    readiness.register("config", sync.check, timeout=1.0)
    if settings.config_sync_enabled:
        lifecycle.add("config center", start=sync.start, stop=sync.stop)
    return sync
