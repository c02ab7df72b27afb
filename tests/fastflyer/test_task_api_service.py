"""The task API acts on the service, not on the worker that answers: real ``fastflyer serve``
processes with two workers, sharing the machine's Redis (or not).

The project under test writes a line ``<job> <pid> <time>`` to a file at each run of its
jobs: ``tick`` (asyncio scheduler) and ``tack`` (background) every second, the ones the
tests steer; ``tock`` every second, never touched: a worker that wrote ``tock`` after some
moment has had its chances to fire ``tick`` and ``tack`` too; ``once`` and the locked
``heartbeat``, which fire only in 2100, for "run now"; with ``RACE_JOBS=n``, ``race0`` ..
``race<n-1>`` too (see :func:`race_plan`). Which worker answers a request is
gunicorn's choice, so every listing check asks many times over fresh connections and
requires every answer to agree. Each test has its own ``flyer_service_name`` and deletes
its Redis key at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from starlette.testclient import TestClient
from test_launch import DEADLINE, FASTFLYER, env_for, healthy_address, started

from fastflyer import asyncio_scheduler, background_scheduler
from fastflyer.service import WORKERS_VARIABLE, service_name, worker_count
from fastflyer.settings import load_settings

JOBS = '''
import os
import time
from pathlib import Path

from fastflyer import asyncio_scheduler, background_scheduler

LOG = Path(os.environ["JOBS_LOG"])


def write(name: str) -> None:
    with LOG.open("a") as out:
        out.write(f"{name} {os.getpid()} {time.time():.3f}\\n")


async def tick() -> None:
    write("tick")


def tack() -> None:
    write("tack")


def tock() -> None:
    write("tock")


def once() -> None:
    write("once")


@background_scheduler.lock()
def heartbeat() -> None:
    write("heartbeat")


asyncio_scheduler.add_job(tick, "interval", seconds=1, id="tick")
background_scheduler.add_job(tack, "interval", seconds=1, id="tack")
background_scheduler.add_job(tock, "interval", seconds=1, id="tock")
background_scheduler.add_job(once, "cron", year="2100", id="once")
background_scheduler.add_job(heartbeat, "cron", year="2100", id="heartbeat")


async def awrite(name: str) -> None:
    write(name)


# The race jobs (see race_plan in the tests): odd ones asyncio, even ones background; each
# third fires only in 2100 (for "run now"), the others every second.
for number in range(int(os.environ.get("RACE_JOBS", "0"))):
    name = f"race{number}"
    when = {"year": "2100"} if number % 3 == 2 else {"seconds": 1}
    if number % 2:
        asyncio_scheduler.add_job(awrite, "cron" if number % 3 == 2 else "interval",
                                  args=[name], id=name, **when)
    else:
        background_scheduler.add_job(write, "cron" if number % 3 == 2 else "interval",
                                     args=[name], id=name, **when)
'''

ASKS = 20    # answers each listing check collects, over fresh connections
LATE = 1.0   # seconds a fire submitted just before a change may still write its line
store = redis.Redis(decode_responses=True)


@dataclass
class Instance:
    """One ``fastflyer serve`` of the project."""

    url: str
    jobs: Path          # its job lines
    pids: set[int]      # its workers
    stop: Callable[[], None] = lambda: None  # SIGTERM, then its exit status must be 0

    def runs(self, job: str, after: float = 0.0) -> list[tuple[int, float]]:
        """``(pid, time)`` of each run of ``job`` written after ``after`` (epoch seconds)."""
        lines = self.jobs.read_text().splitlines() if self.jobs.exists() else []
        return [(int(pid), float(at)) for name, pid, at in (line.split() for line in lines)
                if name == job and float(at) > after]

    def wait_every_worker_ran(self, job: str, after: float) -> None:
        """Until each worker has written ``job`` after ``after``."""
        deadline = time.monotonic() + DEADLINE
        while {pid for pid, _ in self.runs(job, after)} < self.pids:
            assert time.monotonic() < deadline, (
                f"not every worker of {self.pids} ran {job} after {after}: "
                f"{self.runs(job, after)}")
            time.sleep(0.05)

    def tasks(self, path: str = "") -> list[httpx.Response]:
        """``GET /flyer/tasks{path}`` :data:`ASKS` times, each over a fresh connection, 10
        at a time (so that both workers answer some)."""
        def ask(_: int) -> httpx.Response:
            return httpx.get(f"{self.url}/flyer/tasks{path}", timeout=10)

        with ThreadPoolExecutor(10) as pool:
            return list(pool.map(ask, range(ASKS)))

    def listed(self, job_id: str) -> list[dict[str, Any] | None]:
        """``job_id`` as each answer to ``GET /tasks`` lists it (None: not listed)."""
        found: list[dict[str, Any] | None] = []
        for answer in self.tasks():
            assert answer.status_code == 200, answer.text
            jobs = {job["id"]: job for job in answer.json()["data"]}
            found.append(jobs.get(job_id))
        return found

    def change(self, method: str, job_id: str, action: str = "",
               scheduler: str = "background") -> httpx.Response:
        path = f"{self.url}/flyer/tasks/{scheduler}/{job_id}" + (f"/{action}" if action else "")
        return httpx.request(method, path, timeout=10)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "clock"
    (path / "app" / "jobs").mkdir(parents=True)
    (path / "main.py").write_text("from fastflyer import FlyerAPI\n\n"
                                  "app = FlyerAPI(app_path=__file__)\n")
    (path / "app" / "__init__.py").write_text("")
    (path / "app" / "jobs" / "__init__.py").write_text(JOBS)
    return path


@pytest.fixture
def namespace() -> Iterator[str]:
    """A service name of the test's own; its Redis key is deleted at the end."""
    name = f"test-task-api-{uuid.uuid4().hex[:12]}"
    yield name
    store.delete(f"fastflyer:{name}:tasks", f"fastflyer:{name}:tasks:versions")


