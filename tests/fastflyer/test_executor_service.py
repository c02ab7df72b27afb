"""The schedulers and the thread pool of a served project, through real servers.

- Context follows the work: what a request hands to the thread pool or runs now on a
  scheduler logs that request's id (``X-Request-ID``), as the request's own lines do.
- Services sharing one Redis: two projects, each with a locked ``cleanup`` job of the same
  id in the same Redis database, each run every one of their own fires (their locks are
  namespaced by the service's name), and neither skips a fire because of the other.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import uuid
from pathlib import Path

import httpx
import redis
from test_launch import FASTFLYER, env_for, healthy_address, started

from waiting import wait_for

CONTEXT_MAIN = '''
from fastapi import APIRouter
from fastflyer import FlyerAPI, asyncio_scheduler, background_scheduler, logger, threadpool
from fastkit.request_id import get_request_id

app = FlyerAPI()


def work(tag):
    logger.info("work {} ran", tag)
    return get_request_id()


async def loop_work():
    logger.info("work asyncio ran")


def thread_work():
    logger.info("work background ran")


background_scheduler.add_job(thread_work, "interval", hours=1, id="thread-work")
asyncio_scheduler.add_job(loop_work, "interval", hours=1, id="loop-work")
router = APIRouter()


@router.get("/pool")
async def pool():
    # The reported input: an async route waits for work handed to the thread pool.
    return {"id": threadpool.submit_task(work, "pool").result(timeout=10)}


@router.post("/run/{scheduler}")
def run_now(scheduler: str):
    owner = {"background": background_scheduler, "asyncio": asyncio_scheduler}[scheduler]
    owner.run_job({"background": "thread-work", "asyncio": "loop-work"}[scheduler])
    return {"ran": scheduler}


app.include_router(router)
'''


def test_work_handed_off_by_a_request_logs_its_request_id(tmp_path: Path, launch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.py").write_text(CONTEXT_MAIN)
    server = launch({"flyer_console_log_level": "info"}, project)
    answer = httpx.get(f"{server.url}/pool", headers={"X-Request-ID": "inv-0"}, timeout=10)
    assert answer.status_code == 200 and answer.json()["id"] == "inv-0", answer.text
    for number, scheduler in enumerate(("background", "asyncio"), start=1):
        answer = httpx.post(f"{server.url}/run/{scheduler}",
                            headers={"X-Request-ID": f"inv-{number}"}, timeout=10)
        assert answer.status_code == 200, answer.text
    wanted = {"pool": "inv-0", "background": "inv-1", "asyncio": "inv-2"}

    def logged() -> dict[str, str]:
        lines = server.console.read_text().splitlines()
        return {found[2]: found[1] for line in lines
                if (found := re.search(r"\| (\S+) \| .* - work (\w+) ran", line))}

    wait_for(lambda: logged() == wanted, what=f"the runs {wanted} in the log")


CLEANUP_APP = '''
import os
import time

import redis

from fastflyer import background_scheduler
from fastflyer.executor import current_lease

SERVICE = os.environ["RECORD_SERVICE"]
PREFIX = os.environ["RECORD_PREFIX"]
store = redis.Redis(db=15, decode_responses=True)


@background_scheduler.lock()
def cleanup():
    fire = current_lease().fire
    store.hincrby(f"{PREFIX}:{SERVICE}", fire.key.rsplit(":", 1)[1], 1)
    time.sleep(0.1)


background_scheduler.add_job(cleanup, "interval", seconds=1, id="cleanup")
'''


def test_two_services_on_one_redis_each_run_every_fire_of_their_own(tmp_path: Path) -> None:
    # The reported input: each service ran its job half the time (3 + 3 in 6 s).
    prefix = f"fastflyer-test:services:{uuid.uuid4().hex[:10]}"
    store = redis.Redis(db=15, decode_responses=True)
    services = ("orders", "billing")  # the project directory names the service

    def counted(service: str) -> dict[int, int]:
        return {int(k): int(v) for k, v in store.hgetall(f"{prefix}:{service}").items()}

    try:
        with contextlib.ExitStack() as stack:
            for service in services:
                project = tmp_path / service
                project.mkdir()
                assert subprocess.run([FASTFLYER, "create_app"], cwd=project,
                                      env=env_for(tmp_path), capture_output=True,
                                      timeout=60).returncode == 0
                (project / "app" / "cleanup").mkdir()
                (project / "app" / "cleanup" / "__init__.py").write_text(CLEANUP_APP)
                log = tmp_path / f"{service}.log"
                process = stack.enter_context(started(
                    [FASTFLYER, "run", "--port", "0", "--host", "127.0.0.1"], project,
                    env_for(tmp_path, RECORD_SERVICE=service, RECORD_PREFIX=prefix,
                            flyer_redis_host="127.0.0.1", flyer_redis_db="15",
                            flyer_console_log_level="info",
                            flyer_log_path=str(tmp_path / f"{service}-logs")), log))
                healthy_address(process, log)
            wait_for(lambda: min(len(counted(service)) for service in services) >= 8,
                     timeout=40, what="8 runs of each service")  # 8 s; a loaded machine
        for service in services:
            runs = counted(service)
            assert set(runs.values()) == {1}, runs
            times = sorted(runs)
            assert times == list(range(times[0], times[-1] + 1000, 1000)), (service, runs)
            text = (tmp_path / f"{service}.log").read_text()
            assert "skipped" not in text, text  # no fire of the other service got in the way
    finally:
        for key in store.scan_iter(f"{prefix}*"):
            store.delete(key)
