"""The etcd glue and the config center under the inputs a careless or hostile user sends:
odd keys and values, two spellings of one setting, values too large for a process's
environment, bad endpoints, an endpoint that goes silent, and credentials that must
never show."""

from __future__ import annotations

import base64
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from etcd_server import EtcdServer
from fastflyer.config_center import ORIGINALS_VARIABLE, load_config_center
from fastflyer.health import Degraded
from fastflyer.settings import SettingsError, load_settings
from fastkit.etcd import EtcdAuthError, EtcdClient, EtcdError, EtcdUnavailable
from hung_server import hung_server
from redis_server import closed_port
from waiting import wait_for

# The config center writes os.environ itself: each test leaves it as it found it.
pytestmark = pytest.mark.usefixtures("restored_environ")


def raw_put(url: str, key: bytes, value: bytes) -> None:
    """Put bytes as they are (not necessarily UTF-8) through the v3 JSON gateway."""
    httpx.post(f"{url}/v3/kv/put", json={"key": base64.b64encode(key).decode(),
                                         "value": base64.b64encode(value).decode()},
               timeout=5).raise_for_status()


class Relay:
    """A TCP relay on 127.0.0.1 to ``target_port`` that can be told to go silent: from
    ``silence()`` on it holds every connection open and relays no byte, as a wedged etcd
    member or a stuck proxy does."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._silent = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = [self.listener]
        self._thread = threading.Thread(target=self._run, daemon=True, name="test-relay")
        self._thread.start()

    def silence(self) -> None:
        self._silent.set()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        for sock in self._sockets:
            sock.close()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ)
        peers: dict[Any, socket.socket] = {}
        while not self._closed.is_set():
            for key, _ in selector.select(0.05):
                sock = key.fileobj
                if sock is self.listener:
                    accepted, _ = self.listener.accept()
                    self._sockets.append(accepted)
                    if self._silent.is_set():
                        continue
                    upstream = socket.create_connection(self.target, 5)
                    self._sockets.append(upstream)
                    peers[accepted], peers[upstream] = upstream, accepted
                    for each in (accepted, upstream):
                        selector.register(each, selectors.EVENT_READ)
                elif not self._silent.is_set():
                    assert isinstance(sock, socket.socket)
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if data:
                        peers[sock].sendall(data)
                    else:
                        for each in (sock, peers[sock]):
                            selector.unregister(each)
                            each.close()
        selector.close()


# --- the glue -------------------------------------------------------------------------
def test_get_of_a_value_that_is_not_utf8_is_an_etcd_error(etcd: Any) -> None:
    key = f"/hostile-{uuid.uuid4().hex[:8]}/BINARY"
    raw_put(etcd.url, key.encode(), b"\xff\xfe\x00binary")
    client = EtcdClient(etcd.url, timeout=3)
    with pytest.raises(EtcdError, match="not UTF-8"):
        client.get(key)
    assert key not in client.get_prefix(key)  # a prefix read leaves it out, as documented


@pytest.mark.parametrize("endpoint", ["ftp://127.0.0.1:2379", "http://", "://x",
                                      "http://127.0.0.1:99999", "http://a b:2379",
                                      "http://127.0.0.1:2379/v3", "http://127.0.0.1:2379?x",
                                      "http://[::1"])
def test_an_endpoint_that_is_no_http_url_is_refused_at_once(endpoint: str) -> None:
    with pytest.raises(ValueError, match="http"):
        EtcdClient(endpoint)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), True])
def test_a_timeout_that_is_no_positive_number_is_refused_at_once(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        EtcdClient("http://127.0.0.1:2379", timeout=timeout)


def test_host_and_port_alone_mean_http(etcd: Any) -> None:
    bare = etcd.url.removeprefix("http://")
    client = EtcdClient(bare, timeout=3)
    assert client.endpoint == etcd.url
    assert client.get(f"/hostile-{uuid.uuid4().hex[:8]}") is None


def test_trailing_slashes_blanks_and_a_live_endpoint_last(etcd: Any) -> None:
    with closed_port() as refused:
        dead = [f"http://127.0.0.1:{refused}"] * 5 + ["http://no-such-host.invalid:2379"]
        client = EtcdClient(",".join([*dead, f" {etcd.url}/// ", ""]), timeout=2)
        assert client.get_prefix("/hostile-none/") == {}
        assert client.endpoint == etcd.url


def test_wait_for_change_is_bounded_when_the_endpoint_goes_silent(etcd: Any) -> None:
    relay = Relay(int(etcd.url.rsplit(":", 1)[1]))
    try:
        client = EtcdClient(relay.url, timeout=1)
        revision = client.get_prefix("/hostile-silent/").revision
        relay.silence()
        outcome: list[object] = []

        def wait() -> None:
            try:
                outcome.append(client.wait_for_change("/hostile-silent/", revision, 1.0))
            except EtcdError as exc:
                outcome.append(exc)

        started = time.monotonic()
        thread = threading.Thread(target=wait, daemon=True)
        thread.start()
        thread.join(10)
        assert not thread.is_alive(), "wait_for_change(timeout=1) still waiting after 10 s"
        assert time.monotonic() - started < 5
        assert outcome and (outcome[0] is False or isinstance(outcome[0], EtcdUnavailable))
    finally:
        relay.close()


def test_the_config_follower_notices_a_silent_endpoint(center: dict[str, Any],
                                                       monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    relay = Relay(int(center["etcd"].url.rsplit(":", 1)[1]))
    monkeypatch.setenv("flyer_config_endpoints", relay.url)
    monkeypatch.setenv("flyer_config_sync_interval", "5")
    try:
        sync = load_config_center()
        assert sync is not None
        sync.start()
        try:
            # A change the follower picks up: its read is done and it goes back to
            # watching, which the relay then leaves unanswered.
            center["etcd"].put(f"{center['prefix']}WATCHED", "1")
            wait_for(lambda: os.environ.get("WATCHED") == "1", timeout=10)
            relay.silence()
            # The next read (within one interval) times out: an outage, shown as degraded.
            wait_for(lambda: sync.down_since is not None, timeout=20,
                     what="the follower reports the outage")
            with pytest.raises(Degraded):
                sync.check()
        finally:
            thread = sync._thread
            sync.stop()
        assert thread is not None
        thread.join(5)
        assert not thread.is_alive(), "the follower thread is stuck in a watch"
    finally:
        relay.close()


# --- the config center ----------------------------------------------------------------
def test_two_spellings_of_one_setting_neither_flap_nor_lose_the_original(
        center: dict[str, Any], monkeypatch: pytest.MonkeyPatch, logs: Any) -> None:
    etcd, prefix = center["etcd"], center["prefix"]
    etcd.put(f"{prefix}flyer_port", "7001")
    etcd.put(f"{prefix}FLYER_PORT", "7002")
    monkeypatch.setenv("FLYER_PORT", "9000")
    sync = load_config_center()
    assert sync is not None
    spellings = {k: v for k, v in os.environ.items() if k.lower() == "flyer_port"}
    assert len(spellings) == 1 and set(spellings.values()) <= {"7001", "7002"}
    ignored = [r["message"] for r in logs.records if r["level"] == "WARNING"
               and "flyer_port" in r["message"].lower() and "ignored" in r["message"]]
    assert len(ignored) == 1  # the other spelling, named once
    sync.read()
    sync.read()
    assert not [r for r in logs.records if "changed in the config center" in r["message"]]
    etcd.delete(f"{prefix}flyer_port")
    etcd.delete(f"{prefix}FLYER_PORT")
    sync.read()
    assert {k: v for k, v in os.environ.items() if k.lower() == "flyer_port"} == {
        "FLYER_PORT": "9000"}
    assert os.environ[ORIGINALS_VARIABLE] == "{}"


def test_a_value_too_large_for_the_environment_is_ignored_with_a_warning(
        center: dict[str, Any], logs: Any) -> None:
    etcd, prefix = center["etcd"], center["prefix"]
    etcd.put(f"{prefix}HUGE", "x" * (1024 * 1024 - 100))  # etcd takes it (1 MiB-ish)
    etcd.put(f"{prefix}FINE", "y" * 100_000)
    load_config_center()
    assert "HUGE" not in os.environ and len(os.environ["FINE"]) == 100_000
    assert any("HUGE" in r["message"] and r["level"] == "WARNING" for r in logs.records)
    # A process can still start a program: no variable is past the kernel's limit.
    assert subprocess.run([sys.executable, "-c", "pass"], timeout=30).returncode == 0


def test_odd_keys_and_values(center: dict[str, Any], logs: Any) -> None:
    etcd, prefix = center["etcd"], center["prefix"]
    odd = [prefix, f"{prefix}A=B", f"{prefix}A B", f"{prefix}名前", f"{prefix}sub/dir/NAME",
           f"{prefix}1ABC", f"{prefix}NUL"]
    for key in odd:
        etcd.put(key, "a\0b" if key.endswith("NUL") else "odd")
    etcd.put(f"{prefix}{'L' * 4000}", "long name")
    etcd.put(f"{prefix}MULTI", "line 1\nline 2\r\n\ttabbed \u2028 end")
    etcd.put(f"{prefix}EMPTY", "")
    raw_put(etcd.url, f"{prefix}BINARY".encode(), b"\xff\xfe")
    load_config_center()
    assert os.environ["MULTI"] == "line 1\nline 2\r\n\ttabbed \u2028 end"
    assert os.environ["L" * 4000] == "long name"
    assert os.environ["EMPTY"] == ""
    assert "BINARY" not in os.environ and "NUL" not in os.environ
    warned = [r["message"] for r in logs.records if r["level"] == "WARNING"]
    for key in [*odd, f"{prefix}BINARY"]:
        assert sum(f"{key!r}" in line for line in warned) == 1, key


def test_a_bad_setting_from_the_center_names_its_key(center: dict[str, Any],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    etcd, prefix = center["etcd"], center["prefix"]
    etcd.put(f"{prefix}FLYER_PORT", "abc")
    etcd.put(f"{prefix}flyer_config_sync_interval", "1")  # only the environment sets these
    monkeypatch.setenv("flyer_port", "9000")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value) == (f"FLYER_PORT='abc' (from the config center's key "
                                 f"{prefix}FLYER_PORT) is not allowed: an integer from 1 "
                                 "to 65535")


def test_a_hundred_quick_changes_and_a_mass_deletion_end_on_the_last_state(
        center: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    etcd, prefix = center["etcd"], center["prefix"]
    client = EtcdClient(etcd.url, timeout=3)
    for index in range(300):
        client.put(f"{prefix}K{index}", str(index))
    monkeypatch.setenv("flyer_config_sync_interval", "5")
    sync = load_config_center()
    assert sync is not None and os.environ["K299"] == "299"
    sync.start()
    try:
        for value in range(100):
            client.put(f"{prefix}QUICK", str(value))
        wait_for(lambda: os.environ.get("QUICK") == "99", timeout=10)
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        httpx.post(f"{etcd.url}/v3/kv/deleterange", json={
            "key": base64.b64encode(prefix.encode()).decode(),
            "range_end": base64.b64encode(end.encode()).decode()}, timeout=5
        ).raise_for_status()
        wait_for(lambda: not any(f"K{i}" in os.environ for i in range(300))
                 and "QUICK" not in os.environ, timeout=10)
    finally:
        sync.stop()
    assert not [t.name for t in threading.enumerate() if t.name == "fastflyer-config"]


# --- credentials ----------------------------------------------------------------------
def test_passwords_never_show(monkeypatch: pytest.MonkeyPatch, logs: Any) -> None:
    password = "pä:ss:wörd@/#?"
    server = EtcdServer()
    server.start()
    try:
        server.put("/sec/prod/default/FEATURE", "on")
        server.enable_auth("alice", password)
        shown: list[str] = []
        for user, secret in [("alice", password + "x"), ("alice", None),
                             ("nobody", password)]:
            client = EtcdClient(server.url, user=user, password=secret, timeout=3)
            shown.append(repr(client))
            with pytest.raises(EtcdAuthError) as caught:
                client.get_prefix("/sec/")
            shown += [str(caught.value), repr(caught.value)]
        good = EtcdClient(server.url, user="alice", password=password, timeout=3)
        assert good.get("/sec/prod/default/FEATURE") == "on"
        shown.append(repr(good))
        for name, value in {"flyer_config_enabled": "1", "flyer_config_endpoints": server.url,
                            "flyer_config_app_id": "sec", "flyer_config_env_name": "prod",
                            "flyer_config_group_name": "default",
                            "flyer_config_user": "alice",
                            "flyer_config_password": password + "x"}.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(ConnectionError) as refused:
            load_settings()
        shown += [str(refused.value), repr(refused.value)]
        monkeypatch.setenv("flyer_config_user", "")
        with pytest.raises(SettingsError) as bad:
            load_settings()
        shown += [str(bad.value), repr(bad.value)]
        monkeypatch.setenv("flyer_config_user", "alice")
        monkeypatch.setenv("flyer_config_password", password)
        monkeypatch.setenv("flyer_config_allow_unreachable", "1")
        sync = load_config_center()
        assert sync is not None and os.environ["FEATURE"] == "on"
        server.stop()
        try:
            sync.read()
        except EtcdError as exc:
            sync.outage(exc)
            shown.append(str(exc))
        with pytest.raises(Degraded) as degraded:
            sync.check()
        shown.append(str(degraded.value))
    finally:
        server.close()
    everything = "\n".join(shown + [r["text"] for r in logs.records])
    assert "wörd" not in everything and "ss:w" not in everything


def test_a_restart_while_a_read_hangs_leaves_one_follower(
        center: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # An app whose lifespan runs twice (two TestClients, an in-process restart) while
    # etcd takes connections and never answers: stop() gives up waiting after 2 s, and
    # the thread it left must not go on following beside the new one.
    with hung_server() as port:
        monkeypatch.setenv("flyer_config_endpoints", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("flyer_config_allow_unreachable", "1")
        sync = load_config_center()
        assert sync is not None
        sync.start()
        sync.stop(timeout=0.5)  # the thread is still in its read (3 s)
        sync.start()

        def followers() -> int:
            return sum(t.name == "fastflyer-config" for t in threading.enumerate())

        assert followers() == 2
        try:
            wait_for(lambda: followers() == 1, timeout=10,
                     what="the follower left by stop() ends")
        finally:
            sync.stop()


def test_a_script_returns_while_a_thread_waits_for_a_change(etcd: Any) -> None:
    # A daemon thread in a long wait must not keep the process alive (etcd3gw's watch
    # threads are joined at exit): it exits about at once, not at the wait's end.
    script = ("import threading, time\n"
              "from fastkit.etcd import EtcdClient\n"
              f"client = EtcdClient({etcd.url!r}, timeout=3)\n"
              "revision = client.get_prefix('/hostile-exit/').revision\n"
              "threading.Thread(target=client.wait_for_change, daemon=True,\n"
              "                 args=('/hostile-exit/', revision, 120)).start()\n"
              # Returns once the watch is open (its reader thread runs): polled, to a bound.
              "deadline = time.monotonic() + 30\n"
              "while threading.active_count() < 3:\n"
              "    assert time.monotonic() < deadline, 'the watch never opened'\n"
              "    time.sleep(0.01)\n")
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", script], timeout=60, check=True)
    assert time.monotonic() - started < 10


def test_a_long_wait_sees_a_change_that_already_came_and_ends_on_time(etcd: Any) -> None:
    client = EtcdClient(etcd.url, timeout=3)
    prefix = f"/hostile-{uuid.uuid4().hex[:8]}/"
    revision = client.get_prefix(prefix).revision
    client.put(f"{prefix}K", "v")
    started = time.monotonic()
    assert client.wait_for_change(prefix, revision, 30) is True
    assert time.monotonic() - started < 5
    started = time.monotonic()
    assert client.wait_for_change(prefix, client.get_prefix(prefix).revision, 2.5) is False
    assert 2.4 < time.monotonic() - started < 6
