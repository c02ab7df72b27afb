"""A user's first hour, run inside a fresh venv that holds only a user-facing install.

    python tests/smoke/smoke.py            # after `pip install .`: the framework alone
    python tests/smoke/smoke.py --all      # after `pip install '.[all]'`: Redis, MySQL, Kafka too

It uses no test tool (no pytest, no dev extra), so a runtime dependency that only a dev tool
brought in fails here. Checks, each printed as ``ok <name>`` or ending the run with exit 1:

- ``fastflyer create_app`` into a temporary directory; the project served by ``fastflyer run``
  answers its demo route, the health check, the docs and the schema;
- the embedded database default, sync and asyncio (SQLite, no server);
- the seed's scheduler blocks, a fire of each observed;
- with ``--all``: the seed's Redis, MySQL (sync and asyncio) and dataset blocks against the
  machine's Redis (127.0.0.1:6379) and MariaDB (127.0.0.1:3306, root, database ``test``), and
  a Kafka round trip against ``$SMOKE_KAFKA_SERVERS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC
from os import getenv
from pathlib import Path

BIN = Path(sys.executable).parent


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@contextlib.contextmanager
def served_project() -> Iterator[str]:
    """A new project, served by ``fastflyer run`` on a port it binds itself; its base URL."""
    with tempfile.TemporaryDirectory(prefix="fastflyer-smoke-") as directory:
        project = Path(directory) / "shop"
        project.mkdir()
        subprocess.run([str(BIN / "fastflyer"), "create_app", "--name", "shop"], cwd=project,
                       check=True, timeout=60)
        env = {**os.environ, "flyer_log_path": str(project / "logs")}
        log = project / "server.log"
        with log.open("wb") as sink:
            server = subprocess.Popen([str(BIN / "fastflyer"), "run", "--host", "127.0.0.1",
                                       "--port", "0"], cwd=project, env=env,
                                      stdout=sink, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        try:
            found: list[str] = []

            def bound() -> bool:
                if server.poll() is not None:
                    raise RuntimeError(f"fastflyer run exited {server.returncode}:\n"
                                       + log.read_text(errors="replace"))
                found[:] = re.findall(r"http://127\.0\.0\.1:(\d+)", log.read_text("utf-8",
                                                                                 "replace"))
                return bool(found) and found[-1] != "0"

            wait_until(bound, 60, "fastflyer run reporting its port")
            base = f"http://127.0.0.1:{found[-1]}"
            wait_until(lambda: get(f"{base}/health_check")[0] == 200, 60, "the health check")
            yield base
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)


def check_project() -> None:
    with served_project() as base:
        status, body = get(f"{base}/flyer/demo?id=1")
        assert status == 200 and json.loads(body)["code"] == 200, (status, body)
        status, body = get(f"{base}/flyer/docs")
        assert status == 200 and b"swagger" in body.lower(), status
        status, body = get(f"{base}/flyer/redoc")
        assert status == 200, status
        status, body = get(f"{base}/flyer/openapi.json")
        assert status == 200 and "/flyer/demo" in json.loads(body)["paths"], status


def check_embedded_database() -> None:
    from fastflyer.database import get_async_mysql_pool, get_dataset_pool, get_mysql_pool

    with tempfile.TemporaryDirectory() as data:
        os.environ["flyer_data_dir"] = data
        try:
            pool = get_mysql_pool()
            pool.ping()
            pool.close()

            async def ping_async() -> None:
                async_pool = get_async_mysql_pool()
                await async_pool.ping()
                await async_pool.close()

            asyncio.run(ping_async())
            data_set = get_dataset_pool()
            data_set["smoke"].insert({"k": 1})
            assert data_set["smoke"].find_one(k=1)["k"] == 1
            data_set.close()
        finally:
            del os.environ["flyer_data_dir"]


def _scheduler_blocks() -> None:
    # 调度同步方法 (the seed's `add_job(func=customfunc, "interval", ...)` is a syntax error;
    # the working form passes the function first)
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


def check_scheduler(redis: bool) -> None:
    """The seed's blocks, the app's lifespan started, one fire of each job brought forward."""
    from datetime import datetime

    from fastflyer import FlyerAPI, asyncio_scheduler, background_scheduler

    if redis:
        os.environ["flyer_redis_host"] = "127.0.0.1"
    _scheduler_blocks()
    app = FlyerAPI()
    printed = io.StringIO()

    async def run() -> None:
        async with app.router.lifespan_context(app):
            assert background_scheduler.running and asyncio_scheduler.running
            for scheduler in (background_scheduler, asyncio_scheduler):
                scheduler.get_job("customjob").modify(next_run_time=datetime.now(UTC))
            deadline = time.monotonic() + 20
            while printed.getvalue().count("hello world!") < 2:
                if time.monotonic() > deadline:
                    raise TimeoutError("the seed's jobs did not both run within 20 s")
                await asyncio.sleep(0.05)

    with contextlib.redirect_stdout(printed):
        asyncio.run(run())
    os.environ.pop("flyer_redis_host", None)


def check_redis() -> None:
    from fastflyer.cache import get_redis_pool

    class Cache:
        # 初始化Redis
        redis_host = getenv("flyer_redis_host", "localhost")
        redis_port = getenv("flyer_redis_port", 6379)
        redis_pass = getenv("flyer_redis_pass", "")
        redis_db = getenv("flyer_redis_db", 1)
        redis_pool = get_redis_pool(redis_host, redis_port, redis_pass, redis_db)

    key = f"smoke:{uuid.uuid4().hex}"
    Cache.redis_pool.set(key, 1)
    assert Cache.redis_pool.get(key) == "1"  # decoded, as the original gave it
    Cache.redis_pool.delete(key)


def _mysql_settings() -> type:
    from fastflyer.database import get_mysql_pool

    class DataBase:
        # 如果启用 MySQL 请取消注释
        db_user = getenv("flyer_db_user", "root")
        db_pass = getenv("flyer_db_pass", "")
        db_host = getenv("flyer_db_host", "localhost")
        db_port = getenv("flyer_db_port", 3306)
        db_name = getenv("flyer_db_name", "flyer")
        db_chartset = getenv("flyer_db_chartset", "utf8")
        db_recycle_rate = int(getenv("flyer_db_recycle_rate", 900))
        db_pool_size = int(getenv("flyer_db_pool_size", 32))
        db_max_overflow = int(getenv("flyer_threads", 64))
        mysql_pool = get_mysql_pool(db_user, db_pass, db_host, db_port,
                                    db_name, db_recycle_rate, db_pool_size,
                                    db_max_overflow)

    return DataBase


def check_mysql() -> None:
    os.environ.update(flyer_db_host="127.0.0.1", flyer_db_name="test")
    from sqlalchemy import Column, Integer, String
    from sqlalchemy.orm import declarative_base

    pool = _mysql_settings().mysql_pool
    Base = declarative_base()
    table = f"t_smoke_{uuid.uuid4().hex[:8]}"

    class Row(Base):  # type: ignore[misc,valid-type]
        __tablename__ = table
        id = Column(Integer, primary_key=True)
        name = Column(String(32), nullable=False)

    Base.metadata.create_all(pool.engine)
    try:
        with pool.get_session() as session:
            session.add(Row(name="a"))
        assert [c.name for c in pool.get_table(table).columns] == ["id", "name"]
    finally:
        Base.metadata.drop_all(pool.engine)
        pool.close()


def check_async_mysql() -> None:
    from fastflyer.database import get_async_mysql_pool

    async def run() -> None:
        pool = get_async_mysql_pool("root", "", "127.0.0.1", 3306, "test")
        await pool.ping()
        await pool.close()

    asyncio.run(run())


def check_dataset() -> None:
    from fastflyer.database import get_dataset_pool

    # 初始化 dataset
    class DataBase:
        # 如果启用 MySQL 请取消注释
        db_user = getenv("flyer_db_user", "root")
        db_pass = getenv("flyer_db_pass", "")
        db_host = getenv("flyer_db_host", "localhost")
        db_port = getenv("flyer_db_port", 3306)
        db_name = getenv("flyer_db_name", "flyer")
        db_chartset = getenv("flyer_db_chartset", "utf8")
        db_recycle_rate = int(getenv("flyer_db_recycle_rate", 900))
        db_pool_size = int(getenv("flyer_db_pool_size", 32))
        data_set = get_dataset_pool(db_host, db_port, db_name, db_user, db_pass,
                                    db_recycle_rate, db_pool_size)
        data_set = get_dataset_pool(db_user, db_pass, db_host, db_port, db_name)

    table = DataBase.data_set[f"t_smoke_{uuid.uuid4().hex[:8]}"]
    row = {"key_item": 0, "item1": 1, "item2": 2}
    table.upsert(row, keys=["key_item"])
    assert table.find_one(key_item=0)["item2"] == 2
    table.drop()
    DataBase.data_set.close()


def check_kafka() -> None:
    from fastkit.message import Consumer, Producer

    servers = os.environ["SMOKE_KAFKA_SERVERS"]
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    with Producer(servers, topic=topic) as producer:
        producer.send({"id": 1}, key="order-1")
    consumer = Consumer(servers, topic, group_id="smoke", auto_offset_reset="earliest")
    consumer.start()
    try:
        message = next(iter(consumer))
        assert message.json() == {"id": 1}, message
    finally:
        consumer.stop()


def main(argv: list[str]) -> int:
    everything = "--all" in argv
    checks: list[tuple[str, Callable[[], None]]] = [
        ("project: create_app, fastflyer run, demo route, docs, schema", check_project),
        ("embedded database: sync, asyncio, dataset", check_embedded_database),
        ("scheduler blocks" + (" with Redis locks" if everything else ""),
         lambda: check_scheduler(redis=everything)),
    ]
    if everything:
        checks += [("Redis block", check_redis), ("MySQL block (sync)", check_mysql),
                   ("MySQL (asyncio)", check_async_mysql), ("dataset block", check_dataset),
                   ("Kafka round trip", check_kafka)]
    for name, check in checks:
        started = time.monotonic()
        try:
            check()
        except Exception as exc:
            print(f"FAILED {name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            raise
        print(f"ok {name} ({time.monotonic() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
