"""One place where components start and stop with the app.

    @app.lifecycle.on_startup
    async def open_pool(): ...

    @app.lifecycle.on_shutdown
    def close_pool(): ...

    app.lifecycle.add("scheduler", start=scheduler.start, stop=scheduler.shutdown)

Start hooks run in the order they were added, before the first request is served; if
one fails, the stop hooks of those already started run and start-up fails with the
error. Stop hooks run in reverse order, all of them within ``flyer_graceful_timeout``
seconds in total: a hook that overruns is logged and left behind so the others still
run (each later hook gets at least 0.1 s). Hooks may be sync (run in a worker thread at
shutdown) or async.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from fastkit.logging import logger

__all__ = ["Hook", "Lifecycle"]

Hook = Callable[[], Any] | Callable[[], Awaitable[Any]]
H = TypeVar("H", bound=Hook)
_FLOOR = 0.1


@dataclass(frozen=True)
class _Component:
    name: str
    start: Hook | None
    stop: Hook | None


async def _call(hook: Hook) -> None:
    if inspect.iscoroutinefunction(hook):
        await hook()
        return
    result = hook()
    if inspect.isawaitable(result):
        await result


class Lifecycle:
    """Start and stop hooks of an app's components."""

    def __init__(self, graceful_timeout: float = 1.0) -> None:
        self.graceful_timeout = graceful_timeout
        self._components: list[_Component] = []

    def add(self, name: str, start: Hook | None = None, stop: Hook | None = None) -> None:
        """Register a component by ``name`` with its ``start`` and/or ``stop`` hook."""
        if start is None and stop is None:
            raise ValueError(f"component {name!r} needs a start or a stop hook")
        self._components.append(_Component(name, start, stop))

    def on_startup(self, hook: H) -> H:
        """Decorator: run ``hook`` at start-up."""
        self.add(getattr(hook, "__qualname__", "startup hook"), start=hook)
        return hook

    def on_shutdown(self, hook: H) -> H:
        """Decorator: run ``hook`` at shutdown."""
        self.add(getattr(hook, "__qualname__", "shutdown hook"), stop=hook)
        return hook

    @property
    def names(self) -> list[str]:
        """Registered component names, in start order."""
        return [c.name for c in self._components]

    async def startup(self) -> list[_Component]:
        """Run the start hooks; on failure stop what started and re-raise."""
        started: list[_Component] = []
        for component in self._components:
            if component.start is not None:
                try:
                    await _call(component.start)
                except BaseException:
                    logger.error("start-up of {} failed; stopping what started", component.name)
                    await self.shutdown(started)
                    raise
            started.append(component)
        return started

    async def shutdown(self, components: list[_Component] | None = None) -> None:
        """Run the stop hooks in reverse order within ``graceful_timeout`` in total."""
        deadline = time.monotonic() + self.graceful_timeout
        for component in reversed(self._components if components is None else components):
            if component.stop is None:
                continue
            # A hook after one that overran still gets a moment: it may be quick.
            remaining = max(deadline - time.monotonic(), _FLOOR)
            stop = component.stop
            call = _call(stop) if inspect.iscoroutinefunction(stop) else asyncio.to_thread(stop)
            try:
                await asyncio.wait_for(call, timeout=remaining)
            except TimeoutError:
                logger.warning("shutdown of {} did not finish within the graceful timeout "
                               "({:g} s); going on", component.name, self.graceful_timeout)
            except Exception as exc:
                logger.opt(exception=exc).error("shutdown of {} failed", component.name)

    def lifespan(
        self, inner: Callable[[Any], AbstractAsyncContextManager[Any]] | None = None,
    ) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
        """An ASGI lifespan running the hooks around ``inner`` (the user's lifespan)."""

        @asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[Any]:
            started = await self.startup()
            try:
                if inner is None:
                    yield None
                else:
                    async with inner(app) as state:
                        yield state
            finally:
                await self.shutdown(started)

        return lifespan
