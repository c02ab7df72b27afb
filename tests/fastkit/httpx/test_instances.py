"""The shared module instances: lazy, thread-safe, one async pool per event loop."""

from __future__ import annotations

import asyncio
import threading

import fastkit.httpx as fh
from fastkit.httpx import aioclient, aiorequests, client, requests


def test_aliases():
    assert requests is client
    assert aiorequests is aioclient


def test_requests_from_many_threads(server, key):
    statuses: list[int] = []

    def work() -> None:
        for _ in range(5):
            statuses.append(requests.get(f"{server.url}/get?key={key}").status_code)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 40
    assert server.hits(key) == 40


def test_requests_recovers_after_close(server):
    requests.close()
    assert requests.get(f"{server.url}/get").status_code == 200


def test_aiorequests_across_successive_asyncio_runs(server, key):
    async def one() -> tuple[int, object]:
        response = await aiorequests.get(f"{server.url}/get?key={key}")
        return response.status_code, await aiorequests._get()  # type: ignore[attr-defined]

    first_status, first_client = asyncio.run(one())
    second_status, second_client = asyncio.run(one())
    third_status, _ = asyncio.run(one())
    assert (first_status, second_status, third_status) == (200, 200, 200)
    assert first_client is not second_client
    # The pool of a finished loop was closed when that loop shut down.
    assert first_client.is_closed  # type: ignore[attr-defined]
    assert server.hits(key) == 3


def test_aiorequests_in_many_loops_at_once(server, key):
    results: list[int] = []

    def work() -> None:
        async def run() -> None:
            for _ in range(3):
                results.append((await aiorequests.post(f"{server.url}/post?key={key}",
                                                       json={})).status_code)
        asyncio.run(run())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 12


async def test_aiorequests_stream_and_build_request(server):
    async with aiorequests.stream("GET", f"{server.url}/stream?chunks=2") as response:
        body = await response.aread()
    assert body == b"chunk0\nchunk1\n"
    request = aiorequests.build_request("GET", f"{server.url}/get")
    assert (await aiorequests.send(request)).status_code == 200


def test_seed_quick_use_blocks_export():
    assert {"requests", "aiorequests", "Client", "AsyncClient", "status"} <= set(fh.__all__)
