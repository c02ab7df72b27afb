"""A lock store that hangs (accepts, never answers): the holder is told to stop before
its lock expires, however long each call to the store blocks and however many leases."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from fastkit.cache import get_redis_pool
from fastkit.executor import Locks, RedisLockBackend
from fastkit.executor._stopping import Stopping

TTL = 1.5


class _Proxy:
    """A TCP proxy to the real Redis that can start swallowing what it is sent."""

    def __init__(self) -> None:
        self.swallow = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(("127.0.0.1", 6379))
            except OSError:
                return
            self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False),
                             daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, up: bool) -> None:
        try:
            while data := source.recv(65536):
                if up and self.swallow.is_set():
                    continue  # read, never answered
                target.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self._closed.set()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def proxy() -> Iterator[_Proxy]:
    started = _Proxy()
    yield started
    started.close()


def _locks(proxy: _Proxy, prefix: str) -> Locks:
    client = get_redis_pool("127.0.0.1", proxy.port, database=15, timeout=3)
    return Locks(RedisLockBackend(client, prefix=f"{prefix}:lock:"), ttl=TTL)


@pytest.mark.parametrize("count", [1, 5])
def test_a_hanging_store_stops_every_holder_before_its_lock_expires(proxy, prefix, count, logs):
    locks = _locks(proxy, prefix)
    stopping = Stopping()
    entered = threading.Barrier(count + 1)
    leave = threading.Event()
    held: list[tuple[threading.Event, object]] = []

    def hold(n: int) -> None:
        with stopping.run() as signal:
            lease = locks.acquire(f"job{n}")
            held.append((signal, lease))
            entered.wait(10)
            leave.wait(30)
            locks.release(lease)

    threads = [threading.Thread(target=hold, args=(n,), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    entered.wait(10)
    try:
        assert all(lease is not None for _, lease in held)
        # Let one renewal pass first, so the hang starts in the middle of the lease's life.
        first = held[0][1]
        taken, deadline = first.renewed, time.monotonic() + 5
        while first.renewed == taken and time.monotonic() < deadline:
            held[0][0].wait(0.01)
        assert first.renewed > taken, "the lease was never renewed"
        proxy.swallow.set()
        hung = time.monotonic()
        for signal, lease in held:
            assert signal.wait(TTL), "the holder was not told to stop before its lock expired"
            told = time.monotonic()
            assert told - hung < TTL
            assert told - lease.renewed < TTL * 2 / 3 + TTL / 6 + 0.3
            assert lease.lost
        deadline = time.monotonic() + 2  # written just after the signal is set
        while "did not confirm it within 2/3" not in logs.text() and time.monotonic() < deadline:
            leave.wait(0.01)
        assert "did not confirm it within 2/3" in logs.text()
    finally:
        leave.set()
        for thread in threads:
            thread.join(10)


def test_a_healthy_lease_keeps_being_renewed(proxy, prefix, store):
    locks = _locks(proxy, prefix)
    stopping = Stopping()
    key = f"{prefix}:lock:{{job}}:run"
    with stopping.run() as signal:
        lease = locks.acquire("job")
        assert lease is not None
        taken, end = lease.renewed, time.monotonic() + 3 * TTL
        while (remaining := end - time.monotonic()) > 0:
            assert not signal.wait(min(0.05, remaining)), "a healthy lease was given up"
            assert store.pttl(key) > 0
        assert not lease.lost and lease.renewed > taken + 2 * TTL
        locks.release(lease)
    assert store.exists(key) == 0
