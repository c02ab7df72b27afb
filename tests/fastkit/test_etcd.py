"""fastkit.etcd against a real etcd: text in and out, prefixes, leases that end, watches,
several endpoints, authentication, and errors that name what failed and never a password."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from etcd_server import EtcdServer
from fastkit.etcd import EtcdAuthError, EtcdClient, EtcdError, EtcdUnavailable, prefix_end
from redis_server import closed_port
from waiting import wait_for


@pytest.fixture
def client(etcd: Any) -> Any:
    with EtcdClient(etcd.url, timeout=3) as made:
        yield made


def test_text_round_trips_as_utf8(client: EtcdClient, key: str) -> None:
    client.put(f"/{key}/名前", "値 ünïcode")
    assert client.get(f"/{key}/名前") == "値 ünïcode"
    assert client.get(f"/{key}/missing") is None
    assert client.delete(f"/{key}/名前") is True
    assert client.delete(f"/{key}/名前") is False


def test_a_prefix_reads_its_keys_only_with_the_revision(client: EtcdClient, etcd: Any,
                                                        key: str) -> None:
    client.put(f"/{key}/a/X", "1")
    client.put(f"/{key}/a/Y", "2")
    client.put(f"/{key}/ab/Z", "3")  # shares the text, not the prefix "/a/"
    snapshot = client.get_prefix(f"/{key}/a/")
    assert snapshot == {f"/{key}/a/X": "1", f"/{key}/a/Y": "2"}
    assert snapshot.revision > 0
    etcd.put(f"/{key}/a/X", "changed")
    assert client.get_prefix(f"/{key}/a/").revision > snapshot.revision


def test_prefix_end_is_the_last_byte_plus_one() -> None:
    assert prefix_end(b"/app/") == b"/app0"
    for bad in (b"", b"a\xff"):
        with pytest.raises(ValueError, match="prefix"):
            prefix_end(bad)


def test_a_leased_key_lives_while_kept_alive_and_goes_with_the_lease(
        client: EtcdClient, key: str) -> None:
    lease = client.grant(2)
    client.put(f"/{key}/instance", "up", lease=lease)
    assert client.keepalive(lease) is True
    assert client.get(f"/{key}/instance") == "up"
    client.revoke(lease)
    assert client.get(f"/{key}/instance") is None
    assert client.keepalive(lease) is False  # ended: grant another


def test_an_unrenewed_lease_ends_and_takes_its_key(client: EtcdClient, key: str) -> None:
    lease = client.grant(1)
    client.put(f"/{key}/instance", "up", lease=lease)
    wait_for(lambda: client.get(f"/{key}/instance") is None, timeout=10)
    assert client.keepalive(lease) is False


@pytest.mark.parametrize("change", ["put", "delete"])
def test_a_watch_wakes_on_a_change_after_the_revision(client: EtcdClient, etcd: Any,
                                                      key: str, change: str) -> None:
    etcd.put(f"/{key}/w/X", "1")
    snapshot = client.get_prefix(f"/{key}/w/")
    woke: list[bool] = []
    thread = threading.Thread(target=lambda: woke.append(
        client.wait_for_change(f"/{key}/w/", snapshot.revision, timeout=30)))
    thread.start()
    etcd.put(f"/{key}/other", "not under the prefix")
    if change == "put":
        etcd.put(f"/{key}/w/X", "2")
    else:
        etcd.delete(f"/{key}/w/X")
    thread.join(timeout=20)
    assert woke == [True]


def test_a_change_made_before_the_watch_is_not_missed(client: EtcdClient, etcd: Any,
                                                      key: str) -> None:
    snapshot = client.get_prefix(f"/{key}/w/")
    etcd.put(f"/{key}/w/X", "between the read and the watch")
    assert client.wait_for_change(f"/{key}/w/", snapshot.revision, timeout=10) is True


def test_no_change_waits_the_timeout_and_says_so(client: EtcdClient, key: str) -> None:
    snapshot = client.get_prefix(f"/{key}/quiet/")
    assert client.wait_for_change(f"/{key}/quiet/", snapshot.revision, timeout=0.3) is False


def test_a_dead_endpoint_is_passed_over(etcd: Any, key: str) -> None:
    with closed_port() as port, EtcdClient(f"http://127.0.0.1:{port},{etcd.url}",
                                           timeout=2) as client:
        client.put(f"/{key}/x", "1")
        assert client.get(f"/{key}/x") == "1"
        assert client.endpoint == etcd.url  # it stays with the one that answered


def test_no_endpoint_answering_names_each_one() -> None:
    with closed_port() as first, closed_port() as second:
        ports = [first, second]
        with EtcdClient([f"http://127.0.0.1:{port}" for port in ports], timeout=1) as client, \
                pytest.raises(EtcdUnavailable) as caught:
            client.get_prefix("/x/")
    assert isinstance(caught.value, ConnectionError)
    for port in ports:
        assert f"127.0.0.1:{port} (connection refused)" in str(caught.value)


def test_an_endpoint_url_with_credentials_never_shows_them() -> None:
    with closed_port() as port, EtcdClient(f"http://user:s3cret@127.0.0.1:{port}",
                                           timeout=1) as client:
        assert "s3cret" not in repr(client)
        with pytest.raises(EtcdUnavailable) as caught:
            client.get("/x")
    assert "s3cret" not in str(caught.value)


def test_bad_arguments_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="endpoint"):
        EtcdClient("")
    with pytest.raises(ValueError, match="user name"):
        EtcdClient(password="x")
    with pytest.raises(ValueError, match="timeout"):
        EtcdClient(timeout=0)


@pytest.fixture(scope="module")
def secured() -> Any:
    server = EtcdServer()
    server.start()
    server.enable_auth("app", "pa55-word")
    yield server
    server.close()


def test_a_user_and_password_authenticate(secured: EtcdServer, key: str) -> None:
    with EtcdClient(secured.url, user="app", password="pa55-word") as client:
        client.put(f"/{key}/x", "1")
        assert secured.get(f"/{key}/x") == "1"
        lease = client.grant(5)
        assert client.keepalive(lease) is True
        snapshot = client.get_prefix(f"/{key}/")
        secured.put(f"/{key}/y", "2")
        assert client.wait_for_change(f"/{key}/", snapshot.revision, timeout=10) is True


def test_an_expired_token_is_renewed(secured: EtcdServer, key: str) -> None:
    with EtcdClient(secured.url, user="app", password="pa55-word") as client:
        client.put(f"/{key}/x", "1")
        session = client._client(client.endpoints[0]).session
        session.token = "expired-or-revoked"  # what a token past its TTL looks like to etcd
        assert client.get(f"/{key}/x") == "1"
        assert session.token != "expired-or-revoked"


@pytest.mark.parametrize(("user", "password"), [("app", "wrong-pass"), (None, None)])
def test_refused_credentials_raise_without_the_password(secured: EtcdServer, key: str,
                                                       user: str | None,
                                                       password: str | None) -> None:
    with EtcdClient(secured.url, user=user, password=password) as client, \
            pytest.raises(EtcdAuthError) as caught:
        client.get(f"/{key}/x")
    assert isinstance(caught.value, PermissionError)
    assert isinstance(caught.value, EtcdError)
    assert "wrong-pass" not in str(caught.value)
    assert secured.url.removeprefix("http://") in str(caught.value)


@pytest.mark.parametrize("module", ["etcd3gw", "requests"])
def test_without_the_extra_a_call_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                       module: str) -> None:
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # as in an install without the extra
    client = EtcdClient("http://127.0.0.1:2379")  # building it imports neither
    with pytest.raises(ImportError, match=r"pip install 'fastflyer\[etcd\]'") as caught:
        client.get("/x")
    assert module in str(caught.value)


@pytest.mark.parametrize(("status", "body"), [
    (200, b"<html>a proxy's page</html>"), (200, b"{}"), (200, b'{"ID": "0"}'),
    (502, b"<html>" + b"x" * 5000 + b"</html>")], ids=["html", "empty", "lease-0", "502"])
def test_a_server_that_is_not_etcd_is_an_etcd_error(status: int, body: bytes) -> None:
    # Another server on the port (a proxy, the wrong service): an EtcdError saying so,
    # never a JSONDecodeError or KeyError, and never a lease 0, which would never end.
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class NotEtcd(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotEtcd)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with EtcdClient(f"http://127.0.0.1:{server.server_address[1]}", timeout=3) as client:
            with pytest.raises(EtcdError) as caught:
                client.grant(5)
            with pytest.raises(EtcdError):
                client.get_prefix("/x/")
    finally:
        server.shutdown()
        server.server_close()
    assert len(str(caught.value)) < 400
