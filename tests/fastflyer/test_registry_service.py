"""The service registry as a user runs it: ``fastflyer serve``/``run`` processes against a
real etcd. Each instance registers once ready, under a routable address, held by leases
its workers renew; a stop by signal withdraws it while the port still accepts; a killed one
leaves within its lease's TTL; a lost lease is replaced when etcd returns; a recycled
worker leaves the key to the others; credentials never reach a log line."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.testclient import TestClient
from test_launch import FASTFLYER, env_for, generate_project, healthy_address, started

from etcd_server import EtcdServer
from fastflyer import FlyerAPI
from fastflyer.settings import SettingsError
from fastkit.etcd import EtcdClient
from fastkit.utils.net import routable_host
from waiting import wait_for

HEARTBEAT = 1  # second: the lease's TTL is 3 s
TTL = 3
# etcd checks for ended leases every 500 ms: a key goes at most that long after its TTL.
EXPIRY_SLACK = 1.0


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project made by ``fastflyer create_app`` (service ``shop``, version v1, base URL
    /flyer), shared by the module's tests; a test that changes it copies it first."""
    return generate_project(tmp_path_factory.mktemp("registry"))


@pytest.fixture
def namespace() -> str:
    return f"ns-{uuid.uuid4().hex[:12]}"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def entries(etcd: Any, prefix: str) -> dict[str, dict[str, Any]]:
    """The keys under ``prefix`` as etcd holds them: value (JSON), lease, create_revision."""
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    response = httpx.post(f"{etcd.url}/v3/kv/range",
                          json={"key": _b64(prefix), "range_end": _b64(end)},
                          headers=etcd._headers(), timeout=5)
    response.raise_for_status()
    found = {}
    for kv in response.json().get("kvs") or []:
        found[base64.b64decode(kv["key"]).decode()] = {
            "record": json.loads(base64.b64decode(kv["value"])),
            "lease": int(kv.get("lease", 0)), "created": int(kv["create_revision"])}
    return found


def granted_ttl(etcd: Any, lease: int) -> int:
    response = httpx.post(f"{etcd.url}/v3/kv/lease/timetolive", json={"ID": str(lease)},
                          headers=etcd._headers(), timeout=5)
    response.raise_for_status()
    return int(response.json().get("grantedTTL", 0))


def accepts(port: int) -> bool:
    """Whether a connection to ``127.0.0.1:port`` is accepted now."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def env_with(tmp_path: Path, etcd: Any, namespace: str, **extra: str) -> dict[str, str]:
    return env_for(tmp_path, flyer_log_path=str(tmp_path / "logs"),
                   flyer_registry_enabled="1", flyer_registry_endpoints=etcd.url,
                   flyer_registry_namespace=namespace,
                   flyer_registry_heartbeat_interval=str(HEARTBEAT), **extra)


@contextmanager
def serving(args: list[str], project: Path, env: dict[str, str],
            log: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``fastflyer`` ``args`` on port 0 in its own process group (killed whole at the end)
    and its port, once healthy."""
    with started([FASTFLYER, *args, "--port", "0"], project, env, log,
                 new_session=True) as process:
        port = urlsplit(healthy_address(process, log)).port
        assert port is not None
        yield process, port


def registry_in_process(monkeypatch: pytest.MonkeyPatch, etcd: Any, namespace: str,
                        **extra: str) -> None:
    """The variables of an app built in this process that registers in ``namespace``
    (heartbeat 1 s, host 10.1.2.3), with ``extra`` ``flyer_<name>`` values."""
    for name, value in {"registry_enabled": "1", "registry_endpoints": etcd.url,
                        "registry_namespace": namespace, "registry_heartbeat_interval": "1",
                        "registry_host": "10.1.2.3", **extra}.items():
        monkeypatch.setenv(f"flyer_{name}", value)


def registered(etcd: Any, namespace: str, service: str = "shop") -> dict[str, Any]:
    """The one instance registered under ``/namespace/service/`` (waits for it)."""
    prefix = f"/{namespace}/{service}/"
    wait_for(lambda: entries(etcd, prefix), timeout=60, what=f"an instance under {prefix}")
    found = entries(etcd, prefix)
    assert len(found) == 1, found
    key, entry = next(iter(found.items()))
    return {"key": key, **entry}


