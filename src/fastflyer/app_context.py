"""The app in whose context code runs: its settings and its project directory.

    from fastflyer.app_context import current_settings

    settings = current_settings()     # the FlyerSettings of the app serving this request

Settings are owned by the app: each :class:`~fastflyer.FlyerAPI` has one
:class:`~fastflyer.settings.FlyerSettings` (``app.settings``, also ``app.state.settings``)
and passes it to what it starts. What takes no settings argument (``get_dataset_pool()``,
``default_redis()``, ``default_producer()``, the locks' default backend) asks
:func:`current_settings`, which answers, in this order:

1. the app in whose context the code runs: an app binds itself (:func:`bound`) for each
   request and websocket it serves, for its lifespan (start and stop hooks, and the tasks
   they create: its Kafka consumers), and while it imports its project's apps (so that a
   module-level ``pool = get_dataset_pool()`` in an app file sees that app's settings).
   Work handed to the thread pool, and a job run now (``run_job``), keep the context they
   were submitted in; a scheduled job (either scheduler, shared by the process) runs in
   the context it was added in (``add_job`` or ``@scheduled_job`` in an app's module, its
   start hook or a request: that app's);
2. else the last app built in this process (a script's code after ``app = FlyerAPI(...)``,
   a job added outside any app, threads started by hand);
3. else the environment, read now (:func:`~fastflyer.settings.load_settings`).

Two apps built in one process with different settings each see their own in their own
requests and lifespans.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastflyer.settings import FlyerSettings

__all__ = ["AppContext", "bind", "bound", "built", "current_context", "current_project",
           "current_settings", "unbind"]


@dataclass(frozen=True)
class AppContext:
    """What an app shares with the code running on its behalf.

    ``settings``: the app's settings. ``project``: its project directory (where
    ``main.py`` and ``app/`` are), absolute; ``None`` for an app built without one.
    """

    settings: FlyerSettings
    project: Path | None = None


_CURRENT: ContextVar[AppContext | None] = ContextVar("fastflyer_app", default=None)
_last_built: AppContext | None = None


def bind(context: AppContext) -> Token[AppContext | None]:
    """Make ``context`` current in this context (task, thread); give the token to
    :func:`unbind` when done. :func:`bound` is the ``with`` form."""
    return _CURRENT.set(context)


def unbind(token: Token[AppContext | None]) -> None:
    """Undo the :func:`bind` that gave ``token``, in the context it was made in."""
    _CURRENT.reset(token)


@contextmanager
def bound(context: AppContext) -> Iterator[AppContext]:
    """``with bound(context):`` the code inside runs in ``context`` (see the module
    docstring); the context before comes back after."""
    token = _CURRENT.set(context)
    try:
        yield context
    finally:
        _CURRENT.reset(token)


def built(context: AppContext) -> None:
    """Record ``context`` as the last app built in this process (the fallback outside
    any app's context)."""
    global _last_built
    _last_built = context


def current_context() -> AppContext | None:
    """The context of the app code runs for, else of the last app built; ``None`` when
    no app was built in this process."""
    return _CURRENT.get() or _last_built


def current_settings() -> FlyerSettings:
    """The settings of the app code runs for, else of the last app built, else the
    environment's, read now. Raises :class:`~fastflyer.settings.SettingsError` only in
    that last case, when a ``flyer_*`` variable is not allowed."""
    context = _CURRENT.get() or _last_built
    if context is not None:
        return context.settings
    from fastflyer.settings import load_settings

    return load_settings()


def current_project() -> Path | None:
    """The project directory of the app code runs for, else of the last app built;
    ``None`` when that app has none or no app was built."""
    context = _CURRENT.get() or _last_built
    return context.project if context is not None else None
