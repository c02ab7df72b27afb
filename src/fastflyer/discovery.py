"""Finding the apps of a project: every package under ``app/``, in sorted order.

    project/
      app/
        items/__init__.py     ->  from .router import router       (mounted)
        orders/__init__.py    ->  kafka = KafkaRouter()             (its consumers run)
        users/__init__.py     ->  from .routers import router      (mounted)
        tasks/__init__.py     ->  no router: imported only (jobs register themselves)
        legacy/__init__.py    ->  __ENABLED__ = False               (skipped)

A package whose name starts with ``_`` or ``.`` is not an app. A package that fails to
import stops start-up (:class:`AppLoadError`, the original traceback chained): it is
never skipped silently. ``router`` must be an ``APIRouter``, ``kafka`` a
:class:`~fastflyer.message.KafkaRouter`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from fastapi import APIRouter

from fastflyer.exceptions import FastFlyerError
from fastflyer.message import KafkaRouter
from fastkit.logging import logger

__all__ = ["AppLoadError", "LoadedApp", "find_app_dir", "load_apps"]


class AppLoadError(FastFlyerError, RuntimeError):
    """An app under ``app/`` could not be loaded; start-up stops."""


@dataclass(frozen=True)
class LoadedApp:
    """One package under ``app/``."""

    name: str
    module: ModuleType
    router: APIRouter | None
    enabled: bool
    kafka: KafkaRouter | None = None


def find_app_dir(app_path: str | Path) -> Path:
    """The ``app`` directory: ``<app_path>/app``, or ``app_path`` itself if it is one."""
    path = Path(app_path).resolve()
    if path.is_file():  # main.py's __file__
        path = path.parent
    if (path / "app" / "__init__.py").is_file():
        return path / "app"
    if path.name == "app" and (path / "__init__.py").is_file():
        return path
    raise AppLoadError(f"no app package in {path}: expected {path / 'app' / '__init__.py'}")


def _forget(package: str, app_dir: Path) -> None:
    """Drop another project's ``app`` package from the import cache (tests, reloads)."""
    module = sys.modules.get(package)
    if module is None:
        return
    location = getattr(module, "__file__", None)
    if location is not None and Path(location).resolve().parent == app_dir:
        return
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]


def _import_from(name: str, location: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, location)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"cannot import {location}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise AppLoadError(f"{location} failed to import: {type(exc).__name__}: {exc}") from exc
    return module


def load_apps(app_dir: Path) -> list[LoadedApp]:
    """Import every app package under ``app_dir`` in sorted order."""
    root, package = str(app_dir.parent), app_dir.name
    if sys.path[:1] != [root]:  # first, so `import app...` in user code finds this project
        if root in sys.path:
            sys.path.remove(root)
        sys.path.insert(0, root)
    _forget(package, app_dir)
    if package not in sys.modules:
        _import_from(package, app_dir / "__init__.py")
    names = sorted(
        child.name for child in app_dir.iterdir()
        if child.is_dir() and not child.name.startswith(("_", "."))
        and (child / "__init__.py").is_file()
    )
    apps = []
    for name in names:
        qualified = f"{package}.{name}"
        try:
            module = importlib.import_module(qualified)
        except Exception as exc:
            raise AppLoadError(f"app {name!r} ({app_dir / name}) failed to import: "
                               f"{type(exc).__name__}: {exc}") from exc
        enabled = getattr(module, "__ENABLED__", True) is not False
        router = getattr(module, "router", None)
        if router is not None and not isinstance(router, APIRouter):
            raise AppLoadError(f"app {name!r}: `router` is a {type(router).__name__}, "
                               "not an APIRouter")
        kafka = getattr(module, "kafka", None)
        if kafka is not None and not isinstance(kafka, KafkaRouter):
            raise AppLoadError(f"app {name!r}: `kafka` is a {type(kafka).__name__}, "
                               "not a fastflyer.message.KafkaRouter")
        if not enabled:
            logger.info("app {} is disabled (__ENABLED__ = False)", name)
        apps.append(LoadedApp(name, module, router, enabled, kafka))
    return apps