def all_logs(tmp_path: Path, console: Path) -> str:
    """The console output and every log file the service wrote."""
    files = sorted((tmp_path / "logs").glob("**/*"))
    assert any(path.suffix == ".log" and path.stat().st_size for path in files), files
    return console.read_text(errors="replace") + "".join(
        path.read_text(errors="replace") for path in files if path.is_file())


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    process.send_signal(sig)
    return process.wait(timeout=60)


# --- registering --------------------------------------------------------------------------


# A stopping hook of the app's own, registered before the registry's and so run after it
# (reverse order): it holds the listener open until the test has looked, so that "the key
# went while the port still accepted" is seen however late the test gets to look.
HOLD_LISTENER = '''
import asyncio, os, time
from pathlib import Path


@app.lifecycle.on_stopping
async def hold_listener() -> None:
    release, deadline = Path(os.environ["HOLD_RELEASE"]), time.monotonic() + 4
    while not release.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
'''


def test_two_workers_register_one_routable_instance_and_a_sigterm_withdraws_it_first(
        tmp_path: Path, project: Path, etcd: Any, namespace: str) -> None:
    log = tmp_path / "console.log"
    held = tmp_path / "project"
    shutil.copytree(project, held)
    with (held / "main.py").open("a") as main:
        main.write(HOLD_LISTENER)
    release = tmp_path / "release"
    env = env_with(tmp_path, etcd, namespace, flyer_host="0.0.0.0",
                   flyer_registry_metadata_zone="eu-1", flyer_polaris_metadata_rack="r7",
                   HOLD_RELEASE=str(release))
    with serving(["serve", "--workers", "2"], held, env, log) as (process, port):
        entry = registered(etcd, namespace)
        host = routable_host("0.0.0.0")
        assert host not in ("0.0.0.0", "::", "")
        assert entry["key"] == f"/{namespace}/shop/{host}:{port}"
        assert entry["record"] == {
            "service": "shop", "namespace": namespace, "host": host, "port": port,
            "scheme": "http", "base_url": f"http://{host}:{port}/flyer", "version": "v1",
            "metadata": {"zone": "eu-1", "rack": "r7"}}
        assert granted_ttl(etcd, entry["lease"]) == TTL
        # Each worker puts the key with its own lease at every heartbeat.
        leases: set[int] = set()

        def both_workers_put() -> bool:
            held = entries(etcd, f"/{namespace}/shop/").get(entry["key"])
            if held:
                leases.add(held["lease"])
            return len(leases) >= 2

        wait_for(both_workers_put, timeout=30, what="both workers' leases holding the key")

        # SIGTERM: the key goes while the port still accepts (the stopping hook runs
        # before the listener closes). Every change from now on is followed.
        with EtcdClient(etcd.url, timeout=5) as client:
            revision = client.get_prefix(entry["key"]).revision
            process.send_signal(signal.SIGTERM)
            accepted_when_gone = None
            deadline = time.monotonic() + 30
            while accepted_when_gone is None and time.monotonic() < deadline:
                client.wait_for_change(entry["key"], revision, timeout=1)
                snapshot = client.get_prefix(entry["key"])
                if entry["key"] not in snapshot:
                    accepted_when_gone = accepts(port)
                revision = snapshot.revision
        release.touch()
        assert process.wait(timeout=60) == 0, log.read_text()
    output = log.read_text()
    assert accepted_when_gone is True, output
    assert entries(etcd, f"/{namespace}/shop/") == {}
    assert output.count(f"{entry['key']} withdrawn (stopping)") == 2, output
    assert "Traceback" not in output


def test_a_killed_instance_leaves_within_its_lease_ttl(tmp_path: Path, project: Path,
                                                       etcd: Any, namespace: str) -> None:
    log = tmp_path / "console.log"
    env = env_with(tmp_path, etcd, namespace, flyer_host="127.0.0.1")
    with serving(["serve", "--workers", "2"], project, env, log) as (process, _port):
        entry = registered(etcd, namespace)
        os.killpg(process.pid, signal.SIGKILL)  # the master and its workers, no stop at all
        killed = time.monotonic()
        process.wait(timeout=30)
        wait_for(lambda: entry["key"] not in entries(etcd, f"/{namespace}/shop/"),
                 timeout=TTL + EXPIRY_SLACK, what="the key ends with the last lease")
        assert time.monotonic() - killed <= TTL + EXPIRY_SLACK


