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
``flyer_auth_enable=1``. Each worker process has its own schedulers: with several workers
or instances, a pause, resume or delete applies to the process that answers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from apscheduler.executors.base import MaxInstancesReachedError
from apscheduler.job import Job
from fastapi import APIRouter, Path
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from fastflyer.executor import SCHEDULERS
from fastflyer.schemas import DataResponse, ErrorResponse
from fastkit.executor import JOB_ID_PATTERN, JobNotFound, Scheduler

__all__ = ["TaskInfo", "build_task_router"]

SchedulerName = Literal["background", "asyncio"]
JobId = Path(pattern=JOB_ID_PATTERN, description="The job's id (URL-safe).")

# The errors these routes raise themselves (any other is the schema's ``default``).
_NO_JOB: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "The scheduler has no job with this id"}}
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


def _info(scheduler: Scheduler, job: Job) -> TaskInfo:
    func = getattr(job.func, "__wrapped__", job.func)
    next_run = getattr(job, "next_run_time", None)  # unset while the scheduler is stopped
    return TaskInfo(
        id=job.id, scheduler=scheduler.name, name=job.name,  # type: ignore[arg-type]
        func=f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', func)}",
        trigger=str(job.trigger), next_run_time=next_run,
        paused=hasattr(job, "next_run_time") and next_run is None,
        locked=getattr(job.func, "__fastkit_lock__", None) is not None)


def _job(scheduler: SchedulerName, job_id: str) -> tuple[Scheduler, Job]:
    owner = SCHEDULERS[scheduler]
    try:
        return owner, owner.get_job(job_id)
    except JobNotFound as exc:
        raise HTTPException(404, str(exc)) from None


def build_task_router() -> APIRouter:
    """The task API's routes (mounted under the base URL by the app)."""
    router = APIRouter(prefix="/tasks", tags=["tasks"])

    @router.get("", summary="List the jobs of both schedulers")
    async def list_tasks() -> DataResponse[list[TaskInfo]]:
        return DataResponse(data=[_info(s, job) for s in SCHEDULERS.values()
                                  for job in s.get_jobs()])

    @router.get("/{scheduler}/{job_id}", summary="One job",
                responses=_NO_JOB)
    async def get_task(scheduler: SchedulerName,
                       job_id: str = JobId) -> DataResponse[TaskInfo]:
        return DataResponse(data=_info(*_job(scheduler, job_id)))

    @router.post("/{scheduler}/{job_id}/pause", summary="Pause a job",
                 responses=_NO_JOB)
    async def pause_task(scheduler: SchedulerName,
                         job_id: str = JobId) -> DataResponse[TaskInfo]:
        owner, job = _job(scheduler, job_id)
        owner.pause_job(job.id)
        return DataResponse(data=_info(owner, owner.get_job(job.id)))

    @router.post("/{scheduler}/{job_id}/resume", summary="Resume a paused job",
                 responses=_NO_JOB)
    async def resume_task(scheduler: SchedulerName,
                          job_id: str = JobId) -> DataResponse[TaskInfo]:
        owner, job = _job(scheduler, job_id)
        owner.resume_job(job.id)
        return DataResponse(data=_info(owner, owner.get_job(job.id)))

    @router.post("/{scheduler}/{job_id}/run", summary="Run a job now, once",
                 responses=_NOT_NOW)
    async def run_task(scheduler: SchedulerName,
                       job_id: str = JobId) -> DataResponse[TaskInfo]:
        owner, job = _job(scheduler, job_id)
        try:
            owner.run_job(job.id)
        except MaxInstancesReachedError:
            raise HTTPException(409, f"job {job.id!r} is already running") from None
        except RuntimeError as exc:  # the scheduler is not running
            raise HTTPException(409, str(exc)) from None
        return DataResponse(data=_info(owner, job))

    @router.delete("/{scheduler}/{job_id}", summary="Remove a job",
                   responses=_NO_JOB)
    async def delete_task(scheduler: SchedulerName,
                          job_id: str = JobId) -> DataResponse[Any]:
        owner, job = _job(scheduler, job_id)
        owner.remove_job(job.id)
        return DataResponse(data={"id": job.id, "scheduler": scheduler, "removed": True})

    return router
