"""Request id, timing headers, access log, trusted proxies, CORS, GZip, body limit."""

from __future__ import annotations

import gzip
import json
import time

import httpx
import pytest
from starlette.testclient import TestClient

from fastkit.request_id import get_request_id


def test_every_response_carries_the_context_headers(http):
    for response in [http.get("/flyer/demo?id=1"), http.get("/flyer/nope"),
                     http.get("/flyer/openapi.json"), http.get("/health_check")]:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert len(response.headers["x-request-id"]) == 32
        assert float(response.headers["x-lasting-time"]) >= 0.0
        assert response.headers.get_list("x-request-id") == [response.headers["x-request-id"]]


def test_the_request_id_is_taken_from_the_caller(http):
    response = http.get("/flyer/demo?id=1", headers={"X-Request-ID": "abc-123.x:y_z"})
    assert response.headers["x-request-id"] == "abc-123.x:y_z"


def test_request_ids_differ_between_requests(http):
    ids = {http.get("/flyer/demo?id=1").headers["x-request-id"] for _ in range(20)}
    assert len(ids) == 20


def test_the_request_id_is_forwarded_by_fastkit_clients(http, server, key):
    response = http.get("/flyer/errors/upstream", params={"url": f"{server.url}/get?key={key}"},
                        headers={"X-Request-ID": "forward-me"})
    assert response.json()["data"] == {"status": 200}
    assert server.headers(key)[0]["x-request-id"] == "forward-me"


def test_the_request_id_is_bound_in_log_lines_and_unbound_after(build, logs):
    app = build()

    @app.get("/log-me")
    async def log_me():
        from fastkit.logging import logger
        logger.info("inside the request")
        return {"seen": get_request_id()}

    with TestClient(app) as client:
        body = client.get("/log-me", headers={"X-Request-ID": "bound-1"}).json()
    assert body == {"seen": "bound-1"}
    line = next(r for r in logs.records if r["message"] == "inside the request")
    assert line["extra"]["request_id"] == "bound-1"
    assert get_request_id() is None


# --- access log -----------------------------------------------------------------------

def read_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_access_log_writes_one_json_line_per_request(build, tmp_path):
    target = tmp_path / "access" / "access.log"
    app = build(access_log=1, access_logfile=target)
    with TestClient(app) as client:
        client.get("/flyer/demo?id=3&token=s3cret&q=ok",
                   headers={"User-Agent": "probe/1.0", "X-Request-ID": "acc-1",
                            "Authorization": "Bearer s3cret", "Cookie": "session=s3cret"})
        client.get("/flyer/nope")
    lines = read_lines(target)  # the lifespan's end wrote the buffer out
    assert [(r["method"], r["path"], r["status"]) for r in lines] == [
        ("GET", "/flyer/demo", 200), ("GET", "/flyer/nope", 404)]
    first = lines[0]
    assert first["query"] == "id=3&token=***&q=ok"
    assert first["request_id"] == "acc-1"
    assert first["user_agent"] == "probe/1.0"
    assert first["client_ip"] == "testclient"
    assert first["latency_ms"] >= 0
    assert "s3cret" not in target.read_text()


def test_access_log_skips_excluded_paths(build, tmp_path):
    target = tmp_path / "access.log"
    app = build(access_log=1, access_logfile=target,
                access_log_exclude_uris="/health_check,/flyer/health*")
    with TestClient(app) as client:
        for path in ["/health_check", "/flyer/health_check", "/flyer/health_check/ready",
                     "/health_check/async", "/flyer/demo?id=1"]:
            client.get(path)
    assert [r["path"] for r in read_lines(target)] == ["/health_check/async", "/flyer/demo"]


def test_access_log_off_writes_nothing(build, tmp_path):
    target = tmp_path / "access.log"
    with TestClient(build(access_log=0, access_logfile=target)) as client:
        client.get("/flyer/demo?id=1")
    assert not target.exists()


def test_access_log_to_the_console(build, capfd):
    with TestClient(build(access_log=1, access_logfile="-")) as client:
        client.get("/flyer/demo?id=1", headers={"X-Request-ID": "console-1"})
    out = capfd.readouterr().out
    assert json.loads(out.strip().splitlines()[-1])["request_id"] == "console-1"


