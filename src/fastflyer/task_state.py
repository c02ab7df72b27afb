"""The service-wide state of the scheduled jobs: what the task API paused, resumed or
removed, kept in Redis and applied by every worker and every instance of the service.

    state = register_task_state(settings, "orders-api", lifecycle)   # FlyerAPI does this
    await state.change("background", "heartbeat", "paused")          # every worker pauses it
    await state.states()     # {("background", "heartbeat"): "paused"}

With ``flyer_redis_host`` set, a change is one Lua script in Redis (one atomic step) on
these names (``{name}`` is :func:`fastflyer.service.service_name`)::

    fastflyer:{name}:tasks            hash: "<scheduler>/<job id>" -> paused | resumed | removed
    fastflyer:{name}:tasks:versions   hash: "<scheduler>/<job id>" -> version of that state
    fastflyer:{name}:tasks:changes    channel: {"scheduler", "id", "state", "version"}

The script reads the stored state and, unless it is "removed", stores the new one with a
new version and publishes it; the process that made the change then applies it. "removed"
is final: a pause, resume or delete of a removed job stores nothing and raises
:class:`JobRemoved`, so of concurrent changes the ones after a delete fail, and a delete
that returned is never undone. A version is the Redis server's clock in microseconds, and
always above the job's previous one: it orders the changes of one job.

Every process listens on the channel and applies each change as it comes; it applies the
whole hash when it starts, before its schedulers start (a worker started later, or
restarted, neither brings back a removed job nor fires a paused one), and again every
:data:`RESYNC` seconds (a change published while it was disconnected). A process applies a
state only if its version is newer than the last it applied for that job: the change a
request applies after its script and the listener's messages may come in either order, and
the older one is skipped. The state outlives the processes: a job removed service-wide stays
removed across restarts and deploys until the hash's field is deleted.

Without Redis the state is this process's alone. With one worker (``fastflyer run``, or
``serve --workers 1``) a change applies here, as it always did; with several (see
:func:`fastflyer.service.worker_count`) it raises :class:`NotServiceWide` instead of
reaching only the worker that answers. Several instances without Redis cannot know of each
other: each has its own state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

from apscheduler.jobstores.base import JobLookupError

from fastflyer.exceptions import FastFlyerError
from fastflyer.executor import SCHEDULERS
from fastflyer.service import worker_count
from fastkit.executor import JobNotFound, Scheduler
from fastkit.logging import logger

if TYPE_CHECKING:
    import redis.asyncio

    from fastflyer.lifespan import Lifecycle
    from fastflyer.settings import FlyerSettings

__all__ = ["REDIS_TIMEOUT", "RESYNC", "JobRemoved", "JobState", "NotServiceWide", "TaskState",
           "TaskStateUnavailable", "register_task_state"]

JobState = Literal["paused", "resumed", "removed"]
_STATES: tuple[str, ...] = get_args(JobState)
REDIS_TIMEOUT = 5.0  # seconds one Redis call may take in all (its retries included)
RESYNC = 30.0        # seconds between two reads of the whole hash by the listener
_POLL = 1.0          # seconds the listener waits for a message before looking at the clock
_STOP_TIMEOUT = 2.0  # seconds the listener gets to end at shutdown
_RETRY = (0.5, 10.0)  # first and longest pause before the listener reconnects

# KEYS: the states hash, the versions hash. ARGV: the field, the new state, the channel,
# the scheduler, the job id. Returns {stored state, its version, 1 if written else 0}: the
# job was removed already when 0 (and then nothing was written or published).
_CHANGE_SCRIPT = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
local last = redis.call('HGET', KEYS[2], ARGV[1]) or '0'
if current == 'removed' then
  return {current, last, 0}
end
local now = redis.call('TIME')
local version = tonumber(now[1]) * 1000000 + tonumber(now[2])
if version <= tonumber(last) then
  version = tonumber(last) + 1
end
version = string.format('%d', version)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], version)
redis.call('PUBLISH', ARGV[3], cjson.encode(
  {scheduler = ARGV[4], id = ARGV[5], state = ARGV[2], version = version}))
return {ARGV[2], version, 1}
"""


class NotServiceWide(FastFlyerError, RuntimeError):
    """Several workers and no Redis: a change would reach only the worker that answers."""


class TaskStateUnavailable(FastFlyerError, RuntimeError):
    """Redis does not answer: the service-wide state can be neither read nor changed."""


class JobRemoved(JobNotFound):
    """The job was removed service-wide (maybe by a concurrent request): a pause, resume or
    delete of it changes nothing."""


