"""Every ``flyer_*`` setting changes something one can observe: none is accepted and ignored.

:data:`EFFECTS` holds one check per field of :class:`~fastflyer.settings.FlyerSettings`; a
field added without one fails :func:`test_every_setting_has_a_check`. Each check sets its
variable to a value other than the default and observes what that changes, through the
framework's public objects: the demo project's app (``tests/fastflyer/demo_project``) and
its answers through the test client with the lifespan run, the launchers' options
(:func:`~fastflyer.launch.gunicorn_options`, :class:`~fastflyer.server.FlyerServer`), the
``fastflyer`` command, the access log, the readiness report against the machine's Redis and
MariaDB and a real Kafka-protocol broker (tansu), the config center in a real etcd
(what it writes in ``os.environ`` is undone after each read), and the service registry in
it (the key the app's lifespan registers, its record and lease, and the heartbeat's
warnings; each check in a namespace of its own). Where the server's answer
cannot tell (a password sent to a Redis that asks for none, SASL credentials a broker
refuses), a TCP relay in front of the real server shows what the client sends it. Where
the default is cheap to observe too, the check compares the two. Validation is tested in
``test_settings.py``.

A fresh Python process is used only where the effect is fixed when the process starts (the
loguru sinks, OpenTelemetry's global tracer provider) or where a broken setting would make
the command serve instead of failing (``flyer_port``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from fastapi.routing import iter_route_contexts
from starlette.testclient import TestClient

from fastflyer import FlyerAPI
from fastflyer.cli import main as fastflyer_command
from fastflyer.config_center import ConfigCenterUnavailable
from fastflyer.cpus import usable_cpus
from fastflyer.http_limits import http_protocol
from fastflyer.launch import gunicorn_options, listen
from fastflyer.server import FlyerServer
from fastflyer.settings import FlyerSettings, load_settings
from waiting import wait_for

from conftest import DEMO

MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
ORIGIN = "https://shop.example"
DOCUMENTATION_NET = "192.0.2.1"  # TEST-NET-1 (RFC 5737): never an address of this machine
SUBPROCESS_TIMEOUT = 20  # seconds; a check whose setting broke fails instead of hanging


@dataclass
class Setting:
    """What a check works with: the test's environment (``flyer_*`` variables), its
    temporary directory, and the demo project's app built from that environment."""

    monkeypatch: pytest.MonkeyPatch
    tmp_path: Path
    request: pytest.FixtureRequest
    builder: Callable[..., FlyerAPI]

    def set(self, **env: object) -> None:
        """Set ``flyer_<name>=value`` for each keyword."""
        for name, value in env.items():
            self.monkeypatch.setenv(f"flyer_{name}", str(value))

    def unset(self, *names: str) -> None:
        for name in names:
            self.monkeypatch.delenv(f"flyer_{name}", raising=False)

    def build(self, **env: object) -> FlyerAPI:
        """The demo project's app, built with ``flyer_<name>=value`` for each keyword."""
        self.set(**env)
        return self.builder()

    def settings(self, **env: object) -> FlyerSettings:
        self.set(**env)
        return load_settings()

    def fixture(self, name: str) -> Any:
        return self.request.getfixturevalue(name)


def serve(app: FlyerAPI, **options: Any) -> TestClient:
    """A test client running ``app``'s lifespan (use it in a ``with``)."""
    return TestClient(app, raise_server_exceptions=False, **options)


def readiness(app: FlyerAPI) -> dict[str, Any]:
    """The components of ``app``'s readiness report, by name."""
    with serve(app) as client:
        components: dict[str, Any] = client.get("/health_check/ready").json()["data"][
            "components"]
    return components


def options(setting: Setting, **env: object) -> dict[str, Any]:
    """gunicorn's options for the environment with ``env`` set."""
    return gunicorn_options(setting.settings(**env), DEMO)


def drain(settings: FlyerSettings) -> float:
    """The drain the server of ``fastflyer run`` and of each worker gets (uvicorn's
    ``timeout_graceful_shutdown``)."""
    config = uvicorn.Config("main:app", log_config=None)
    return float(FlyerServer(config, settings).config.timeout_graceful_shutdown or 0)


@contextlib.contextmanager
def busy_port() -> Iterator[int]:
    """A port of 127.0.0.1 that a listening socket holds while the block runs."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock.getsockname()[1]


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port of 127.0.0.1 bound but not listening: a connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def command(*argv: str) -> tuple[int, str]:
    """The ``fastflyer`` command run in this process: its status and standard error."""
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        status = fastflyer_command(list(argv))
    return status, errors.getvalue()


def python(code: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter in ``cwd`` with this test's environment."""
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=dict(os.environ),
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
                          check=False)


def access_lines(setting: Setting, path: Path, calls: Callable[[TestClient], None],
                 **client: Any) -> list[dict[str, Any]]:
    """The access lines ``calls`` leave in ``path`` (closed with the lifespan)."""
    with serve(setting.build(), **client) as test_client:
        calls(test_client)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class Relay:
    """A TCP relay on 127.0.0.1 (port 0) to a real server, keeping the bytes each way
    unchanged: what a client really sends the server, and what the server answers."""

    def __init__(self, servers: str) -> None:
        host, _, port = servers.rpartition(":")
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.sent = bytearray()  # client to server
        self.received = bytearray()  # server to client
        self.lock = threading.Lock()
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            server = socket.create_connection(self.target, timeout=5)
            server.settimeout(None)
            self.connections += [client, server]
            for source, sink, kept in ((client, server, self.sent),
                                       (server, client, self.received)):
                threading.Thread(target=self._pump, args=(source, sink, kept),
                                 name="relay pump", daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, kept: bytearray) -> None:
        try:
            while data := source.recv(65536):
                with self.lock:
                    kept += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for connection in self.connections:
            connection.close()


@contextlib.contextmanager
def relayed(servers: str) -> Iterator[Relay]:
    relay = Relay(servers)
    try:
        yield relay
    finally:
        relay.close()


# --- the server and its launchers -------------------------------------------------------

def check_host(setting: Setting) -> None:
    # The port is taken on 127.0.0.1: a command that ignored flyer_host (0.0.0.0) fails on
    # the port instead, never serves.
    with busy_port() as port:
        _, default = command("run", "--app-dir", str(DEMO), "--port", str(port))
        setting.set(host=DOCUMENTATION_NET)
        status, error = command("run", "--app-dir", str(DEMO), "--port", str(port))
    assert f"cannot listen on 0.0.0.0:{port}: port {port} is already in use" in default
    assert status == 1
    assert (f"cannot listen on {DOCUMENTATION_NET}:{port}: {DOCUMENTATION_NET} is not an "
            "address of this machine") in error


def check_port(setting: Setting) -> None:
    # A project that cannot be served, in a fresh process: if flyer_port were ignored, the
    # command would bind 8080 and stop at the app, not serve.
    project = setting.tmp_path / "unservable"
    project.mkdir()
    (project / "main.py").write_text("raise RuntimeError('not to be served')\n")
    with busy_port() as port:
        setting.set(host="127.0.0.1", port=port)
        done = python("from fastflyer.cli import main; raise SystemExit(main())", project,
                      "run", "--app-dir", str(project))
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}: port {port} is already in use" in done.stderr
    assert gunicorn_options(load_settings(), DEMO)["bind"] == [f"127.0.0.1:{port}"]


def check_reload(setting: Setting) -> None:
    default = drain(load_settings())
    setting.set(reload=1)
    assert (default, drain(load_settings())) == (30.0, 1.0)  # a reload after an edit is quick
    # The port is taken: a serve that went on would fail on it, not serve.
    with busy_port() as port:
        status, error = command("serve", "--app-dir", str(DEMO), "--host", "127.0.0.1",
                                "--port", str(port))
    assert status == 1
    assert error.count("\n") == 1 and "flyer_reload=1" in error and "never reloads" in error


def check_workers(setting: Setting) -> None:
    assert options(setting)["workers"] == usable_cpus()
    assert options(setting, workers=usable_cpus() + 1)["workers"] == usable_cpus() + 1


def check_threads(setting: Setting) -> None:
    def pool_size(app: FlyerAPI) -> int:
        with serve(app) as client:  # the limiter of the server's event loop
            return int(client.get("/flyer/errors/held", params={"key": "threads"})
                       .json()["data"]["threads"])

    assert pool_size(setting.build()) == 5
    assert pool_size(setting.build(threads=7)) == 7


