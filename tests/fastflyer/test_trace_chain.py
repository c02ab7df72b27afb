"""One trace end to end: a request that arrives with a ``traceparent``, calls a real
downstream server with FastKit's client and sends a Kafka message, which a consumer
handles. Every span is a child of the one before it, the downstream server and the
message receive the trace context beside the request id, and every log line on the way
(the endpoint's, the consumer's, the access line) carries the trace and span ids."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind
from starlette.testclient import TestClient

from fastflyer import APIRouter, FlyerAPI
from fastflyer.message import KafkaRouter
from fastkit import tracing
from fastkit.httpx import AsyncClient, Client
from fastkit.logging import logger
from fastkit.message import AsyncProducer
from fastkit.request_id import get_request_id
from waiting import wait_for

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
REQUEST_ID = "chain-req-1"
FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 300}


def ids(span: Any) -> tuple[str, str]:
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


def order_router(downstream: str, servers: str, topic: str, kind: str) -> APIRouter:
    router = APIRouter()

    if kind == "async":
        @router.post("/orders/{order_id}")
        async def place(order_id: int) -> dict[str, Any]:
            logger.info("placing order {}", order_id)
            async with AsyncClient(base_url=downstream) as client:
                key = downstream_key(order_id)
                stock = (await client.get("/anything", params={"key": key})).json()
            async with AsyncProducer(servers, topic=topic) as producer:
                await producer.send({"order": order_id}, key=str(order_id))
            return {"code": 200, "message": "success", "data": {"stock": stock["hit"]}}
    else:
        @router.post("/orders/{order_id}")
        def place(order_id: int) -> dict[str, Any]:  # in the thread pool
            logger.info("placing order {}", order_id)
            with Client(base_url=downstream) as client:
                stock = client.get("/anything", params={"key": downstream_key(order_id)}).json()
            asyncio.run(_send(servers, topic, order_id))  # a thread of its own: its own loop
            return {"code": 200, "message": "success", "data": {"stock": stock["hit"]}}

    return router


async def _send(servers: str, topic: str, order_id: int) -> None:
    async with AsyncProducer(servers, topic=topic) as producer:
        await producer.send({"order": order_id}, key=str(order_id))


_keys: dict[int, str] = {}


def downstream_key(order_id: int) -> str:
    return _keys.setdefault(order_id, uuid.uuid4().hex)


def order_consumer(topic: str, seen: list[dict[str, Any]]) -> KafkaRouter:
    """The app's consumer of ``topic``, noting what its handler saw."""
    kafka = KafkaRouter()

    @kafka.consumer(topic, group_id=f"g-{uuid.uuid4().hex[:8]}", **FAST_GROUP)
    async def on_order(message: Any) -> None:
        logger.info("handling order {}", message.value)
        seen.append({"message": message, "request_id": get_request_id(),
                     "ids": tracing.current_ids()})

    return kafka


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_one_trace_from_the_request_to_the_kafka_consumer(
        kind: str, build: Callable[..., FlyerAPI], tmp_path: Path, server: Any, broker: Any,
        topic: str, spans: Any, logs: Any) -> None:
    app = build(app_path=None, opentelemetry_enabled=1, access_log=1,
                access_logfile=tmp_path / "access.log", kafka_servers=broker.servers)
    app.include_app("orders", order_router(server.url, broker.servers, topic, kind))
    seen: list[dict[str, Any]] = []
    app.include_kafka(order_consumer(topic, seen), "orders")
    order_id = 7 if kind == "async" else 8
    with TestClient(app) as client:
        answer = client.post(f"/flyer/orders/{order_id}", headers={
            "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01", "X-Request-ID": REQUEST_ID})
        assert answer.status_code == 200, answer.text
        wait_for(lambda: seen, timeout=30, what="the order handled by the app's consumer")

    finished = spans.get_finished_spans()
    (request,) = [s for s in finished if s.kind is SpanKind.SERVER]
    (call,) = [s for s in finished if s.kind is SpanKind.CLIENT]
    (send,) = [s for s in finished if s.kind is SpanKind.PRODUCER]
    (process,) = [s for s in finished if s.kind is SpanKind.CONSUMER]
    # The chain: caller -> request -> (outgoing call, Kafka send) -> handling.
    assert request.name == "POST /flyer/orders/{order_id}"
    assert request.parent.span_id == int(CALLER_SPAN, 16)
    assert call.parent.span_id == request.context.span_id
    assert send.parent.span_id == request.context.span_id
    assert process.parent.span_id == send.context.span_id
    assert {ids(s)[0] for s in (request, call, send, process)} == {TRACE_ID}

    # What the downstream server received: the client span's context and the request id.
    (received,) = server.headers(downstream_key(order_id))
    assert received["traceparent"].split("-")[1:3] == list(ids(call))
    assert received["x-request-id"] == REQUEST_ID
    # What the message carried, and what its handler saw.
    (handled,) = seen
    message = handled["message"]
    assert message.header("traceparent").decode().split("-")[1:3] == list(ids(send))
    assert message.header("X-Request-ID") == REQUEST_ID.encode()
    assert handled["request_id"] == REQUEST_ID
    assert handled["ids"] == ids(process)

    # Every log line on the way names its trace and span.
    placing = [r for r in logs.records if r["message"] == f"placing order {order_id}"]
    assert [(r["extra"]["trace_id"], r["extra"]["span_id"]) for r in placing] == \
        [ids(request)]
    handling = [r for r in logs.records if r["message"].startswith("handling order")]
    assert [(r["extra"]["trace_id"], r["extra"]["span_id"], r["extra"]["request_id"])
            for r in handling] == [(*ids(process), REQUEST_ID)]
    lines = [json.loads(r["message"]) for r in logs.records if r["message"].startswith("{")]
    assert [line["trace_id"] for line in lines if line.get("direction") == "out"] == \
        [TRACE_ID]
    (access,) = [json.loads(line) for line in
                 (tmp_path / "access.log").read_text().splitlines()]
    assert (access["request_id"], access["trace_id"], access["span_id"]) == \
        (REQUEST_ID, *ids(request))
