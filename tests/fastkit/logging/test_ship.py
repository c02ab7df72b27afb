"""The log shipper alone against a real rsyslogd: RFC 5424 over UDP and TCP (octet
counting), redaction, outages (bounded queue, drops counted, one WARNING each, resuming),
and a bounded close when the collector stops reading."""

from __future__ import annotations

import json
import socket
import time
import uuid
from typing import Any

import pytest
from loguru import logger as loguru_logger

from fastkit.logging import LogShipper, logger
from fastkit.logging._ship import NO_SHIP, severity
from rsyslog_server import RsyslogServer
from waiting import wait_for


@pytest.fixture
def collector(rsyslog: RsyslogServer) -> RsyslogServer:
    """The session's rsyslogd (tests tell their messages apart by APP-NAME)."""
    return rsyslog


@pytest.fixture
def topic() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


class Shipping:
    """A started shipper whose sink is added to loguru, and the notes it logged."""

    def __init__(self, shipper: LogShipper) -> None:
        self.shipper = shipper
        self.notes: list[dict[str, Any]] = []
        shipper.start()
        self.ids = [
            loguru_logger.add(shipper.sink, format="{message}", level="DEBUG",
                              filter=lambda r: not r["extra"].get(NO_SHIP)),
            loguru_logger.add(self._note, format="{message}", level="DEBUG",
                              filter=lambda r: bool(r["extra"].get(NO_SHIP))),
        ]

    def _note(self, message: Any) -> None:
        self.notes.append({"level": message.record["level"].name,
                           "message": message.record["message"]})

    def warnings(self) -> list[str]:
        return [n["message"] for n in self.notes if n["level"] == "WARNING"]

    def close(self, timeout: float = 2.0) -> None:
        for handler_id in self.ids:
            loguru_logger.remove(handler_id)
        self.shipper.close(timeout)


def shipping(server: RsyslogServer, proto: str, topic: str, **options: Any) -> Shipping:
    port = server.udp_port if proto == "udp" else server.tcp_port
    return Shipping(LogShipper("127.0.0.1", port, proto, app_name=topic,
                               hostname="10.9.8.7", **options))


def shipped(server: RsyslogServer, topic: str, count: int = 1) -> list[dict[str, Any]]:
    return [json.loads(m["msg"]) | {"_syslog": m} for m in
            server.wait_for_messages(count, lambda m: m["app_name"] == topic)]


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_lines_arrive_with_the_topic_and_the_host(collector: RsyslogServer, topic: str,
                                                  proto: str) -> None:
    ship = shipping(collector, proto, topic)
    try:
        logger.bind(request_id="req-42").warning("paid {}", 7)
        [line] = shipped(collector, topic)
    finally:
        ship.close()
    syslog = line["_syslog"]
    assert syslog["input"] == f"im{proto}"
    assert (syslog["hostname"], syslog["app_name"], syslog["msgid"]) == ("10.9.8.7", topic, "app")
    assert (syslog["facility"], syslog["severity"]) == (16, 4)
    assert syslog["procid"].isdigit()
    assert syslog["timestamp"][:4].isdigit()
    assert line["level"] == "WARNING" and line["message"] == "paid 7"
    assert line["request_id"] == "req-42" and line["trace_id"] is None
    assert line["function"] == "test_lines_arrive_with_the_topic_and_the_host"
    assert ship.shipper.sent == 1 and ship.shipper.dropped == 0


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_secrets_are_masked_in_what_is_shipped(collector: RsyslogServer, topic: str,
                                               proto: str) -> None:
    ship = shipping(collector, proto, topic)
    try:
        logger.info("login with password=hunter2 and Authorization: Bearer abc.def")
        loguru_logger.info("plain loguru: token=s3cr3t")  # not FastKit's logger: masked too
        lines = shipped(collector, topic, 2)
    finally:
        ship.close()
    raw = " ".join(line["_syslog"]["raw"] for line in lines)
    assert "hunter2" not in raw and "abc.def" not in raw and "s3cr3t" not in raw
    assert "password=***" in lines[0]["message"] and "token=***" in lines[1]["message"]


def test_tcp_frames_by_octet_counting(collector: RsyslogServer, topic: str) -> None:
    ship = shipping(collector, "tcp", topic)
    try:
        logger.info("first line\nsecond line\n  third, with ünïcode")
        logger.info("after")
        lines = shipped(collector, topic, 2)
    finally:
        ship.close()
    assert [line["message"] for line in lines] == [
        "first line\nsecond line\n  third, with ünïcode", "after"]


def test_access_lines_are_shipped_as_access(collector: RsyslogServer, topic: str) -> None:
    ship = shipping(collector, "udp", topic)
    try:
        ship.shipper.ship_line({"method": "GET", "path": "/x", "status": 200,
                                "request_id": "r1", "query": "token=***"})
        [line] = shipped(collector, topic)
    finally:
        ship.close()
    assert line["_syslog"]["msgid"] == "access" and line["_syslog"]["severity"] == 6
    assert line["kind"] == "access" and line["level"] == "INFO"
    assert (line["path"], line["status"], line["request_id"]) == ("/x", 200, "r1")


