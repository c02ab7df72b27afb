"""Client and AsyncClient are real httpx clients with FastKit's defaults."""

from __future__ import annotations

import ssl

import httpx
import pytest

from fastkit._version import __version__
from fastkit.httpx import DEFAULT_USER_AGENT, AsyncClient, Client, RetryTransport
from fastkit.request_id import bind_request_id


def test_clients_are_httpx_clients():
    with Client() as client:
        assert isinstance(client, httpx.Client)
    assert client.is_closed
    assert isinstance(AsyncClient(), httpx.AsyncClient)


def test_close_releases_the_pool(server):
    client = Client()
    assert client.get(f"{server.url}/get").status_code == 200
    client.close()
    assert client.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        client.get(f"{server.url}/get")


async def test_async_with_and_aclose(server):
    async with AsyncClient() as client:
        assert (await client.get(f"{server.url}/get")).status_code == 200
    assert client.is_closed


def test_build_request_and_send(server, key):
    with Client() as client:
        request = client.build_request("POST", f"{server.url}/post?key={key}", json={"a": 1})
        response = client.send(request)
    assert response.json()["json"] == {"a": 1}


def test_build_request_and_send_retry(server, key):
    with Client() as client:
        request = client.build_request("GET", f"{server.url}/flaky?key={key}&fail=1")
        assert client.send(request).status_code == 200
    assert server.hits(key) == 2


def test_event_hooks_base_url_and_limits(server):
    seen: list[str] = []
    with Client(base_url=server.url, limits=httpx.Limits(max_connections=2),
                event_hooks={"request": [lambda r: seen.append(r.url.path)]}) as client:
        response = client.get("/get", params={"q": "1"})
    assert response.json()["args"] == {"q": "1"}
    assert seen == ["/get"]


def test_stream_reads_chunks(server):
    with Client() as client, client.stream("GET", f"{server.url}/stream?chunks=3") as response:
        lines = list(response.iter_lines())
    assert lines == ["chunk0", "chunk1", "chunk2"]


def test_default_user_agent(server, key):
    with Client() as client:
        client.get(f"{server.url}/get?key={key}")
    assert f"fastkit/{__version__} httpx/{httpx.__version__}" == DEFAULT_USER_AGENT
    assert server.headers(key)[0]["user-agent"] == DEFAULT_USER_AGENT


@pytest.mark.parametrize("name", ["User-Agent", "user-agent", "USER-AGENT"])
def test_callers_user_agent_replaces_ours_in_any_case(name, server, key):
    with Client(headers={name: "My User Agent"}) as client:
        response = client.get(f"{server.url}/get?key={key}")
    assert response.request.headers.get_list("user-agent") == ["My User Agent"]
    assert server.headers(key)[0]["user-agent"] == "My User Agent"


def test_per_call_header_replaces_client_header(server, key):
    with Client(headers={"X-Team": "a"}) as client:
        response = client.get(f"{server.url}/get?key={key}",
                              headers={"user-agent": "per-call", "x-team": "b"})
    assert response.request.headers.get_list("User-Agent") == ["per-call"]
    assert response.request.headers.get_list("X-Team") == ["b"]


def test_seed_preset_options():
    client = Client(timeout=60, headers={"content-type": "application/json"})
    assert client.timeout == httpx.Timeout(60)
    assert client.headers["Content-Type"] == "application/json"
    client.close()


def test_tls_verification_is_on_by_default():
    with Client() as client:
        context = client._transport.transport._pool._ssl_context  # type: ignore[attr-defined]
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname is True


def test_redirects_are_followed_by_default(server):
    with Client() as client:
        response = client.get(f"{server.url}/redirect")
    assert response.status_code == 200
    assert response.json()["args"] == {"redirected": "1"}
    with Client(follow_redirects=False) as client:
        assert client.get(f"{server.url}/redirect").status_code == 302