def check_worker_connections(setting: Setting) -> None:
    def while_a_websocket_is_open(app: FlyerAPI) -> tuple[int, str | None]:
        with serve(app) as client, client.websocket_connect("/flyer/errors/echo") as socket_:
            socket_.send_text("x")
            assert socket_.receive_text() == "x"
            answer = client.get("/flyer/demo", params={"id": 1})
        return answer.status_code, answer.headers.get("retry-after")

    assert while_a_websocket_is_open(setting.build()) == (200, None)
    assert while_a_websocket_is_open(setting.build(worker_connections=1)) == (503, "1")


def check_enable_max_requests(setting: Setting) -> None:
    setting.set(max_requests=500, max_requests_jitter=50)
    off = options(setting)
    on = options(setting, enable_max_requests=1)
    assert (off["max_requests"], off["max_requests_jitter"]) == (0, 0)
    assert (on["max_requests"], on["max_requests_jitter"]) == (500, 50)


def check_max_requests(setting: Setting) -> None:
    setting.set(enable_max_requests=1)
    assert options(setting)["max_requests"] == 0
    assert options(setting, max_requests=500)["max_requests"] == 500


def check_max_requests_jitter(setting: Setting) -> None:
    setting.set(enable_max_requests=1, max_requests=500)
    assert options(setting)["max_requests_jitter"] == 0
    assert options(setting, max_requests_jitter=50)["max_requests_jitter"] == 50


def check_timeout(setting: Setting) -> None:
    assert options(setting)["timeout"] == 60
    assert options(setting, timeout=7.5)["timeout"] == 8  # gunicorn takes whole seconds


def check_graceful_timeout(setting: Setting) -> None:
    default_drain, default_kill = drain(load_settings()), options(setting)["graceful_timeout"]
    settings = setting.settings(graceful_timeout=2.5)
    assert (default_drain, drain(settings)) == (30.0, 2.5)
    assert settings.drain_timeout == 2.5
    # gunicorn kills a worker after the whole stop budget: drain, stop hooks, margin, 1 s.
    assert default_kill == math.ceil(30 + 10 + 2) + 1
    assert options(setting)["graceful_timeout"] == math.ceil(2.5 + 10 + 2) + 1


def check_shutdown_timeout(setting: Setting) -> None:
    app = setting.build(shutdown_timeout=0.3)

    async def stuck() -> None:
        await asyncio.Event().wait()  # never set: only the timeout ends this stop hook

    app.lifecycle.add("stuck", stop=stuck)
    with serve(app):
        pass
    assert app.lifecycle.stop_problems == [
        "shutdown of stuck did not finish within flyer_shutdown_timeout (0.3 s); going on"]
    assert options(setting)["graceful_timeout"] == math.ceil(30 + 0.3 + 2) + 1
    assert load_settings().stop_budget == 30 + 0.3 + 2


def check_keepalive(setting: Setting) -> None:
    assert options(setting)["keepalive"] == 5
    assert options(setting, keepalive=12)["keepalive"] == 12


# --- logs ---------------------------------------------------------------------------------

# What a process logs at three levels, through FastKit's logger, once logging is set up from
# the settings as a FastFlyer app and the command do it.
LOG_LINES = ("from fastflyer.settings import load_settings\n"
             "from fastkit.logging import configure, logger\n"
             "configure(load_settings().log_settings())\n"
             "for level in ('DEBUG', 'INFO', 'ERROR'):\n"
             "    logger.log(level, f'effect-{level.lower()}')\n")


def check_console_log_level(setting: Setting) -> None:
    default = python(LOG_LINES, setting.tmp_path)
    assert "effect-info" in default.stderr and "effect-debug" not in default.stderr
    setting.set(console_log_level="error")
    quiet = python(LOG_LINES, setting.tmp_path)
    assert "effect-error" in quiet.stderr and "effect-info" not in quiet.stderr
    assert options(setting)["loglevel"] == "error"  # gunicorn's and uvicorn's own lines


def check_file_log_level(setting: Setting) -> None:
    log_dir = setting.tmp_path / "file-level"
    setting.set(log_path=log_dir)
    log_file = log_dir / "fastkit.log"
    python(LOG_LINES, setting.tmp_path)
    default = log_file.read_text()
    assert "effect-info" in default and "effect-debug" not in default
    log_file.unlink()
    setting.set(file_log_level="debug")
    python(LOG_LINES, setting.tmp_path)
    assert "effect-debug" in log_file.read_text()


def check_log_path(setting: Setting) -> None:
    setting.unset("log_path")
    python(LOG_LINES, setting.tmp_path)
    assert "effect-info" in (setting.tmp_path / "logs" / "fastkit.log").read_text()
    chosen = setting.tmp_path / "elsewhere"
    setting.set(log_path=chosen)
    python(LOG_LINES, setting.tmp_path)
    assert "effect-info" in (chosen / "fastkit.log").read_text()


def check_log_to_file(setting: Setting) -> None:
    setting.set(log_path=setting.tmp_path / "to-file")
    python(LOG_LINES, setting.tmp_path)
    assert "effect-info" in (setting.tmp_path / "to-file" / "fastkit.log").read_text()
    setting.set(log_path=setting.tmp_path / "console-only", log_to_file=0)
    console = python(LOG_LINES, setting.tmp_path).stderr
    assert "effect-info" in console
    assert not (setting.tmp_path / "console-only").exists()


def check_log_json(setting: Setting) -> None:
    setting.set(log_path=setting.tmp_path / "text")
    python(LOG_LINES, setting.tmp_path)
    assert "| INFO" in (setting.tmp_path / "text" / "fastkit.log").read_text()
    setting.set(log_path=setting.tmp_path / "json", log_json=1)
    console = python(LOG_LINES, setting.tmp_path).stderr
    lines = (setting.tmp_path / "json" / "fastkit.log").read_text().splitlines()
    assert json.loads(lines[0])["record"]["message"] == "effect-info"
    assert json.loads(console.splitlines()[0])["record"]["message"] == "effect-info"


def check_access_log(setting: Setting) -> None:
    path = setting.tmp_path / "access.log"
    setting.set(access_logfile=path)

    def call(client: TestClient) -> None:
        client.get("/flyer/demo", params={"id": 1})

    assert access_lines(setting, path, call) == []  # flyer_access_log=0 (the test's)
    setting.set(access_log=1)
    assert [line["path"] for line in access_lines(setting, path, call)] == ["/flyer/demo"]


def check_access_logfile(setting: Setting) -> None:
    capture = setting.fixture("capfd")
    setting.set(access_log=1)
    with serve(setting.build()) as client:
        client.get("/flyer/demo", params={"id": 1})
    assert '"path":"/flyer/demo"' in capture.readouterr().out  # the default, -: the console
    path = setting.tmp_path / "access" / "requests.log"
    setting.set(access_logfile=path)
    with serve(setting.build()) as client:
        client.get("/flyer/demo", params={"id": 2})
    assert '"path":"/flyer/demo"' not in capture.readouterr().out
    assert json.loads(path.read_text())["query"] == "id=2"


def check_access_log_exclude_uris(setting: Setting) -> None:
    path = setting.tmp_path / "access.log"
    setting.set(access_log=1, access_logfile=path, access_log_exclude_uris="/flyer/demo")

    def calls(client: TestClient) -> None:
        client.get("/flyer/demo", params={"id": 1})
        client.get("/flyer/errors/missing")

    assert [line["path"] for line in access_lines(setting, path, calls)] == [
        "/flyer/errors/missing"]


# --- Log shipping (a real rsyslogd) ---------------------------------------------------------

# Configures logging from the environment, logs argv[1], and exits: the shipper sends what
# it holds at exit.
SHIP_LINE = ("import sys\n"
             "from fastflyer.settings import load_settings\n"
             "from fastkit.logging import configure, logger\n"
             "configure(load_settings().log_settings())\n"
             "logger.info(sys.argv[1])\n")




def ship(setting: Setting, **env: object) -> tuple[str, subprocess.CompletedProcess[str]]:
    """Log one line from a fresh process with ``flyer_<name>=value`` for each keyword
    (shipping on, to the collector's TCP port unless ``env`` says otherwise; None: unset):
    its text, and the process."""
    server = setting.fixture("rsyslog")
    env = {"log_ship_enabled": 1, "log_ship_host": "127.0.0.1", "log_ship_proto": "tcp",
           "log_ship_port": server.tcp_port, **env}
    setting.unset(*(name for name, value in env.items() if value is None))
    setting.set(**{name: value for name, value in env.items() if value is not None})
    marker = f"effect-ship-{uuid.uuid4().hex}"
    return marker, python(SHIP_LINE, setting.tmp_path, marker)


