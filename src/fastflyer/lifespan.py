"""One place where components start and stop with the app.

    @app.lifecycle.on_startup
    async def open_pool(): ...

    @app.lifecycle.on_shutdown
    def close_pool(): ...

    app.lifecycle.add("scheduler", start=scheduler.start, stop=scheduler.shutdown)

Start hooks run in the order they were added, before the first request is served; if
one fails, the stop hooks of those already started run and start-up fails with the
error. Stop hooks run once the server has drained its requests (``flyer_graceful_timeout``),
in reverse order, all of them within ``flyer_shutdown_timeout`` seconds in total: a hook
that overruns is logged and left behind so the others still run (each later hook gets at
least 0.1 s). Hooks may be sync (run in a daemon thread, so that one left behind never
holds the process's exit) or async.

Shutdown runs every stop hook, whatever one of them raises: an ``Exception`` or a
``CancelledError`` raised inside a hook is logged and the next hook runs. A
``KeyboardInterrupt`` or ``SystemExit`` from a hook is logged too and raised again once
every hook has run (the interrupt is not lost, the other components still stop). If the
shutdown itself is cancelled (the server gives up on it), the hook running is cut short,
the later ones still run within the deadline, and the ``CancelledError`` is raised at
the end.

What went wrong while stopping (requests still in flight when the drain ended, a hook
that overran or failed) is kept in :attr:`Lifecycle.stop_problems`: the servers
(``fastflyer run``/``serve``) exit with status 1 when it is not empty.
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
from fastkit.utils.threads import run_in_daemon_thread

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


async def _guarded(hook: Hook) -> BaseException | None:
    """Run a stop hook; what it raised (``None``: nothing), ``CancelledError`` excepted.

    A sync hook runs on a daemon thread, so that one left behind never holds the exit.
    ``KeyboardInterrupt`` and ``SystemExit`` come back as values too: raised inside a
    task they would escape the event loop before the other hooks ran.
    """
    try:
        if inspect.iscoroutinefunction(hook):
            await _call(hook)
        else:
            await run_in_daemon_thread(_sync, hook)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        return exc
    return None


def _sync(hook: Hook) -> None:
    result = hook()
    if inspect.isawaitable(result):  # a sync callable that returned an awaitable
        raise TypeError(f"{hook!r} returned an awaitable: declare it async def")


class Lifecycle:
    """Start and stop hooks of an app's components."""

    def __init__(self, shutdown_timeout: float = 10.0) -> None:
        self.shutdown_timeout = shutdown_timeout
        self._components: list[_Component] = []
        #: Requests the server still runs or has cut off; set by the app (checked when
        #: stopping).
        self.in_flight: Callable[[], int] = lambda: 0
        #: What went wrong while stopping, one line each (empty: a clean stop).
        self.stop_problems: list[str] = []
        #: True once the stop hooks ran (a server that skipped them did not stop cleanly).
        self.stopped = False
        #: True when the server cancelled the lifespan (a forced stop) instead of
        #: asking it to shut down.
        self.forced = False
        #: Why start-up failed (a start hook's or the user's lifespan's error), if it did.
        self.start_error: BaseException | None = None

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
                except BaseException as exc:
                    self.start_error = exc
                    logger.error("start-up of {} failed; stopping what started", component.name)
                    await self.shutdown(started)
                    raise
            started.append(component)
        return started

    async def shutdown(self, components: list[_Component] | None = None) -> None:
        """Run the stop hooks in reverse order within ``shutdown_timeout`` in total."""
        cut_off = self.in_flight()
        if cut_off:
            why = ("the server was stopped at once (a second Ctrl-C, or SIGQUIT)"
                   if self.forced else
                   "still in flight when the drain ended (flyer_graceful_timeout)")
            self._problem(f"{cut_off} request(s) cut off: {why}")
        elif self.forced:
            self._problem("the server was stopped at once (a second Ctrl-C, or SIGQUIT)")
        deadline = time.monotonic() + self.shutdown_timeout
        cancelled = False  # this task was cancelled while stopping: raised at the end
        fatal: BaseException | None = None  # KeyboardInterrupt, SystemExit: raised at the end
        for component in reversed(self._components if components is None else components):
            if component.stop is None:
                continue
            # A hook after one that overran still gets a moment: it may be quick.
            remaining = max(deadline - time.monotonic(), _FLOOR)
            # Its own task: what it raises (CancelledError included) or how long it
            # takes never stops the hooks after it.
            hook = asyncio.ensure_future(_guarded(component.stop))
            try:
                done, _ = await asyncio.wait({hook}, timeout=remaining)
            except asyncio.CancelledError:
                # The server gave up on the shutdown: this hook is cut short, the later
                # ones still run (within the deadline), then the cancel goes on.
                cancelled = True
                hook.cancel()
                self._problem(f"shutdown of {component.name} was cancelled (the shutdown "
                              "itself was cancelled); the later hooks still run")
                continue
            if not done:
                hook.cancel()  # left behind: a sync hook's daemon thread goes on alone
                self._problem(f"shutdown of {component.name} did not finish within "
                              f"flyer_shutdown_timeout ({self.shutdown_timeout:g} s); going on")
                continue
            if hook.cancelled():
                self._problem(f"shutdown of {component.name} failed: CancelledError raised "
                              "inside the hook; going on")
                continue
            error = hook.result()
            if error is None:
                continue
            self._problem(f"shutdown of {component.name} failed: "
                          f"{type(error).__name__}: {error}", error)
            if not isinstance(error, Exception) and fatal is None:
                fatal = error
        self.stopped = True
        if fatal is not None:  # every hook ran; now the interrupt goes on
            raise fatal
        if cancelled:
            raise asyncio.CancelledError

    def _problem(self, line: str, exc: BaseException | None = None) -> None:
        self.stop_problems.append(line)
        logger.opt(exception=exc).error(line)

    def lifespan(
        self, inner: Callable[[Any], AbstractAsyncContextManager[Any]] | None = None,
    ) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
        """An ASGI lifespan running the hooks around ``inner`` (the user's lifespan)."""

        @asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[Any]:
            started = await self.startup()
            serving = False
            try:
                if inner is None:
                    serving = True
                    yield None
                else:
                    async with inner(app) as state:
                        serving = True
                        yield state
            except asyncio.CancelledError:
                if not serving:
                    raise
                # A forced stop (a second Ctrl-C, gunicorn's SIGQUIT): the server cancels
                # the lifespan instead of asking it to shut down. The stop hooks still run
                # (below), and the cancel ends here rather than as a lifespan error.
                self.forced = True
            except BaseException as exc:
                if not serving:  # the user's lifespan failed to start
                    self.start_error = exc
                raise
            finally:
                await self.shutdown(started)

        return lifespan
