"""Importing the packages does no I/O and starts nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

IMPORTS = ("import fastkit, fastkit.httpx, fastkit.logging, fastkit.request_id, fastkit.utils, "
           "fastkit.cache, fastkit.database, fastflyer, fastflyer.schemas, fastflyer.settings, "
           "fastflyer.cache, fastflyer.database, fastflyer.components, fastkit.executor, "
           "fastflyer.executor, fastflyer.task_api, fastkit.message, fastflyer.message\n"
           "from fastflyer import FlyerAPI, APIRouter, env, logger, status, requests, "
           "background_scheduler, asyncio_scheduler, threadpool")

TRAPS = """
import builtins, os, socket, ssl, sys, threading
def trap(what):
    def refuse(*args, **kwargs):
        raise AssertionError(f"import did {what}: {args[:2]!r}")
    return refuse
socket.socket.__init__ = trap("a socket")
socket.getaddrinfo = trap("a DNS lookup")
socket.gethostbyname = trap("a DNS lookup")
threading.Thread.start = trap("start a thread")
ssl.SSLContext.load_verify_locations = trap("load certificates")
os.open = trap("open a file")
os.makedirs = os.mkdir = trap("create a directory")
_open = builtins.open
_installed = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
def guarded_open(file, mode="r", *args, **kwargs):
    # Reading installed code is what importing is; anything else is I/O.
    if any(c in mode for c in "wax+") or not str(file).startswith(_installed):
        raise AssertionError(f"import opened {file!r} ({mode})")
    return _open(file, mode, *args, **kwargs)
builtins.open = guarded_open
"""


def run_python(code: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("flyer_")}
    return subprocess.run([*(prefix or []), sys.executable, "-c", code], env=env,
                          capture_output=True, text=True, timeout=60)


def test_import_does_no_io_and_starts_no_thread():
    result = run_python(TRAPS + IMPORTS + "\nimport threading\n"
                        "assert threading.active_count() == 1, threading.enumerate()\n")
    assert result.returncode == 0, result.stderr


NETWORK_AND_THREAD_TRAPS = TRAPS.split("os.open = ")[0]


def test_registering_jobs_at_import_starts_and_connects_nothing():
    # The seed adds its jobs in a project's module, at import (with Redis configured).
    # APScheduler reads the local time zone (a file) for the first job: cron times are
    # local times; no socket, no thread.
    code = (NETWORK_AND_THREAD_TRAPS + "import os\nos.environ['flyer_redis_host'] = '127.0.0.1'\n"
            "from fastflyer import background_scheduler, threadpool\n"
            "@background_scheduler.lock()\ndef customfunc():\n    print('hello world!')\n"
            "background_scheduler.add_job(customfunc, 'interval', seconds=5, id='customjob')\n"
            "threadpool.submit(single_job=True)(customfunc)\n"
            "threadpool.submit_task(customfunc)\n"
            "import threading\nassert threading.active_count() == 1\n")
    result = run_python(code)
    assert result.returncode == 0, result.stderr


def test_creating_pools_in_a_settings_module_connects_nothing():
    # The seed creates its pools in the project's settings.py, at import.
    code = (TRAPS + "from fastflyer.cache import get_redis_pool\n"
            "from fastflyer.database import get_mysql_pool, get_dataset_pool\n"
            "from fastkit.database import get_async_mysql_pool\n"
            "get_redis_pool('127.0.0.1', 6379, '', 0)\n"
            "get_mysql_pool('root', '', '127.0.0.1', 3306, 'flyer', 900, 32, 64)\n"
            "get_async_mysql_pool('root', '', '127.0.0.1', 3306, 'flyer')\n"
            "get_dataset_pool('127.0.0.1', 3306, 'flyer', 'root', '', 900, 32)\n"
            "get_dataset_pool('root', '', '127.0.0.1', 3306, 'flyer')\n")
    result = run_python(code)
    assert result.returncode == 0, result.stderr


def test_declaring_kafka_clients_at_import_connects_and_starts_nothing():
    # Producers and consumers made at module level (a project's settings.py, an app's
    # __init__.py) connect at first use, on the loop that uses them.
    code = (TRAPS + "from fastkit.message import AsyncConsumer, AsyncProducer, Consumer, "
            "Producer\n"
            "from fastflyer.message import KafkaRouter, Message\n"
            "kafka = KafkaRouter()\n"
            "@kafka.consumer('orders', group_id='billing')\nasync def bill(message): pass\n"
            "Producer('127.0.0.1:9092', topic='orders')\n"
            "AsyncProducer('127.0.0.1:9092')\n"
            "Consumer('127.0.0.1:9092', 'orders', group_id='billing')\n"
            "AsyncConsumer('127.0.0.1:9092', ['orders'], group_id='billing')\n"
            "import threading\nassert threading.active_count() == 1\n")
    result = run_python(code)
    assert result.returncode == 0, result.stderr


def test_a_script_that_imports_exits_at_once():
    started = time.monotonic()
    result = run_python(IMPORTS)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10
    assert result.stderr == ""


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0,
                    reason="needs unshare and root for a network namespace")
def test_import_and_use_without_any_network():
    code = IMPORTS + "\nfrom fastkit.httpx import requests\nprint('imported')\n"
    result = run_python(code, prefix=["unshare", "--net"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported"


def test_fastkit_httpx_imports_without_fastapi_or_starlette():
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('fastapi', 'starlette', 'pydantic'):\n"
            "            raise ImportError('blocked ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from fastkit.httpx import requests, aiorequests, Client, AsyncClient, status\n"
            "assert status.HTTP_200_OK == 200\n")
    result = run_python(code)
    assert result.returncode == 0, result.stderr


BLOCK_GREENLET = """
import sys
sys.modules["greenlet"] = None   # as if the install had no greenlet: importing it fails
"""


@pytest.mark.parametrize("code", [
    # the seed's sync pool and the dataset pool, on SQLite (no server needed)
    "from fastkit.database import get_mysql_pool\n"
    "pool = get_mysql_pool(f'sqlite:///{D}/a.db'); pool.ping(); pool.close()",
    "from fastkit.database import get_dataset_pool\n"
    "db = get_dataset_pool(f'sqlite:///{D}/b.db'); db['t'].insert({'k': 1}); db.close()",
    "from fastflyer.database import get_mysql_pool\n"
    "import os; os.environ['flyer_data_dir'] = D\n"
    "pool = get_mysql_pool(); pool.ping(); pool.close()",
])
def test_sync_database_code_needs_no_greenlet(tmp_path, code):
    result = run_python(BLOCK_GREENLET + f"D = {str(tmp_path)!r}\n" + code + "\n"
                        "assert 'sqlalchemy.ext.asyncio' not in sys.modules\n")
    assert result.returncode == 0, result.stderr


def test_the_asyncio_pool_says_what_it_needs_without_greenlet(tmp_path):
    result = run_python(BLOCK_GREENLET + "from fastkit.database import get_async_mysql_pool\n"
                        f"get_async_mysql_pool('sqlite:///{tmp_path}/c.db')\n")
    assert result.returncode != 0 and "greenlet" in result.stderr
