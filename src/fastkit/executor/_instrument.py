"""Metrics and traces of scheduled job runs (see :mod:`fastkit.metrics`, :mod:`fastkit.tracing`).

Off unless one of them is enabled: a fire then costs one boolean test here. Once on:

* ``scheduler_job_runs_total{job, result}``: runs of a job's function, ``result`` being
  ``success`` or ``failed`` (it raised);
* ``scheduler_job_duration_seconds{job}``: how long those runs took;
* ``scheduler_job_skips_total{job, reason}``: fires that did not run, ``reason`` one of
  :data:`SKIP_REASONS`;
* a span ``job <id>`` (``INTERNAL``) around each run, current while the job's function runs
  (in its worker thread for a ``def`` job, on the loop for an ``async def`` one): a
  scheduled fire starts a trace of its own, a run now (``run_job``) continues the caller's.
  A job that raises has ``error.type`` (the exception's class), status ``ERROR`` and an
  ``exception`` event with secrets masked; the line logging the failure carries its trace.

``job`` is the job's id: give jobs ids from a bounded set (not one per order or user; a
job added without an id has a random one). Past :data:`fastkit.metrics.CARDINALITY_LIMIT`
ids in a process, the others are counted as ``job="_OTHER"`` (the span keeps the id). A
skipped fire has no span. A locked job's run starts once its lock is taken, so the time
spent taking it is not in the duration.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from fastkit import metrics, tracing
from fastkit.tracing import span as traced

if TYPE_CHECKING:
    from fastkit.executor._locks import Fire

__all__ = ["DURATION_BUCKETS", "SKIP_REASONS", "JobRun", "failed_run",
           "fire_skipped", "job_run", "observed", "skipped", "start"]

#: Why a fire did not run: ``lock_held`` (another run of the job holds its lock, in another
#: process or this one), ``fire_taken`` (another process ran this fire already),
#: ``lock_unavailable`` (the lock store could not be reached: fail closed),
#: ``still_running`` (the job's previous run is still going: ``max_instances``) and
#: ``missed`` (the fire came later than the job's ``misfire_grace_time``).
SKIP_REASONS = ("lock_held", "fire_taken", "lock_unavailable", "still_running", "missed")

#: Seconds: jobs run from milliseconds to many minutes.
DURATION_BUCKETS = (0.005, 0.025, 0.1, 0.25, 1.0, 2.5, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

_RUN: contextvars.ContextVar[JobRun | None] = contextvars.ContextVar("fastkit_job_run",
                                                                     default=None)
_jobs = metrics.CardinalityLimit()  # the job label's values in this process


def observed() -> bool:
    """Whether job runs are measured or traced (the one test a fire pays when not)."""
    return metrics.enabled() or tracing.enabled()


def _runs() -> Any:
    return metrics.counter("scheduler_job_runs_total",
                           "Runs of scheduled jobs, by job id and result (success, failed).",
                           ("job", "result"))


def _duration() -> Any:
    return metrics.histogram("scheduler_job_duration_seconds",
                             "How long scheduled job runs took, in seconds, by job id.",
                             ("job",), buckets=DURATION_BUCKETS)


def skipped(job_id: str, reason: str, count: int = 1) -> None:
    """Count ``count`` fires of ``job_id`` not run for ``reason`` (one of
    :data:`SKIP_REASONS`); nothing while metrics are off."""
    if metrics.enabled():
        metrics.counter("scheduler_job_skips_total",
                        "Fires of scheduled jobs that did not run, by job id and reason "
                        "(lock_held, fire_taken, lock_unavailable, still_running, missed).",
                        ("job", "reason")).labels(_jobs(job_id), reason).inc(count)


class JobRun:
    """One fire being run while runs are observed: the job's function runs in
    :meth:`running`, or the fire is :meth:`skip`-ped. ``locked``: a lock guard in the
    job's function takes the fire, and opens :meth:`running` once it holds the lock."""

    __slots__ = ("fire", "function", "locked", "token")

    def __init__(self, fire: Fire, function: str, locked: bool) -> None:
        self.fire = fire
        self.function = function
        self.locked = locked
        self.token: contextvars.Token[JobRun | None] | None = None

    def skip(self, reason: str) -> None:
        skipped(self.fire.job_id, reason)

    @contextmanager
    def running(self) -> Iterator[None]:
        """Around the job's function: its span (current inside), duration and result."""
        job_id, counting = self.fire.job_id, metrics.enabled()
        started = time.perf_counter()
        with traced(f"job {job_id}", attributes={
                "fastkit.job.id": job_id, "fastkit.job.scheduler": self.fire.scheduler,
                "code.function.name": self.function},
                context=_root() if self.fire.scheduled else None) as span:
            try:
                yield
            except BaseException as exc:  # recorded on the span by traced()
                if span is not None:
                    _remember_failure(exc, span)
                if counting:
                    _record(job_id, "failed", started)
                raise
        if counting:
            _record(job_id, "success", started)

    def close(self) -> None:
        """The fire is over (run, skipped or missed): forget it in this context."""
        if self.token is not None:
            _RUN.reset(self.token)
            self.token = None


def _record(job_id: str, result: str, started: float) -> None:
    job = _jobs(job_id)
    _runs().labels(job, result).inc()
    _duration().labels(job).observe(time.perf_counter() - started)


def _root() -> Any:
    """A context with no span: a scheduled fire is no caller's, it starts its own trace."""
    from opentelemetry.context import Context

    return Context()


def start(fire: Fire, func: Callable[..., Any], locked: bool) -> JobRun:
    """Observe ``fire`` of the job whose function is ``func`` in this context; call
    :meth:`JobRun.close` when it is over."""
    function = getattr(func, "__wrapped__", func)
    name = f"{getattr(function, '__module__', None) or '?'}." \
           f"{getattr(function, '__qualname__', type(function).__qualname__)}"
    run = JobRun(fire, name, locked)
    run.token = _RUN.set(run)
    return run


def fire_skipped(fire: Fire | None, reason: str) -> None:
    """The lock guard owning ``fire`` did not run it, for ``reason``: counted when the
    fire is observed in this context."""
    run = job_run(fire)
    if run is not None:
        run.skip(reason)


def job_run(fire: Fire | None) -> JobRun | None:
    """The observed run of ``fire`` in this context (``None``: not observed, or no fire)."""
    if fire is None:
        return None
    run = _RUN.get()
    return run if run is not None and run.fire is fire else None


# A failed run's span, kept until the scheduler logs the failure (after the span ended), so
# that log line carries the run's trace too. Keyed by the exception, at most _KEEP of them.
_KEEP = 64
_failures: OrderedDict[int, tuple[BaseException, Any]] = OrderedDict()
_failures_lock = threading.Lock()


def _remember_failure(error: BaseException, span: Any) -> None:
    with _failures_lock:
        _failures[id(error)] = (error, span)
        while len(_failures) > _KEEP:
            _failures.popitem(last=False)


def failed_run(error: BaseException | None) -> AbstractContextManager[Any]:
    """Make the span of the run that raised ``error`` current again (for the line logging
    the failure); a no-op when none was kept."""
    if error is None or not _failures:
        return nullcontext()
    with _failures_lock:
        kept = _failures.pop(id(error), None)
    if kept is None or kept[0] is not error:
        return nullcontext()
    from opentelemetry import trace

    return trace.use_span(kept[1], end_on_exit=False)
