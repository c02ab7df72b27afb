"""Schedulers on APScheduler 3: threads (``background``) or the app's event loop (``asyncio``).

    scheduler = Scheduler("jobs", "background", redis_config="redis://127.0.0.1:6379/0")

    @scheduler.lock()                      # one run at a time, each fire once, across processes
    def customfunc() -> None: ...

    scheduler.add_job(customfunc, "interval", seconds=5, id="customjob")
    scheduler.start()
    ...
    scheduler.shutdown(wait=True, timeout=10)

What it adds to APScheduler:

* jobs default to ``max_instances=1`` and ``coalesce=True`` (missed fires run once);
* an ``interval`` trigger given no ``start_date`` counts from the Unix epoch, so every
  process computes the same fire times (``seconds=5`` fires at :00, :05, ... everywhere);
* every fire is named by its slot, the same in every process whatever the trigger's form
  (a string, an ``IntervalTrigger`` object made at a different moment in each process, a
  cron or date trigger, a combination) and however the job was added or rescheduled: an
  interval fire's slot is the interval of the epoch's grid holding its time, any other
  fire's slot is its time. That is what lets a lock tell one fire from another;
* ``single_job=True`` or ``@scheduler.lock()`` runs each fire once across processes (see
  :mod:`fastkit.executor._locks`); a run now (``run_job``) is no scheduled fire
  (``current_fire().scheduled`` is False): it takes only the run's lock, and runs in the
  caller's context (its request id goes along); a scheduled fire runs in a copy of the
  context its job was added in (``add_job``, ``scheduled_job``), without its request id;
* job ids are URL-safe; without one, a job is named ``module.qualname`` of its function,
  so every process names it alike;
* a job that raises is logged with its id and traceback, and the scheduler goes on;
* ``run_job(id)`` runs a job now without moving its schedule; ``shutdown`` takes a timeout;
* with FastKit's metrics or tracing on, each run is counted, timed and traced, and each
  fire not run is counted with its reason (see :mod:`fastkit.executor._instrument`);
* nothing is created before the first use (no thread, no clock lookup at import).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.executors.base import run_coroutine_job, run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.combining import BaseCombiningTrigger
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import iscoroutinefunction_partial

from fastkit.exceptions import FastKitError
from fastkit.executor import _instrument
from fastkit.executor._backends import redis_backend
from fastkit.executor._locks import (
    GUARD_ATTRIBUTE,
    Fire,
    Locks,
    fire_context,
    guards_fire,
    lock_name,
    reset_fire,
)
from fastkit.executor._stopping import Stopping
from fastkit.logging import logger
from fastkit.request_id import set_request_id

__all__ = ["EPOCH", "JOB_ID_PATTERN", "JobNotFound", "Scheduler"]

SchedulerType = Literal["background", "asyncio"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
JOB_ID_PATTERN = r"^[A-Za-z0-9._~-]+$"
_UNSAFE = re.compile(r"[^A-Za-z0-9._~-]+")
_JOB_DEFAULTS = {"max_instances": 1, "coalesce": True, "misfire_grace_time": 30}
_RUN_LOGGER = "fastkit.executor.runs"  # APScheduler's per-run lines; ours replace them


class JobNotFound(FastKitError, KeyError):
    """No job has this id in this scheduler."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# --- naming fires alike in every process --------------------------------------------------

_MICROSECOND = timedelta(microseconds=1)


def _grid(run_time: datetime, interval: timedelta) -> datetime:
    """The start of the interval of the epoch's grid that holds ``run_time``."""
    step = interval // _MICROSECOND
    since = (run_time - EPOCH) // _MICROSECOND
    return EPOCH + timedelta(microseconds=since - since % step)


def fire_slot(trigger: Any, run_time: datetime) -> tuple[datetime, timedelta]:
    """The slot naming the fire at ``run_time`` of ``trigger``, alike in every process,
    and the slot's width.

    An interval trigger's phase is its ``start_date``, which each process sets when it
    builds the trigger unless it is given: its fire's slot is the interval of the epoch's
    grid holding ``run_time`` (width: the interval). A combination's fire takes the slot of
    the interval trigger in it whose phase it falls on. Any other fire (cron, date, a
    custom trigger) fires at the same time in every process, so its time is its slot
    (width 0).
    """
    if isinstance(trigger, IntervalTrigger):
        return _grid(run_time, trigger.interval), trigger.interval
    if isinstance(trigger, BaseCombiningTrigger):
        for child in trigger.triggers:
            if (isinstance(child, IntervalTrigger)
                    and (run_time - child.start_date) % child.interval == timedelta(0)):
                return _grid(run_time, child.interval), child.interval
    return run_time, timedelta(0)