def shipped(setting: Setting, marker: str) -> dict[str, Any]:
    """The syslog message (rsyslogd's fields) carrying the line ``marker``."""
    server = setting.fixture("rsyslog")
    return dict(server.wait_for_messages(1, lambda m: marker in m["msg"])[0])


def check_log_ship_enabled(setting: Setting) -> None:
    server = setting.fixture("rsyslog")
    off, _ = ship(setting, log_ship_enabled=0)
    on, _ = ship(setting)
    assert json.loads(shipped(setting, on)["msg"])["message"] == on
    # the process logging "off" had ended before the one logging "on" started
    assert not any(off in m["msg"] for m in server.messages())


def check_log_ship_proto(setting: Setting) -> None:
    server = setting.fixture("rsyslog")
    tcp, _ = ship(setting)
    assert shipped(setting, tcp)["input"] == "imtcp"
    udp, _ = ship(setting, log_ship_proto=None, log_ship_port=server.udp_port)  # default
    assert shipped(setting, udp)["input"] == "imudp"
    dev, process = ship(setting, log_ship_proto="dev")
    assert any(line.startswith("<134>1 ") and dev in line
               for line in process.stderr.splitlines())
    assert not any(dev in m["msg"] for m in server.messages())


def check_log_ship_host(setting: Setting) -> None:
    marker, _ = ship(setting, log_ship_host="localhost")
    assert shipped(setting, marker)["from"] == "127.0.0.1"
    _, process = ship(setting, log_ship_host=None)
    assert process.returncode != 0
    assert "flyer_log_ship_enabled='1' needs flyer_log_ship_host" in process.stderr


def check_log_ship_port(setting: Setting) -> None:
    server = setting.fixture("rsyslog")
    marker, _ = ship(setting, log_ship_proto="udp", log_ship_port=server.udp_port)
    assert shipped(setting, marker)["input"] == "imudp"
    with closed_port() as port:  # nothing listens there: the line is not received
        lost, process = ship(setting, log_ship_port=port)
    assert process.returncode == 0 and "log shipping to tcp://127.0.0.1" in process.stderr
    assert not any(lost in m["msg"] for m in server.messages())


def check_log_ship_topic(setting: Setting) -> None:
    default, _ = ship(setting)
    assert shipped(setting, default)["app_name"] == "fastflyer"
    chosen, _ = ship(setting, log_ship_topic="orders-topic")
    assert shipped(setting, chosen)["app_name"] == "orders-topic"


def check_log_ship_my_ip(setting: Setting) -> None:
    from fastkit.utils.net import routable_host

    default, _ = ship(setting)
    assert shipped(setting, default)["hostname"] == routable_host()
    chosen, _ = ship(setting, log_ship_my_ip="10.77.0.9")
    assert shipped(setting, chosen)["hostname"] == "10.77.0.9"


def check_trusted_proxies(setting: Setting) -> None:
    path = setting.tmp_path / "access.log"
    setting.set(access_log=1, access_logfile=path)

    def call(client: TestClient) -> None:
        client.get("/flyer/demo", params={"id": 1}, headers={"X-Forwarded-For": "203.0.113.9"})

    proxy = ("10.0.0.1", 40000)
    assert [line["client_ip"] for line in access_lines(setting, path, call, client=proxy)] \
        == ["10.0.0.1"]
    path.unlink()
    setting.set(trusted_proxies="10.0.0.1")
    assert [line["client_ip"] for line in access_lines(setting, path, call, client=proxy)] \
        == ["203.0.113.9"]


# --- what the app answers -----------------------------------------------------------------

def check_base_url(setting: Setting) -> None:
    with serve(setting.build(base_url="/api/v2")) as client:
        assert client.get("/api/v2/demo", params={"id": 1}).json()["data"] == {"itemId": 1}
        assert client.get("/flyer/demo", params={"id": 1}).status_code == 404
        assert client.get("/api/v2/docs").status_code == 200


def check_version(setting: Setting) -> None:
    def version(app: FlyerAPI) -> str:
        with serve(app) as client:
            return str(client.get(f"{app.base_url}/openapi.json").json()["info"]["version"])

    assert (version(setting.build()), version(setting.build(version="v9"))) == ("v1", "v9")


def check_docs_enabled(setting: Setting) -> None:
    def docs(app: FlyerAPI) -> list[int]:
        with serve(app) as client:
            return [client.get(f"/flyer/{page}").status_code
                    for page in ("docs", "redoc", "openapi.json")]

    assert docs(setting.build()) == [200, 200, 200]
    assert docs(setting.build(docs_enabled=0)) == [404, 404, 404]


def demo_counted(text: str) -> bool:
    """Whether a metrics text holds the demo route's request count."""
    return 'http_server_requests_total{method="GET",route="/flyer/demo",status="200"}' in text


def check_metrics_enabled(setting: Setting) -> None:
    # On by default: /metrics counts the demo route. Off: no route, and under serve no
    # multiprocess directory (tests/fastflyer/test_metrics_prometheus.py).
    with serve(setting.build()) as client:
        assert client.get("/flyer/demo", params={"id": 1}).status_code == 200
        assert demo_counted(client.get("/metrics").text)
    with serve(setting.build(metrics_enabled=0)) as client:
        assert client.get("/flyer/demo", params={"id": 1}).status_code == 200
        assert client.get("/metrics").status_code == 404


def check_metrics_path(setting: Setting) -> None:
    with serve(setting.build(metrics_path="/internal/prometheus")) as client:
        assert client.get("/flyer/demo", params={"id": 1}).status_code == 200
        assert client.get("/metrics").status_code == 404
        assert demo_counted(client.get("/internal/prometheus").text)


def check_auth_enable(setting: Setting) -> None:
    with serve(setting.build()) as client:
        assert client.get("/flyer/demo", params={"id": 1}).status_code == 200
    with serve(setting.build(auth_enable=1, auth_user="ann", auth_pass="s3cret")) as client:
        refused = client.get("/flyer/demo", params={"id": 1})
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith(
            "Basic")
        assert client.get("/flyer/demo", params={"id": 1},
                          auth=("ann", "s3cret")).status_code == 200


def check_auth_user(setting: Setting) -> None:
    setting.set(auth_enable=1, auth_pass="s3cret")
    with serve(setting.build(auth_user="ann")) as client:
        assert client.get("/flyer/demo", params={"id": 1}, auth=("ann", "s3cret")).status_code \
            == 200
    with serve(setting.build(auth_user="bob")) as client:
        assert client.get("/flyer/demo", params={"id": 1}, auth=("ann", "s3cret")).status_code \
            == 401


def check_auth_pass(setting: Setting) -> None:
    setting.set(auth_enable=1, auth_user="ann")
    with serve(setting.build(auth_pass="s3cret")) as client:
        assert client.get("/flyer/demo", params={"id": 1}, auth=("ann", "s3cret")).status_code \
            == 200
    with serve(setting.build(auth_pass="other")) as client:
        assert client.get("/flyer/demo", params={"id": 1}, auth=("ann", "s3cret")).status_code \
            == 401


def check_task_api_open(setting: Setting) -> None:
    def tasks(app: FlyerAPI) -> tuple[int, int]:
        with serve(app) as client:
            listed = client.get("/flyer/tasks")
            removed = client.delete("/flyer/tasks/background/no-such-job")
        return listed.status_code, removed.status_code

    assert tasks(setting.build()) == (403, 403)  # closed by default, listings too
    assert tasks(setting.build(task_api_open=1)) == (200, 404)


def check_always_http_200(setting: Setting) -> None:
    def missing(app: FlyerAPI) -> tuple[int, int]:
        with serve(app) as client:
            answer = client.get("/flyer/errors/missing")
        return answer.status_code, answer.json()["code"]

    assert missing(setting.build()) == (404, 404)
    assert missing(setting.build(always_http_200=1)) == (200, 404)


def preflight(app: FlyerAPI, method: str = "GET", headers: str = "") -> Any:
    """A CORS preflight from :data:`ORIGIN` for ``method`` and ``headers``."""
    asked = {"Origin": ORIGIN, "Access-Control-Request-Method": method}
    if headers:
        asked["Access-Control-Request-Headers"] = headers
    with serve(app) as client:
        return client.options("/flyer/demo", headers=asked)