def test_the_real_server_writes_the_access_log(live):
    httpx.get(f"{live.url}/flyer/demo?id=5", headers={"X-Request-ID": "live-acc"})
    deadline = time.monotonic() + 5  # lines are written out at least once a second
    while time.monotonic() < deadline:
        httpx.get(f"{live.url}/health_check")
        if any('"live-acc"' in line for line in live.access_lines()):
            break
        time.sleep(0.2)
    line = json.loads(next(x for x in live.access_lines() if '"live-acc"' in x))
    assert (line["path"], line["status"], line["client_ip"]) == ("/flyer/demo", 200, "127.0.0.1")


# --- trusted proxies ------------------------------------------------------------------

def client_ip_seen(app, client_host: str, forwarded: str, tmp_path) -> str:
    with TestClient(app, client=(client_host, 5000)) as client:
        client.get("/flyer/demo?id=1", headers={"X-Forwarded-For": forwarded})
    return read_lines(tmp_path / "ip.log")[-1]["client_ip"]


def test_x_forwarded_for_is_ignored_without_trusted_proxies(build, tmp_path):
    app = build(access_log=1, access_logfile=tmp_path / "ip.log")
    assert client_ip_seen(app, "10.1.2.3", "6.6.6.6", tmp_path) == "10.1.2.3"


def test_x_forwarded_for_is_believed_from_a_trusted_proxy_only(build, tmp_path):
    app = build(access_log=1, access_logfile=tmp_path / "ip.log",
                trusted_proxies="10.0.0.0/8")
    assert client_ip_seen(app, "10.1.2.3", "203.0.113.9", tmp_path) == "203.0.113.9"
    # a chain: the right-most untrusted address is the client
    assert client_ip_seen(app, "10.1.2.3", "6.6.6.6, 203.0.113.9, 10.9.9.9",
                          tmp_path) == "203.0.113.9"
    # from an untrusted peer the header is a lie
    assert client_ip_seen(app, "192.0.2.1", "203.0.113.9", tmp_path) == "192.0.2.1"


# --- CORS, GZip, body size ------------------------------------------------------------

def test_cors_when_configured(build):
    with TestClient(build(cors_origins="https://app.example")) as client:
        preflight = client.options("/flyer/demo", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "GET"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        assert preflight.headers["x-request-id"]
        simple = client.get("/flyer/demo?id=1", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in simple.headers


def test_no_cors_headers_by_default(client):
    response = client.get("/flyer/demo?id=1", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in response.headers


def test_gzip_when_configured(build):
    with TestClient(build(gzip_min_size=100)) as client:
        response = client.get("/flyer/users?size=100", headers={"Accept-Encoding": "gzip"})
        assert response.headers["content-encoding"] == "gzip"
        assert response.json()["pageInfo"]["total"] == 25
        small = client.get("/flyer/demo?id=1", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in small.headers


def test_gzip_over_a_real_socket(live, launch):
    plain = httpx.get(f"{live.url}/flyer/users?size=100", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers  # off unless configured
    server = launch({"flyer_gzip_min_size": "100"})
    with httpx.stream("GET", f"{server.url}/flyer/users?size=100",
                      headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(raw))["data"][:2] == ["user0", "user1"]


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_limit_is_413_in_the_envelope(build, chunked):
    payload = json.dumps({"quantity": 1, "note": "x" * 2000}).encode()
    with TestClient(build(max_body_size=1000), raise_server_exceptions=False) as client:
        content = iter([payload[:500], payload[500:]]) if chunked else payload
        response = client.post("/flyer/errors/orders", content=content,
                               headers={"content-type": "application/json"})
        assert response.status_code == 413
        assert response.json() == {"code": 413,
                                   "message": "Request body is larger than 1000 bytes"}
        assert response.headers["x-request-id"]
        small = client.post("/flyer/errors/orders", json={"quantity": 2})
        assert small.status_code == 200


def test_a_body_over_the_limit_on_a_real_server(launch):
    server = launch({"flyer_max_body_size": "1000"})
    big = httpx.post(f"{server.url}/flyer/errors/orders",
                     json={"quantity": 1, "note": "x" * 5000})
    assert big.status_code == 413
    assert big.json()["code"] == 413
    ok = httpx.post(f"{server.url}/flyer/errors/orders", json={"quantity": 1})
    assert ok.status_code == 200
    crash = httpx.get(f"{server.url}/flyer/errors/crash")
    assert crash.status_code == 500
    output = server.stop()
    # Errors are answered by the app, never left for the server to report.
    assert "Exception in ASGI application" not in output
    assert "ASGI callable returned without" not in output
