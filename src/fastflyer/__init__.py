"""FastFlyer: a batteries-included API framework on FastAPI.

    from fastflyer import FlyerAPI, APIRouter, status, logger, env
    from fastflyer.schemas import DataResponse

    app = FlyerAPI(app_path=__file__)     # mounts every app under ./app at /flyer

Names are imported on first use, so ``import fastflyer`` itself is cheap and does no
I/O; nothing starts until the server runs the app's lifespan.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastkit import __version__
from fastkit._lazy import lazy_exports

if TYPE_CHECKING:
    from fastapi import APIRouter

    from fastflyer.application import DuplicateRouteError, FlyerAPI, create_app
    from fastflyer.auth import authorize
    from fastflyer.discovery import AppLoadError
    from fastflyer.errors import FlyerError
    from fastflyer.exceptions import FastFlyerError
    from fastflyer.executor import asyncio_scheduler, background_scheduler, threadpool
    from fastflyer.settings import BaseConfig, SettingsError
    from fastkit.httpx import AsyncClient, Client, aioclient, aiorequests, client, requests, status
    from fastkit.logging import logger
    from fastkit.utils import env

__all__ = [
    "APIRouter",
    "AppLoadError",
    "AsyncClient",
    "BaseConfig",
    "Client",
    "DuplicateRouteError",
    "FastFlyerError",
    "FlyerAPI",
    "FlyerError",
    "SettingsError",
    "__version__",
    "aioclient",
    "aiorequests",
    "asyncio_scheduler",
    "authorize",
    "background_scheduler",
    "client",
    "create_app",
    "env",
    "logger",
    "requests",
    "status",
    "threadpool",
]

_WHERE = {
    "APIRouter": "fastapi",
    "AppLoadError": "fastflyer.discovery",
    "AsyncClient": "fastkit.httpx",
    "BaseConfig": "fastflyer.settings",
    "Client": "fastkit.httpx",
    "DuplicateRouteError": "fastflyer.application",
    "FastFlyerError": "fastflyer.exceptions",
    "FlyerAPI": "fastflyer.application",
    "FlyerError": "fastflyer.errors",
    "SettingsError": "fastflyer.settings",
    "aioclient": "fastkit.httpx",
    "aiorequests": "fastkit.httpx",
    "asyncio_scheduler": "fastflyer.executor",
    "authorize": "fastflyer.auth",
    "background_scheduler": "fastflyer.executor",
    "client": "fastkit.httpx",
    "create_app": "fastflyer.application",
    "env": "fastkit.utils",
    "logger": "fastkit.logging",
    "requests": "fastkit.httpx",
    "status": "fastkit.httpx",
    "threadpool": "fastflyer.executor",
}

__getattr__ = lazy_exports(__name__, globals(), _WHERE)


def __dir__() -> list[str]:
    return sorted(__all__)
