"""One place where components start and stop with the app.

    @app.lifecycle.on_startup
    async def open_pool(): ...

    @app.lifecycle.on_shutdown
    def close_pool(): ...

    app.lifecycle.add("scheduler", start=scheduler.start, stop=scheduler.shutdown)

    @app.lifecycle.on_stopping
    async def withdraw(): ...      # leave the service registry while the port still accepts

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

Stopping hooks (``add(name, stopping=...)``, :meth:`Lifecycle.on_stopping`) run once, when
the server starts stopping, before its listener closes and before the drain: the server
(``fastflyer run``/``serve``, :class:`fastflyer.server.FlyerServer`) calls
:meth:`Lifecycle.stopping`, and a service registry withdraws the instance while the port
still accepts (the requests that still come are served). They run in reverse order, all
of them within half of ``flyer_shutdown_timeout`` and at most :data:`STOPPING_TIMEOUT`
seconds in total, and whatever they raise or however long they take, the stop goes on
(logged, in :attr:`Lifecycle.stop_problems`, as for stop hooks). The time they took
comes off ``flyer_shutdown_timeout``: the stopping and the stop hooks together get
``flyer_shutdown_timeout`` seconds, so the server's whole stop stays within its budget.
Under a server that never calls :meth:`Lifecycle.stopping` (plain ``uvicorn main:app``)
they run at the start of :meth:`Lifecycle.shutdown`, before the stop hooks: the withdraw
still happens, only after the listener closed. They do not run when start-up failed
(the app never served): a component's stop hook must cope with its stopping hook not
having run.

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

__all__ = ["STOPPING_TIMEOUT", "Hook", "Lifecycle"]

Hook = Callable[[], Any] | Callable[[], Awaitable[Any]]
H = TypeVar("H", bound=Hook)
_FLOOR = 0.1

#: The longest the stopping hooks get, all of them together, in seconds (and never more
#: than half of the shutdown timeout).
STOPPING_TIMEOUT = 5.0


@dataclass(frozen=True)
class _Component:
    name: str
    start: Hook | None
    stop: Hook | None
    stopping: Hook | None = None


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
    """Start, stopping and stop hooks of an app's components.

    ``shutdown_timeout``: seconds the stopping and stop hooks get in total (> 0).
    """

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
        #: True when this process stops on its own while the service goes on (a worker
        #: recycled after ``flyer_max_requests``), rather than because the service is
        #: told to stop (a signal, its master gone); set by the server before the
        #: stopping hooks run. A service registry then leaves the instance listed.
        self.recycling = False
        # The stopping hooks began (they run once; never after a failed start-up), and
        # how long they took (seconds).
        self._stopping_began = False
        self._stopping_took = 0.0

    def add(self, name: str, start: Hook | None = None, stop: Hook | None = None,
            stopping: Hook | None = None) -> None:
        """Register a component by ``name`` with its hooks, each optional (one at least):
        ``start`` at start-up, ``stopping`` when the server starts stopping (before its
        listener closes), ``stop`` at shutdown. A hook is a sync or async callable taking
        no argument. Raises ``ValueError`` when none is given."""
        if start is None and stop is None and stopping is None:
            raise ValueError(f"component {name!r} needs a start or a stop hook "
                             "(or a stopping hook)")
        self._components.append(_Component(name, start, stop, stopping))

    def on_startup(self, hook: H) -> H:
        """Decorator: run ``hook`` at start-up."""
        self.add(getattr(hook, "__qualname__", "startup hook"), start=hook)
        return hook

    def on_shutdown(self, hook: H) -> H:
        """Decorator: run ``hook`` at shutdown."""
        self.add(getattr(hook, "__qualname__", "shutdown hook"), stop=hook)
        return hook

    def on_stopping(self, hook: H) -> H:
        """Decorator: run ``hook`` when the server starts stopping, before its listener
        closes (see :meth:`stopping`)."""
        self.add(getattr(hook, "__qualname__", "stopping hook"), stopping=hook)
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
                    self._stopping_began = True  # the app never served: nothing to withdraw
                    logger.error("start-up of {} failed; stopping what started", component.name)
                    await self.shutdown(started)
                    raise
            started.append(component)
        return started

    @property
    def stopping_timeout(self) -> float:
        """Seconds the stopping hooks get in total: half of :attr:`shutdown_timeout`, at
        most :data:`STOPPING_TIMEOUT`."""
        return min(self.shutdown_timeout / 2, STOPPING_TIMEOUT)

    async def stopping(self) -> None:
        """Run the stopping hooks, once (a later call returns at once), in reverse order,
        all within :attr:`stopping_timeout` seconds: what a hook raises, or its overrun, is
        logged and kept in :attr:`stop_problems`, and the next hook runs. Afterwards a
        ``KeyboardInterrupt``/``SystemExit`` raised by a hook is raised again, and so is
        the ``CancelledError`` of a cancelled call (the later hooks ran first)."""
        cancelled, fatal = await self._run_stopping()
        if fatal is not None:
            raise fatal
        if cancelled:
            raise asyncio.CancelledError

    async def _run_stopping(self) -> tuple[bool, BaseException | None]:
        """The stopping hooks, unless they began already: (cancelled, fatal)."""
        if self._stopping_began:
            return False, None
        self._stopping_began = True
        began = time.monotonic()
        try:
            return await self._run_hooks(
                "stopping hook",
                [(c.name, c.stopping) for c in reversed(self._components)
                 if c.stopping is not None],
                self.stopping_timeout,
                f"{self.stopping_timeout:g} s (half of flyer_shutdown_timeout, at most "
                f"{STOPPING_TIMEOUT:g} s)")
        finally:
            self._stopping_took = time.monotonic() - began

    async def shutdown(self, components: list[_Component] | None = None) -> None:
        """Run the stop hooks in reverse order within ``shutdown_timeout`` in total (less
        what the stopping hooks took), after the stopping hooks if they have not run yet
        (unless start-up failed)."""
        cut_off = self.in_flight()
        if cut_off:
            why = ("the server was stopped at once (a second Ctrl-C, or SIGQUIT)"
                   if self.forced else
                   "still in flight when the drain ended (flyer_graceful_timeout)")
            self._problem(f"{cut_off} request(s) cut off: {why}")
        elif self.forced:
            self._problem("the server was stopped at once (a second Ctrl-C, or SIGQUIT)")
        # Raised at the end, once every hook ran.
        cancelled, fatal = await self._run_stopping()
        took = self._stopping_took
        limit = f"flyer_shutdown_timeout ({self.shutdown_timeout:g} s"
        limit += f", of which the stopping hooks took {took:.1f} s)" if took >= 0.05 else ")"
        stop_cancelled, stop_fatal = await self._run_hooks(
            "shutdown",
            [(c.name, c.stop) for c in reversed(self._components if components is None
                                                else components) if c.stop is not None],
            self.shutdown_timeout - took, limit)
        self.stopped = True
        if fatal is None:
            fatal = stop_fatal
        if fatal is not None:  # every hook ran; now the interrupt goes on
            raise fatal
        if cancelled or stop_cancelled:
            raise asyncio.CancelledError

    async def _run_hooks(self, what: str, hooks: list[tuple[str, Hook]], budget: float,
                         limit: str) -> tuple[bool, BaseException | None]:
        """Run ``hooks`` ((name, hook) pairs) one after the other, all within ``budget``
        seconds (each at least ``_FLOOR``), whatever each raises or however long it takes;
        each problem is logged and kept as "``what`` of ``name`` ..." (``limit``: the
        bound, as the overrun line names it).

        Returns (cancelled, fatal): whether this task was cancelled meanwhile, and the
        first ``KeyboardInterrupt``/``SystemExit`` a hook raised: for the caller to raise
        once every hook has run.
        """
        deadline = time.monotonic() + budget
        cancelled = False
        fatal: BaseException | None = None
        for name, call in hooks:
            # A hook after one that overran still gets a moment: it may be quick.
            remaining = max(deadline - time.monotonic(), _FLOOR)
            # Its own task: what it raises (CancelledError included) or how long it
            # takes never stops the hooks after it.
            hook = asyncio.ensure_future(_guarded(call))
            try:
                done, _ = await asyncio.wait({hook}, timeout=remaining)
            except asyncio.CancelledError:
                # The server gave up on the shutdown: this hook is cut short, the later
                # ones still run (within the deadline), then the cancel goes on.
                cancelled = True
                hook.cancel()
                self._problem(f"{what} of {name} was cancelled (the shutdown itself was "
                              "cancelled); the later hooks still run")
                continue
            if not done:
                hook.cancel()  # left behind: a sync hook's daemon thread goes on alone
                self._problem(f"{what} of {name} did not finish within {limit}; going on")
                continue
            if hook.cancelled():
                self._problem(f"{what} of {name} failed: CancelledError raised inside the "
                              "hook; going on")
                continue
            error = hook.result()
            if error is None:
                continue
            self._problem(f"{what} of {name} failed: {type(error).__name__}: {error}", error)
            if not isinstance(error, Exception) and fatal is None:
                fatal = error
        return cancelled, fatal

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
                    self._stopping_began = True  # start-up cancelled: the app never served
                    raise
                # A forced stop (a second Ctrl-C, gunicorn's SIGQUIT): the server cancels
                # the lifespan instead of asking it to shut down. The stop hooks still run
                # (below), and the cancel ends here rather than as a lifespan error.
                self.forced = True
            except BaseException as exc:
                if not serving:  # the user's lifespan failed to start
                    self.start_error = exc
                    self._stopping_began = True
                raise
            finally:
                await self.shutdown(started)

        return lifespan