@pytest.fixture
def serve(project: Path, tmp_path: Path) -> Iterator[Callable[..., Instance]]:
    """Start ``fastflyer serve --port 0`` of the project (``command="run"``: ``fastflyer
    run``, one worker), once every worker runs its jobs; each is stopped with SIGTERM at the
    end (or by its ``stop``), and must end with status 0."""
    servers: list[tuple[subprocess.Popen[bytes], Path]] = []
    with contextlib.ExitStack() as stack:

        def _serve(workers: int = 2, command: str = "serve", **env: str) -> Instance:
            number = len(servers)
            log, jobs = tmp_path / f"serve{number}.log", tmp_path / f"jobs{number}.txt"
            args = [FASTFLYER, command, "--host", "127.0.0.1", "--port", "0"]
            if command == "serve":
                args += ["--workers", str(workers)]
            else:
                assert workers == 1, "fastflyer run has one worker"
            process = stack.enter_context(started(
                args, project,
                env_for(tmp_path, JOBS_LOG=str(jobs), flyer_graceful_timeout="1",
                        flyer_task_api_open="1",
                        flyer_log_path=str(tmp_path / f"logs{number}"), **env), log))
            servers.append((process, log))
            instance = Instance(healthy_address(process, log), jobs, set())
            # Up once each worker has written tock: its schedulers run.
            deadline = time.monotonic() + DEADLINE
            while len({pid for pid, _ in instance.runs("tock")}) < workers:
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            instance.pids = {pid for pid, _ in instance.runs("tock")}

            def stop() -> None:
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=DEADLINE) == 0, log.read_text()

            instance.stop = stop
            return instance

        yield _serve
        for process, _ in servers:
            process.send_signal(signal.SIGTERM)
        for process, log in servers:
            assert process.wait(timeout=DEADLINE) == 0, log.read_text()


# --- with Redis: every worker, every instance ---------------------------------------------

