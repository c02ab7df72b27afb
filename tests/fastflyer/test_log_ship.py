"""Log shipping from a FastFlyer app (``flyer_log_ship_*``, the seed's ``flyer_zhiyan_*``)
to a real rsyslogd: application and access lines arrive, and a collector that dies under
load slows no request and grows no queue beyond its bound."""

from __future__ import annotations

import json
import signal
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from test_launch import FASTFLYER, env_for, generate_project, healthy_address, started

import waiting
from fastflyer import FlyerAPI
from fastflyer.settings import SettingsError, load_settings
from fastkit.logging import LogSettings, active_shipper, configure, logger
from rsyslog_server import RsyslogServer

from conftest import DEMO


@pytest.fixture
def collector(rsyslog: RsyslogServer) -> RsyslogServer:
    """The session's rsyslogd (tests tell their messages apart by APP-NAME)."""
    return rsyslog


@pytest.fixture(autouse=True)
def _shipping_off_afterwards() -> Iterator[None]:
    """The shipper an app started in this test does not outlive it."""
    yield
    configure(LogSettings(to_file=False))


def shipping_app(monkeypatch: pytest.MonkeyPatch, env: dict[str, Any]) -> FlyerAPI:
    monkeypatch.setenv("flyer_access_log", "1")
    monkeypatch.setenv("flyer_access_logfile", "/dev/null")
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    app = FlyerAPI(app_path=DEMO, settings=load_settings(warn_unknown=False))

    @app.get("/ship-hello")
    def hello() -> dict[str, str]:
        logger.info("hello from the app, password=hunter2")
        return {"ok": "yes"}

    return app


def received(server: RsyslogServer, topic: str, count: int = 1,
             **fields: Any) -> list[dict[str, Any]]:
    def wanted(message: dict[str, Any]) -> bool:
        if message["app_name"] != topic:
            return False
        body = json.loads(message["msg"])
        return all(body.get(k) == v for k, v in fields.items())

    return [json.loads(m["msg"]) | {"_syslog": m}
            for m in server.wait_for_messages(count, wanted)]


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_application_and_access_lines_arrive(monkeypatch: pytest.MonkeyPatch,
                                             collector: RsyslogServer, proto: str) -> None:
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    port = collector.udp_port if proto == "udp" else collector.tcp_port
    app = shipping_app(monkeypatch, {
        "flyer_log_ship_enabled": 1, "flyer_log_ship_proto": proto,
        "flyer_log_ship_host": "127.0.0.1", "flyer_log_ship_port": port,
        "flyer_log_ship_topic": topic, "flyer_log_ship_my_ip": "10.20.30.40"})
    with TestClient(app) as client:
        answer = client.get("/ship-hello", headers={"X-Request-ID": "rid-ship-1"})
        assert answer.status_code == 200
        [line] = received(collector, topic, request_id="rid-ship-1", level="INFO",
                          function="hello")
        [access] = received(collector, topic, kind="access", path="/ship-hello")
    assert line["message"] == "hello from the app, password=***"
    assert "hunter2" not in line["_syslog"]["raw"]
    assert line["_syslog"]["hostname"] == "10.20.30.40"
    assert line["_syslog"]["input"] == f"im{proto}"
    assert access["status"] == 200 and access["request_id"] == "rid-ship-1"
    assert access["_syslog"]["msgid"] == "access"


def test_the_access_query_is_masked_in_what_is_shipped(monkeypatch: pytest.MonkeyPatch,
                                                       collector: RsyslogServer) -> None:
    topic = f"mask-{uuid.uuid4().hex[:8]}"
    app = shipping_app(monkeypatch, {
        "flyer_log_ship_enabled": 1, "flyer_log_ship_host": "127.0.0.1",
        "flyer_log_ship_port": collector.udp_port, "flyer_log_ship_topic": topic})
    with TestClient(app) as client:
        client.get("/flyer/demo", params={"id": 1, "access_token": "zqSecret"})
        [access] = received(collector, topic, kind="access", path="/flyer/demo")
    assert access["query"] == "id=1&access_token=***"
    assert "zqSecret" not in access["_syslog"]["raw"]


def test_the_seed_zhiyan_names_work(monkeypatch: pytest.MonkeyPatch,
                                    collector: RsyslogServer) -> None:
    topic = f"zhiyan-{uuid.uuid4().hex[:8]}"
    app = shipping_app(monkeypatch, {
        "flyer_zhiyan_log_enabled": 1, "flyer_zhiyan_log_proto": "tcp",
        "flyer_log_ship_host": "127.0.0.1", "flyer_log_ship_port": collector.tcp_port,
        "flyer_zhiyan_log_topic": topic, "flyer_zhiyan_my_ip": "10.1.1.1"})
    with TestClient(app) as client:
        client.get("/ship-hello")
        [line] = received(collector, topic, function="hello")
    assert line["_syslog"]["input"] == "imtcp" and line["_syslog"]["hostname"] == "10.1.1.1"