# --- running fires: APScheduler's run_job, with the fire marked for the locks -------------

def _fire(name: str, job: Job, run_time: datetime, manual: bool) -> Fire:
    slot, width = fire_slot(job.trigger, run_time)
    return Fire(name, job.id, run_time, slot, job.misfire_grace_time, scheduled=not manual,
                period=width.total_seconds())


class _ObservedJob:
    """The job as ``run_job`` sees it (it reads ``id``, ``func``, ``args``, ``kwargs`` and
    ``misfire_grace_time``), its function called inside the run's span and measures. A
    locked job's guard opens them itself, once it holds the lock: a skipped fire has none."""

    __slots__ = ("_job", "func")

    def __init__(self, job: Job, run: _instrument.JobRun) -> None:
        self._job = job
        func = job.func
        if run.locked:
            self.func = func
        elif iscoroutinefunction_partial(func):
            async def observed_async(*args: Any, **kwargs: Any) -> Any:
                with run.running():
                    return await func(*args, **kwargs)

            self.func = observed_async
        else:
            def observed(*args: Any, **kwargs: Any) -> Any:
                with run.running():
                    return func(*args, **kwargs)

            self.func = observed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)

    def __str__(self) -> str:
        return str(self._job)


def _observe(fire: Fire, job: Job) -> tuple[_instrument.JobRun | None, Any]:
    """The fire's observed run (``None`` when runs are not observed) and the job to run."""
    if not _instrument.observed():
        return None, job
    run = _instrument.start(fire, job.func, guards_fire(job.func))
    return run, _ObservedJob(job, run)


def _run_fires(name: str, stopping: Stopping, manual: bool, job: Job, alias: str,
               run_times: list[datetime], logger_name: str) -> list[JobExecutionEvent]:
    events: list[JobExecutionEvent] = []
    for run_time in run_times:
        fire = _fire(name, job, run_time, manual)
        token = fire_context(fire, job.func)
        run, target = _observe(fire, job)
        try:
            with stopping.run():
                events += run_job(target, alias, [run_time], logger_name)
        finally:
            if run is not None:
                run.close()
            reset_fire(token)
    return events


async def _run_fires_async(name: str, stopping: Stopping, manual: bool, job: Job, alias: str,
                           run_times: list[datetime],
                           logger_name: str) -> list[JobExecutionEvent]:
    events: list[JobExecutionEvent] = []
    for run_time in run_times:
        fire = _fire(name, job, run_time, manual)
        token = fire_context(fire, job.func)
        run, target = _observe(fire, job)
        try:
            with stopping.run():
                events += await run_coroutine_job(target, alias, [run_time], logger_name)
        finally:
            if run is not None:
                run.close()
            reset_fire(token)
    return events


def _settle(executor: Any, job_id: str, future: Any) -> None:
    """Done callback (concurrent or asyncio future): count the run out, dispatch events."""
    executor.running.discard(future)
    if future.cancelled():
        executor._run_job_success(job_id, [])
        return
    error = future.exception()
    if error is not None:
        executor._run_job_error(job_id, error, error.__traceback__)
    else:
        executor._run_job_success(job_id, future.result())


class _Manual:
    """Runs now (``run_job``) waiting for their executor: each with its caller's context;
    and the context each job was added in (``added``, by job id), which its scheduled
    fires run in a copy of, without the adder's request id (each fire is no request's)."""

    def __init__(self, added: dict[str, contextvars.Context] | None = None) -> None:
        self.waiting: dict[tuple[str, datetime], contextvars.Context] = {}
        self.added = added if added is not None else {}

    def take(self, job: Job, run_times: list[datetime]) -> contextvars.Context | None:
        if len(run_times) != 1:
            return None
        return self.waiting.pop((job.id, run_times[0]), None)

    def context(self, job: Job, run_times: list[datetime]) -> tuple[contextvars.Context, bool]:
        """The context to run ``job``'s fires at ``run_times`` in; True for a run now."""
        caller = self.take(job, run_times)
        if caller is not None:
            return caller, True
        added = self.added.get(job.id)
        if added is None:  # added otherwise than by Scheduler.add_job
            return contextvars.copy_context(), False
        context = added.copy()
        context.run(set_request_id, None)
        return context, False


