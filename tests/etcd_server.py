"""A private etcd (Debian's ``etcd-server``) on reserved loopback ports with a temporary data
directory, for the config center and service registry tests: started by the tests,
stopped (and restarted, for outages) by them."""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from redis_server import ChildServer

__all__ = ["EtcdServer"]


class EtcdServer(ChildServer):
    """``start()``, ``stop()`` and ``url`` of one single-member etcd.

    Its client and peer ports are reserved for the object's lifetime (etcd, written in Go,
    sets SO_REUSEADDR on its listeners), so a restart after ``stop()`` finds them free and
    keeps its data. ``put``/``get`` go through etcd's v3 JSON gateway, the API any client
    may use, to check what the code under test wrote."""

    def __init__(self) -> None:
        self.binary = self.program("etcd", "etcd-server")
        self.port = self.reserve()
        self.peer_port = self.reserve()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = Path(tempfile.mkdtemp(prefix="fastflyer-etcd-"))
        self.log = self.data_dir / "etcd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "--name", "default", "--data-dir", str(self.data_dir / "data"),
                 "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", f"default={peer}"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).json().get("health") == "true":
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"etcd did not start on {self.url}: "
                                   f"{self.log.read_text()[-2000:]}")
            time.sleep(0.05)  # polling to the deadline above
        self.check_listening(self.port)

    def close(self) -> None:
        """Stop it and remove its data directory."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def put(self, key: str, value: str) -> None:
        """Set ``key`` to ``value`` (through the v3 JSON gateway)."""
        response = httpx.post(f"{self.url}/v3/kv/put", json={
            "key": _b64(key), "value": _b64(value)}, headers=self._headers(), timeout=5)
        response.raise_for_status()

    def get(self, key: str) -> str | None:
        """The value of ``key``, or None when it is not set."""
        response = httpx.post(f"{self.url}/v3/kv/range", json={"key": _b64(key)},
                              headers=self._headers(), timeout=5)
        response.raise_for_status()
        kvs = response.json().get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


    def delete(self, key: str) -> None:
        """Delete ``key`` (through the v3 JSON gateway)."""
        response = httpx.post(f"{self.url}/v3/kv/deleterange", json={"key": _b64(key)},
                              headers=self._headers(), timeout=5)
        response.raise_for_status()

    def enable_auth(self, user: str, password: str) -> None:
        """Turn etcd's authentication on with ``root`` (password ``password``, the
        superuser etcd requires) and ``user`` (same password) granted everything; from
        then on ``put``/``get`` authenticate as root."""
        calls = [("/v3/auth/user/add", {"name": "root", "password": password}),
                 ("/v3/auth/role/add", {"name": "root"}),
                 ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
                 ("/v3/auth/user/add", {"name": user, "password": password}),
                 ("/v3/auth/user/grant", {"user": user, "role": "root"}),
                 ("/v3/auth/enable", {})]
        for path, body in calls:
            httpx.post(f"{self.url}{path}", json=body, timeout=5).raise_for_status()
        self._auth = (password,)

    def _headers(self) -> dict[str, str]:
        if not getattr(self, "_auth", None):
            return {}
        response = httpx.post(f"{self.url}/v3/auth/authenticate", json={
            "name": "root", "password": self._auth[0]}, timeout=5)
        response.raise_for_status()
        return {"Authorization": response.json()["token"]}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
