"""Every code block of the HTTP toolkit seed runs unchanged against a local server.

The blocks call https://httpbin.org, which is out of reach here: the same paths
are served by the local test server, and only the host is substituted. Names the
seed leaves out ("变量定义略": url, payload, headers; ``Response`` and ``logger``
in the custom-retry block) are provided, as the seed's reader would.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io

import httpx
import pytest

from fastkit.httpx import UrllibExceptionWarning
from fastkit.logging import logger

from seeds import python_blocks

BLOCKS = python_blocks("000_")


def run_block(source: str, server_url: str) -> dict[str, object]:
    code = source.replace("https://httpbin.org", server_url)
    namespace: dict[str, object] = {
        "__name__": "seed_block",
        "url": f"{server_url}/anything",
        "payload": {"key": "value"},
        "headers": {"User-Agent": "seed"},
        "Response": httpx.Response,
        "logger": logger,
    }
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        exec(compile(code, "<seed 000>", "exec"), namespace)
    namespace["__stdout__"] = stdout.getvalue()
    return namespace


def test_the_seed_has_the_expected_blocks():
    assert len(BLOCKS) == 6


def test_quick_sync_block(server):
    namespace = run_block(BLOCKS[0], server.url)
    assert namespace["resp"].status_code == 200  # type: ignore[attr-defined]


def test_quick_async_block(server, logs):
    namespace = run_block(BLOCKS[1], server.url)
    asyncio.run(namespace["test"]())  # type: ignore[operator]
    (call,) = [c for c in logs.calls() if c["url"].endswith("/anything")]
    assert call["method"] == "GET" and call["status"] == 200
    assert "请求失败" not in [r["message"] for r in logs.records]  # the block's error branch


def test_advanced_sync_block(server):
    namespace = run_block(BLOCKS[2], server.url)
    out = str(namespace["__stdout__"])
    assert out.startswith("200\n")
    assert '"param1": "value1"' in out
    assert namespace["client"].retry_policy.wait_exponential_multiplier == 2  # type: ignore[attr-defined]
    namespace["client"].close()  # type: ignore[attr-defined]  # the seed leaves it open


# The seed's own code never closes this AsyncClient; like plain httpx, its sockets
# are reported unclosed when collected. The shared ``aiorequests`` has no such issue.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_advanced_async_block(server):
    namespace = run_block(BLOCKS[3], server.url)
    out = str(namespace["__stdout__"])
    assert out.count("200\n") == 2
    assert '"json": {"key": "value"}' in out
    del namespace
    gc.collect()  # report the seed's unclosed sockets here, under this test's filters


def test_custom_retry_block(server, key):
    with pytest.warns(UrllibExceptionWarning):
        namespace = run_block(BLOCKS[4], server.url)
    client = namespace["client"]
    policy = client.retry_policy  # type: ignore[attr-defined]
    assert policy.retry_by_result is namespace["retry_by_result"]
    assert httpx.ConnectError in policy.retry_by_except
    response = client.get(f"{server.url}/flaky?key={key}&fail=2&status=500")  # type: ignore[attr-defined]
    assert response.status_code == 200
    assert server.hits(key) == 3
    client.close()  # type: ignore[attr-defined]  # the seed leaves it open


def test_preset_options_block():
    namespace = run_block(BLOCKS[5], "http://unused")
    client = namespace["client"]
    assert client.timeout == httpx.Timeout(60)  # type: ignore[attr-defined]
    assert client.headers["content-type"] == "application/json"  # type: ignore[attr-defined]
