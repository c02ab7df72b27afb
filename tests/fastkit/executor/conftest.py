"""Fixtures of the executor tests: a key prefix of their own in the real Redis (db 15)."""

from __future__ import annotations

import uuid

import pytest
import redis


@pytest.fixture
def prefix():
    name = f"fastkit-test:executor:{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis(db=15)
    for key in client.scan_iter(f"{name}*"):
        client.delete(key)


@pytest.fixture
def store():
    return redis.Redis(db=15, decode_responses=True)
