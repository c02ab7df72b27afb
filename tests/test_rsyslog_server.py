"""The private rsyslogd the log shipping tests run against: RFC 5424 messages sent by hand over
UDP and over TCP with octet counting (RFC 6587) arrive with their header fields; a stop
refuses connections, a restart takes the same ports; a machine without rsyslogd makes a test
fail rather than skip."""

from __future__ import annotations

import socket
import subprocess

import pytest

import rsyslog_server
from redis_server import listens
from rsyslog_server import RsyslogServer


def _octet_counted(*messages: bytes) -> bytes:
    return b"".join(b"%d %s" % (len(message), message) for message in messages)


@pytest.fixture
def server():
    server = RsyslogServer()
    try:
        server.start()
        yield server
    finally:
        server.close()
    assert not server.directory.exists()


def test_udp_and_octet_counted_tcp_messages_arrive_with_their_fields(server) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(b'<134>1 2026-12-01T07:00:00.123456Z web-1 orders 4242 ID47 '
                   b'[req@32473 id="r-1"] paid order 7', ("127.0.0.1", server.udp_port))
    # Two messages in one write, the first holding a line feed: only octet counting frames
    # them as two messages of which the first is whole.
    with socket.create_connection(("127.0.0.1", server.tcp_port), timeout=5) as tcp:
        tcp.sendall(_octet_counted(
            b"<11>1 2026-12-01T07:00:01Z web-2 billing - - - Traceback:\n  line 1",
            b"<14>1 2026-12-01T07:00:02Z web-2 billing 7 - - second"))
    by_udp = server.wait_for_message(app_name="orders")
    assert by_udp == {
        "hostname": "web-1", "app_name": "orders", "procid": "4242", "msgid": "ID47",
        "structured_data": '[req@32473 id="r-1"]', "severity": 6, "facility": 16,
        "timestamp": "2026-12-01T07:00:00.123456Z", "msg": "paid order 7",
        "raw": '<134>1 2026-12-01T07:00:00.123456Z web-1 orders 4242 ID47 '
               '[req@32473 id="r-1"] paid order 7',
        "input": "imudp", "from": "127.0.0.1"}
    by_tcp = server.wait_for_messages(2, lambda m: m["app_name"] == "billing")
    assert [(m["hostname"], m["procid"], m["severity"], m["facility"], m["msg"], m["input"])
            for m in by_tcp] == [("web-2", "-", 3, 1, "Traceback:\n  line 1", "imtcp"),
                                 ("web-2", "7", 6, 1, "second", "imtcp")]
    assert len(server.messages()) == 3
    # rsyslogd runs on with configuration errors; it reported none.
    assert "error" not in server.log.read_text() + server.internal_log.read_text()
    check = subprocess.run([server.binary, "-N1", "-f", str(server.config)],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr


def test_a_stop_refuses_connections_and_a_restart_takes_the_same_ports(server) -> None:
    with socket.create_connection(("127.0.0.1", server.tcp_port), timeout=5) as tcp:
        tcp.sendall(_octet_counted(b"<14>1 - web-1 orders - - - before"))
    server.wait_for_message(msg="before")
    pid = server.process.pid if server.process else 0
    server.stop()  # the outage
    assert not listens(pid, server.tcp_port)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.tcp_port), timeout=5).close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
            pytest.raises(ConnectionRefusedError):
        udp.settimeout(5)
        udp.connect(("127.0.0.1", server.udp_port))
        udp.send(b"<14>1 - web-1 orders - - - lost")
        udp.recv(1)  # the port unreachable answer
    server.start()  # back on the same ports, with what it had received
    with socket.create_connection(("127.0.0.1", server.tcp_port), timeout=5) as tcp:
        tcp.sendall(_octet_counted(b"<14>1 - web-1 orders - - - after by tcp"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(b"<14>1 - web-1 orders - - - after by udp", ("127.0.0.1", server.udp_port))
    server.wait_for_message(msg="after by tcp", input="imtcp")
    server.wait_for_message(msg="after by udp", input="imudp")
    assert sorted(m["msg"] for m in server.messages()) == [
        "after by tcp", "after by udp", "before"]  # nothing sent during the outage


def test_without_rsyslog_installed_a_test_fails_naming_the_package(
        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(rsyslog_server, "SBIN", str(tmp_path))
    with pytest.raises(RuntimeError, match="apt-get install rsyslog"):
        RsyslogServer()