def test_defaults_topic_and_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("flyer_log_ship_enabled", "1")
    monkeypatch.setenv("flyer_log_ship_proto", "dev")
    settings = load_settings(warn_unknown=False).log_settings()
    assert settings.ship_topic == "fastflyer" and settings.ship_my_ip is None
    monkeypatch.setenv("flyer_service_name", "billing")
    assert load_settings(warn_unknown=False).log_settings().ship_topic == "billing"
    configure(load_settings(warn_unknown=False).log_settings())
    shipper = active_shipper()
    assert shipper is not None and shipper.app_name == "billing"
    assert shipper.hostname not in ("-", "")  # the address of the default route


@pytest.mark.parametrize(("title", "topic"), [
    ("Orders API", "orders-api"),  # the app's service name, as in traces and the registry
    ("订单服务", "fastflyer"),      # no APP-NAME (RFC 5424 allows printable ASCII): passed over
])
def test_an_app_ships_under_its_service_name(monkeypatch: pytest.MonkeyPatch, title: str,
                                             topic: str) -> None:
    monkeypatch.setenv("flyer_log_ship_enabled", "1")
    monkeypatch.setenv("flyer_log_ship_proto", "dev")
    app = FlyerAPI(title=title)
    shipper = active_shipper()
    assert shipper is not None and (app.service_name, shipper.app_name) == \
        (topic if topic != "fastflyer" else "订单服务", topic)


@pytest.mark.parametrize(("env", "line"), [
    ({"flyer_log_ship_enabled": "1"},
     "flyer_log_ship_enabled='1' needs flyer_log_ship_host"),
    ({"flyer_zhiyan_log_proto": "http"}, "flyer_zhiyan_log_proto='http' is not allowed"),
    ({"flyer_log_ship_port": "70000"}, "flyer_log_ship_port='70000' is not allowed"),
    ({"flyer_zhiyan_log_topic": "two words"},
     "flyer_zhiyan_log_topic='two words' is not allowed"),
    ({"flyer_log_ship_topic": "x" * 49}, "is not allowed: a syslog APP-NAME"),
    ({"flyer_zhiyan_my_ip": "not a host"}, "flyer_zhiyan_my_ip='not a host' is not allowed"),
    ({"flyer_log_ship_host": "bad_host!"}, "flyer_log_ship_host='bad_host!' is not allowed"),
])
def test_bad_values_are_named(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                              line: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(warn_unknown=False)
    assert line in str(caught.value)


def test_a_dead_collector_slows_no_request(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    server = RsyslogServer()
    server.start()
    topic = f"load-{uuid.uuid4().hex[:8]}"
    try:
        app = shipping_app(monkeypatch, {
            "flyer_log_ship_enabled": 1, "flyer_log_ship_proto": "tcp",
            "flyer_log_ship_host": "127.0.0.1", "flyer_log_ship_port": server.tcp_port,
            "flyer_log_ship_topic": topic})
        count = 300
        timings: list[float] = []
        with TestClient(app) as client:
            shipper = active_shipper()
            assert shipper is not None
            for number in range(2 * count):
                if number == count:
                    server.stop()  # killed mid-load
                started = time.perf_counter()
                assert client.get("/ship-hello").status_code == 200
                timings.append(time.perf_counter() - started)
                assert shipper.queued() <= shipper.queue_size
            before = statistics.median(timings[:count])
            after = statistics.median(timings[count:])
            assert after <= 3 * before + 0.005, (before, after)
            assert shipper.outages == 1
            received(server, topic, 10)  # the lines before the outage arrived
    finally:
        server.close()


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_every_worker_of_serve_ships_every_line(collector: RsyslogServer, tmp_path: Path,
                                                proto: str) -> None:
    # Each forked worker starts its sender while it is still importing the app: the sender
    # must not need an import then (it died on "unknown encoding: idna" in most starts).
    project = generate_project(tmp_path)
    topic = f"w{uuid.uuid4().hex[:12]}"
    port = collector.udp_port if proto == "udp" else collector.tcp_port
    env = env_for(tmp_path, flyer_log_ship_enabled="1", flyer_log_ship_proto=proto,
                  flyer_log_ship_host="127.0.0.1", flyer_log_ship_port=str(port),
                  flyer_log_ship_topic=topic, flyer_access_log="1",
                  flyer_log_path=str(tmp_path / "logs"))
    log = tmp_path / "console.log"
    with started([FASTFLYER, "serve", "--workers", "2", "--port", "0"], project, env, log,
                 new_session=True) as process:
        url = healthy_address(process, log)
        sent: list[str] = []
        procids: set[str] = set()

        def both_workers_shipped() -> bool:
            # A new connection each time: the kernel spreads them over the workers.
            request_id = uuid.uuid4().hex
            assert httpx.get(f"{url}/flyer/demo?id=1", timeout=5,
                             headers={"X-Request-ID": request_id}).status_code == 200
            sent.append(request_id)
            procids.update(line["_syslog"]["procid"] for line in
                           received(collector, topic, len(sent), kind="access",
                                    path="/flyer/demo"))
            return len(procids) == 2

        waiting.wait_for(both_workers_shipped, timeout=60, what="access lines of both workers")
        lines = received(collector, topic, len(sent), kind="access", path="/flyer/demo")
        assert sorted(line["request_id"] for line in lines) == sorted(sent)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()
    assert "Traceback" not in log.read_text()
