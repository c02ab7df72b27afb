"""FastFlyer's errors: one root, and each error also the builtin it is a kind of. Building
or starting an app raises these; the ``fastflyer`` command turns any of them into one line
on standard error and exit status 1, and a gunicorn worker into its boot-error status.

    FastFlyerError
     ├── SettingsError        (ValueError)     a flyer_* value that is not allowed, one line each
     ├── AppLoadError         (RuntimeError)   an app under app/ could not be loaded
     ├── DuplicateRouteError  (RuntimeError)   two apps declare the same method and path
     ├── KafkaNotReady        (RuntimeError)   the broker does not answer, or a consumer stopped
     ├── NotServiceWide       (RuntimeError)   several workers and no Redis for the task state
     ├── TaskStateUnavailable (RuntimeError)   Redis does not answer for the task state
     ├── BundleError          (RuntimeError)   the running SDK cannot be made into a wheel
     ├── ScaffoldError        (ValueError)     a project cannot be written as asked
     ├── BindError            (OSError)        the server cannot listen on the address
     └── ConfigCenterUnavailable (ConnectionError) the config center cannot be read at start

``FlyerError`` (:mod:`fastflyer.errors`) is something else: the business error an endpoint
raises to answer with a code and message. Each class is defined beside the code that raises
it and importable from here as well, loaded on first use. Errors of FastKit's components
derive from :class:`fastkit.exceptions.FastKitError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastkit._lazy import lazy_exports

if TYPE_CHECKING:
    from fastflyer.application import DuplicateRouteError
    from fastflyer.bundle import BundleError
    from fastflyer.config_center import ConfigCenterUnavailable
    from fastflyer.discovery import AppLoadError
    from fastflyer.launch import BindError
    from fastflyer.message import KafkaNotReady
    from fastflyer.scaffold import ScaffoldError
    from fastflyer.settings import SettingsError
    from fastflyer.task_state import NotServiceWide, TaskStateUnavailable

__all__ = ["AppLoadError", "BindError", "BundleError", "ConfigCenterUnavailable",
           "DuplicateRouteError", "FastFlyerError",
           "KafkaNotReady", "NotServiceWide", "ScaffoldError", "SettingsError",
           "TaskStateUnavailable"]


class FastFlyerError(Exception):
    """The root of every error FastFlyer raises itself (but ``FlyerError``, an answer)."""


_HOMES = {
    "SettingsError": "fastflyer.settings",
    "AppLoadError": "fastflyer.discovery",
    "DuplicateRouteError": "fastflyer.application",
    "KafkaNotReady": "fastflyer.message",
    "NotServiceWide": "fastflyer.task_state",
    "TaskStateUnavailable": "fastflyer.task_state",
    "BundleError": "fastflyer.bundle",
    "ScaffoldError": "fastflyer.scaffold",
    "BindError": "fastflyer.launch",
    "ConfigCenterUnavailable": "fastflyer.config_center",
}


__getattr__ = lazy_exports(__name__, globals(), _HOMES)