def test_dev_writes_to_the_console_only(capsys: pytest.CaptureFixture[str], topic: str) -> None:
    shipper = LogShipper(None, proto="dev", app_name=topic, hostname="h1")
    ship = Shipping(shipper)
    seen: list[str] = []
    try:
        logger.info("to the console")

        def printed() -> bool:
            seen.append(capsys.readouterr().err)
            return topic in "".join(seen)

        wait_for(printed, 5, "the dev line on stderr")
    finally:
        ship.close()
    line = next(text for text in "".join(seen).splitlines() if topic in text)
    assert line.startswith("<134>1 ") and f" h1 {topic} " in line
    assert json.loads(line.split(" - ", 1)[1])["message"] == "to the console"


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_an_outage_drops_beyond_the_queue_warns_once_and_resumes(topic: str,
                                                                  proto: str) -> None:
    server = RsyslogServer()
    server.start()
    ship = shipping(server, proto, topic, queue_size=20)
    shipper = ship.shipper
    try:
        logger.info("before")
        shipped(server, topic)
        server.stop()
        started = time.monotonic()
        for number in range(500):
            logger.info("during {}", number)
            assert shipper.queued() <= 20
        spent = time.monotonic() - started
        wait_for(lambda: shipper.outages == 1, 10, "the outage noticed")
        assert shipper.dropped >= 500 - 20 - 2  # all but the queue and the one held
        assert spent < 2.0  # 500 lines; nothing waited for the collector
        assert len(ship.warnings()) == 1 and "log shipping" in ship.warnings()[0]
        for number in range(100):
            logger.info("still down {}", number)
        assert shipper.queued() <= 20 and shipper.outages == 1
        assert len(ship.warnings()) == 1
        server.start()
        # the queued lines go out, and room is made for new ones
        wait_for(lambda: shipper.queued() == 0, 15, "the queue sent after the restart")
        logger.info("after")
        lines = shipped(server, topic, 2)
        wait_for(lambda: any(m["message"] == "after" for m in
                             (json.loads(x["msg"]) for x in server.messages()
                              if x["app_name"] == topic)), 15, "the line after the restart")
        assert lines[0]["message"] == "before"
        assert any("resumed" in n["message"] for n in ship.notes)
        # the notes about shipping were never shipped
        assert not any("log shipping" in m["msg"] for m in server.messages())
        # a second outage: one more warning
        server.stop()
        for number in range(50):
            logger.info("second {}", number)
        wait_for(lambda: shipper.outages == 2, 10, "the second outage noticed")
        assert len(ship.warnings()) == 2
    finally:
        ship.close(0.5)
        server.close()


def test_close_is_bounded_when_the_collector_stops_reading(topic: str) -> None:
    # A collector that accepts (the kernel does, from the backlog) and never reads: the
    # sender fills the socket buffers and blocks in send.
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    total = 400
    shipper = LogShipper("127.0.0.1", port, "tcp", app_name=topic, queue_size=total,
                         send_timeout=60)
    shipper.start()
    try:
        big = {"message": "x" * 55_000}
        for _ in range(total):
            shipper.ship_line(big)
        wait_for(lambda: shipper.sent >= 1, 10, "the first message sent")
        started = time.monotonic()
        shipper.close(0.5)
        assert time.monotonic() - started < 2.0
        assert shipper.queued() == 0 and shipper.sent + shipper.dropped == total
        assert shipper.sent < total  # 22 MB never fit the buffers of a reader that never reads
        assert shipper._thread is not None and not shipper._thread.is_alive()
    finally:
        listener.close()


def test_a_full_queue_drops_and_counts_without_blocking(topic: str) -> None:
    shipper = LogShipper("127.0.0.1", 9, "udp", app_name=topic, queue_size=5)  # not started
    for _ in range(12):
        shipper.ship_line({"n": 1})
    assert (shipper.queued(), shipper.dropped, shipper.sent) == (5, 7, 0)
    shipper.close(0.1)
    assert shipper.dropped == 12


@pytest.mark.parametrize(("level", "number", "expected"), [
    ("TRACE", 5, 7), ("DEBUG", 10, 7), ("INFO", 20, 6), ("SUCCESS", 25, 5),
    ("WARNING", 30, 4), ("ERROR", 40, 3), ("CRITICAL", 50, 2), ("NOTICE", 27, 5),
    ("AUDIT", 45, 3)])
def test_levels_map_to_syslog_severities(level: str, number: int, expected: int) -> None:
    assert severity(level, number) == expected


def test_header_fields_are_limited_and_printable() -> None:
    shipper = LogShipper(None, proto="dev", app_name="a b" + "c" * 60, hostname="")
    assert shipper.app_name == "ab" + "c" * 46 and shipper.hostname == "-"
    with pytest.raises(ValueError, match="proto"):
        LogShipper("h", proto="http")
    with pytest.raises(ValueError, match="host"):
        LogShipper(None, proto="tcp")
    with pytest.raises(ValueError, match="port"):
        LogShipper("h", 0)


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_udp_lines_go_from_the_callers_thread_while_nothing_waits(
        collector: RsyslogServer, topic: str, proto: str) -> None:
    # The server's cost: a sender thread woken for each line costs a switch of the
    # interpreter's lock per request; over UDP an idle shipper sends at once instead.
    ship = shipping(collector, proto, topic)
    try:
        logger.info("first")  # connects the sender
        wait_for(lambda: ship.shipper.sent == 1 and ship.shipper._idle, 10,
                 "the first line sent and the sender idle")
        logger.info("second")
        if proto == "udp":  # sent before the call returned (TCP: queued for the sender, a
            assert ship.shipper.sent == 2  # stream can block and writes could interleave)
        assert [line["message"] for line in shipped(collector, topic, 2)] == \
            ["first", "second"]
        assert ship.shipper.sent == 2 and ship.shipper.dropped == 0
    finally:
        ship.close()