def check_cors_origins(setting: Setting) -> None:
    def allowed(app: FlyerAPI) -> str | None:
        with serve(app) as client:
            answer = client.get("/flyer/demo", params={"id": 1}, headers={"Origin": ORIGIN})
        origin: str | None = answer.headers.get("access-control-allow-origin")
        return origin

    assert allowed(setting.build()) is None
    assert allowed(setting.build(cors_origins=ORIGIN)) == ORIGIN


def check_cors_allow_credentials(setting: Setting) -> None:
    setting.set(cors_origins=ORIGIN)
    assert "access-control-allow-credentials" not in preflight(setting.build()).headers
    answer = preflight(setting.build(cors_allow_credentials=1))
    assert answer.headers["access-control-allow-credentials"] == "true"


def check_cors_methods(setting: Setting) -> None:
    setting.set(cors_origins=ORIGIN)
    assert preflight(setting.build(), "PUT").status_code == 200
    refused = preflight(setting.build(cors_methods="GET,POST"), "PUT")
    assert refused.status_code == 400 and "method" in refused.text.lower()


def check_cors_headers(setting: Setting) -> None:
    setting.set(cors_origins=ORIGIN)
    assert preflight(setting.build(), headers="X-Trace").status_code == 200
    refused = preflight(setting.build(cors_headers="X-Other"), headers="X-Trace")
    assert refused.status_code == 400 and "headers" in refused.text.lower()


def check_gzip_min_size(setting: Setting) -> None:
    def encodings(app: FlyerAPI) -> list[str | None]:
        with serve(app) as client:  # a schema of ~20 KB, then an answer of ~50 bytes
            return [client.get(path, headers={"Accept-Encoding": "gzip"})
                    .headers.get("content-encoding")
                    for path in ("/flyer/openapi.json", "/flyer/demo?id=1")]

    assert encodings(setting.build()) == [None, None]
    assert encodings(setting.build(gzip_min_size=1000)) == ["gzip", None]


def check_max_body_size(setting: Setting) -> None:
    body = {"name": "ann", "age": 7, "padding": "x" * 2000}  # the extra field is ignored

    def post(app: FlyerAPI) -> int:
        with serve(app) as client:
            return int(client.post("/flyer/users", json=body).status_code)

    assert post(setting.build()) == 201
    assert post(setting.build(max_body_size=1000)) == 413


@contextlib.contextmanager
def limited_server(settings: FlyerSettings) -> Iterator[tuple[str, int]]:
    """A real uvicorn server with :func:`~fastflyer.http_limits.http_protocol` for
    ``settings`` on 127.0.0.1 port 0, in a thread, serving an app that reads the whole body
    and answers 200 ``ok``; its address."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        while message["type"] == "http.request" and message.get("more_body"):
            message = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    with served(app, http=http_protocol(settings), lifespan="off") as address:
        yield address


@contextlib.contextmanager
def served(app: Any, **options: Any) -> Iterator[tuple[str, int]]:
    """``app`` served by a real uvicorn server (``uvicorn.Config`` ``options``) on
    127.0.0.1 port 0, in a thread; its address."""
    config = uvicorn.Config(app, log_config=None, log_level="critical", **options)
    server = uvicorn.Server(config)
    sock = listen("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + SUBPROCESS_TIMEOUT
        while not server.started:  # polled, to the deadline
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        yield sock.getsockname()[:2]
    finally:
        server.should_exit = True
        thread.join(SUBPROCESS_TIMEOUT)
        sock.close()


def head_answers(settings: FlyerSettings, *heads: bytes) -> list[int]:
    """The statuses :func:`limited_server` for ``settings`` answers to a GET with each of
    ``heads`` (the request target and header lines after ``GET``)."""
    statuses = []
    with limited_server(settings) as address:
        for head in heads:
            with socket.create_connection(address, timeout=10) as client:
                client.sendall(b"GET " + head + b"\r\nConnection: close\r\n\r\n")
                statuses.append(int(client.recv(4096).split(b" ", 2)[1]))
    return statuses


def check_max_url_length(setting: Setting) -> None:
    head = b"/" + b"a" * 300 + b" HTTP/1.1\r\nHost: x"
    assert head_answers(setting.settings(), head) == [200]
    assert head_answers(setting.settings(max_url_length=200), head) == [414]


def check_max_header_field_size(setting: Setting) -> None:
    head = b"/ HTTP/1.1\r\nHost: x\r\nX-Field: " + b"v" * 1000
    assert head_answers(setting.settings(), head) == [200]
    assert head_answers(setting.settings(max_header_field_size=500), head) == [431]


def check_max_header_size(setting: Setting) -> None:
    head = b"/ HTTP/1.1\r\nHost: x" + b"".join(b"\r\nX-F%d: %s" % (n, b"v" * 100)
                                                for n in range(20))  # ~2.3 KB
    assert head_answers(setting.settings(), head) == [200]
    assert head_answers(setting.settings(max_header_size=1000), head) == [431]


def check_max_headers(setting: Setting) -> None:
    head = b"/ HTTP/1.1\r\nHost: x" + b"".join(b"\r\nX-F%d: 1" % n for n in range(20))
    assert head_answers(setting.settings(), head) == [200]
    assert head_answers(setting.settings(max_headers=10), head) == [431]


def stalled_body_answer(settings: FlyerSettings, wait: float) -> bytes:
    """What :func:`limited_server` for ``settings`` sends within ``wait`` seconds to a POST
    declaring 100 body bytes and sending 2 (until it closes, or ``b""`` when nothing came)."""
    received = b""
    with limited_server(settings) as address, \
            socket.create_connection(address, timeout=10) as client:
        client.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}")
        client.settimeout(wait)
        with contextlib.suppress(TimeoutError):
            while chunk := client.recv(4096):
                received += chunk
    return received


def check_body_timeout(setting: Setting) -> None:
    assert stalled_body_answer(setting.settings(), wait=1.5) == b""  # still waiting (30 s)
    answer = stalled_body_answer(setting.settings(body_timeout=0.5), wait=10)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert answer.endswith(b'{"code":408,"message":"Request body not received within 0.5 s"}')


def stalled_head_answer(settings: FlyerSettings, wait: float) -> bytes:
    """What :func:`limited_server` for ``settings`` sends within ``wait`` seconds to a GET
    whose head stops after its first header line (until it closes, or ``b""``)."""
    received = b""
    with limited_server(settings) as address, \
            socket.create_connection(address, timeout=10) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        client.settimeout(wait)
        with contextlib.suppress(TimeoutError):
            while chunk := client.recv(4096):
                received += chunk
    return received


def check_header_timeout(setting: Setting) -> None:
    assert stalled_head_answer(setting.settings(), wait=1.5) == b""  # still waiting (10 s)
    answer = stalled_head_answer(setting.settings(header_timeout=0.5), wait=10)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert answer.endswith(b'{"code":408,"message":"Request head not received within 0.5 s"}')


def check_fast_path(setting: Setting) -> None:
    def planned(app: FlyerAPI) -> bool:
        with serve(app) as client:
            assert client.get("/flyer/demo", params={"id": 1}).status_code == 200
        route = next(r for r in iter_route_contexts(app.router.routes)
                     if getattr(r, "path", None) == "/flyer/demo")
        return getattr(route.original_route, "planned", False)

    assert planned(setting.build())
    assert not planned(setting.build(fast_path=0))


# A global tracer provider, written on OpenTelemetry's API alone (no SDK needed), that
# records the names of the spans started; then the span names of one request to the demo
# app built from the environment, and to one built with the setting's default, and whether
# FastKit's tracing was on while each served (the lifespan keeps the provider set here).
SPANS = """
import contextlib, json, sys
from opentelemetry import trace
from starlette.testclient import TestClient
from fastflyer import FlyerAPI
from fastflyer.settings import load_settings

names = []

class Tracer(trace.Tracer):
    def start_span(self, name, *args, **kwargs):
        names.append(name)
        return trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)

    @contextlib.contextmanager
    def start_as_current_span(self, name, *args, **kwargs):
        with trace.use_span(self.start_span(name), end_on_exit=True) as span:
            yield span

class Provider(trace.TracerProvider):
    def get_tracer(self, *args, **kwargs):
        return Tracer()

trace.set_tracer_provider(Provider())