def test_a_recycled_worker_leaves_the_key_to_the_others(tmp_path: Path, project: Path,
                                                        etcd: Any, namespace: str) -> None:
    # flyer_max_requests: uvicorn stops the worker with no signal; it only stops its
    # heartbeat, and the key is never deleted (its create_revision stays the same).
    log = tmp_path / "console.log"
    env = env_with(tmp_path, etcd, namespace, flyer_host="127.0.0.1",
                   flyer_enable_max_requests="1", flyer_max_requests="15",
                   flyer_max_requests_jitter="0")
    with serving(["serve", "--workers", "2"], project, env, log) as (process, port):
        entry = registered(etcd, namespace)
        wait_for(lambda: log.read_text().count("registered at") >= 2, timeout=60,
                 what="both workers registered")

        def recycled() -> bool:
            with httpx.Client() as client:  # one connection per request: both workers serve
                client.get(f"http://127.0.0.1:{port}/health_check",
                           headers={"Connection": "close"}, timeout=5)
            return "worker recycled" in log.read_text()

        wait_for(recycled, timeout=60, what="a worker recycled")
        recycled_at = time.monotonic()
        # Its replacement registers too; by then the recycled worker's lease has ended.
        wait_for(lambda: log.read_text().count("registered at") >= 3, timeout=60,
                 what="the new worker registered")
        wait_for(lambda: time.monotonic() - recycled_at > TTL + EXPIRY_SLACK,
                 timeout=TTL + EXPIRY_SLACK + 1, what="the recycled worker's lease ended")
        now = entries(etcd, f"/{namespace}/shop/")
        assert entry["key"] in now, log.read_text()
        assert now[entry["key"]]["created"] == entry["created"], log.read_text()
        assert _stop(process) == 0, log.read_text()
    output = log.read_text()
    assert "Maximum request limit of 15 exceeded" in output
    assert "withdrawn" in output  # by the SIGTERM at the end, not before
    before_stop = output.split("Handling signal: term")[0]
    assert "withdrawn" not in before_stop, output


# --- readiness ------------------------------------------------------------------------------

GATED_MAIN = textwrap.dedent('''\
    import os
    from pathlib import Path

    from fastflyer import FlyerAPI

    app = FlyerAPI(app_path=__file__)


    def gate() -> None:
        if not Path(os.environ["READY_FILE"]).exists():
            raise RuntimeError("the warehouse is not open yet")


    app.readiness.register("warehouse", gate)
''')


def test_an_unready_app_registers_once_ready_and_is_withdrawn_while_unready(
        tmp_path: Path, project: Path, etcd: Any, namespace: str) -> None:
    gated = tmp_path / "shop"
    shutil.copytree(project, gated, ignore=shutil.ignore_patterns("__pycache__", "logs"))
    (gated / "main.py").write_text(GATED_MAIN)
    ready_file = tmp_path / "ready"
    log = tmp_path / "console.log"
    env = env_with(tmp_path, etcd, namespace, flyer_host="127.0.0.1",
                   READY_FILE=str(ready_file))
    with serving(["run"], gated, env, log) as (process, port):
        wait_for(lambda: "not registered until the readiness checks pass" in log.read_text(),
                 timeout=30, what="the first heartbeat, unready")
        assert "warehouse: RuntimeError: the warehouse is not open yet" in log.read_text()
        assert entries(etcd, f"/{namespace}/shop/") == {}
        ready_file.touch()
        entry = registered(etcd, namespace)
        assert entry["key"] == f"/{namespace}/shop/127.0.0.1:{port}"
        ready_file.unlink()
        wait_for(lambda: entries(etcd, f"/{namespace}/shop/") == {}, timeout=10,
                 what="withdrawn while unready")
        ready_file.touch()
        registered(etcd, namespace)
        assert _stop(process, signal.SIGINT) == 0, log.read_text()
    assert entries(etcd, f"/{namespace}/shop/") == {}


# --- etcd away ------------------------------------------------------------------------------


@pytest.fixture
def private_etcd() -> Iterator[EtcdServer]:
    server = EtcdServer()
    server.start()
    yield server
    server.close()