def test_delete_removes_the_job_from_every_worker_and_every_listing(serve, namespace):
    service = serve(flyer_redis_host="127.0.0.1", flyer_service_name=namespace)
    assert all(job is not None for job in service.listed("tack"))

    deleted = service.change("DELETE", "tack")
    done = time.time()
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["data"] == {"id": "tack", "scheduler": "background", "removed": True}

    assert service.listed("tack") == [None] * ASKS
    answers = service.tasks("/background/tack")
    assert [a.status_code for a in answers] == [404] * ASKS, [a.text for a in answers]
    assert {a.json()["message"] for a in answers} == {"no job 'tack' in scheduler 'background'"}
    assert service.change("POST", "tack", "run").status_code == 404
    assert service.change("DELETE", "tack").status_code == 404
    # No worker fires it any more: each had its chances since.
    service.wait_every_worker_ran("tock", done + LATE + 2)
    assert service.runs("tack", done + LATE) == []
    assert store.hget(f"fastflyer:{namespace}:tasks", "background/tack") == "removed"


def test_pause_and_resume_reach_every_worker(serve, namespace):
    service = serve(flyer_redis_host="127.0.0.1", flyer_service_name=namespace)
    service.wait_every_worker_ran("tick", 0)  # the asyncio job runs in both

    paused = service.change("POST", "tick", "pause", scheduler="asyncio")
    done = time.time()
    assert paused.status_code == 200, paused.text
    assert paused.json()["data"]["paused"] is True
    for job in service.listed("tick"):
        assert job is not None and job["paused"] is True and job["next_run_time"] is None, job
    service.wait_every_worker_ran("tock", done + LATE + 2)
    assert service.runs("tick", done + LATE) == []

    resumed = service.change("POST", "tick", "resume", scheduler="asyncio")
    again = time.time()
    assert resumed.status_code == 200, resumed.text
    for job in service.listed("tick"):
        assert job is not None and job["paused"] is False and job["next_run_time"], job
    service.wait_every_worker_ran("tick", again)  # every worker fires it again


def test_run_runs_the_job_once_for_the_service(serve, namespace):
    service = serve(flyer_redis_host="127.0.0.1", flyer_service_name=namespace)
    asked = time.time()
    for job_id in ("once", "heartbeat"):  # unlocked and locked
        ran = service.change("POST", job_id, "run")
        assert ran.status_code == 200, ran.text
    # Every worker has had its chances to run them too (were "run" sent to each).
    service.wait_every_worker_ran("tock", time.time() + 2)
    assert len(service.runs("once", asked)) == 1
    assert len(service.runs("heartbeat", asked)) == 1
    # Its schedule is unchanged, and nothing was recorded for the service.
    assert all(job is not None and job["next_run_time"].startswith("2100")
               for job in service.listed("once"))
    assert store.hgetall(f"fastflyer:{namespace}:tasks") == {}


def test_an_instance_started_later_applies_the_service_state(serve, namespace):
    redis_env = {"flyer_redis_host": "127.0.0.1", "flyer_service_name": namespace}
    first = serve(**redis_env)
    assert first.change("POST", "tick", "pause", scheduler="asyncio").status_code == 200
    assert first.change("DELETE", "tack").status_code == 200

    later = serve(**redis_env)  # another instance on the same Redis and service name
    assert later.pids.isdisjoint(first.pids)
    for job in later.listed("tick"):
        assert job is not None and job["paused"] is True, job
    assert later.listed("tack") == [None] * ASKS
    # Its workers never fired what the service paused or removed, not even at start-up.
    later.wait_every_worker_ran("tock", time.time() + 2)
    assert later.runs("tick") == [] and later.runs("tack") == []

    # A change made through the later instance reaches the first one.
    assert later.change("POST", "tick", "resume", scheduler="asyncio").status_code == 200
    first.wait_every_worker_ran("tick", time.time())
    for job in first.listed("tick"):
        assert job is not None and job["paused"] is False, job


# --- a delete sent together with a pause, resume or run of the same job --------------------

RACE = 20  # race jobs; their 40 requests are sent at once


