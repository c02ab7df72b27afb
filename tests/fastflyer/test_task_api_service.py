"""The task API acts on the service, not on the worker that answers: real ``fastflyer serve``
processes with two workers, sharing the machine's Redis (or not).

The project under test writes a line ``<job> <pid> <time>`` to a file at each run of its
jobs: ``tick`` (asyncio scheduler) and ``tack`` (background) every second, the ones the
tests steer; ``tock`` every second, never touched: a worker that wrote ``tock`` after some
moment has had its chances to fire ``tick`` and ``tack`` too; ``once`` and the locked
``heartbeat``, which fire only in 2100, for "run now". Which worker answers a request is
gunicorn's choice, so every listing check asks many times over fresh connections and
requires every answer to agree. Each test has its own ``flyer_service_name`` and deletes
its Redis key at the end.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
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
    store.delete(f"fastflyer:{name}:tasks")


@pytest.fixture
def serve(project: Path, tmp_path: Path) -> Iterator[Callable[..., Instance]]:
    """Start ``fastflyer serve --port 0`` of the project, once every worker runs its jobs;
    each is stopped with SIGTERM at the end, and must end with status 0."""
    servers: list[tuple[subprocess.Popen[bytes], Path]] = []
    with contextlib.ExitStack() as stack:

        def _serve(workers: int = 2, **env: str) -> Instance:
            number = len(servers)
            log, jobs = tmp_path / f"serve{number}.log", tmp_path / f"jobs{number}.txt"
            process = stack.enter_context(started(
                [FASTFLYER, "serve", "--host", "127.0.0.1", "--port", "0",
                 "--workers", str(workers)], project,
                env_for(tmp_path, JOBS_LOG=str(jobs), flyer_graceful_timeout="1",
                        flyer_log_path=str(tmp_path / f"logs{number}"), **env), log))
            servers.append((process, log))
            instance = Instance(healthy_address(process, log), jobs, set())
            # Up once each worker has written tock: its schedulers run.
            deadline = time.monotonic() + DEADLINE
            while len({pid for pid, _ in instance.runs("tock")}) < workers:
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            instance.pids = {pid for pid, _ in instance.runs("tock")}
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
    app = build(redis_host="127.0.0.1", redis_port=1, service_name=namespace)
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
    with pytest.raises(SystemExit, match="flyer_service_name"):
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
    assert state.channel == f"fastflyer:{namespace}:tasks:changes"
