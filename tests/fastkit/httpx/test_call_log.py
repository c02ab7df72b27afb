"""One log line per logical call, secrets redacted, lengths capped."""

from __future__ import annotations

import json

import pytest

from fastkit.httpx import AsyncClient, Client
from fastkit.request_id import bind_request_id


def test_one_info_line_per_call(server, logs):
    with Client() as client:
        client.get(f"{server.url}/get", params={"q": "1"})
    (line,) = logs.calls()
    assert line["_level"] == "INFO"
    assert line["direction"] == "out"
    assert line["method"] == "GET"
    assert line["url"] == f"{server.url}/get"
    assert line["params"] == "q=1"
    assert line["status"] == 200
    assert line["attempts"] == 1
    assert isinstance(line["latency_ms"], float)
    assert line["headers"]["User-Agent"].startswith("fastkit/")


def test_warning_with_response_body_when_status_is_an_error(server, logs):
    with Client() as client:
        client.get(f"{server.url}/status/404")
    (line,) = logs.calls()
    assert line["_level"] == "WARNING"
    assert line["status"] == 404
    assert json.loads(line["response_body"]) == {"status": 404}


def test_retry_warnings_name_reason_and_wait(server, key, logs):
    with Client() as client:
        client.get(f"{server.url}/flaky?key={key}&fail=1&status=502")
    (retry,) = logs.retries()
    assert retry.startswith(f"retrying GET {server.url}/flaky in 1.00s (attempt 1 of 3")
    assert "HTTP 502" in retry
    assert [r["level"] for r in logs.records if r["message"] == retry] == ["WARNING"]


def test_request_body_logged_and_capped(server, logs, monkeypatch):
    monkeypatch.setenv("flyer_max_body_log_length", "10")
    with Client() as client:
        client.post(f"{server.url}/post", content=b"0123456789abcdef")
    (line,) = logs.calls()
    assert line["body"] == "0123456789…"


def test_params_and_headers_capped(server, logs, monkeypatch):
    monkeypatch.setenv("flyer_max_params_log_length", "8")
    monkeypatch.setenv("flyer_max_headers_log_length", "40")
    with Client() as client:
        client.get(f"{server.url}/get", params={"long": "x" * 100},
                   headers={"X-Big": "y" * 100})
    (line,) = logs.calls()
    assert line["params"] == "long=xxx…"
    assert isinstance(line["headers"], str)
    assert len(line["headers"]) <= 41


def test_bad_cap_names_the_variable(monkeypatch):
    monkeypatch.setenv("flyer_max_body_log_length", "lots")
    with pytest.raises(ValueError, match="flyer_max_body_log_length='lots'"):
        Client()


SECRETS = ["Bearer sk-live-1", "sess=abc1", "proxy-cred-1", "api-key-1", "tok-1", "sec-1",
           "pw-1", "userpw-1"]


def test_secrets_never_reach_the_log(server, logs):
    with Client(cookies={"sid": "sess=abc1"}) as client:
        client.get(
            f"http://user:userpw-1@{server.url.removeprefix('http://')}/status/500",
            params={"access_token": "tok-1", "client_secret": "sec-1", "q": "visible"},
            headers={"Authorization": "Bearer sk-live-1", "Proxy-Authorization": "proxy-cred-1",
                     "X-Api-Key": "api-key-1", "X-Password": "pw-1"},
            retry=False,
        )
    text = logs.text()
    assert "visible" in text
    for secret in SECRETS:
        assert secret not in text, secret
    (line,) = logs.calls()
    assert line["headers"]["Authorization"] == "***"
    assert line["headers"]["Cookie"] == "***"
    assert "access_token=***" in line["params"]
    assert line["url"].startswith("http://user:***@")


def test_request_id_in_line(server, logs):
    with bind_request_id("rid-log"), Client() as client:
        client.get(f"{server.url}/get")
    (line,) = logs.calls()
    assert line["request_id"] == "rid-log"
    assert any(r["extra"]["request_id"] == "rid-log" for r in logs.records)


def test_report_log_false_is_silent(server, key, logs):
    with Client(report_log=False) as client:
        client.get(f"{server.url}/flaky?key={key}&fail=1")
    assert logs.calls() == []
    assert logs.retries() == []


async def test_async_logs_one_line(server, logs):
    async with AsyncClient() as client:
        await client.post(f"{server.url}/post", json={"a": "中文"})
    (line,) = logs.calls()
    assert line["method"] == "POST"
    assert json.loads(line["body"]) == {"a": "中文"}


def test_stream_body_is_not_read_for_the_log(server, logs):
    def gen():
        yield b"abc"

    with Client() as client:
        client.post(f"{server.url}/post", content=gen())
    (line,) = logs.calls()
    assert line["body"] == "<stream>"