def race_plan(number: int) -> tuple[str, str]:
    """``(scheduler, action)`` of ``race<number>``: the action sent with its DELETE (a
    resume's job is paused first, so that the resume has something to undo)."""
    return ("asyncio" if number % 2 else "background"), ("resume", "pause", "run")[number % 3]


def send_at_once(service: Instance) -> dict[str, tuple[int, int]]:
    """For every race job, its DELETE and its action, all :data:`RACE` pairs released at
    once from one barrier, each over a fresh connection: ``{job: (delete, action) status}``."""
    barrier = threading.Barrier(2 * RACE)

    def send(number: int, method: str) -> int:
        scheduler, action = race_plan(number)
        barrier.wait(timeout=DEADLINE)
        if method == "DELETE":
            return service.change("DELETE", f"race{number}", scheduler=scheduler).status_code
        return service.change("POST", f"race{number}", action, scheduler=scheduler).status_code

    with ThreadPoolExecutor(2 * RACE) as pool:
        sent = {(number, method): pool.submit(send, number, method)
                for number in range(RACE) for method in ("DELETE", "POST")}
        return {f"race{number}": (sent[number, "DELETE"].result(), sent[number, "POST"].result())
                for number in range(RACE)}


@pytest.mark.parametrize(("command", "workers", "shared"), [
    ("serve", 2, True), ("run", 1, True), ("run", 1, False)],
    ids=["serve-2-workers-redis", "run-redis", "run-no-redis"])
def test_a_delete_sent_with_a_pause_resume_or_run_is_final(serve, namespace, command, workers,
                                                           shared):
    env = {"flyer_service_name": namespace, "RACE_JOBS": str(RACE)}
    if shared:
        env["flyer_redis_host"] = "127.0.0.1"
    service = serve(workers=workers, command=command, **env)
    for number in range(RACE):
        scheduler, action = race_plan(number)
        if action == "resume":
            paused = service.change("POST", f"race{number}", "pause", scheduler=scheduler)
            assert paused.status_code == 200, paused.text
    asked = time.time()

    answers = send_at_once(service)
    done = time.time()

    # Each answer is 200 or 404, never a 500; nothing else deletes, so every DELETE is a 200.
    assert all(status in (200, 404) for pair in answers.values() for status in pair), answers
    assert [deleted for deleted, _ in answers.values()] == [200] * RACE, answers
    key = f"fastflyer:{namespace}:tasks"
    if shared:  # the stored state is "removed" for each, whichever came first
        stored = store.hgetall(key)
        assert {f"{race_plan(n)[0]}/race{n}": stored.get(f"{race_plan(n)[0]}/race{n}")
                for n in range(RACE)} == {f"{race_plan(n)[0]}/race{n}": "removed"
                                          for n in range(RACE)}
    else:
        assert store.exists(key) == 0
    for answer in service.tasks():
        assert answer.status_code == 200, answer.text
        assert not [job["id"] for job in answer.json()["data"] if job["id"].startswith("race")]

    # A "run" answered 200 ran the job once; one answered 404 ran nothing. No deleted job
    # fires any more: every worker has had its chances since.
    service.wait_every_worker_ran("tock", done + LATE + 2)
    for number in range(RACE):
        job_id, (_, action) = f"race{number}", race_plan(number)
        if action == "run":
            assert len(service.runs(job_id, asked)) == (answers[job_id][1] == 200), (
                job_id, answers[job_id], service.runs(job_id, asked))
        assert service.runs(job_id, done + LATE) == [], job_id
    if not shared:
        return  # a restart brings back the jobs of a process that stands alone

    # After a restart, no deleted job is listed, or fires, in any worker.
    service.stop()
    again = serve(workers=workers, command=command, **env)
    for answer in again.tasks():
        assert answer.status_code == 200, answer.text
        assert not [job["id"] for job in answer.json()["data"] if job["id"].startswith("race")]
    again.wait_every_worker_ran("tock", time.time() + 2)
    assert {n: again.runs(f"race{n}") for n in range(RACE)} == {n: [] for n in range(RACE)}


def _idle() -> None:
    """A job that never fires while the tests run."""


