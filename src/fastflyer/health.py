"""Liveness and readiness.

Liveness: ``/health_check``, ``/health_check/async`` and ``{base_url}/health_check``
(under the root path, if any) answer ``{"code":200,"message":"success"}`` to GET and HEAD
from :class:`fastflyer.middleware.context.Liveness`, which the app calls before anything
else (middleware, auth, routing), so a busy app still answers its probes cheaply. Other
methods go to routing: 405 with ``Allow``, OPTIONS 204.

Readiness: ``/health_check/ready`` (and ``{base_url}/health_check/ready``) runs every
registered check concurrently, each within its timeout, and answers 200 when none is
down, 503 when one is::

    app.readiness.register("redis", lambda: redis.ping(), timeout=1.0)

    {"code": 200, "message": "success",
     "data": {"ready": true, "components": {"redis": {"status": "up", "latency_ms": 0.41}}}}

A check that returns is "up"; one that raises (or overruns its timeout) is "down", and
says why in ``error`` (the exception's type and message, never a traceback). A check
that raises :class:`Degraded` is "degraded": the component works, but not fully (the
config center unreachable, the service running on the last values it had); ``error``
is the exception's message, and the app stays ready (200)::

    def config_center() -> None:
        if not client.reachable():
            raise Degraded("config center unreachable; serving the values of 10:42")

    {"code": 200, "message": "success",
     "data": {"ready": true, "components": {"config": {"status": "degraded",
              "latency_ms": 0.2, "error": "config center unreachable; ..."}}}}

 A ``def`` check runs on a daemon thread (:func:`fastkit.utils.run_in_daemon_thread`),
one at a time per component: probes that come while it runs wait for the same run, and
one that never returns delays neither later probes past their timeout nor the process's
exit. An ``async def`` check is cancelled at its timeout.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from fastkit.utils.threads import run_in_daemon_thread

__all__ = ["Check", "ComponentHealth", "Degraded", "Readiness", "ReadinessReport",
           "health_paths"]

Check = Callable[[], Any] | Callable[[], Awaitable[Any]]


class Degraded(Exception):
    """Raise it from a readiness check to report the component "degraded": it works, but
    not fully. The exception's message becomes the component's ``error``; readiness stays
    ready (200), unlike any other exception (the component "down", 503)."""


def health_paths(base_url: str) -> tuple[str, ...]:
    """The liveness paths answered on the fast path."""
    return ("/health_check", "/health_check/async", f"{base_url}/health_check")


class ComponentHealth(BaseModel):
    """One component's probe (documents the readiness answer)."""

    status: Literal["up", "degraded", "down"] = Field(
        description='"up": the check returned; "degraded": it raised Degraded (working, '
        'not fully; the app stays ready); "down": it raised or overran its timeout.')
    latency_ms: float = Field(description="How long the check took.")
    error: str | SkipJsonSchema[None] = Field(
        default=None, description="Why it is down (the exception's type and message) or "
        "degraded (the message); only then.",
        exclude_if=lambda value: value is None)


class ReadinessReport(BaseModel):
    """The readiness answer's ``data``."""

    ready: bool = Field(description="No component is down (each is up or degraded).")
    components: dict[str, ComponentHealth] = Field(description="Each component, by name.")


@dataclass(frozen=True)
class _Component:
    name: str
    check: Check
    timeout: float


class Readiness:
    """The components whose health decides whether the app is ready."""

    def __init__(self) -> None:
        self._components: dict[str, _Component] = {}
        # The run of each ``def`` check on its daemon thread, shared by the probes that
        # come while it runs.
        self._running: dict[str, tuple[_Component, asyncio.Future[Any]]] = {}

    def register(self, name: str, check: Check, timeout: float = 2.0) -> None:
        """Add (or replace) ``name``: ``check()`` returns or raises; it may be async."""
        if timeout <= 0:
            raise ValueError(f"timeout of readiness check {name!r} must be > 0, got {timeout}")
        self._components[name] = _Component(name, check, timeout)

    def unregister(self, name: str) -> None:
        """Remove ``name`` if present."""
        self._components.pop(name, None)

    @property
    def names(self) -> list[str]:
        """Registered component names, in registration order."""
        return list(self._components)

    async def _probe(self, component: _Component) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            if inspect.iscoroutinefunction(component.check):
                await asyncio.wait_for(component.check(), component.timeout)
            else:
                await asyncio.wait_for(asyncio.shield(self._in_thread(component)),
                                       component.timeout)
        except Degraded as exc:
            return {"status": "degraded", "error": str(exc) or type(exc).__name__,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
        except (Exception, SystemExit) as exc:  # a check that calls sys.exit() is down
            error = (f"no answer within {component.timeout:g} s"
                     if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}")
            return {"status": "down", "error": error,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
        return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}

    def _in_thread(self, component: _Component) -> asyncio.Future[Any]:
        """The running run of ``component``'s check, or a new one on a daemon thread."""
        running = self._running.get(component.name)
        if (running is None or running[0] is not component or running[1].done()
                or running[1].get_loop() is not asyncio.get_running_loop()):
            future = run_in_daemon_thread(component.check)
            # Its error is read by the probes waiting; read here too, for when none waits.
            future.add_done_callback(lambda done: done.cancelled() or done.exception())
            running = self._running[component.name] = (component, future)
        return running[1]

    async def report(self) -> dict[str, Any]:
        """``{"ready": bool, "components": {name: {"status", "latency_ms"[, "error"]}}}``;
        ready when no component is "down" (each is "up" or "degraded")."""
        components = list(self._components.values())
        results = await asyncio.gather(*(self._probe(c) for c in components))
        by_name = {c.name: r for c, r in zip(components, results, strict=True)}
        ready = all(r["status"] != "down" for r in results)
        return {"ready": ready, "components": by_name}
