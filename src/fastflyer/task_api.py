"""The task API under ``{base_url}/tasks``: see and steer the jobs of both schedulers.

==========================================  ============================================
``GET    /tasks``                           every job of both schedulers
``GET    /tasks/{scheduler}/{job_id}``      one job
``POST   /tasks/{scheduler}/{job_id}/pause``   stop firing it (until resumed)
``POST   /tasks/{scheduler}/{job_id}/resume``  fire it again on its schedule
``POST   /tasks/{scheduler}/{job_id}/run``     run it now, once (its schedule unchanged)
``DELETE /tasks/{scheduler}/{job_id}``      remove it (one job; there is no "delete all")
==========================================  ============================================

``scheduler`` is ``background`` or ``asyncio``. Behind HTTP Basic auth when
``flyer_auth_enable=1``.

The routes act on the service, not on the worker that answers (see
:mod:`fastflyer.task_state`). With ``flyer_redis_host`` set, a pause, resume or delete is
recorded in Redis under the service's name and applied by every worker of every instance
at once, by workers started later too; a listing shows that state whichever worker
answers, as soon as the change has returned; "run" runs the job once, in the worker that
answers. Redis not answering is a 503, and nothing changed. A job removed service-wide
stays removed: a pause, resume or delete sent at the same time as a delete of the same job
either comes first (and the delete removes the job after it) or answers 404 and changes
nothing; an action on a job removed while it was being answered (this worker's listener,
another request) answers 404 too, never 500; "run" of a removed job runs nothing. Without
Redis, an instance
served by one worker (``fastflyer run``, ``serve --workers 1``) works alone as before;
with several workers a pause, resume or delete answers 409 (a lasting conflict with how
the service is configured, which retrying does not cure: 503 would invite retries) rather
than change one worker; "run" still runs once. Instances without Redis cannot know of
each other: each is steered alone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from apscheduler.executors.base import MaxInstancesReachedError
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from fastapi import APIRouter, Path
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from fastflyer.schemas import DataResponse, ErrorResponse
from fastflyer.task_state import JobState, NotServiceWide, TaskState, TaskStateUnavailable
from fastkit.executor import JOB_ID_PATTERN, JobNotFound, Scheduler
from fastkit.logging import logger

__all__ = ["TaskInfo", "build_task_router"]

SchedulerName = Literal["background", "asyncio"]
JobId = Path(pattern=JOB_ID_PATTERN, description="The job's id (URL-safe).")

# The errors these routes raise themselves (any other is the schema's ``default``).
_UNREACHABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse,
          "description": "flyer_redis_host does not answer (nothing changed)"}}
_NO_JOB: dict[int | str, dict[str, Any]] = {
    **_UNREACHABLE,
    404: {"model": ErrorResponse, "description": "The scheduler has no job with this id"}}
_CHANGE: dict[int | str, dict[str, Any]] = {
    **_NO_JOB,
    409: {"model": ErrorResponse,
          "description": "Several workers and no flyer_redis_host: the change could not "
                         "reach every worker, so nothing changed"}}
_NOT_NOW: dict[int | str, dict[str, Any]] = {
    **_NO_JOB,
    409: {"model": ErrorResponse,
          "description": "The job is already running, or the scheduler is not running"}}


class TaskInfo(BaseModel):
    """A job of one of the schedulers."""

    id: str
    scheduler: SchedulerName
    name: str
    func: str = Field(description="The function the job runs, module:qualname.")
    trigger: str
    next_run_time: datetime | None = Field(description="None while paused.")
    paused: bool
    locked: bool = Field(description="Each fire runs once across processes.")


def _info(scheduler: Scheduler, job: Job, state: JobState | None = None) -> TaskInfo:
    """The job as this process has it, with its service-wide ``state`` laid over (a change
    another worker made that this one's listener has not applied yet)."""
    func = getattr(job.func, "__wrapped__", job.func)
    next_run = getattr(job, "next_run_time", None)  # unset while the scheduler is stopped
    paused = hasattr(job, "next_run_time") and next_run is None
    if state == "paused":
        paused, next_run = True, None
    elif state == "resumed" and paused:
        paused, next_run = False, job.trigger.get_next_fire_time(None, datetime.now(UTC))
    return TaskInfo(
        id=job.id, scheduler=scheduler.name, name=job.name,  # type: ignore[arg-type]
        func=f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', func)}",
        trigger=str(job.trigger), next_run_time=next_run, paused=paused,
        locked=getattr(job.func, "__fastkit_lock__", None) is not None)


def build_task_router(tasks: TaskState) -> APIRouter:
    """The task API's routes (mounted under the base URL by the app), acting through
    ``tasks``, the service-wide job state."""
    router = APIRouter(prefix="/tasks", tags=["tasks"])
    schedulers = tasks.schedulers

    async def read(call: Any) -> Any:
        try:
            return await call
        except TaskStateUnavailable as exc:
            logger.warning("task API: {}", exc)
            raise HTTPException(503, "the service-wide job state cannot be read: "
                                     "flyer_redis_host does not answer") from None

    def gone(scheduler: str, job_id: str) -> HTTPException:
        """The 404 of a job that is not (or no longer) there."""
        return HTTPException(404, f"no job {job_id!r} in scheduler {scheduler!r}")

    async def find(scheduler: str, job_id: str) -> tuple[Scheduler, Job, JobState | None]:
        owner = schedulers[scheduler]
        state = await read(tasks.state(scheduler, job_id))
        try:
            if state == "removed":
                raise gone(owner.name, job_id)
            return owner, owner.get_job(job_id), state
        except JobNotFound:
            raise gone(owner.name, job_id) from None

    def current(owner: Scheduler, job_id: str) -> Job:
        """The job as it is now, after an await: 404 if it was removed meanwhile."""
        try:
            return owner.get_job(job_id)
        except (JobNotFound, JobLookupError):
            raise gone(owner.name, job_id) from None

    async def change(scheduler: str, job_id: str, state: JobState) -> None:
        try:
            await tasks.change(scheduler, job_id, state)
        except JobNotFound:  # removed service-wide meanwhile (JobRemoved): nothing changed
            raise gone(scheduler, job_id) from None
        except NotServiceWide as exc:
            raise HTTPException(409, str(exc)) from None
        except TaskStateUnavailable as exc:
            logger.warning("task API: {}", exc)
            raise HTTPException(503, f"job {job_id!r} cannot be changed service-wide: "
                                     "flyer_redis_host does not answer; nothing changed"
                                ) from None

    @router.get("", summary="List the jobs of both schedulers", responses=_UNREACHABLE)
    async def list_tasks() -> DataResponse[list[TaskInfo]]:
        states = await read(tasks.states())
        return DataResponse(data=[_info(s, job, states.get((s.name, job.id)))
                                  for s in schedulers.values() for job in s.get_jobs()
                                  if states.get((s.name, job.id)) != "removed"])

    @router.get("/{scheduler}/{job_id}", summary="One job",
                responses=_NO_JOB)
    async def get_task(scheduler: SchedulerName,
                       job_id: str = JobId) -> DataResponse[TaskInfo]:
        return DataResponse(data=_info(*await find(scheduler, job_id)))

    @router.post("/{scheduler}/{job_id}/pause", summary="Pause a job",
                 responses=_CHANGE)
    async def pause_task(scheduler: SchedulerName,
                         job_id: str = JobId) -> DataResponse[TaskInfo]:
        owner, job, _ = await find(scheduler, job_id)
        await change(scheduler, job.id, "paused")
        return DataResponse(data=_info(owner, current(owner, job.id), "paused"))

    @router.post("/{scheduler}/{job_id}/resume", summary="Resume a paused job",
                 responses=_CHANGE)
    async def resume_task(scheduler: SchedulerName,
                          job_id: str = JobId) -> DataResponse[TaskInfo]:
        owner, job, _ = await find(scheduler, job_id)
        await change(scheduler, job.id, "resumed")
        return DataResponse(data=_info(owner, current(owner, job.id), "resumed"))

    @router.post("/{scheduler}/{job_id}/run", summary="Run a job now, once",
                 responses=_NOT_NOW)
    async def run_task(scheduler: SchedulerName,
                       job_id: str = JobId) -> DataResponse[TaskInfo]:
        # In this worker only: once for the service, whichever worker answers.
        # No await between the state read in find() and the submission: a job removed
        # before is a 404 and runs nothing.
        owner, job, state = await find(scheduler, job_id)
        try:
            owner.run_job(job.id)
        except (JobNotFound, JobLookupError):
            raise gone(owner.name, job.id) from None
        except MaxInstancesReachedError:
            raise HTTPException(409, f"job {job.id!r} is already running") from None
        except RuntimeError as exc:  # the scheduler is not running
            raise HTTPException(409, str(exc)) from None
        return DataResponse(data=_info(owner, job, state))

    @router.delete("/{scheduler}/{job_id}", summary="Remove a job",
                   responses=_CHANGE)
    async def delete_task(scheduler: SchedulerName,
                          job_id: str = JobId) -> DataResponse[Any]:
        _, job, _ = await find(scheduler, job_id)
        await change(scheduler, job.id, "removed")
        return DataResponse(data={"id": job.id, "scheduler": scheduler, "removed": True})

    return router
