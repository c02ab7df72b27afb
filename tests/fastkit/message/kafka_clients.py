"""Consumers of the test broker and their handlers, for the Kafka metrics and tracing tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from consumer_worker import FAST_GROUP

from fastkit.message import AsyncConsumer, Message


def consumer_of(broker: Any, topic: str, **options: Any) -> AsyncConsumer:
    """A consumer of ``topic`` in a fresh group that notices a member gone within 2 s;
    ``options`` go to :class:`AsyncConsumer`."""
    return AsyncConsumer(broker.servers, topic, group_id=f"g-{uuid.uuid4().hex[:8]}",
                         **{**FAST_GROUP, **options})


def handler_of(kind: str, body: Callable[[Message], None]) -> Callable[[Message], Any]:
    """``body`` as a handler of ``kind``: itself for ``sync`` (run in a worker thread), an
    ``async def`` calling it for ``async`` (run on the loop)."""
    if kind == "sync":
        return body

    async def handler(message: Message) -> None:
        body(message)
    return handler