def spans(settings):
    from fastkit import tracing

    names.clear()
    with TestClient(FlyerAPI(app_path=sys.argv[1], settings=settings)) as client:
        assert client.get("/flyer/demo", params={"id": 1}).status_code == 200
        names.append(f"fastkit tracing {tracing.enabled()}")
    return list(names)

print(json.dumps({"set": spans(load_settings()),
                  "default": spans(load_settings(opentelemetry_enabled=False))}))
"""


def check_opentelemetry_enabled(setting: Setting) -> None:
    setting.set(opentelemetry_enabled=1)
    done = python(SPANS, setting.tmp_path, str(DEMO))
    assert done.returncode == 0, done.stderr
    spans = json.loads(done.stdout.splitlines()[-1])
    # FastAPI names the server span after the method (and renames it to the route on
    # spans that record, which these do not); its operation spans (one per step of the
    # handler) are off (fastflyer.tracing).
    assert spans == {"set": ["GET", "fastkit tracing True"],
                     "default": ["fastkit tracing False"]}


# --- data components ------------------------------------------------------------------------

def check_redis_host(setting: Setting) -> None:
    assert "redis" not in readiness(setting.build())
    assert readiness(setting.build(redis_host="127.0.0.1"))["redis"]["status"] == "up"


def check_redis_port(setting: Setting) -> None:
    setting.set(redis_host="127.0.0.1")
    assert readiness(setting.build())["redis"]["status"] == "up"  # 6379
    with closed_port() as port:
        down = readiness(setting.build(redis_port=port))["redis"]
    assert down["status"] == "down" and "Connection" in down["error"]


def check_redis_pass(setting: Setting) -> None:
    # The machine's Redis asks for no password, and redis-py takes its refusal of one as
    # no error: what the client sends it shows the password.
    with relayed("127.0.0.1:6379") as relay:
        setting.set(redis_host="127.0.0.1", redis_port=relay.address.rpartition(":")[2])
        assert readiness(setting.build())["redis"]["status"] == "up"
        assert b"AUTH" not in relay.sent
        assert readiness(setting.build(redis_pass="not-the-password"))["redis"]["status"] \
            == "up"
    assert b"AUTH" in relay.sent and b"not-the-password" in relay.sent


def check_redis_db(setting: Setting) -> None:
    from fastflyer.cache import default_redis

    key = f"test-every-setting:{uuid.uuid4().hex}"
    setting.build(redis_host="127.0.0.1", redis_db=7)  # the app's settings are the default's
    default_redis().set(key, "here", ex=60)
    try:
        assert redis.Redis(db=7).get(key) == b"here"
        assert redis.Redis(db=0).get(key) is None
    finally:
        redis.Redis(db=7).delete(key)


def check_db_url(setting: Setting) -> None:
    assert "database" not in readiness(setting.build())
    up = readiness(setting.build(db_url=MARIADB_URL))["database"]
    assert up["status"] == "up", up


def check_data_dir(setting: Setting) -> None:
    from fastflyer.database import data_dir, get_dataset_pool

    setting.build()  # the demo project is the one whose data directory holds the database
    assert data_dir() == DEMO.resolve() / "data"
    chosen = setting.tmp_path / "store"
    setting.build(data_dir=chosen)  # the app's settings name the default database
    database = get_dataset_pool()  # no arguments: the default database
    try:
        database["effects"].insert({"setting": "data_dir"})
    finally:
        database.close()
    assert (chosen / "fastflyer.sqlite3").is_file()


# --- Kafka ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def secured_broker() -> Iterator[Any]:
    """A tansu broker that requires SASL (SCRAM) and lets nobody in: enough for a client to
    show which mechanism, user name and password it authenticates with."""
    from kafka_broker import KafkaBroker

    class SecuredBroker(KafkaBroker):
        options = ("--authentication",)

    broker = SecuredBroker()
    broker.start()
    yield broker
    broker.stop()


def kafka_readiness(setting: Setting, servers: str, **env: object) -> dict[str, Any]:
    """Kafka's entry in the readiness report of the demo app, for ``servers`` and ``env``."""
    kafka: dict[str, Any] = readiness(setting.build(kafka_servers=servers, **env))["kafka"]
    return kafka


SASL = {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "svc",
        "kafka_sasl_password": "s3cret"}
# A SCRAM message field: printable ASCII but ','.
_FIELD = rb"[\x21-\x2b\x2d-\x7e]+"


def scram_proof_is_of(relay: Relay, password: str, hash_name: str = "sha256") -> bool:
    """Whether the SCRAM client proof the relay saw (RFC 5802) was computed from
    ``password`` (it is sent only as that proof)."""
    first = re.search(rb"n,,(n=[^,]*,r=" + _FIELD + rb")", relay.sent)
    server_first = re.search(rb"r=" + _FIELD + rb",s=[A-Za-z0-9+/=]+,i=\d+", relay.received)
    final = re.search(rb"(c=biws,r=" + _FIELD + rb"),p=([A-Za-z0-9+/=]+)", relay.sent)
    assert first and server_first and final, (bytes(relay.sent), bytes(relay.received))
    fields = dict(pair.split(b"=", 1) for pair in server_first[0].split(b","))
    salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), base64.b64decode(fields[b"s"]),
                                 int(fields[b"i"]))
    client_key = hmac.new(salted, b"Client Key", hash_name).digest()
    stored_key = hashlib.new(hash_name, client_key).digest()
    auth_message = first[1] + b"," + server_first[0] + b"," + final[1]
    signature = hmac.new(stored_key, auth_message, hash_name).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return base64.b64decode(final[2]) == proof


def check_kafka_servers(setting: Setting) -> None:
    broker = setting.fixture("broker")
    assert "kafka" not in readiness(setting.build())
    assert kafka_readiness(setting, broker.servers)["status"] == "up"


def check_kafka_security_protocol(setting: Setting) -> None:
    broker = setting.fixture("broker")  # plain text, no SASL
    setting.set(kafka_sasl_username="svc", kafka_sasl_password="s3cret")
    assert kafka_readiness(setting, broker.servers)["status"] == "up"
    assert kafka_readiness(setting, broker.servers,
                           kafka_security_protocol="SASL_PLAINTEXT")["status"] == "down"


def check_kafka_sasl_mechanism(setting: Setting) -> None:
    broker = setting.fixture("secured_broker")
    setting.set(**SASL)
    with relayed(broker.servers) as relay:
        assert kafka_readiness(setting, relay.address)["status"] == "down"  # nobody may in
    assert b"\x00\x05PLAIN" in relay.sent and b"SCRAM" not in relay.sent
    with relayed(broker.servers) as relay:
        kafka_readiness(setting, relay.address, kafka_sasl_mechanism="SCRAM-SHA-512")
    assert b"\x00\x0dSCRAM-SHA-512" in relay.sent and b"PLAIN" not in relay.sent
    assert scram_proof_is_of(relay, "s3cret", "sha512")


def check_kafka_sasl_username(setting: Setting) -> None:
    broker = setting.fixture("secured_broker")
    setting.set(**SASL, kafka_sasl_mechanism="SCRAM-SHA-256")
    with relayed(broker.servers) as relay:
        kafka_readiness(setting, relay.address, kafka_sasl_username="billing-svc")
    assert b"n,,n=billing-svc,r=" in relay.sent


def check_kafka_sasl_password(setting: Setting) -> None:
    broker = setting.fixture("secured_broker")
    setting.set(**SASL, kafka_sasl_mechanism="SCRAM-SHA-256")
    with relayed(broker.servers) as relay:
        kafka_readiness(setting, relay.address, kafka_sasl_password="another-s3cret")
    assert scram_proof_is_of(relay, "another-s3cret")
    assert not scram_proof_is_of(relay, "s3cret")


# --- schedulers and the service ------------------------------------------------------------

def check_lock_ttl(setting: Setting) -> None:
    from fastflyer.executor import lock_backend, lock_prefix, locks

    store = redis.Redis()
    setting.set(redis_host="127.0.0.1")

    def lock_expiry_ms(app: FlyerAPI) -> int:
        name = f"test-every-setting-{uuid.uuid4().hex[:12]}"
        base = f"{lock_prefix(app.service_name)}{{{name}}}"
        try:
            with serve(app), locks.held(name) as lease:  # the lifespan configures the locks
                assert lease is not None
                return int(store.pttl(f"{base}:run"))
        finally:
            store.delete(*(f"{base}:{part}" for part in ("run", "fence")))

    try:
        assert 20_000 < lock_expiry_ms(setting.build()) <= 30_000
        assert 250_000 < lock_expiry_ms(setting.build(lock_ttl=300)) <= 300_000
    finally:
        locks.configure(lock_backend, ttl=30.0)  # as it was before any app started


