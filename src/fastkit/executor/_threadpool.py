"""A thread pool for long-running background tasks, started and stopped with the app.

    threadpool = ThreadPoolExecutor(max_workers=32)

    @threadpool.submit(single_job=True)      # registered: runs when the pool starts
    def consume() -> None:
        while not threadpool.is_stopped():
            handle(next_batch())
            threadpool.sleep(1)              # cut short by shutdown

    threadpool.submit_task(send_report, "daily", single_job=False)   # a Future
    threadpool.start(); ...; threadpool.shutdown(wait=True, timeout=5)

Decorating does not run the function and leaves its name bound to it. A task submitted
before :meth:`start` waits for it (so importing a module never starts a thread).
``single_job=True``: one running copy across every process sharing the lock store. The
others wait on standby, trying the lock every few seconds, and one of them takes over when
the holder's lease expires (its process died) or it ends (it was shut down). A
``single_job`` task is therefore a loop that runs until :meth:`is_stopped`; a one-off job
that must run once in total belongs in a scheduler with a lock.

A holder whose lease is lost (the lock store restarted and forgot it, or could not be
reached for two thirds of the ttl) is told at once: inside it, :meth:`is_stopped` turns
true and :meth:`sleep` returns. When it returns it goes back on standby. A process that
takes the lock over from another holder waits one renewal period (``ttl / 3``) and a
margin before it starts the task, so the holder that lost the lock has seen the loss and
stopped at its next check first.

A task runs in a copy of the context of the code that submitted it (:meth:`submit_task`),
so its log lines carry the request id of the request that submitted it; but not the lease
or the fire of a locked job that submitted it: inside a task, ``current_lease()`` is
``None`` (a ``single_job`` task's own lease), and a guarded function it calls never takes
the job's fire.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastkit.executor._backends import LockUnavailable, redis_backend
from fastkit.executor._locks import _LEASE, Lease, Locks, clear_run_context, lock_name
from fastkit.executor._stopping import Stopping
from fastkit.logging import logger

__all__ = ["ThreadPoolExecutor"]

F = TypeVar("F", bound=Callable[..., Any])
_STANDBY_POLL = 2.0  # seconds between a standby's tries, at most
_HANDOVER_MARGIN = 0.25  # beyond one renewal period, before a process that took over starts


@dataclass
class _Task:
    func: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    single_job: bool = False
    future: Future[Any] = field(default_factory=Future)
    context: contextvars.Context = field(default_factory=contextvars.copy_context)

    @property
    def name(self) -> str:
        return lock_name(self.func)

    def copy(self) -> _Task:
        """A new run of a registered task, in a fresh copy of the current context."""
        return _Task(self.func, self.args, self.kwargs, self.single_job)


class ThreadPoolExecutor:
    """Runs registered and submitted tasks in threads; see the module's docstring."""

    def __init__(self, max_workers: int = 32, name: str = "threadpool",
                 redis_config: Any = None, *, locks: Locks | None = None,
                 lock_ttl: float = 30.0) -> None:
        if not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers {max_workers!r} is not an integer ≥ 1")
        self.max_workers = max_workers
        self.name = name
        self.locks = locks or Locks(redis_backend(redis_config) if redis_config else None,
                                    ttl=lock_ttl)
        self._stopping = Stopping()
        self._registered: list[_Task] = []
        self._queued: list[_Task] = []
        self._running: set[Future[Any]] = set()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        state = "running" if self._pool is not None else "stopped"
        return f"<ThreadPoolExecutor {self.name!r} ({state}, {len(self._registered)} registered)>"

    @property
    def running(self) -> bool:
        return self._pool is not None

    def submit(self, single_job: bool = False, *args: Any,
               **kwargs: Any) -> Callable[[F], F]:
        """Decorator: register the function to run (with ``args``) each time the pool starts."""

        def register(func: F) -> F:
            if not callable(func):
                raise TypeError(f"submit needs a function, not {type(func).__name__}")
            with self._guard:
                task = _Task(func, args, kwargs, single_job)
                self._registered.append(task)
                if self._pool is not None:  # registered while running: start it now
                    self._launch(task.copy())
            return func

        return register

    def unregister(self, func: Callable[..., Any]) -> bool:
        """Forget a task registered with :meth:`submit` (a running copy is not stopped)."""
        with self._guard:
            kept = [task for task in self._registered if task.func is not func]
            found = len(kept) != len(self._registered)
            self._registered = kept
        return found

    def submit_task(self, func: Callable[..., Any], *args: Any, single_job: bool = False,
                    **kwargs: Any) -> Future[Any]:
        """Run ``func(*args, **kwargs)`` once; a Future of its result. Before :meth:`start`
        the task waits for it."""
        if not callable(func):
            raise TypeError(f"submit_task needs a function, not {type(func).__name__}")
        task = _Task(func, args, kwargs, single_job)
        with self._guard:
            if self._pool is None:
                self._queued.append(task)
            else:
                self._launch(task)
        return task.future

    def start(self) -> None:
        """Start the registered tasks and those submitted so far (again after a shutdown)."""
        with self._guard:
            if self._pool is not None:
                return
            self._stopping.reset()
            self._pool = concurrent.futures.ThreadPoolExecutor(
                self.max_workers, thread_name_prefix=self.name)
            tasks = [task.copy() for task in self._registered]
            tasks += self._queued
            self._queued = []
            if len(self._registered) >= self.max_workers:
                logger.warning("thread pool {!r}: {} registered tasks for {} workers; "
                               "submitted tasks will wait", self.name, len(self._registered),
                               self.max_workers)
            for task in tasks:
                self._launch(task)

    def _launch(self, task: _Task) -> None:
        assert self._pool is not None
        running = self._pool.submit(task.context.run, self._run, task)
        self._running.add(running)
        running.add_done_callback(self._running.discard)

    def _run(self, task: _Task) -> None:
        if not task.future.set_running_or_notify_cancel():
            return
        # The task's context is a copy of its submitter's: a job's lease and fire stay there.
        clear_run_context()
        if not task.single_job:
            with self._stopping.run():
                self._call(task)
            return
        taken_over = False
        while True:
            lease = self._standby(task, taken_over)
            if lease is None:  # stopped while on standby
                if not task.future.done():
                    task.future.set_result(None)
                return
            held = _LEASE.set(lease)  # current_lease() in the task: its own
            try:
                with self._stopping.run() as signal:
                    lease.on_lost.append(signal)  # a lost lease stops this run
                    if lease.lost:
                        signal.set()
                    self._call(task)
            finally:
                _LEASE.reset(held)
                self.locks.release(lease)
            if not lease.lost or self._stopping.is_stopped():
                return
            # The lock was lost while it ran: another process may hold it now. Stand by.
            logger.warning("task {} stopped: its lock was lost; it stands by to take it "
                           "again", task.name)
            taken_over = True

    def _call(self, task: _Task) -> None:
        try:
            result = task.func(*task.args, **task.kwargs)
        except BaseException as exc:
            logger.opt(exception=exc).error("thread pool {!r}: task {} raised {}", self.name,
                                            task.name, type(exc).__name__)
            if not task.future.done():
                task.future.set_exception(exc)
        else:
            if not task.future.done():
                task.future.set_result(result)

    def _standby(self, task: _Task, taken_over: bool = False) -> Lease | None:
        """Wait until this process holds the task's lock, or shutdown begins.

        Taking the lock over from another holder (it was held when this process first
        tried), the task starts one renewal period and a margin later, so a holder that
        lost the lock without knowing it yet sees the loss and stops first.
        """
        poll = min(_STANDBY_POLL, self.locks.ttl / 3)
        waiting, unavailable = taken_over, False
        while not self._stopping.is_stopped():
            try:
                lease = self.locks.acquire(task.name, what=f"task {task.name}")
            except LockUnavailable as exc:
                if not unavailable:
                    logger.warning("task {} waits: lock store unavailable ({})", task.name, exc)
                unavailable = True
            else:
                if lease is not None:
                    if not (waiting or unavailable):
                        return lease
                    logger.info("task {} takes over (fence {}); it starts in {:g} s, once a "
                                "holder that lost the lock has stopped", task.name,
                                lease.fence, lease.ttl / 3 + _HANDOVER_MARGIN)
                    if self._stopping.sleep(lease.ttl / 3 + _HANDOVER_MARGIN) or lease.lost:
                        self.locks.release(lease)
                        if self._stopping.is_stopped():
                            return None
                        continue
                    return lease
                waiting = True
            self._stopping.sleep(poll)
        return None

    def is_stopped(self) -> bool:
        """True once shutdown has begun (tasks loop until then)."""
        return self._stopping.is_stopped()

    def sleep(self, seconds: float) -> bool:
        """Sleep in a task; returns True at once when shutdown begins."""
        return self._stopping.sleep(seconds)

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Signal the tasks to stop; with ``wait``, return as soon as they end or after
        ``timeout`` seconds (tasks still running are logged and left behind)."""
        self._stopping.stop()
        with self._guard:
            pool, self._pool = self._pool, None
            running = set(self._running)
        if pool is None:
            return
        pool.shutdown(wait=False, cancel_futures=True)
        if not wait:
            return
        _, pending = concurrent.futures.wait(running, timeout=timeout)
        if pending:
            logger.warning("thread pool {!r}: {} task(s) still running after {:g} s "
                           "(they do not check is_stopped()); shutdown returns without them",
                           self.name, len(pending), timeout or 0)
