"""Stopping aiokafka clients within a bound, whatever the broker does.

    problem = await stop_within(client, timeout, "consumer 'billing'")   # None: clean

aiokafka's ``stop()`` waits on the broker (leaving the group, delivering what is
pending) without a bound of its own, and a broker that dies at the wrong moment makes it
raise ``CancelledError`` from inside (its fetcher awaits the tasks it has just
cancelled) with its connections still open. :func:`stop_within` runs it as a separate
task for at most ``timeout`` seconds; whatever it did not finish (overran, failed,
cancelled from inside) is ended by force: the client's background tasks are cancelled,
messages still waiting fail, its connections are closed. What went wrong comes back as
one line for the caller to log; only the caller's own cancellation propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

__all__ = ["FORCE_GRACE", "force_close", "settle", "stop_within"]

T = TypeVar("T")

# Seconds given to cancelled tasks and closing sockets once a stop is forced.
FORCE_GRACE = 0.5

# aiokafka's background tasks, by attribute, on the client and its parts.
_TASKS = ("_coordination_task", "_heartbeat_task", "_commit_refresh_task",
          "_reset_committed_task", "_fetch_task", "_sender_task", "_sync_task")
_PARTS = ("_coordinator", "_fetcher", "_sender")


async def settle(awaitable: Awaitable[T], timeout: float) -> tuple[bool, BaseException | None]:
    """Run ``awaitable`` as its own task for up to ``timeout`` s: ``(finished, error)``.

    An overrun cancels it (``(False, None)``); a ``CancelledError`` raised inside it is
    returned as its error, not raised here. Only this task's own cancellation
    propagates (after cancelling ``awaitable``).
    """
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=max(timeout, 0))
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        return False, None
    if task.cancelled():
        return True, asyncio.CancelledError("cancelled inside the Kafka client")
    return True, task.exception()


def _kafka_client(client: Any) -> Any:
    return getattr(client, "_client", None) or getattr(client, "client", None)


async def force_close(client: Any, failure: BaseException | None = None,
                      grace: float = FORCE_GRACE) -> int:
    """End an aiokafka producer or consumer at once: cancel its background tasks, fail
    the messages it still holds (with ``failure``), close its connections. Waits at
    most ``grace`` s for them to go; the number of connections it closed."""
    owners = [client, _kafka_client(client), *(getattr(client, part, None) for part in _PARTS)]
    tasks: list[asyncio.Future[Any]] = []
    for owner in owners:
        if owner is None:
            continue
        for name in _TASKS:
            task = getattr(owner, name, None)
            if isinstance(task, asyncio.Future) and not task.done():
                tasks.append(task)
        tasks.extend(task for task in getattr(owner, "_pending_tasks", ()) or ()
                     if isinstance(task, asyncio.Future) and not task.done())
    for task in tasks:
        task.cancel()
    accumulator = getattr(client, "_message_accumulator", None)
    if accumulator is not None and failure is not None:
        accumulator.fail_all(failure)
    closed = _close_connections(client)
    if tasks or closed:
        await asyncio.wait([*tasks, *closed], timeout=grace)
    _close_connections(client)  # any a dying task opened meanwhile
    return len(closed)


def _close_connections(client: Any) -> list[asyncio.Future[Any]]:
    from aiokafka.conn import CloseReason

    kafka = _kafka_client(client)
    connections = getattr(kafka, "_conns", None) or {}
    closing = []
    for connection in list(connections.values()):
        closed = connection.close(reason=CloseReason.SHUTDOWN)
        if isinstance(closed, asyncio.Future) and not closed.done():
            closing.append(closed)
    return closing


async def stop_within(client: Any, timeout: float, failure: BaseException | None = None,
                      ) -> str | None:
    """Stop an aiokafka producer or consumer within ``timeout`` s (plus
    :data:`FORCE_GRACE` when it must be forced); ``None`` if it stopped cleanly, else
    what was cut short. ``failure`` is what the messages still pending fail with."""
    try:
        finished, error = await settle(client.stop(), timeout)
    except asyncio.CancelledError:
        await asyncio.shield(force_close(client, failure))
        raise
    if finished and error is None:
        return None
    why = (f"did not stop within {timeout:g} s" if not finished else
           "its stop was cancelled from inside the client" if isinstance(
               error, asyncio.CancelledError) else
           f"its stop failed ({type(error).__name__}: {error})")
    await force_close(client, failure)
    return why
