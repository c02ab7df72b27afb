"""Tests of {{project_name}}: the app is built in-process and called like a client would."""

import sys
from pathlib import Path

from starlette.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from main import app  # noqa: E402

PREFIX = "{{prefix}}"


def test_health_check():
    with TestClient(app) as client:
        response = client.get("/health_check")
    assert response.json() == {"code": 200, "message": "success"}


def test_demo_route():
    with TestClient(app) as client:
        response = client.get(f"{PREFIX}/demo", params={"id": 7})
    assert response.json() == {"code": 200, "message": "success", "data": {"itemId": 7}}


def test_items_round_trip():
    with TestClient(app) as client:
        created = client.post(f"{PREFIX}/items", json={"name": "pen", "price": 1.5})
        assert created.status_code == 201
        item_id = created.json()["data"]["itemId"]
        assert client.get(f"{PREFIX}/items/{item_id}").json()["data"]["name"] == "pen"
        missing = client.get(f"{PREFIX}/items/999999")
        assert missing.status_code == 404
        assert missing.json()["code"] == 404


def test_users_and_relationships():
    with TestClient(app) as client:
        assert client.post(f"{PREFIX}/users", json={"name": "ann", "age": 30}).status_code == 201
        page = client.get(f"{PREFIX}/users", params={"size": 5}).json()
        assert page["pageInfo"]["total"] >= 1
        follows = client.post(f"{PREFIX}/users/ann/following", json={"other": "bob"})
        assert follows.json()["data"] == ["bob"]


def test_validation_errors_are_422_in_the_envelope():
    with TestClient(app) as client:
        response = client.get(f"{PREFIX}/demo", params={"id": "x"})
    assert response.status_code == 422
    assert response.json()["code"] == 422
