"""Every error answers in the envelope, with a truthful status, the request id, no leak."""

from __future__ import annotations

import re

import httpx
import pytest

LEAKS = re.compile(r"Traceback|File \"|\.py\b|/srv/|<object object|0x[0-9a-f]{6,}")


def assert_envelope(response: httpx.Response, http_status: int, code: int | None = None) -> dict:
    assert response.status_code == http_status, response.text
    assert response.headers["content-type"] == "application/json"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    assert float(response.headers["x-lasting-time"]) >= 0
    assert response.headers["x-content-type-options"] == "nosniff"
    body = response.json()
    assert set(body) <= {"code", "message", "detail"}
    assert body["code"] == (http_status if code is None else code)
    assert isinstance(body["message"], str)
    assert body["message"]
    assert not LEAKS.search(response.text), response.text
    return body


def test_the_seed_demo_route(http):
    response = http.get("/flyer/demo", params={"id": 7})
    assert response.status_code == 200
    assert response.json() == {"code": 200, "message": "success", "data": {"itemId": 7}}
    assert response.headers["x-request-id"]


@pytest.mark.parametrize("code", [400, 401, 403, 409, 429, 503])
def test_http_exception_keeps_its_status(http, code):
    body = assert_envelope(http.get(f"/flyer/errors/http/{code}"), code)
    assert "detail" not in body


def test_http_exception_message_from_detail(http):
    body = assert_envelope(http.get("/flyer/errors/missing"), 404)
    assert body["message"] == "Item not found"


def test_unknown_path_is_404_in_the_envelope(http):
    body = assert_envelope(http.get("/flyer/no/such/thing"), 404)
    assert body == {"code": 404, "message": "Not Found"}


def test_wrong_method_is_405_with_allow(http):
    response = http.delete("/flyer/demo")
    assert_envelope(response, 405)
    # RFC 9110: every method the path supports; HEAD wherever GET is, and OPTIONS
    assert response.headers["allow"] == "GET, HEAD, OPTIONS"


def test_validation_error_lists_location_and_message_only(http):
    body = assert_envelope(http.get("/flyer/demo", params={"id": "seven"}), 422)
    assert body["detail"] == [{"loc": ["query", "id"], "msg": body["detail"][0]["msg"],
                               "type": "int_parsing"}]
    assert "seven" not in str(body)  # the input is not echoed


def test_validation_error_on_a_body(http):
    body = assert_envelope(http.post("/flyer/errors/orders", json={"quantity": "x",
                                                                    "note": 5}), 422)
    assert sorted(tuple(d["loc"]) for d in body["detail"]) == [("body", "note"),
                                                                ("body", "quantity")]


def test_malformed_json_body_is_422_not_500(http):
    response = http.post("/flyer/errors/orders", content=b"{nope",
                         headers={"content-type": "application/json"})
    assert_envelope(response, 422)


def test_unhandled_exception_is_500_without_a_leak(http):
    body = assert_envelope(http.get("/flyer/errors/crash"), 500)
    assert body == {"code": 500, "message": "Internal Server Error"}
    assert_envelope(http.get("/flyer/errors/crash-sync"), 500)


@pytest.mark.parametrize(("code", "http_status"), [
    (600, 502), (601, 502), (602, 502), (603, 502), (604, 504), (605, 502), (606, 502),
    (418, 418), (10001, 400),
])
def test_business_error_status(http, code, http_status):
    body = assert_envelope(http.get(f"/flyer/errors/business/{code}"), http_status, code)
    assert body["message"] == "business rule says no"
    assert body["detail"] == {"code": code}


def test_errors_echo_the_callers_request_id(http):
    response = http.get("/flyer/errors/crash", headers={"X-Request-ID": "trace-42"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "trace-42"


def test_an_unsafe_request_id_is_replaced(http):
    response = http.get("/flyer/demo?id=1", headers={"X-Request-ID": "bad id\twith spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def test_unhandled_exception_is_logged_with_traceback_and_request_id(build, logs):
    from starlette.testclient import TestClient

    with TestClient(build(), raise_server_exceptions=False) as client:
        response = client.get("/flyer/errors/crash", headers={"X-Request-ID": "crash-1"})
    assert response.status_code == 500
    errors = [r for r in logs.records if r["level"] == "ERROR"]
    assert len(errors) == 1, errors
    assert errors[0]["extra"]["request_id"] == "crash-1"
    assert "RuntimeError" in errors[0]["text"]
    assert "Traceback" in errors[0]["text"]


@pytest.mark.parametrize("code", [100, 150, 199])
def test_a_business_code_of_no_final_status_is_a_logged_500(build, logs, code):
    # FlyerError(1xx): HTTP has no final 1xx answer; a 500 that says why in the log
    from starlette.testclient import TestClient

    with TestClient(build(), raise_server_exceptions=False) as client:
        response = client.get(f"/flyer/errors/business/{code}")
    assert response.status_code == 500 and response.json()["code"] == code
    errors = [r for r in logs.records if r["level"] == "ERROR"]
    assert len(errors) == 1 and "not a final status" in errors[0]["text"], errors


def test_always_http_200_keeps_the_original_behaviour(build):
    from starlette.testclient import TestClient

    with TestClient(build(always_http_200=1), raise_server_exceptions=False) as client:
        for path, code in [("/flyer/nope", 404), ("/flyer/demo?id=x", 422),
                           ("/flyer/errors/crash", 500), ("/flyer/errors/business/604", 604)]:
            response = client.get(path)
            assert response.status_code == 200
            assert response.json()["code"] == code
            assert response.headers["x-request-id"]