@pytest.mark.parametrize("data", ["kept", "lost"])
def test_an_instance_is_registered_again_when_etcd_returns(
        tmp_path: Path, project: Path, private_etcd: EtcdServer, namespace: str,
        data: str) -> None:
    # An outage longer than the TTL; etcd comes back with its data (the lease restored)
    # or without (the lease gone: a new one is granted and the key put again).
    log = tmp_path / "console.log"
    env = env_with(tmp_path, private_etcd, namespace, flyer_host="127.0.0.1")
    with serving(["serve", "--workers", "2"], project, env, log) as (process, port):
        entry = registered(private_etcd, namespace)
        wait_for(lambda: log.read_text().count("registered at") >= 2, timeout=60,
                 what="both workers registered")
        private_etcd.stop()
        stopped = time.monotonic()
        wait_for(lambda: log.read_text().count("not renewed") >= 2, timeout=30,
                 what="each worker's warning")
        wait_for(lambda: time.monotonic() - stopped > TTL + 1, timeout=TTL + 2,
                 what="an outage longer than the TTL")
        assert httpx.get(f"http://127.0.0.1:{port}/health_check", timeout=5).status_code == 200
        if data == "lost":
            shutil.rmtree(private_etcd.data_dir / "data")
        private_etcd.start()
        again = registered(private_etcd, namespace)
        assert again["key"] == entry["key"]
        assert again["record"] == entry["record"]
        wait_for(lambda: log.read_text().count("answers again") >= 2, timeout=30,
                 what="each worker registered again")
        assert _stop(process) == 0, log.read_text()
    output = log.read_text()
    warnings = [line for line in output.splitlines() if "not renewed" in line]
    assert len(warnings) == 2, output  # one per worker for the whole outage
    assert all("WARNING" in line and f"127.0.0.1:{private_etcd.port}" in line
               for line in warnings), warnings
    if data == "lost":
        assert output.count("registered again with a new lease") == 2, output


def test_a_stop_while_etcd_is_away_is_still_clean(tmp_path: Path, project: Path,
                                                  private_etcd: EtcdServer,
                                                  namespace: str) -> None:
    # The withdraw cannot reach etcd: a warning says the key ends with its lease, and the
    # stop stays clean and prompt.
    log = tmp_path / "console.log"
    env = env_with(tmp_path, private_etcd, namespace, flyer_host="127.0.0.1")
    with serving(["run"], project, env, log) as (process, _port):
        entry = registered(private_etcd, namespace)
        private_etcd.stop()
        began = time.monotonic()
        assert _stop(process) == 0, log.read_text()
        assert time.monotonic() - began < 10
    output = log.read_text()
    assert f"cannot withdraw {entry['key']}" in output, output
    assert f"it leaves the registry when its lease ends, within {TTL} s" in output
    assert "stopping hook" not in output, output  # no stop problem


# --- credentials and the seed's names -------------------------------------------------------


def test_credentials_register_on_an_etcd_with_auth_and_never_reach_a_log(
        tmp_path: Path, project: Path, private_etcd: EtcdServer, namespace: str) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    private_etcd.enable_auth("shop", password)
    log = tmp_path / "console.log"
    env = env_with(tmp_path, private_etcd, namespace, flyer_host="127.0.0.1",
                   flyer_registry_token=f"shop:{password}",
                   flyer_console_log_level="debug", flyer_file_log_level="debug")
    with serving(["serve", "--workers", "2"], project, env, log) as (process, _port):
        entry = registered(private_etcd, namespace)
        assert granted_ttl(private_etcd, entry["lease"]) == TTL
        assert _stop(process) == 0, log.read_text()
    assert entries(private_etcd, f"/{namespace}/shop/") == {}
    output = all_logs(tmp_path, log)
    assert "registered at" in output and "withdrawn" in output
    assert password not in output


def test_refused_credentials_are_a_warning_without_the_password(
        tmp_path: Path, project: Path, private_etcd: EtcdServer, namespace: str) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    private_etcd.enable_auth("shop", password)
    wrong = f"wrong-{uuid.uuid4().hex}"
    log = tmp_path / "console.log"
    env = env_with(tmp_path, private_etcd, namespace, flyer_host="127.0.0.1",
                   flyer_registry_token=f"shop:{wrong}")
    with serving(["run"], project, env, log) as (process, _port):
        wait_for(lambda: "not registered: etcd at" in log.read_text(), timeout=30,
                 what="the refusal logged")
        assert _stop(process) == 0, log.read_text()
    output = all_logs(tmp_path, log)
    assert "refused user 'shop'" in output, output
    assert wrong not in output and password not in output