def check_service_name(setting: Setting) -> None:
    from fastflyer.executor import background_scheduler, lock_backend, locks
    from fastkit.executor import JobNotFound

    store = redis.Redis(decode_responses=True)
    name, job = f"test-every-setting-{uuid.uuid4().hex[:12]}", f"effect-{uuid.uuid4().hex[:8]}"
    lock_keys = [f"fastkit:lock:{name}:{{{job}}}:{part}" for part in ("run", "fence")]
    background_scheduler.add_job(print, "interval", hours=1, id=job)
    try:
        with serve(setting.build(redis_host="127.0.0.1", service_name=name,
                                 task_api_open=1)) as client:
            paused = client.post(f"/flyer/tasks/background/{job}/pause")
            with locks.held(job) as lease:
                assert lease is not None
                # The service's locks live under its name: other services never share them.
                assert store.get(lock_keys[0]) == lease.token
        assert paused.status_code == 200, paused.text
        # Recorded for the service under its name, where its other workers look.
        assert store.hgetall(f"fastflyer:{name}:tasks") == {f"background/{job}": "paused"}
    finally:
        with contextlib.suppress(JobNotFound):
            background_scheduler.remove_job(job)
        store.delete(f"fastflyer:{name}:tasks", *lock_keys)
        locks.configure(lock_backend, ttl=30.0)  # as it was before any app started


# --- the config center (etcd) ---------------------------------------------------------------

# The value the center holds for the checks' variable, and the environment's own.
CENTER_VALUE, ENVIRONMENT_VALUE = "from the center", "from the environment"
CENTER_PASSWORD = "Center-Pa55word"  # of the secured etcd's user ``orders``


@contextlib.contextmanager
def restored_environment() -> Iterator[None]:
    """``os.environ`` as it was before the block, after it: the config center writes the
    variables it reads (and the originals it replaced) there itself, which the test's
    monkeypatch knows nothing of; nothing it wrote may reach another check."""
    before = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(before)


def center_for(setting: Setting, endpoints: str, **segments: str) -> str:
    """Set the config center's variables but ``flyer_config_enabled``: ``endpoints``, a
    fresh app id, env ``prod`` and group ``default`` unless ``segments`` (``app_id``,
    ``env_name``, ``group_name``) say otherwise; its key prefix, ``/{app}/{env}/{group}/``."""
    names = {"app_id": f"effects-{uuid.uuid4().hex[:10]}", "env_name": "prod",
             "group_name": "default", **segments}
    setting.set(config_endpoints=endpoints, **{f"config_{name}": value
                                                for name, value in names.items()})
    return "/{app_id}/{env_name}/{group_name}/".format(**names)


def read_center(setting: Setting, **env: object) -> tuple[str | None, str]:
    """Build the demo app with the config center on and ``env``: what ``EFFECT`` is then
    (``os.environ``) and the app's version (``flyer_version``), with the environment as it
    was afterwards. Raises what building the app raises (``ConfigCenterUnavailable``)."""
    with restored_environment():
        app = setting.build(config_enabled=1, **env)
        with serve(app):  # its lifespan closes the center's client
            return os.environ.get("EFFECT"), app.version


def refusal(setting: Setting, **env: object) -> str:
    """The line building the demo app with the config center on and ``env`` stops with."""
    with restored_environment(), pytest.raises(ConfigCenterUnavailable) as caught:
        setting.build(config_enabled=1, **env)
    return str(caught.value)


@pytest.fixture(scope="module")
def secured_etcd() -> Iterator[Any]:
    """A private etcd with authentication on: user ``orders`` (password
    ``CENTER_PASSWORD``) may read and write everything, nobody else anything."""
    from etcd_server import EtcdServer

    server = EtcdServer()
    server.start()
    server.enable_auth("orders", CENTER_PASSWORD)
    yield server
    server.close()


def check_config_enabled(setting: Setting) -> None:
    etcd = setting.fixture("etcd")
    prefix = center_for(setting, etcd.url)
    etcd.put(f"{prefix}EFFECT", CENTER_VALUE)
    etcd.put(f"{prefix}flyer_version", "v-center")  # framework settings come from it too
    setting.monkeypatch.setenv("EFFECT", ENVIRONMENT_VALUE)
    with restored_environment():
        off = setting.build()
        assert (os.environ["EFFECT"], off.version, off.config_sync) == (
            ENVIRONMENT_VALUE, "v1", None)
        assert "config" not in readiness(off)
    with restored_environment():
        on = setting.build(config_enabled=1)
        assert (os.environ["EFFECT"], on.version) == (CENTER_VALUE, "v-center")
        assert readiness(on)["config"]["status"] == "up"


def check_config_endpoints(setting: Setting) -> None:
    # Two values other than the default (127.0.0.1:2379, where a developer's own etcd may
    # answer): an address where nothing listens, and a list of it and the real etcd.
    etcd = setting.fixture("etcd")
    with closed_port() as port:
        nowhere = f"http://127.0.0.1:{port}"
        prefix = center_for(setting, nowhere)
        etcd.put(f"{prefix}EFFECT", CENTER_VALUE)
        line = refusal(setting)
        assert f"127.0.0.1:{port} (connection refused)" in line
        # The endpoint that does not answer is passed over for the next one.
        assert read_center(setting, config_endpoints=f"{nowhere},{etcd.url}")[0] \
            == CENTER_VALUE


def check_config_segment(setting: Setting, segment: str, values: tuple[str, str]) -> None:
    """``flyer_config_<segment>`` (``app_id``, ``env_name`` or ``group_name``) chooses the
    keys read: the same variable under two values of the segment, each read by the app
    built with it. The default (empty) names no keys (refused with the center on), so
    there is no comparison with it."""
    etcd = setting.fixture("etcd")
    app = {"app_id": f"effects-{uuid.uuid4().hex[:10]}"}  # one app id for the two values
    for value in values:
        etcd.put(center_for(setting, etcd.url, **{**app, segment: value}) + "EFFECT", value)
    setting.monkeypatch.setenv("EFFECT", ENVIRONMENT_VALUE)
    assert [read_center(setting, **{f"config_{segment}": value})[0] for value in values] \
        == list(values)


def check_config_app_id(setting: Setting) -> None:
    check_config_segment(setting, "app_id", (f"orders-{uuid.uuid4().hex[:8]}",
                                             f"billing-{uuid.uuid4().hex[:8]}"))


def check_config_env_name(setting: Setting) -> None:
    check_config_segment(setting, "env_name", ("prod", "staging"))


def check_config_group_name(setting: Setting) -> None:
    check_config_segment(setting, "group_name", ("default", "canary"))


def check_config_user(setting: Setting) -> None:
    etcd = setting.fixture("secured_etcd")
    etcd.put(f"{center_for(setting, etcd.url)}EFFECT", CENTER_VALUE)
    assert "user name is empty" in refusal(setting)  # no user: etcd lets nobody in
    assert read_center(setting, config_user="orders",
                       config_password=CENTER_PASSWORD)[0] == CENTER_VALUE
    line = refusal(setting, config_user="someone-else", config_password=CENTER_PASSWORD)
    assert "refused user 'someone-else'" in line and CENTER_PASSWORD not in line


def check_config_password(setting: Setting) -> None:
    etcd = setting.fixture("secured_etcd")
    etcd.put(f"{center_for(setting, etcd.url)}EFFECT", CENTER_VALUE)
    setting.set(config_user="orders")
    assert "refused user 'orders'" in refusal(setting)  # no password: not let in
    line = refusal(setting, config_password="Wrong-Pa55word")
    assert "refused user 'orders'" in line and "Pa55word" not in line
    assert read_center(setting, config_password=CENTER_PASSWORD)[0] == CENTER_VALUE