@pytest.fixture
def steered() -> Iterator[Any]:
    """A background scheduler of the test's own with the idle jobs ``a`` and ``b``."""
    from fastkit.executor import Scheduler

    scheduler = Scheduler("steered", "background")
    for job_id in ("a", "b"):
        scheduler.add_job(_idle, "interval", seconds=3600, id=job_id)
    scheduler.start()
    yield scheduler
    scheduler.shutdown(wait=False)


async def test_removed_is_final_in_redis_and_a_refused_change_writes_nothing(steered, namespace):
    from fastflyer.task_state import JobRemoved, TaskState

    state = TaskState(load_settings(redis_host="127.0.0.1"), namespace, {"background": steered})
    changes = store.pubsub(ignore_subscribe_messages=True)
    changes.subscribe(state.channel)
    try:
        await state.change("background", "a", "paused")
        await state.change("background", "a", "removed")
        versions = store.hgetall(state.versions_key)
        for refused in ("resumed", "paused", "removed"):
            with pytest.raises(JobRemoved, match="no job 'a' in scheduler 'background'"):
                await state.change("background", "a", refused)
        assert store.hget(state.key, "background/a") == "removed"
        assert store.hgetall(state.versions_key) == versions
        await state.change("background", "b", "paused")  # the last message to come

        published: list[dict[str, Any]] = []
        deadline = time.monotonic() + DEADLINE
        while not published or published[-1]["id"] != "b":
            assert time.monotonic() < deadline, published
            message = changes.get_message(timeout=1)
            if message is not None:
                published.append(json.loads(message["data"]))
    finally:
        changes.close()
    # Nothing was published for the refused changes; the versions grow with each change.
    assert [(m["id"], m["state"]) for m in published] == [
        ("a", "paused"), ("a", "removed"), ("b", "paused")]
    assert int(published[0]["version"]) < int(published[1]["version"])
    assert published[1]["version"] == versions["background/a"]
    assert published[2]["version"] == store.hget(state.versions_key, "background/b")


async def test_a_stale_change_does_not_undo_a_newer_one(steered, namespace):
    from fastflyer.task_state import TaskState

    state = TaskState(load_settings(redis_host="127.0.0.1"), namespace, {"background": steered})
    await state.start()  # the listener, as in every worker
    try:
        deadline = time.monotonic() + DEADLINE
        while not store.pubsub_numsub(state.channel)[0][1]:  # it listens
            assert time.monotonic() < deadline, "the listener did not subscribe"
            await asyncio.sleep(0.05)
        await state.change("background", "a", "paused")
        paused = int(store.hget(state.versions_key, "background/a"))
        # An older "resumed" (a request's own change applied after the listener's newer
        # one, or a message that came late) changes nothing, by apply or by the listener.
        assert state.apply("background", "a", "resumed", paused - 1) is False
        store.publish(state.channel, json.dumps(
            {"scheduler": "background", "id": "a", "state": "resumed", "version": paused - 1}))
        store.publish(state.channel, json.dumps(  # then a current change, as a marker
            {"scheduler": "background", "id": "b", "state": "paused", "version": paused}))
        deadline = time.monotonic() + DEADLINE
        while steered.get_job("b").next_run_time is not None:
            assert time.monotonic() < deadline, "the listener applied nothing"
            await asyncio.sleep(0.05)
        assert steered.get_job("a").next_run_time is None  # still paused
        # A re-read of the stored state keeps it so, and a newer change applies.
        await state.sync()
        assert steered.get_job("a").next_run_time is None
        assert state.apply("background", "a", "resumed", paused + 1) is True
        assert steered.get_job("a").next_run_time is not None
    finally:
        await state.stop()


# --- without Redis -------------------------------------------------------------------------

