"""Kafka in a FastFlyer project, on a real broker (tansu): consumers declared by an app
run with the lifespan, the request id crosses the broker, readiness, settings."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
import uuid
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from fastflyer import FlyerAPI
from fastflyer.discovery import AppLoadError
from fastflyer.message import KafkaRouter, default_producer, kafka_options
from fastflyer.settings import SettingsError, load_settings
from kafka_broker import KafkaBroker, create_topic

ORDERS = '''
    import json
    import os

    from fastflyer import APIRouter
    from fastflyer.message import KafkaRouter, Message, default_async_producer
    from fastkit.request_id import get_request_id

    router = APIRouter(tags=["orders"])
    kafka = KafkaRouter()
    TOPIC = os.environ["ORDERS_TOPIC"]


    @router.post("/orders")
    async def place(order: dict) -> dict:
        sent = await default_async_producer().send(order, topic=TOPIC)
        return {"code": 200, "message": "success", "data": {"offset": sent.offset}}


    @kafka.consumer(TOPIC, group_id=os.environ["ORDERS_GROUP"], session_timeout_ms=2000,
                    heartbeat_interval_ms=300)
    async def bill(message: Message) -> None:
        with open(os.environ["ORDERS_OUT"], "a") as out:
            out.write(json.dumps({"order": message.json(), "rid": get_request_id()}) + "\\n")
'''


def make_project(root: Path) -> Path:
    (root / "app" / "orders").mkdir(parents=True)
    (root / "app" / "__init__.py").write_text("")
    (root / "main.py").write_text("from fastflyer import FlyerAPI\n\n"
                                  "app = FlyerAPI(app_path=__file__)\n")
    (root / "app" / "orders" / "__init__.py").write_text(textwrap.dedent(ORDERS))
    return root


@pytest.fixture
def orders(tmp_path, monkeypatch, broker, topic):
    """A project whose app ``orders`` publishes from a route and consumes the topic."""
    out = tmp_path / "billed.jsonl"
    env = {"ORDERS_TOPIC": topic, "ORDERS_GROUP": f"g-{uuid.uuid4().hex[:8]}",
           "ORDERS_OUT": str(out)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return make_project(tmp_path / "svc"), env, out


def billed(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def wait_for(done, timeout: float = 30, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every)


def marked_every_partition(servers: str, topic: str, partitions: int = 4) -> list[dict]:
    """Send ``{"marker": n}`` to partition n of ``topic``, for each of its ``partitions``;
    the markers, in partition order."""
    from aiokafka import AIOKafkaProducer

    markers = [{"marker": partition} for partition in range(partitions)]

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=servers)
        await producer.start()
        try:
            for partition, marker in enumerate(markers):
                await producer.send_and_wait(topic, json.dumps(marker).encode(),
                                             partition=partition)
        finally:
            await producer.stop()

    asyncio.run(send())
    return markers


def test_a_served_app_consumes_what_its_route_publishes_with_the_request_id(
        orders, broker, launch):
    project, env, out = orders
    server = launch({**env, "flyer_kafka_servers": broker.servers}, project=project)
    with httpx.Client(base_url=server.url, timeout=20) as http:
        answer = http.post("/flyer/orders", json={"id": 1}, headers={"X-Request-ID": "order-1"})
        assert answer.status_code == 200, answer.text
        wait_for(lambda: billed(out))
        assert billed(out) == [{"order": {"id": 1}, "rid": "order-1"}]
        wait_for(lambda: http.get("/health_check/ready").status_code == 200)
        ready = http.get("/health_check/ready").json()["data"]["components"]
        assert ready["kafka"]["status"] == "up"
    console = server.stop()  # SIGTERM: the consumer commits and leaves the group
    assert "Traceback" not in console and "ERROR" not in console, console

    # Started again, the service is not handed the billed order a second time.
    with default_producer(load_settings(kafka_servers=broker.servers)) as producer:
        producer.send({"id": 2}, topic=env["ORDERS_TOPIC"])
    again = launch({**env, "flyer_kafka_servers": broker.servers}, project=project)
    wait_for(lambda: len(billed(out)) >= 2)
    # A marker sent to each partition after those: once every marker is billed, a second
    # copy of order 1 (before its partition's marker) would have been billed too.
    markers = marked_every_partition(broker.servers, env["ORDERS_TOPIC"])
    wait_for(lambda: all(marker in [row["order"] for row in billed(out)] for marker in markers))
    again.stop()
    orders = [row["order"] for row in billed(out)]
    assert orders[:2] == [{"id": 1}, {"id": 2}] and sorted(
        orders[2:], key=lambda marker: marker["marker"]) == markers, orders


def test_declared_consumers_without_kafka_servers_stop_the_build(orders):
    project, _, _ = orders
    with pytest.raises(SettingsError, match="flyer_kafka_servers is not set, and Kafka "
                                            r"consumers are declared \(orders: app.orders.bill"):
        FlyerAPI(app_path=project)


def test_a_kafka_attribute_that_is_not_a_router_stops_the_build(tmp_path):
    project = make_project(tmp_path / "svc")
    (project / "app" / "orders" / "__init__.py").write_text("kafka = 'localhost:9092'\n")
    with pytest.raises(AppLoadError, match=r"`kafka` is a str, not a fastflyer\.message"):
        FlyerAPI(app_path=project)


def test_consumers_start_again_once_the_broker_comes_up(tmp_path, monkeypatch, logs):
    later = KafkaBroker()  # its port is chosen; nothing listens there yet
    seen = []
    kafka = KafkaRouter()

    @kafka.consumer("late", group_id="late-group", session_timeout_ms=2000,
                    heartbeat_interval_ms=300, request_timeout_ms=2000)
    def on_late(message):
        seen.append(message.text())

    monkeypatch.setenv("flyer_kafka_servers", later.servers)
    app = FlyerAPI()
    app.include_kafka(kafka)
    try:
        with TestClient(app) as client:
            wait_for(lambda: "restarting after ConsumeError" in json.dumps(
                client.get("/health_check/ready").json()), every=0.3)
            down = client.get("/health_check/ready")
            assert down.status_code == 503
            kafka_report = down.json()["data"]["components"]["kafka"]
            assert kafka_report["status"] == "down"
            assert kafka_report["error"].startswith("KafkaNotReady: broker KafkaConnectionError")
            assert "consumer test_message." in kafka_report["error"]
            later.start()
            create_topic(later.servers, "late", partitions=1)
            with default_producer() as producer:
                producer.send("hello", topic="late")
            wait_for(lambda: seen == ["hello"], 60)
            wait_for(lambda: client.get("/health_check/ready").status_code == 200, every=0.3)
    finally:
        later.stop()
    assert "Kafka consumer" in logs.text() and "starting again in 1 s" in logs.text()


def test_the_consumer_decorator_keeps_the_function_and_names_the_group():
    kafka = KafkaRouter()

    @kafka.consumer(["a", "b"], retries=1)
    def handler(message):
        return "called"

    assert handler(None) == "called"
    (spec,) = kafka.consumers
    assert spec.topics == ("a", "b") and spec.group_id == f"{__name__}.{handler.__qualname__}"
    assert spec.options["retries"] == 1
    with pytest.raises(ValueError, match="at least one topic"):
        kafka.consumer([])


def test_kafka_settings_are_validated_and_the_password_never_shown():
    with pytest.raises(SettingsError, match="flyer_kafka_servers='localhost' is not allowed: "
                                            "host:port"):
        load_settings(kafka_servers="localhost")
    with pytest.raises(SettingsError, match="flyer_kafka_security_protocol='TLS'"):
        load_settings(kafka_security_protocol="tls")
    with pytest.raises(SettingsError, match="needs flyer_kafka_sasl_username and "
                                            "flyer_kafka_sasl_password"):
        load_settings(kafka_security_protocol="SASL_SSL")
    with pytest.raises(SettingsError) as error:
        load_settings(kafka_sasl_password="s3cret", kafka_sasl_mechanism="md5")
    assert "s3cret" not in str(error.value)

    settings = load_settings(kafka_servers=" a:9092, b:9093 ", kafka_security_protocol="sasl_ssl",
                             kafka_sasl_mechanism="scram-sha-512", kafka_sasl_username="svc",
                             kafka_sasl_password="s3cret")
    assert settings.kafka_servers == "a:9092,b:9093"
    assert "s3cret" not in repr(settings)
    options = kafka_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("svc", "s3cret")
    assert options["ssl_context"] is not None
    assert kafka_options(load_settings()) == {}


def test_readiness_reports_kafka_only_when_configured(broker, monkeypatch):
    assert "kafka" not in FlyerAPI().readiness.names
    monkeypatch.setenv("flyer_kafka_servers", broker.servers)
    app = FlyerAPI()
    with TestClient(app) as client:
        report = client.get("/health_check/ready").json()["data"]["components"]
    assert report["kafka"]["status"] == "up"
