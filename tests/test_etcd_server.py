"""The private etcd the config center and registry tests run against: it starts on its
reserved ports, keeps its data and ports across a restart (an outage), and a machine
without etcd makes a test fail rather than skip."""

from __future__ import annotations

import httpx
import pytest

from etcd_server import EtcdServer
from redis_server import listens


def test_a_round_trip_and_an_outage_keep_the_data_and_the_address() -> None:
    server = EtcdServer()
    try:
        server.start()
        server.put("/orders/prod/default/flyer_workers", "4")
        assert server.get("/orders/prod/default/flyer_workers") == "4"
        assert server.get("/orders/prod/default/missing") is None
        pid = server.process.pid if server.process else 0
        server.stop()  # the outage: refused, as a stopped server is
        assert not listens(pid, server.port)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/health", timeout=2)
        server.start()  # back on the same address, with its data
        assert server.get("/orders/prod/default/flyer_workers") == "4"
    finally:
        server.close()
    assert not server.data_dir.exists()


def test_without_etcd_installed_a_test_fails_naming_the_package(
        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="apt-get install etcd-server"):
        EtcdServer()