def test_without_redis_several_workers_refuse_changes(serve, namespace):
    service = serve(flyer_service_name=namespace)
    for method, action in (("POST", "pause"), ("POST", "resume"), ("DELETE", "")):
        refused = service.change(method, "tack", action)
        assert refused.status_code == 409, refused.text
        body = refused.json()
        assert body["code"] == 409
        assert "service-wide without flyer_redis_host" in body["message"]
        assert "2 workers" in body["message"]
    # Nothing changed anywhere; "run" is once for the service even so.
    for job in service.listed("tack"):
        assert job is not None and job["paused"] is False, job
    asked = time.time()
    assert service.change("POST", "once", "run").status_code == 200
    service.wait_every_worker_ran("tock", time.time() + 2)
    assert len(service.runs("once", asked)) == 1
    # Unknown jobs are still a 404, not a refusal.
    assert service.change("DELETE", "nope").status_code == 404


def test_without_redis_one_worker_changes_itself_as_before(serve, namespace):
    service = serve(workers=1, flyer_service_name=namespace)
    paused = service.change("POST", "tack", "pause")
    done = time.time()
    assert paused.status_code == 200 and paused.json()["data"]["paused"] is True, paused.text
    assert all(job is not None and job["paused"] for job in service.listed("tack"))
    service.wait_every_worker_ran("tock", done + LATE + 2)
    assert service.runs("tack", done + LATE) == []
    assert service.change("DELETE", "tack").status_code == 200
    assert service.listed("tack") == [None] * ASKS


# --- Redis down; the service's name and worker count -----------------------------------------

@pytest.fixture
def _no_jobs_left() -> Iterator[None]:
    yield
    for scheduler in (background_scheduler, asyncio_scheduler):
        for job in scheduler.get_jobs():
            scheduler.remove_job(job.id)


@pytest.mark.usefixtures("_no_jobs_left")
def test_redis_not_answering_is_a_503_and_changes_nothing(build, namespace):
    background_scheduler.add_job(print, "interval", seconds=3600, id="report")
    # Port 1 of this machine: nothing listens there, a connection is refused at once.
    app = build(redis_host="127.0.0.1", redis_port=1, service_name=namespace, task_api_open=1)
    with TestClient(app) as client:
        for method, path in (("GET", ""), ("GET", "/background/report"),
                             ("POST", "/background/report/pause"),
                             ("DELETE", "/background/report")):
            answer = client.request(method, f"/flyer/tasks{path}")
            assert answer.status_code == 503, answer.text
            assert "flyer_redis_host does not answer" in answer.json()["message"]
            assert "127.0.0.1" not in answer.text  # no address of the inside
        job = background_scheduler.get_job("report")
        assert job.next_run_time is not None  # not paused, not removed


def test_the_service_name_comes_from_the_setting_the_title_or_the_directory(monkeypatch):
    settings = load_settings()
    assert service_name(settings, "Orders API", Path("/srv/orders")) == "orders-api"
    assert service_name(settings, "订单 服务") == "订单-服务"
    assert service_name(settings, "FastFlyer", Path("/srv/Shop Front")) == "shop-front"
    assert service_name(settings) == "fastflyer"
    monkeypatch.setenv("flyer_service_name", "Billing.v2")
    assert service_name(load_settings(), "Orders API") == "billing.v2"
    monkeypatch.setenv("flyer_service_name", "a:b{c}")
    with pytest.raises(ValueError, match="flyer_service_name"):  # a SettingsError
        load_settings()


def test_the_worker_count_is_one_unless_gunicorn_says(monkeypatch):
    monkeypatch.delenv(WORKERS_VARIABLE, raising=False)
    assert worker_count() == 1
    monkeypatch.setenv(WORKERS_VARIABLE, "3")
    assert worker_count() == 3
    monkeypatch.setenv(WORKERS_VARIABLE, "0")
    with pytest.raises(ValueError, match=WORKERS_VARIABLE):
        worker_count()


def test_the_namespaced_key_is_where_the_state_lives(namespace):
    from fastflyer.task_state import TaskState

    state = TaskState(load_settings(redis_host="127.0.0.1"), namespace)
    assert state.key == f"fastflyer:{namespace}:tasks"
    assert state.versions_key == f"fastflyer:{namespace}:tasks:versions"
    assert state.channel == f"fastflyer:{namespace}:tasks:changes"