def test_request_id_is_forwarded_on_every_attempt(server, key):
    with bind_request_id("rid-123"), Client() as client:
        client.get(f"{server.url}/flaky?key={key}&fail=2")
    assert [h["x-request-id"] for h in server.headers(key)] == ["rid-123"] * 3


def test_callers_request_id_wins(server, key):
    with bind_request_id("bound"), Client() as client:
        client.get(f"{server.url}/get?key={key}", headers={"X-Request-ID": "mine"})
    assert server.headers(key)[0]["x-request-id"] == "mine"


def test_no_request_id_without_one_bound(server, key):
    with Client() as client:
        client.get(f"{server.url}/get?key={key}")
    assert "x-request-id" not in server.headers(key)[0]


async def test_async_request_id_is_forwarded(server, key):
    with bind_request_id("async-rid"):
        async with AsyncClient() as client:
            await client.get(f"{server.url}/get?key={key}")
    assert server.headers(key)[0]["x-request-id"] == "async-rid"


@pytest.mark.parametrize("verb", ["get", "options", "head", "delete", "post", "put", "patch"])
def test_every_verb(verb, server, key):
    with Client() as client:
        response = getattr(client, verb)(f"{server.url}/anything?key={key}")
    assert response.status_code == 200
    assert server.hits(key) == 1
    if verb != "head":
        assert response.json()["method"] == verb.upper()


@pytest.mark.parametrize("verb", ["get", "options", "head", "delete", "post", "put", "patch"])
async def test_every_async_verb(verb, server, key):
    async with AsyncClient() as client:
        response = await getattr(client, verb)(f"{server.url}/anything?key={key}")
    assert response.status_code == 200
    assert server.hits(key) == 1


def test_cookies_set_by_the_server_are_kept_and_sent(server, key):
    with Client() as client:
        client.get(f"{server.url}/cookie?name=sid&value=abc")
        assert client.cookies["sid"] == "abc"
        client.get(f"{server.url}/get?key={key}")
        client.cookies = {"other": "1"}
        client.get(f"{server.url}/get?key={key}")
    first, second = server.headers(key)
    assert first["cookie"] == "sid=abc"
    assert second["cookie"] == "other=1"


async def test_async_cookies_set_by_the_server_are_kept(server, key):
    async with AsyncClient() as client:
        await client.get(f"{server.url}/cookie?name=sid&value=xyz")
        await client.get(f"{server.url}/get?key={key}")
    assert server.headers(key)[0]["cookie"] == "sid=xyz"


def test_the_environments_proxy_is_used_and_retried(server, key, monkeypatch):
    # The test server answers absolute-form requests, so it serves as a forward proxy.
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY",
                 "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.url)
    with Client() as client:
        response = client.get(f"http://upstream.invalid/flaky?key={key}&fail=1")
    assert response.status_code == 200
    assert server.hits(key) == 2  # through the proxy, and retried there
    monkeypatch.setenv("NO_PROXY", "upstream.invalid")
    with Client() as client, pytest.raises(httpx.ConnectError):
        client.get("http://upstream.invalid/get", retry=False)


def test_an_explicit_proxy_is_wrapped(server, key):
    with Client(proxy=server.url) as client:
        response = client.get(f"http://upstream.invalid/flaky?key={key}&fail=2")
    assert response.status_code == 200
    assert server.hits(key) == 3


def test_mounts_and_transports_are_wrapped(server, key):
    inner = httpx.HTTPTransport()
    with Client(mounts={"http://": inner}) as client:
        assert client.get(f"{server.url}/flaky?key={key}&fail=1").status_code == 200
    assert server.hits(key) == 2


def test_a_retry_transport_is_not_wrapped_twice(server, key):
    transport = RetryTransport(stop_max_attempt_number=2)
    with Client(transport=transport) as client:
        assert client.retry_policy.stop_max_attempt_number == 2
        assert client.get(f"{server.url}/flaky?key={key}&fail=5").status_code == 503
    assert server.hits(key) == 2
    with pytest.raises(TypeError, match="already a RetryTransport"):
        Client(transport=RetryTransport(), stop_max_attempt_number=4)
