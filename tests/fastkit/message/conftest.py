"""One tansu broker for the messaging tests, and a fresh topic per test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from kafka_broker import KafkaBroker


@pytest.fixture(scope="session")
def broker() -> Iterator[KafkaBroker]:
    started = KafkaBroker()
    started.start()
    yield started
    started.stop()


@pytest.fixture
def topic(broker: KafkaBroker) -> str:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    name = f"t-{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.servers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, 4, 1)])
        finally:
            await admin.close()

    asyncio.run(create())
    return name
