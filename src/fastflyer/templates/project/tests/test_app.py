"""Tests of {{project_name}}: the app runs in-process, its lifespan too, and is called over
HTTPX's ASGI transport as a client would call it (``python -m pytest tests``)."""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The tests' data goes to a scratch directory, not the project's data/: set before the app
# is built, which reads its settings then.
_SCRATCH = tempfile.mkdtemp(prefix="tests-data-")
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)
os.environ["flyer_data_dir"] = _SCRATCH  # noqa: SIM112 - the framework reads lower case

from main import app  # noqa: E402

PREFIX = "{{prefix}}"


@pytest.fixture
async def client():
    # The app's start-up and shutdown run around each test, as under a server.
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_health_check(client):
    response = await client.get("/health_check")
    assert response.json() == {"code": 200, "message": "success"}


async def test_demo_route(client):
    response = await client.get(f"{PREFIX}/demo", params={"id": 7})
    assert response.json() == {"code": 200, "message": "success", "data": {"itemId": 7}}


async def test_demo_third_party_timeout_is_504_with_code_604(client):
    response = await client.get(f"{PREFIX}/demo", params={"id": -1})
    assert response.status_code == 504
    assert response.json() == {"code": 604, "message": "inventory timed out"}


async def test_items_round_trip(client):
    created = await client.post(f"{PREFIX}/items", json={"name": "pen", "price": 1.5})
    assert created.status_code == 201
    item_id = created.json()["data"]["itemId"]
    assert (await client.get(f"{PREFIX}/items/{item_id}")).json()["data"]["name"] == "pen"
    missing = await client.get(f"{PREFIX}/items/999999")
    assert missing.status_code == 404
    assert missing.json()["code"] == 404


# Infinity and NaN: JSON cannot write them back; true and "3": not numbers, only turned into one.
@pytest.mark.parametrize("price", [b"1e999", b'"Infinity"', b'"NaN"', b"-Infinity", b"true",
                                   b'"3"'])
async def test_a_price_json_cannot_write_back_is_422(client, price):
    body = b'{"name": "pen", "price": ' + price + b"}"
    response = await client.post(f"{PREFIX}/items", content=body,
                                 headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["code"] == 422


async def test_users_and_relationships(client):
    created = await client.post(f"{PREFIX}/users", json={"name": "ann", "age": 30})
    assert created.status_code == 201
    page = (await client.get(f"{PREFIX}/users", params={"size": 5})).json()
    assert page["pageInfo"]["total"] >= 1
    follows = await client.post(f"{PREFIX}/users/ann/following", json={"other": "bob"})
    assert follows.json()["data"] == ["bob"]


async def test_validation_errors_are_422_in_the_envelope(client):
    response = await client.get(f"{PREFIX}/demo", params={"id": "x"})
    assert response.status_code == 422
    assert response.json()["code"] == 422
