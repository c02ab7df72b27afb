"""Lazy package exports: a name's module is imported on first use of that name.

Packages whose parts need optional or heavy libraries (httpx, redis, SQLAlchemy) export
them through :func:`lazy_exports`, so importing the package itself stays cheap and does
no I/O::

    __getattr__ = lazy_exports(__name__, globals(), {"MySQL": "._sqlalchemy"})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, namespace: dict[str, Any],
                 where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` importing ``where[name]`` (relative to ``package`` when it
    starts with a dot) on first use and caching the value in ``namespace``."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    return __getattr__