def check_config_sync_enabled(setting: Setting) -> None:
    """On by default: the app's lifespan follows the center, and a change made in etcd
    while it serves reaches ``os.environ`` (etcd's watch brings it within a second). Off:
    the lifespan starts nothing that follows it (no lifecycle component, no follower
    thread while it serves), and readiness still reports the center it read at start.
    That a change then never arrives is not waited for: only what would bring it is
    shown to be absent."""
    etcd = setting.fixture("etcd")
    prefix = center_for(setting, etcd.url)
    setting.set(config_enabled=1)

    def followers() -> list[str]:
        return [thread.name for thread in threading.enumerate()
                if thread.name == "fastflyer-config"]

    for sync, follows in ((None, True), (0, False)):
        etcd.put(f"{prefix}EFFECT", "before")
        with restored_environment():
            app = setting.build() if sync is None else setting.build(config_sync_enabled=sync)
            assert ("config center" in app.lifecycle.names) is follows
            with serve(app) as client:
                report = client.get("/health_check/ready").json()["data"]["components"]
                assert report["config"]["status"] == "up"
                assert bool(followers()) is follows
                if follows:
                    etcd.put(f"{prefix}EFFECT", "after")
                    wait_for(lambda: os.environ.get("EFFECT") == "after", timeout=8,
                             what="the change followed")
        wait_for(lambda: not followers(), timeout=5, what="the follower stopped")


def check_config_sync_interval(setting: Setting) -> None:
    """The center is read again every ``flyer_config_sync_interval`` seconds whatever the
    watch says. A variable overwritten in this process is a change no watch of etcd can
    see: only those reads put the center's value back. The follower reads at once when
    the lifespan starts, then after the interval: the time between the two is 5 s (the
    smallest value allowed), where the default would be 10 s."""
    etcd = setting.fixture("etcd")
    etcd.put(f"{center_for(setting, etcd.url)}EFFECT", CENTER_VALUE)

    def put_back(what: str) -> float:
        wait_for(lambda: os.environ.get("EFFECT") == CENTER_VALUE, timeout=9, what=what)
        return time.monotonic()

    with restored_environment():
        app = setting.build(config_enabled=1, config_sync_interval=5)
        assert app.config_sync is not None and app.config_sync.settings.config_sync_interval == 5
        os.environ["EFFECT"] = "overwritten here"
        with serve(app):
            first = put_back("the read when the lifespan starts")
            os.environ["EFFECT"] = "overwritten here"
            second = put_back("the read an interval later")
    assert 4.9 <= second - first < 8, second - first


def check_config_allow_unreachable(setting: Setting) -> None:
    setting.monkeypatch.setenv("EFFECT", ENVIRONMENT_VALUE)
    with closed_port() as port:
        center_for(setting, f"http://127.0.0.1:{port}")
        assert f"127.0.0.1:{port} (connection refused)" in refusal(setting)
        with restored_environment():
            app = setting.build(config_enabled=1, config_allow_unreachable=1)
            config = readiness(app)["config"]
            assert os.environ["EFFECT"] == ENVIRONMENT_VALUE  # the environment alone
    assert config["status"] == "degraded" and "serving the last values" in config["error"]


# --- the service registry (etcd) ------------------------------------------------------------

DEMO_SERVICE = "demo-api"  # the demo project's service name (its API_TITLE, "Demo API")
DEMO_PORT = 8080  # flyer_port's default: the port an app served by no server registers


def fresh(what: str) -> str:
    """A key segment no other check or test uses: ``what`` and a random suffix."""
    return f"{what}-{uuid.uuid4().hex[:10]}"


def registry_keys(etcd: Any, prefix: str) -> dict[str, dict[str, Any]]:
    """What ``etcd`` holds under ``prefix``, read through its v3 JSON gateway (as root when
    its authentication is on): ``{key: {"record": <the JSON value>, "lease": <id>}}``."""
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    response = httpx.post(f"{etcd.url}/v3/kv/range", json={
        "key": base64.b64encode(prefix.encode()).decode(),
        "range_end": base64.b64encode(end.encode()).decode()},
        headers=etcd._headers(), timeout=5)
    response.raise_for_status()
    return {base64.b64decode(kv["key"]).decode(): {
        "record": json.loads(base64.b64decode(kv["value"])), "lease": int(kv.get("lease", 0))}
        for kv in response.json().get("kvs") or []}


def granted_ttl(etcd: Any, lease: int) -> int:
    """The TTL (seconds) ``etcd`` granted ``lease``, as its ``timetolive`` call says."""
    response = httpx.post(f"{etcd.url}/v3/kv/lease/timetolive", json={"ID": str(lease)},
                          headers=etcd._headers(), timeout=5)
    response.raise_for_status()
    return int(response.json().get("grantedTTL", 0))


@dataclass
class Registered:
    """One instance as the registry held it while the app served."""

    key: str
    record: dict[str, Any]  # the key's JSON value
    ttl: int  # seconds: the TTL granted to the lease holding the key

    @property
    def segments(self) -> list[str]:
        """The key's segments: namespace, service, ``host:port``."""
        return self.key.split("/")[1:]


def registered_while_serving(setting: Setting, etcd: Any, prefix: str,
                             **env: object) -> Registered:
    """Serve the demo app (its lifespan, with no server) with the registry on and ``env``
    until one instance is registered under ``prefix``; that instance. The key is gone once
    the lifespan ended (withdrawn at shutdown)."""
    app = setting.build(registry_enabled=1, **env)
    with serve(app):
        wait_for(lambda: registry_keys(etcd, prefix), timeout=20,
                 what=f"an instance registered under {prefix}")
        found = registry_keys(etcd, prefix)
        assert len(found) == 1, found
        [(key, entry)] = found.items()
        ttl = granted_ttl(etcd, entry["lease"])
    assert registry_keys(etcd, prefix) == {}, "not withdrawn when the lifespan ended"
    return Registered(key, entry["record"], ttl)


def refused_registration(setting: Setting, etcd: Any, namespace: str,
                         **env: object) -> str:
    """Serve the demo app with the registry on and ``env`` until its heartbeat logs that
    it cannot register under ``/namespace/``; that WARNING's message (its withdraw at
    shutdown, refused too, logs another). Nothing is registered there meanwhile."""
    logs = setting.fixture("logs")
    start = len(logs.records)

    def warnings() -> list[str]:
        return [record["message"] for record in logs.records[start:]
                if record["level"] == "WARNING" and f"/{namespace}/" in record["message"]
                and "; trying again every " in record["message"]]

    with serve(setting.build(registry_enabled=1, **env)):
        wait_for(warnings, timeout=20, what="the heartbeat's warning")
        assert registry_keys(etcd, f"/{namespace}/") == {}
    [line] = warnings()  # one per outage, however many heartbeats tried
    return line


def check_registry_enabled(setting: Setting) -> None:
    etcd = setting.fixture("etcd")
    namespace = fresh("effects")
    setting.set(registry_endpoints=etcd.url, registry_namespace=namespace)
    off = setting.build()
    assert off.registry is None and "service registry" not in off.lifecycle.names
    with serve(off) as client:  # served and ready: the instance would be registered now
        assert client.get("/health_check/ready").status_code == 200
        assert registry_keys(etcd, f"/{namespace}/") == {}
    on = registered_while_serving(setting, etcd, f"/{namespace}/")
    assert on.segments == [namespace, DEMO_SERVICE, on.record["host"] + f":{DEMO_PORT}"]


def check_registry_endpoints(setting: Setting) -> None:
    # Two values other than the default (127.0.0.1:2379, where a developer's own etcd may
    # answer): an address where nothing listens, and a list of it and the real etcd.
    etcd = setting.fixture("etcd")
    namespace = fresh("effects")
    setting.set(registry_namespace=namespace)
    with closed_port() as port:
        nowhere = f"http://127.0.0.1:{port}"
        line = refused_registration(setting, etcd, namespace, registry_endpoints=nowhere)
        assert f"127.0.0.1:{port} (connection refused)" in line, line
        # The endpoint that does not answer is passed over for the next one.
        entry = registered_while_serving(setting, etcd, f"/{namespace}/",
                                         registry_endpoints=f"{nowhere},{etcd.url}")
    assert entry.segments[:2] == [namespace, DEMO_SERVICE]


def check_registry_namespace(setting: Setting) -> None:
    etcd = setting.fixture("etcd")
    service, namespace = fresh("effects"), fresh("ns")  # the service: no key of another's
    setting.set(registry_endpoints=etcd.url, registry_service=service)
    default = registered_while_serving(setting, etcd, f"/default/{service}/")
    given = registered_while_serving(setting, etcd, f"/{namespace}/{service}/",
                                     registry_namespace=namespace)
    assert (default.segments[0], default.record["namespace"]) == ("default", "default")
    assert (given.segments[0], given.record["namespace"]) == (namespace, namespace)
    assert given.segments[1:] == default.segments[1:]