def test_the_seeds_polaris_names_configure_the_registry(tmp_path: Path, project: Path,
                                                       etcd: Any, namespace: str) -> None:
    log = tmp_path / "console.log"
    env = env_for(tmp_path, flyer_log_path=str(tmp_path / "logs"), flyer_host="127.0.0.1",
                  flyer_polaris_enabled="1", flyer_registry_endpoints=etcd.url,
                  flyer_polaris_namespace=namespace, flyer_polaris_service="orders",
                  flyer_polaris_heartbeat_interval="2", flyer_polaris_metadata_zone="b")
    with serving(["run"], project, env, log) as (process, port):
        entry = registered(etcd, namespace, service="orders")
        assert entry["key"] == f"/{namespace}/orders/127.0.0.1:{port}"
        assert entry["record"]["metadata"] == {"zone": "b"}
        assert granted_ttl(etcd, entry["lease"]) == 6  # 3 × 2 s
        assert _stop(process) == 0, log.read_text()
    assert entries(etcd, f"/{namespace}/orders/") == {}


# --- in process -----------------------------------------------------------------------------


def test_the_lifespan_registers_and_withdraws_and_building_sends_nothing(
        monkeypatch: pytest.MonkeyPatch, etcd: Any, namespace: str) -> None:
    registry_in_process(monkeypatch, etcd, namespace, port="9000",
                        registry_service="billing", version="v7")
    app = FlyerAPI()
    assert app.registry is not None
    assert app.registry.registration is None  # nothing started at build
    assert entries(etcd, f"/{namespace}/") == {}
    with TestClient(app):
        entry = registered(etcd, namespace, service="billing")
        assert entry["key"] == f"/{namespace}/billing/10.1.2.3:9000"
        assert entry["record"]["base_url"] == "http://10.1.2.3:9000/flyer"
        assert entry["record"]["version"] == "v7"
    assert entries(etcd, f"/{namespace}/") == {}  # no server signal: withdrawn at shutdown


def test_disabled_there_is_no_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    assert FlyerAPI().registry is None
    assert "service registry" not in FlyerAPI().lifecycle.names


def test_a_service_name_no_key_can_hold_is_refused_at_build(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("flyer_registry_enabled", "1")
    with pytest.raises(SettingsError, match="set flyer_registry_service"):
        FlyerAPI(title="订单服务")
    monkeypatch.setenv("flyer_registry_service", "orders")
    assert FlyerAPI(title="订单服务").registry is not None


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_client_calls_two_instances_by_name_and_fails_over_when_one_is_killed(
        tmp_path: Path, project: Path, etcd: Any, namespace: str,
        asynchronous: bool) -> None:
    # The whole chain as users run it: two `fastflyer run` instances register themselves,
    # a FastKit client calls the service by its name, round-robin, and keeps answering
    # when one instance is killed (its connections refused, then its key gone).
    import asyncio

    from fastkit.registry import ServiceDirectory

    env = env_with(tmp_path, etcd, namespace, flyer_host="127.0.0.1")
    logs = [tmp_path / "one.log", tmp_path / "two.log"]
    directory = ServiceDirectory(EtcdClient(etcd.url), namespace, refresh=1)

    def call(count: int) -> list[int]:
        """``count`` calls of the service by name; how many each instance served (its
        access log's lines)."""
        before = [log.read_text().count('"path":"/flyer/demo"') for log in logs]

        async def calls() -> list[int]:
            async with directory.async_client("shop") as client:
                return [(await client.get("/flyer/demo", params={"id": 1})).status_code
                        for _ in range(count)]

        if asynchronous:
            statuses = asyncio.run(calls())
        else:
            with directory.client("shop") as client:
                statuses = [client.get("/flyer/demo", params={"id": 1}).status_code
                            for _ in range(count)]
        assert statuses == [200] * count

        def served() -> list[int]:
            return [log.read_text().count('"path":"/flyer/demo"') - already
                    for log, already in zip(logs, before, strict=True)]

        # An access line is written as its answer ends: it may trail the answer a little.
        wait_for(lambda: sum(served()) == count, timeout=10, what="the access lines")
        return served()

    try:
        with serving(["run"], project, env, logs[0]) as (first, first_port), \
                serving(["run"], project, env, logs[1]) as (_, second_port):
            wait_for(lambda: len(directory.instances("shop")) == 2, timeout=60,
                     what="both instances registered")
            assert call(6) == [3, 3]  # round-robin: each instance in turn
            os.killpg(first.pid, signal.SIGKILL)  # no withdraw: its key stays until its TTL
            first.wait(timeout=30)
            assert not accepts(first_port)
            assert call(6) == [0, 6]  # a refused connection is retried on the other
            wait_for(lambda: [i.port for i in directory.instances("shop")] == [second_port],
                     timeout=TTL + EXPIRY_SLACK + 5, what="the killed instance's key gone")
            assert call(3) == [0, 3]
    finally:
        directory.close()