class TaskState:
    """The service-wide state of the jobs of ``schedulers`` (see the module docstring).

    ``namespace``: the service's name (:func:`fastflyer.service.service_name`).
    ``schedulers``: by name (default: the framework's ``background`` and ``asyncio``).
    """

    def __init__(self, settings: FlyerSettings, namespace: str,
                 schedulers: Mapping[str, Scheduler] | None = None) -> None:
        self.settings = settings
        self.namespace = namespace
        self.shared = bool(settings.redis_host)
        self.key = f"fastflyer:{namespace}:tasks"
        self.versions_key = f"{self.key}:versions"
        self.channel = f"{self.key}:changes"
        self.schedulers = SCHEDULERS if schedulers is None else schedulers
        self._listener: asyncio.Task[None] | None = None
        self._applied: dict[tuple[str, str], int] = {}  # version last applied, by job
        self._script: Any = None  # the change script, registered on the current client

    def __repr__(self) -> str:
        where = f"Redis key {self.key!r}" if self.shared else "this process"
        return f"<TaskState {self.namespace!r} in {where}>"

    # --- reading and changing -------------------------------------------------------

    async def states(self) -> dict[tuple[str, str], JobState]:
        """``{(scheduler, job id): state}`` of every job changed service-wide (``{}``
        without Redis). Raises :class:`TaskStateUnavailable`."""
        return {job: state for job, (state, _) in (await self._stored()).items()}

    async def _stored(self) -> dict[tuple[str, str], tuple[JobState, int]]:
        """``{(scheduler, job id): (state, version)}``, both hashes read at one instant
        (version 0: stored without one). Raises :class:`TaskStateUnavailable`."""
        if not self.shared:
            return {}
        pipeline = self._redis().pipeline(transaction=True)
        pipeline.hgetall(self.key)
        pipeline.hgetall(self.versions_key)
        stored, versions = await self._call(pipeline.execute())
        found: dict[tuple[str, str], tuple[JobState, int]] = {}
        for field, value in stored.items():
            scheduler, slash, job_id = field.partition("/")
            if slash and value in _STATES:
                try:
                    version = _version(versions.get(field)) or 0
                except ValueError:  # not written by this module: as if unversioned
                    version = 0
                found[scheduler, job_id] = (cast(JobState, value), version)
        return found

    async def state(self, scheduler: str, job_id: str) -> JobState | None:
        """The service-wide state of one job, None when never changed (or without Redis).
        Raises :class:`TaskStateUnavailable`."""
        if not self.shared:
            return None
        value: str | None = await self._call(
            self._redis().hget(self.key, f"{scheduler}/{job_id}"))
        return cast(JobState, value) if value in _STATES else None

    def refusal(self, action: str, job_id: str) -> str | None:
        """Why ``action`` (a verb: pause, resume, delete) of ``job_id`` cannot act on the
        whole service, or None when it can."""
        workers = worker_count()
        if self.shared or workers == 1:
            return None
        return (f"cannot {action} job {job_id!r} service-wide without flyer_redis_host: "
                f"{workers} workers serve this instance and the change would reach only "
                "the one answering; set flyer_redis_host (or serve with one worker)")

    async def change(self, scheduler: str, job_id: str, state: JobState) -> None:
        """Record ``state`` for the whole service, tell every process, and apply it here.

        With Redis, the check that the job is not removed, the write and the publication
        are one atomic step (see the module docstring).

        Raises :class:`NotServiceWide` (several workers, no Redis: nothing changed),
        :class:`JobRemoved` (removed service-wide already: nothing changed) and
        :class:`TaskStateUnavailable` (Redis does not answer: nothing changed).
        """
        action = {"paused": "pause", "resumed": "resume", "removed": "delete"}[state]
        refused = self.refusal(action, job_id)
        if refused is not None:
            raise NotServiceWide(refused)
        version: int | None = None
        if self.shared:
            client = self._redis()
            if self._script is None or self._script.registered_client is not client:
                self._script = client.register_script(_CHANGE_SCRIPT)
            _, stored_version, written = await self._call(self._script(
                keys=[self.key, self.versions_key],
                args=[f"{scheduler}/{job_id}", state, self.channel, scheduler, job_id]))
            version = _version(stored_version)
            if not written:  # removed before: remove it here too, if not done yet
                self.apply(scheduler, job_id, "removed", version)
                raise JobRemoved(f"no job {job_id!r} in scheduler {scheduler!r}")
        self.apply(scheduler, job_id, state, version)

    def apply(self, scheduler: str, job_id: str, state: str, version: int | None = None) -> bool:
        """Bring this process's job to ``state``; True when that changed it.

        ``version``: the stored state's version (None: unversioned, applied whatever came
        before). A state older than the one last applied for the job (a stale message), a
        job this process does not have, or a state it does not know, changes nothing.
        """
        owner = self.schedulers.get(scheduler)
        if owner is None or state not in _STATES:
            return False
        if version is not None:
            if version < self._applied.get((scheduler, job_id), -1):
                return False
            self._applied[scheduler, job_id] = version
        try:
            job = owner.get_job(job_id)
            paused = hasattr(job, "next_run_time") and job.next_run_time is None
            if state == "removed":
                owner.remove_job(job_id)
            elif state == "paused" and not paused:
                owner.pause_job(job_id)
            elif state == "resumed" and paused:  # an active job keeps its next fire
                owner.resume_job(job_id)
            else:
                return False
        except (JobNotFound, JobLookupError):  # not here, or removed meanwhile
            return False
        logger.info("job {!r} of scheduler {!r} {} (service-wide)", job_id, scheduler, state)
        return True

    async def sync(self) -> None:
        """Apply the whole stored state here (each job's state unless a newer one was
        applied meanwhile). Raises :class:`TaskStateUnavailable`."""
        for (scheduler, job_id), (state, version) in (await self._stored()).items():
            self.apply(scheduler, job_id, state, version or None)

    # --- life -----------------------------------------------------------------------

    async def start(self) -> None:
        """Apply the stored state, then listen for changes (with Redis; else nothing).

        Redis not answering does not stop the start-up: a WARNING says so, and the listener
        applies the state once Redis answers."""
        if not self.shared or self._listener is not None:
            return
        try:
            await self.sync()
        except TaskStateUnavailable as exc:
            logger.warning("task API: the service-wide job state is not applied yet ({}); "
                           "retrying in the background", exc)
        self._listener = asyncio.create_task(self._listen(), name=f"task state {self.key}")

    async def stop(self) -> None:
        """Stop listening, within a bound of a few seconds."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        listener.cancel()
        _, pending = await asyncio.wait({listener}, timeout=_STOP_TIMEOUT)
        if pending:
            logger.warning("task API: the listener on {} did not stop within {:g} s",
                           self.channel, _STOP_TIMEOUT)

    async def _listen(self) -> None:
        import redis

        delay, down = _RETRY[0], False
        loop = asyncio.get_running_loop()
        while True:
            pubsub = self._redis().pubsub(ignore_subscribe_messages=True)
            try:
                await self._call(pubsub.subscribe(self.channel))
                await self.sync()  # after subscribing: no change falls in between
                if down:
                    logger.info("task API: listening on {} again", self.channel)
                delay, down = _RETRY[0], False
                resync_at = loop.time() + RESYNC
                while True:
                    message = await pubsub.get_message(timeout=_POLL)
                    if message is not None:
                        self._on_message(message.get("data"))
                    if loop.time() >= resync_at:
                        await self.sync()
                        resync_at = loop.time() + RESYNC
            except (redis.RedisError, OSError, TaskStateUnavailable) as exc:
                if not down:
                    logger.warning("task API: lost {} ({}: {}); changes made meanwhile are "
                                   "applied when it answers again", self.channel,
                                   type(exc).__name__, exc)
                down = True
            finally:
                with contextlib.suppress(redis.RedisError, OSError, TimeoutError):
                    await asyncio.wait_for(pubsub.aclose(), _STOP_TIMEOUT)  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY[1])

    def _on_message(self, data: Any) -> None:
        try:
            change = json.loads(data)
            self.apply(str(change["scheduler"]), str(change["id"]), str(change["state"]),
                       _version(change.get("version")))
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            logger.warning("task API: ignored a message on {} that is no change ({})",
                           self.channel, exc)

    # --- Redis ----------------------------------------------------------------------

    def _redis(self) -> redis.asyncio.Redis:
        from fastflyer.cache import default_async_redis

        return default_async_redis(self.settings)

    async def _call(self, call: Awaitable[Any]) -> Any:
        import redis

        try:
            return await asyncio.wait_for(call, REDIS_TIMEOUT)
        except (redis.RedisError, OSError, TimeoutError) as exc:
            raise TaskStateUnavailable(
                f"Redis does not answer ({type(exc).__name__}: {exc})") from exc


def _version(value: Any) -> int | None:
    """A stored or published version (a decimal string or an int), None when absent.
    Raises ValueError for anything else."""
    return None if value is None else int(value)


def register_task_state(settings: FlyerSettings, namespace: str,
                        lifecycle: Lifecycle) -> TaskState:
    """A :class:`TaskState` for ``namespace``, started and stopped with ``lifecycle``.

    Register it before the schedulers: the stored state then applies before they fire.
    """
    state = TaskState(settings, namespace)
    lifecycle.add("task state", start=state.start, stop=state.stop)
    return state