class _ThreadExecutor(ThreadPoolExecutor):  # type: ignore[misc]
    def __init__(self, name: str, max_workers: int, stopping: Stopping,
                 added: dict[str, contextvars.Context] | None = None) -> None:
        super().__init__(max_workers, pool_kwargs={"thread_name_prefix": f"{name}-job"})
        self.name = name
        self.stopping = stopping
        self.manual = _Manual(added)
        self.running: set[Future[Any]] = set()

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        context, manual = self.manual.context(job, run_times)
        future = self._pool.submit(context.run, _run_fires, self.name, self.stopping,
                                   manual, job, job._jobstore_alias, run_times,
                                   _RUN_LOGGER)
        self.running.add(future)
        future.add_done_callback(partial(_settle, self, job.id))

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)


class _LoopExecutor(AsyncIOExecutor):  # type: ignore[misc]
    def __init__(self, name: str, stopping: Stopping,
                 added: dict[str, contextvars.Context] | None = None) -> None:
        super().__init__()
        self.name = name
        self.stopping = stopping
        self.manual = _Manual(added)
        self.running: set[Any] = set()

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        alias = job._jobstore_alias
        context, manual = self.manual.context(job, run_times)
        if iscoroutinefunction_partial(job.func):
            future: Any = self._eventloop.create_task(
                _run_fires_async(self.name, self.stopping, manual, job, alias, run_times,
                                 _RUN_LOGGER), context=context)
        else:
            future = self._eventloop.run_in_executor(
                None, context.run, _run_fires, self.name, self.stopping, manual, job, alias,
                run_times, _RUN_LOGGER)
        self.running.add(future)
        future.add_done_callback(partial(_settle, self, job.id))

    def shutdown(self, wait: bool = True) -> None:
        for future in list(self.running):
            future.cancel()


class _LoopScheduler(AsyncIOScheduler):  # type: ignore[misc]
    """An AsyncIOScheduler bound to the loop running at start, stopped at once on it."""

    def start(self, paused: bool = False) -> None:
        self._eventloop = asyncio.get_running_loop()
        BaseScheduler.start(self, paused)

    def shutdown(self, wait: bool = True) -> None:
        BaseScheduler.shutdown(self, wait)
        self._stop_timer()
        self._eventloop = None  # type: ignore[assignment]


class _KeptJobStore(MemoryJobStore):  # type: ignore[misc]
    """Jobs stay across a shutdown, so a scheduler started again has them all."""

    def shutdown(self) -> None:
        pass


