"""Values kept per running event loop, for asyncio clients whose connections belong to the
loop that opened them (redis.asyncio, SQLAlchemy's asyncio engines).

``LoopLocal(aclose).get(key, make)`` returns the value made for ``key`` in the running
loop, making it (once, under a lock, whatever the number of tasks and threads asking at
once) on first use there. Values live as long as their loop:

- when the loop shuts down its async generators (``asyncio.run``, ``asyncio.Runner``,
  pytest-asyncio, uvicorn's loop all do before closing it), ``aclose(value)`` runs in that
  loop for each of its values, so no connection outlives the loop;
- a loop found closed without that (``loop.close()`` alone) is forgotten with its values
  at the next first use in another loop.

The hook is an async generator registered with the loop through its documented
``sys.set_asyncgen_hooks`` first-iteration hook, the same way any ``async for`` over a
generator registers; asyncio's ``shutdown_asyncgens()`` closes it. Outside a running loop
``get`` makes a value and keeps none (nothing could close it).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["LoopLocal"]

T = TypeVar("T")


class _Entry(Generic[T]):
    __slots__ = ("abandoned", "hook", "values")

    def __init__(self) -> None:
        self.values: dict[Hashable, T] = {}
        self.hook: AsyncGenerator[None, None] | None = None
        self.abandoned = False


class LoopLocal(Generic[T]):
    """One value per (running loop, key), closed with ``aclose`` when the loop shuts down."""

    def __init__(self, aclose: Callable[[T], Awaitable[Any]]) -> None:
        self._aclose = aclose
        self._lock = threading.Lock()
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Entry[T]] = (
            weakref.WeakKeyDictionary())

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        """The running loop's value for ``key``, made by ``make()`` on first use."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return make()
        try:
            entry = self._loops.get(loop)
        except TypeError:  # a loop that cannot be weakly referenced: nothing is kept
            return make()
        if entry is not None:
            value = entry.values.get(key)
            if value is not None:
                return value
        with self._lock:  # double-checked: one value per loop and key
            self._forget_closed_loops()
            entry = self._loops.get(loop)
            if entry is None:
                entry = self._loops[loop] = _Entry()
                entry.hook = self._install_hook(entry)
            value = entry.values.get(key)
            if value is None:
                value = entry.values[key] = make()
            return value

    def values(self) -> list[T]:
        """The running loop's values (none outside a loop)."""
        try:
            entry = self._loops.get(asyncio.get_running_loop())
        except (RuntimeError, TypeError):
            return []
        with self._lock:
            return list(entry.values.values()) if entry else []

    def _install_hook(self, entry: _Entry[T]) -> AsyncGenerator[None, None] | None:
        if sys.get_asyncgen_hooks().firstiter is None:  # a loop that tracks no generators
            return None
        hook = self._closing(entry)
        with contextlib.suppress(StopIteration):  # runs to its `yield`: registered
            hook.__anext__().send(None)
        return hook

    async def _closing(self, entry: _Entry[T]) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:  # the loop's shutdown_asyncgens(): close the values in their own loop
            # (unless _forget_closed_loops, which holds the lock, finished it)
            if not entry.abandoned:
                await self._close_entry(entry)

    async def _close_entry(self, entry: _Entry[T]) -> None:
        with self._lock:
            with contextlib.suppress(RuntimeError, TypeError):
                self._loops.pop(asyncio.get_running_loop(), None)
            values = list(entry.values.values())
            entry.values.clear()
        for value in values:
            with contextlib.suppress(Exception):
                await self._aclose(value)

    def _forget_closed_loops(self) -> None:
        """Drop the entries of loops closed without shutting down their generators."""
        for loop, entry in list(self._loops.items()):
            if loop.is_closed():
                del self._loops[loop]
                entry.abandoned = True
                entry.values.clear()  # their connections close as they are collected
                if entry.hook is not None:  # finish it here, or its finalizer would run
                    with contextlib.suppress(StopIteration, RuntimeError):  # on a dead loop
                        entry.hook.aclose().send(None)
