"""fastflyer's schedulers and thread pool: the seed's blocks, the lifespan, the task API,
and ``fastflyer serve`` with three workers running each fire once (real Redis)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid

import httpx
import pytest
import redis
from starlette.testclient import TestClient

from fastflyer import asyncio_scheduler, background_scheduler, threadpool


@pytest.fixture(autouse=True)
def _no_jobs_left():
    """The schedulers are process-wide: each test removes the jobs it added."""
    yield
    for scheduler in (background_scheduler, asyncio_scheduler):
        for job in scheduler.get_jobs():
            scheduler.remove_job(job.id)
    for task in list(threadpool._registered):
        threadpool.unregister(task.func)


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_seed_blocks_run_as_written(build, capfd):
    # 调度同步方法 (the seed's `add_job(func=customfunc, "interval", ...)` is a syntax
    # error; DESIGN.md: the working form passes the function first)
    from fastflyer import background_scheduler

    @background_scheduler.lock() # 加入分布式锁机制,同一时刻只能运行一次,需要配置 redis 信息
    def customfunc():
        print("hello world!")

    background_scheduler.add_job(customfunc, "interval", seconds=5, id="customjob")

    # 调度异步方法
    from fastflyer import asyncio_scheduler

    @asyncio_scheduler.lock() # 加入分布式锁机制,同一时刻只能运行一次,需要配置 redis 信息
    async def customfunc():
        print("hello world!")

    asyncio_scheduler.add_job(customfunc, "interval", seconds=5, id="customjob")

    store = redis.Redis(db=15, decode_responses=True)
    name = "test_executor.test_the_seed_blocks_run_as_written.<locals>.customfunc"
    app = build(redis_host="127.0.0.1", redis_db=15, task_api_open=1)
    # Namespaced by the service's name (here the demo project's title).
    # A scheduled fire's lock is its job's own: <lock name>/<job id>.
    fences = [f"fastkit:lock:{app.service_name}:{{{kind}:{name}/customjob}}:fence"
              for kind in ("background", "asyncio")]
    before = [int(store.get(key) or 0) for key in fences]
    with TestClient(app) as client:
        assert background_scheduler.running and asyncio_scheduler.running
        for scheduler in ("background", "asyncio"):
            answer = client.post(f"/flyer/tasks/{scheduler}/customjob/run")
            assert answer.status_code == 200, answer.text
        printed: list[str] = []

        def hellos() -> int:
            printed.append(capfd.readouterr().out)
            return "".join(printed).count("hello world!")

        # Each locked job took its own lock in Redis, and printed.
        wait_until(lambda: all(int(store.get(key) or 0) > was
                               for key, was in zip(fences, before, strict=True)))
        wait_until(lambda: hellos() >= 2)
    assert not background_scheduler.running and not asyncio_scheduler.running


def test_the_lifespan_starts_and_stops_schedulers_and_pool(build):
    ran, stopped = [], []

    @threadpool.submit(single_job=True)
    def loop():
        ran.append(1)
        while not threadpool.is_stopped():
            threadpool.sleep(30)
        stopped.append(1)

    assert ran == []  # registered, not run
    with TestClient(build(shutdown_timeout=5)):
        assert threadpool.running and background_scheduler.running
        wait_until(lambda: ran)
    assert stopped == [1] and not threadpool.running


def test_a_second_app_keeps_the_first_app_s_locks(logs):
    from fastflyer import FlyerAPI
    from fastflyer.executor import lock_backend, lock_prefix, locks
    from fastflyer.settings import load_settings

    tag = uuid.uuid4().hex[:8]

    def app(name, **more):
        return FlyerAPI(settings=load_settings(redis_host="127.0.0.1", redis_db=15,
                                               service_name=f"test-{tag}-{name}",
                                               warn_unknown=False, **more))

    orders, billing = app("orders"), app("billing", lock_ttl=60)
    try:
        with TestClient(orders):
            assert locks.backend.prefix == lock_prefix(f"test-{tag}-orders")
            with TestClient(billing):
                assert locks.backend.prefix == lock_prefix(f"test-{tag}-orders")
                assert locks.ttl == 30.0
            assert locks.backend.prefix == lock_prefix(f"test-{tag}-orders")  # B stopped
            warnings = [line for line in logs.text().splitlines()
                        if "keep the locks of" in line]
            assert len(warnings) == 1
            assert f"test-{tag}-orders" in warnings[0] and f"test-{tag}-billing" in warnings[0]
        with TestClient(billing):  # alone now: B's own locks
            assert locks.backend.prefix == lock_prefix(f"test-{tag}-billing")
            assert locks.ttl == 60.0
    finally:
        locks.configure(lock_backend, ttl=30.0)  # as it was before any app started


def test_async_locked_jobs_run_on_the_app_s_loop(build):
    loops = []

    @asyncio_scheduler.lock()
    async def on_loop():
        loops.append(asyncio.get_running_loop())

    asyncio_scheduler.add_job(on_loop, "interval", seconds=3600, id="on-loop")
    app = build(task_api_open=1)

    @app.get("/loop")
    async def loop_of_app():
        return {"same": loops[0] is asyncio.get_running_loop()}

    with TestClient(app) as client:
        client.post("/flyer/tasks/asyncio/on-loop/run")
        wait_until(lambda: loops)
        assert client.get("/loop").json() == {"same": True}


def test_the_task_api(build):
    background_scheduler.add_job(print, "interval", seconds=60, id="report")
    with TestClient(build(task_api_open=1)) as client:
        listed = client.get("/flyer/tasks").json()
        assert listed["code"] == 200
        (job,) = [j for j in listed["data"] if j["id"] == "report"]
        assert job["scheduler"] == "background" and not job["paused"] and not job["locked"]
        assert job["trigger"] == "interval[0:01:00]" and job["func"] == "builtins:print"
        one = client.get("/flyer/tasks/background/report").json()["data"]
        assert one["next_run_time"] is not None
        paused = client.post("/flyer/tasks/background/report/pause").json()["data"]
        assert paused["paused"] and paused["next_run_time"] is None
        resumed = client.post("/flyer/tasks/background/report/resume").json()["data"]
        assert not resumed["paused"]
        gone = client.delete("/flyer/tasks/background/report")
        assert gone.json()["data"] == {"id": "report", "scheduler": "background",
                                       "removed": True}
        missing = client.get("/flyer/tasks/background/report")
        assert missing.status_code == 404
        assert missing.json()["message"] == "no job 'report' in scheduler 'background'"
        assert client.get("/flyer/tasks/thread/report").status_code == 422
        assert client.get("/flyer/tasks/background/bad%20id").status_code == 422
        assert client.delete("/flyer/tasks").status_code == 405  # no "delete everything"


def test_run_of_a_running_job_is_a_conflict(build):
    background_scheduler.add_job(time.sleep, "interval", args=[1], seconds=3600, id="busy")
    with TestClient(build(task_api_open=1)) as client:
        assert client.post("/flyer/tasks/background/busy/run").status_code == 200
        wait_until(lambda: background_scheduler._aps._lookup_executor("default").running)
        again = client.post("/flyer/tasks/background/busy/run")
        assert again.status_code == 409 and "already running" in again.json()["message"]


def test_the_task_api_is_behind_auth_when_enabled(build):
    background_scheduler.add_job(print, "interval", seconds=60, id="guarded")
    app = build(auth_enable=1, auth_user="ops", auth_pass="s3cret-pass")
    with TestClient(app) as client:
        assert client.get("/flyer/tasks").status_code == 401
        assert client.delete("/flyer/tasks/background/guarded").status_code == 401
        assert client.get("/flyer/tasks", auth=("ops", "s3cret-pass")).status_code == 200


FIRES_APP = '''
import os
import time

import redis

from fastflyer import background_scheduler
from fastflyer.executor import current_lease

PREFIX = os.environ["FIRES_PREFIX"]
store = redis.Redis(db=15, decode_responses=True)


@background_scheduler.lock()
def record():
    lease = current_lease()
    store.hincrby(PREFIX + ":fires", lease.fire.key.rsplit(":", 1)[1], 1)
    store.sadd(PREFIX + ":pids", os.getpid())
    time.sleep(0.2)


background_scheduler.add_job(record, "interval", seconds=1, id=PREFIX.replace(":", "-"))
'''


def test_serve_with_three_workers_runs_each_fire_once(tmp_path):
    from test_cli import FASTFLYER, bound_url, env_for, running
    from test_cli import wait_until as wait_log

    assert subprocess.run([FASTFLYER, "create_app"], cwd=tmp_path, env=env_for(),
                          capture_output=True, timeout=60).returncode == 0
    (tmp_path / "app" / "fires").mkdir()
    (tmp_path / "app" / "fires" / "__init__.py").write_text(FIRES_APP)
    prefix = f"fastflyer-test:serve:{uuid.uuid4().hex[:10]}"
    store = redis.Redis(db=15, decode_responses=True)
    log = tmp_path / "serve.log"
    try:
        with running([FASTFLYER, "serve", "--workers", "3", "--port", "0",
                      "--host", "127.0.0.1"], tmp_path, log, FIRES_PREFIX=prefix,
                     flyer_redis_host="127.0.0.1", flyer_redis_db="15", flyer_task_api_open="1",
                     flyer_log_path=str(tmp_path / "logs")) as process:
            base = bound_url(process, log)
            wait_log(lambda: log.read_text().count("Application startup complete") == 3,
                     process, log)
            # Until 10 fires ran (about 10 s): then count them per fire.
            wait_log(lambda: len(store.hkeys(f"{prefix}:fires")) >= 10 and
                     len(store.smembers(f"{prefix}:pids")) >= 2, process, log)
            workers = httpx.get(f"{base}/flyer/tasks", timeout=5).json()
            assert any(job["locked"] for job in workers["data"])
        counted = {int(k): int(v) for k, v in store.hgetall(f"{prefix}:fires").items()}
        pids = store.smembers(f"{prefix}:pids")
    finally:
        for key in store.scan_iter(f"{prefix}*"):
            store.delete(key)
    assert process.returncode == 0, log.read_text()
    assert len(counted) >= 9 and set(counted.values()) == {1}, counted
    times = sorted(counted)
    assert times == list(range(times[0], times[-1] + 1000, 1000))  # none missing
    assert len(pids) >= 2  # the fires spread over the workers
    assert str(os.getpid()) not in pids  # ran in the workers