class _ToLoguru(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        logger.opt(exception=record.exc_info or None).log(record.levelname, record.getMessage())


def _quiet_apscheduler_logs() -> logging.Logger:
    """The scheduler's own errors go to our log; per-run lines are replaced by ours."""
    runs = logging.getLogger(_RUN_LOGGER)
    if not runs.handlers:
        runs.addHandler(logging.NullHandler())
        runs.propagate = False
    scheduler_log = logging.getLogger("fastkit.executor.scheduler")
    if not scheduler_log.handlers:
        scheduler_log.addHandler(_ToLoguru(logging.ERROR))
        scheduler_log.propagate = False
    return scheduler_log


class Scheduler:
    """A named APScheduler 3 scheduler with locks (see the module's docstring).

    ``scheduler_type`` is ``"background"`` (jobs in a thread pool of ``max_workers``) or
    ``"asyncio"`` (coroutine jobs on the event loop that starts it, others in its default
    executor). ``redis_config`` (a ``redis.Redis``, a URL or ``get_redis_pool`` keywords)
    makes locks shared through Redis; ``locks`` gives a :class:`Locks` to share instead.
    Without either, locks hold within this process.
    """

    def __init__(self, name: str = "default", scheduler_type: SchedulerType = "background",
                 timezone: Any = None, redis_config: Any = None, *, locks: Locks | None = None,
                 lock_ttl: float = 30.0, max_workers: int = 10,
                 job_defaults: Mapping[str, Any] | None = None) -> None:
        if scheduler_type not in ("background", "asyncio"):
            raise ValueError(f"scheduler_type {scheduler_type!r} is not 'background' or "
                             "'asyncio'")
        if not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers {max_workers!r} is not an integer ≥ 1")
        self.name = name
        self.scheduler_type = scheduler_type
        self.timezone = timezone
        self.max_workers = max_workers
        self.job_defaults = {**_JOB_DEFAULTS, **(job_defaults or {})}
        self.locks = locks or Locks(redis_backend(redis_config) if redis_config else None,
                                    ttl=lock_ttl)
        self._stopping = Stopping()
        self._aps: BaseScheduler | None = None
        self._store = _KeptJobStore()
        self._create = threading.Lock()
        # job id -> the context add_job was called in: its scheduled fires run in a copy
        self._added: dict[str, contextvars.Context] = {}

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Scheduler {self.name!r} ({self.scheduler_type}, {state})>"

    # -- the APScheduler underneath, created at first use ----------------------------------

    @property
    def apscheduler(self) -> BaseScheduler:
        """The APScheduler scheduler underneath (created at first use)."""
        with self._create:
            if self._aps is None:
                options: dict[str, Any] = {"job_defaults": self.job_defaults,
                                           "jobstores": {"default": self._store},
                                           "logger": _quiet_apscheduler_logs()}
                if self.timezone is not None:
                    options["timezone"] = self.timezone
                kind = BackgroundScheduler if self.scheduler_type == "background" else (
                    _LoopScheduler)
                aps = kind(**options)
                aps.add_listener(self._on_event,
                                 EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
                self._aps = aps
            return self._aps

    @property
    def running(self) -> bool:
        return self._aps is not None and bool(self._aps.running)

    def _on_event(self, event: JobEvent) -> None:
        if isinstance(event, JobExecutionEvent) and event.code == EVENT_JOB_ERROR:
            with _instrument.failed_run(event.exception):  # the line carries the run's trace
                logger.opt(exception=event.exception).error(
                    "job {!r} of scheduler {!r} raised {} (fire at {})", event.job_id,
                    self.name, type(event.exception).__name__, event.scheduled_run_time)
        elif isinstance(event, JobExecutionEvent):  # missed
            _instrument.skipped(event.job_id, "missed")
            logger.warning("job {!r} of scheduler {!r}: fire at {} missed (more than its "
                           "misfire_grace_time late); the next one runs on time",
                           event.job_id, self.name, event.scheduled_run_time)
        elif isinstance(event, JobSubmissionEvent):  # max instances
            _instrument.skipped(event.job_id, "still_running",
                                len(event.scheduled_run_times) or 1)
            logger.warning("job {!r} of scheduler {!r}: fire at {} skipped, its previous "
                           "run is still going", event.job_id, self.name,
                           ", ".join(str(t) for t in event.scheduled_run_times))

    # -- jobs ------------------------------------------------------------------------------

    def lock(self, name: str | None = None, ttl: float | None = None) -> Callable[[Any], Any]:
        """Decorator: the function runs under its lock (see :class:`Locks.guard`), named
        ``<scheduler>:<module>.<qualname>`` unless ``name`` is given."""
        return partial(self._guard, name=name, ttl=ttl)

    def _guard(self, func: Callable[..., Any], name: str | None = None,
               ttl: float | None = None) -> Any:
        return self.locks.guard(func, name=name or f"{self.name}:{lock_name(func)}", ttl=ttl)

    def add_job(self, func: Callable[..., Any] | str, trigger: Any = None,
                args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
                id: str | None = None, name: str | None = None, *,
                single_job: bool = False, lock_ttl: float | None = None,
                **options: Any) -> Job:
        """Add a job (APScheduler's ``add_job`` arguments); ``single_job=True`` locks it."""
        if isinstance(func, str):
            from apscheduler.util import ref_to_obj

            func = ref_to_obj(func)
        target: Callable[..., Any] = func  # type: ignore[assignment]
        if not callable(target):
            raise TypeError(f"add_job needs a function, not {type(func).__name__}")
        if self.scheduler_type == "background" and iscoroutinefunction_partial(target):
            raise TypeError(f"{getattr(target, '__qualname__', target)} is a coroutine "
                            "function: add it to the asyncio scheduler, which runs it on the "
                            "event loop")
        locked = single_job or getattr(target, GUARD_ATTRIBUTE, None) is not None
        if single_job:
            target = self._guard(target, ttl=lock_ttl)
        if locked and (options.get("jitter") or _has_jitter(trigger)):
            raise ValueError("a locked job cannot use jitter: each process would fire it at "
                             "a different time, so the lock could not tell the fires apart")
        if trigger == "interval" and "start_date" not in options:
            options["start_date"] = EPOCH  # the same fire times in every process
        job_id = self._job_id(id, target)
        # before the job is added: a running scheduler may fire it at once
        previous = self._added.get(job_id)
        self._added[job_id] = contextvars.copy_context()
        try:
            return self.apscheduler.add_job(target, trigger, args, kwargs, job_id, name,
                                            **options)
        except BaseException:  # refused (an id in use): the job there keeps its context
            if previous is None:
                self._added.pop(job_id, None)
            else:
                self._added[job_id] = previous
            raise

    def scheduled_job(self, trigger: Any = None, args: Iterable[Any] | None = None,
                      kwargs: Mapping[str, Any] | None = None, id: str | None = None,
                      name: str | None = None, *, single_job: bool = False,
                      lock_ttl: float | None = None, **options: Any) -> Callable[[Any], Any]:
        """Decorator form of :meth:`add_job`; the function itself is returned unchanged."""

        def register(func: Any) -> Any:
            self.add_job(func, trigger, args, kwargs, id, name, single_job=single_job,
                         lock_ttl=lock_ttl, **options)
            return func

        return register

    def _job_id(self, given: str | None, func: Callable[..., Any]) -> str:
        if given is not None:
            # fullmatch: "$" alone lets a trailing newline through; "." and ".." are
            # path segments clients resolve away, so the task API could never reach them.
            if (not isinstance(given, str) or not re.fullmatch(JOB_ID_PATTERN, given)
                    or given in (".", "..")):
                raise ValueError(f"job id {given!r} is not URL-safe: use letters, digits, "
                                 "'.', '_', '~' and '-' (not '.' or '..' alone)")
            return given
        target = getattr(func, "__wrapped__", func)
        base = _UNSAFE.sub("_", f"{target.__module__}.{target.__qualname__}")
        candidate, number = base, 1
        while any(job.id == candidate for job in self.get_jobs()):
            number += 1
            candidate = f"{base}-{number}"
        return candidate

    def get_jobs(self) -> list[Job]:
        """Every job, also while stopped (APScheduler then lists only jobs not yet started)."""
        jobs = list(self.apscheduler.get_jobs())
        return jobs if self.running else jobs + list(self._store.get_all_jobs())

    def get_job(self, job_id: str) -> Job:
        job = self.apscheduler.get_job(job_id)
        if job is None and not self.running:
            job = self._store.lookup_job(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r} in scheduler {self.name!r}")
        return job

    def pause_job(self, job_id: str) -> Job:
        return self.get_job(job_id).pause()

    def resume_job(self, job_id: str) -> Job:
        job = self.get_job(job_id).resume()
        return job if job is not None else self.get_job(job_id)

    def remove_job(self, job_id: str) -> None:
        self.get_job(job_id)
        if not self.running and self._store.lookup_job(job_id) is not None:
            self._store.remove_job(job_id)  # kept from an earlier run
        else:
            self.apscheduler.remove_job(job_id)
        self._added.pop(job_id, None)

    def run_job(self, job_id: str) -> Job:
        """Run the job now, once, without moving its schedule (the scheduler must run).

        The run is no scheduled fire (``current_fire().scheduled`` is False): a locked job
        takes only its run's lock (it is
        skipped while another run of it goes on anywhere), and it runs in a copy of the
        caller's context, so its log lines carry the caller's request id.
        """
        job = self.get_job(job_id)
        if not self.running:
            raise RuntimeError(f"scheduler {self.name!r} is not running")
        now = datetime.now(UTC)
        executor = self.apscheduler._lookup_executor(job.executor)
        manual: _Manual | None = getattr(executor, "manual", None)
        if manual is not None:
            manual.waiting[job.id, now] = contextvars.copy_context()
        loop = getattr(self.apscheduler, "_eventloop", None)
        try:
            if loop is not None and _other_loop(loop):
                asyncio.run_coroutine_threadsafe(_submit_soon(executor, job, now),
                                                 loop).result()
            else:
                executor.submit_job(job, [now])
        finally:
            if manual is not None:
                manual.waiting.pop((job.id, now), None)  # refused (max instances): forget
        return job

    # -- life ------------------------------------------------------------------------------

    def start(self, paused: bool = False) -> None:
        """Start (again): ``asyncio`` schedulers must be started on their event loop."""
        if self.scheduler_type == "asyncio":
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(f"scheduler {self.name!r} runs on an event loop: start it "
                                   "from a coroutine on that loop (the app's lifespan does)"
                                   ) from None
        aps = self.apscheduler
        self._stopping.reset()
        if "default" in aps._executors:  # an executor does not start twice
            aps.remove_executor("default", shutdown=False)
        executor = (_ThreadExecutor(self.name, self.max_workers, self._stopping, self._added)
                    if self.scheduler_type == "background"
                    else _LoopExecutor(self.name, self._stopping, self._added))
        aps.add_executor(executor, "default")
        aps.start(paused=paused)

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop firing, then (``wait``) wait up to ``timeout`` s for running jobs.

        An ``asyncio`` scheduler shut down from its own loop's thread cannot wait there:
        use ``await scheduler.aclose(timeout)``.
        """
        self._stopping.stop()
        if not self.running:
            return
        aps = self.apscheduler
        loop = getattr(aps, "_eventloop", None)
        if loop is not None:
            if _other_loop(loop):
                future = asyncio.run_coroutine_threadsafe(
                    self.aclose(timeout if wait else 0), loop)
                future.result()
            else:
                aps.pause()  # no new fires; running ones finish on the loop
                aps.shutdown(wait=False)
            return
        executor = aps._lookup_executor("default")
        aps.shutdown(wait=False)
        if wait:
            self._wait_for(set(executor.running), timeout)

    async def aclose(self, timeout: float | None = None) -> None:
        """Shut an ``asyncio`` scheduler down from its loop, waiting up to ``timeout`` s."""
        self._stopping.stop()
        if not self.running:
            return
        aps = self.apscheduler
        aps.pause()
        executor = aps._lookup_executor("default")
        running = set(executor.running)
        if running and (timeout is None or timeout > 0):
            _, pending = await asyncio.wait(running, timeout=timeout)
            if pending:
                logger.warning("scheduler {!r}: {} job run(s) still going after {:g} s are "
                               "cancelled", self.name, len(pending), timeout or 0)
        aps.shutdown(wait=False)  # cancels what is left

    def _wait_for(self, running: set[Future[Any]], timeout: float | None) -> None:
        from concurrent.futures import wait

        _, pending = wait(running, timeout=timeout)
        if pending:
            logger.warning("scheduler {!r}: {} job run(s) still going after {:g} s; "
                           "shutdown returns without them", self.name, len(pending),
                           timeout or 0)

    def is_stopped(self) -> bool:
        """True once shutdown has begun (for long jobs that check)."""
        return self._stopping.is_stopped()

    def sleep(self, seconds: float) -> bool:
        """Sleep in a job; returns True at once when shutdown begins."""
        return self._stopping.sleep(seconds)

    async def asleep(self, seconds: float) -> bool:
        """:meth:`sleep` for coroutine jobs."""
        return await self._stopping.asleep(seconds)


def _has_jitter(trigger: Any) -> bool:
    if getattr(trigger, "jitter", None):
        return True
    return any(_has_jitter(child) for child in getattr(trigger, "triggers", ()))


def _other_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is not loop
    except RuntimeError:
        return True


async def _submit_soon(executor: Any, job: Job, now: datetime) -> None:
    executor.submit_job(job, [now])