def check_registry_service(setting: Setting) -> None:
    etcd = setting.fixture("etcd")
    namespace = fresh("effects")
    setting.set(registry_endpoints=etcd.url, registry_namespace=namespace)
    default = registered_while_serving(setting, etcd, f"/{namespace}/")
    given = registered_while_serving(setting, etcd, f"/{namespace}/", registry_service="billing")
    assert (default.segments[1], default.record["service"]) == (DEMO_SERVICE, DEMO_SERVICE)
    assert (given.segments[1], given.record["service"]) == ("billing", "billing")
    assert given.segments[::2] == default.segments[::2]  # the namespace and address kept


def check_registry_token(setting: Setting) -> None:
    etcd = setting.fixture("secured_etcd")  # user ``orders``, password CENTER_PASSWORD
    namespace = fresh("effects")
    setting.set(registry_endpoints=etcd.url, registry_namespace=namespace)
    assert "user name is empty" in refused_registration(setting, etcd, namespace)  # none
    wrong = "Wrong-Pa55word"
    line = refused_registration(setting, etcd, namespace, registry_token=f"orders:{wrong}")
    assert "refused user 'orders'" in line, line
    entry = registered_while_serving(setting, etcd, f"/{namespace}/",
                                     registry_token=f"orders:{CENTER_PASSWORD}")
    assert entry.segments[:2] == [namespace, DEMO_SERVICE]
    # Neither password reaches a log line: none captured here, none in the log files.
    files = [path.read_text(errors="replace")
             for path in sorted((setting.tmp_path / "logs").glob("**/*")) if path.is_file()]
    written = setting.fixture("logs").text() + "".join(files)
    assert "refused user 'orders'" in written
    assert wrong not in written and CENTER_PASSWORD not in written


def check_registry_heartbeat_interval(setting: Setting) -> None:
    # The lease holding the key lasts three heartbeats: 15 s by default, 6 s with 2 s.
    etcd = setting.fixture("etcd")
    namespace = fresh("effects")
    setting.set(registry_endpoints=etcd.url, registry_namespace=namespace)
    default = registered_while_serving(setting, etcd, f"/{namespace}/")
    given = registered_while_serving(setting, etcd, f"/{namespace}/",
                                     registry_heartbeat_interval=2)
    assert (default.ttl, given.ttl) == (15, 6)


def check_registry_host(setting: Setting) -> None:
    # flyer_host is an address of this machine (127.0.0.1): registered by default; the
    # address given replaces it in the key and the record.
    etcd = setting.fixture("etcd")
    namespace = fresh("effects")
    prefix = f"/{namespace}/{DEMO_SERVICE}/"
    setting.set(registry_endpoints=etcd.url, registry_namespace=namespace, host="127.0.0.1")
    default = registered_while_serving(setting, etcd, prefix)
    given = registered_while_serving(setting, etcd, prefix, registry_host="10.9.8.7")
    assert (default.key, default.record["host"]) == (f"{prefix}127.0.0.1:{DEMO_PORT}",
                                                     "127.0.0.1")
    assert (given.key, given.record["host"]) == (f"{prefix}10.9.8.7:{DEMO_PORT}", "10.9.8.7")
    assert given.record["base_url"] == f"http://10.9.8.7:{DEMO_PORT}/flyer"


def check_registry_metadata(setting: Setting) -> None:
    etcd = setting.fixture("etcd")
    namespace = fresh("effects")
    setting.set(registry_endpoints=etcd.url, registry_namespace=namespace)
    default = registered_while_serving(setting, etcd, f"/{namespace}/")
    given = registered_while_serving(setting, etcd, f"/{namespace}/", registry_metadata_zone="a")
    assert (default.record["metadata"], given.record["metadata"]) == ({}, {"zone": "a"})


EFFECTS: dict[str, Callable[..., None]] = {
    "host": check_host,
    "port": check_port,
    "base_url": check_base_url,
    "version": check_version,
    "reload": check_reload,
    "workers": check_workers,
    "threads": check_threads,
    "worker_connections": check_worker_connections,
    "enable_max_requests": check_enable_max_requests,
    "max_requests": check_max_requests,
    "max_requests_jitter": check_max_requests_jitter,
    "timeout": check_timeout,
    "graceful_timeout": check_graceful_timeout,
    "shutdown_timeout": check_shutdown_timeout,
    "keepalive": check_keepalive,
    "console_log_level": check_console_log_level,
    "file_log_level": check_file_log_level,
    "access_log": check_access_log,
    "access_logfile": check_access_logfile,
    "log_path": check_log_path,
    "log_to_file": check_log_to_file,
    "log_json": check_log_json,
    "access_log_exclude_uris": check_access_log_exclude_uris,
    "log_ship_enabled": check_log_ship_enabled,
    "log_ship_proto": check_log_ship_proto,
    "log_ship_host": check_log_ship_host,
    "log_ship_port": check_log_ship_port,
    "log_ship_topic": check_log_ship_topic,
    "log_ship_my_ip": check_log_ship_my_ip,
    "auth_enable": check_auth_enable,
    "auth_user": check_auth_user,
    "auth_pass": check_auth_pass,
    "docs_enabled": check_docs_enabled,
    "metrics_enabled": check_metrics_enabled,
    "metrics_path": check_metrics_path,
    "task_api_open": check_task_api_open,
    "always_http_200": check_always_http_200,
    "cors_origins": check_cors_origins,
    "cors_allow_credentials": check_cors_allow_credentials,
    "cors_methods": check_cors_methods,
    "cors_headers": check_cors_headers,
    "gzip_min_size": check_gzip_min_size,
    "max_body_size": check_max_body_size,
    "max_url_length": check_max_url_length,
    "max_header_field_size": check_max_header_field_size,
    "max_header_size": check_max_header_size,
    "max_headers": check_max_headers,
    "body_timeout": check_body_timeout,
    "header_timeout": check_header_timeout,
    "opentelemetry_enabled": check_opentelemetry_enabled,
    "fast_path": check_fast_path,
    "trusted_proxies": check_trusted_proxies,
    "redis_host": check_redis_host,
    "redis_port": check_redis_port,
    "redis_pass": check_redis_pass,
    "redis_db": check_redis_db,
    "db_url": check_db_url,
    "data_dir": check_data_dir,
    "kafka_servers": check_kafka_servers,
    "kafka_security_protocol": check_kafka_security_protocol,
    "kafka_sasl_mechanism": check_kafka_sasl_mechanism,
    "kafka_sasl_username": check_kafka_sasl_username,
    "kafka_sasl_password": check_kafka_sasl_password,
    "lock_ttl": check_lock_ttl,
    "service_name": check_service_name,
    "config_enabled": check_config_enabled,
    "config_endpoints": check_config_endpoints,
    "config_app_id": check_config_app_id,
    "config_env_name": check_config_env_name,
    "config_group_name": check_config_group_name,
    "config_user": check_config_user,
    "config_password": check_config_password,
    "config_sync_enabled": check_config_sync_enabled,
    "config_sync_interval": check_config_sync_interval,
    "config_allow_unreachable": check_config_allow_unreachable,
    "registry_enabled": check_registry_enabled,
    "registry_endpoints": check_registry_endpoints,
    "registry_namespace": check_registry_namespace,
    "registry_service": check_registry_service,
    "registry_token": check_registry_token,
    "registry_heartbeat_interval": check_registry_heartbeat_interval,
    "registry_host": check_registry_host,
    "registry_metadata": check_registry_metadata,
}


def test_every_setting_has_a_check() -> None:
    fields = set(FlyerSettings.model_fields)
    missing = sorted(fields - set(EFFECTS))
    assert not missing, ("no check of what these settings change; add one to EFFECTS: "
                         + ", ".join(f"flyer_{name}" for name in missing))
    stale = sorted(set(EFFECTS) - fields)
    assert not stale, f"EFFECTS checks settings that no longer exist: {', '.join(stale)}"
    assert set(EFFECTS) == fields


@pytest.mark.parametrize("check", list(EFFECTS.values()), ids=list(EFFECTS))
def test_the_setting_changes_what_it_says(
        check: Callable[..., None], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        request: pytest.FixtureRequest, build: Callable[..., FlyerAPI]) -> None:
    check(Setting(monkeypatch, tmp_path, request, build))
