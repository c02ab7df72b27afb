"""A private rsyslogd (Debian's ``rsyslog``) receiving syslog over UDP and TCP on reserved
loopback ports, writing every message it receives to a file as one JSON object per line, for
the log shipping tests: started by the tests, stopped (and restarted, for outages) by them.

Nothing here needs root: the daemon runs in the foreground with its own configuration, pid
file and work directory in a temporary directory, loads no local inputs (no ``imuxsock``, no
``imklog``), and keeps its own messages to itself instead of handing them to the machine's
system log."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis_server import ChildServer, holds, listens
from waiting import wait_for

__all__ = ["RsyslogServer"]

SBIN = "/usr/sbin"  # where Debian puts rsyslogd; a user's PATH may lack it

# One JSON object per received message. Values are the properties rsyslog parsed from the
# RFC 5424 header, as sent: a NILVALUE field ("-") stays "-". ``raw`` is the message exactly as
# framed on the wire, ``input`` is "imudp" or "imtcp", ``from`` the sender's address.
_TEMPLATE = """\
template(name="jsonl" type="list" option.jsonf="on") {
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app_name" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="structured_data" name="structured-data" format="jsonf")
  property(outname="severity" name="syslogseverity" format="jsonf" datatype="number")
  property(outname="facility" name="syslogfacility" format="jsonf" datatype="number")
  property(outname="timestamp" name="timestamp" dateFormat="rfc3339" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
  property(outname="raw" name="rawmsg" format="jsonf")
  property(outname="input" name="inputname" format="jsonf")
  property(outname="from" name="fromhost-ip" format="jsonf")
}
"""


class RsyslogServer(ChildServer):
    """``start()``, ``stop()``, ``close()`` and the received ``messages()`` of one rsyslogd.

    It listens on 127.0.0.1: ``udp_port`` (imudp) and ``tcp_port`` (imtcp, which takes both
    RFC 6587 framings: octet counting and a line feed after each message). Both ports are
    reserved for the object's lifetime (rsyslogd sets SO_REUSEADDR on its sockets), so a
    restart after ``stop()`` finds them free; while it is stopped a TCP connection is refused
    and a datagram to a connected UDP socket gets "connection refused" back, as from a
    collector that is down. Received messages persist across a restart.

    Control characters are kept as received (rsyslog's default would write a line feed as
    ``#012``), and messages of up to 64 KiB are taken whole."""

    def __init__(self) -> None:
        search = os.pathsep.join([os.environ.get("PATH", ""), SBIN])
        self.binary = (shutil.which("rsyslogd", path=search)
                       or self.program("rsyslogd", "rsyslog"))
        self.tcp_port = self.reserve()
        self.udp_port = self._reserve_udp()
        self.directory = Path(tempfile.mkdtemp(prefix="fastflyer-rsyslog-"))
        self.config = self.directory / "rsyslog.conf"
        self.messages_file = self.directory / "messages"
        self.log = self.directory / "rsyslogd.log"  # what it prints (errors before start)
        self.internal_log = self.directory / "internal.log"  # its own messages, errors too
        self.pid_file = self.directory / "rsyslogd.pid"
        (self.directory / "work").mkdir()
        self.config.write_text(self._config())
        self.process: subprocess.Popen[bytes] | None = None

    def _config(self) -> str:
        work = self.directory / "work"
        return (
            f'global(workDirectory="{work}" processInternalMessages="on"\n'
            '       net.enableDNS="off" maxMessageSize="64k"\n'
            '       parser.escapeControlCharactersOnReceive="off")\n'
            'module(load="imudp")\n'
            'module(load="imtcp")\n'
            f'input(type="imudp" address="127.0.0.1" port="{self.udp_port}")\n'
            f'input(type="imtcp" address="127.0.0.1" port="{self.tcp_port}")\n'
            f"{_TEMPLATE}"
            'if $inputname == "imudp" or $inputname == "imtcp" then {\n'
            f'  action(type="omfile" file="{self.messages_file}" template="jsonl")\n'
            "} else {\n"
            f'  action(type="omfile" file="{self.internal_log}")\n'
            "}\n")

    def _reserve_udp(self) -> int:
        # A UDP socket on its own port, with SO_REUSEADDR, connected to itself: no other
        # program gets the port (binding port 0 skips it), rsyslogd binds it beside this one,
        # and since this socket only accepts datagrams from its own address, every datagram a
        # client sends goes to rsyslogd, or is refused while rsyslogd is stopped.
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.connect(sock.getsockname())
        weakref.finalize(self, sock.close)
        return int(sock.getsockname()[1])

    def start(self) -> None:
        """Start rsyslogd and return once it receives on both ports (RuntimeError, with its
        output, when its configuration is refused or it is not up within 15 s)."""
        check = subprocess.run([self.binary, "-N1", "-f", str(self.config)],
                               capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"rsyslogd refuses {self.config}: {check.stderr[-2000:]}")
        # A pid file left by a killed run makes rsyslogd refuse to start when that pid has
        # been reused by then.
        self.pid_file.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-n", "-f", str(self.config), "-i", str(self.pid_file)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        process = self.process
        while not (listens(process.pid, self.tcp_port) and _bound_udp(process.pid, self.udp_port)
                   and self._started(process.pid)):
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"rsyslogd did not start on 127.0.0.1 udp/{self.udp_port} "
                    f"tcp/{self.tcp_port}: {self._output()}")
            time.sleep(0.01)  # polling to the deadline above
        self.check_listening(self.tcp_port)

    def _started(self, pid: int) -> bool:
        # rsyslogd logs "[origin ... x-pid="PID" ...] start" once its inputs run.
        try:
            lines = self.internal_log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return False
        return any(f'x-pid="{pid}"' in line and line.endswith("] start") for line in lines)

    def _output(self) -> str:
        text = ""
        for path in (self.log, self.internal_log):
            with contextlib.suppress(FileNotFoundError):
                text += path.read_text(errors="replace")
        return text[-2000:]

    def close(self) -> None:
        """Stop it and remove its directory (configuration, received messages)."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def messages(self) -> list[dict[str, Any]]:
        """Every message received so far, oldest first, one dict each with the keys
        ``hostname``, ``app_name``, ``procid``, ``msgid``, ``structured_data`` (strings as
        sent, "-" for a NILVALUE), ``severity`` and ``facility`` (ints), ``timestamp``
        (RFC 3339, as sent), ``msg`` (the MSG part, a UTF-8 BOM kept), ``raw`` (the whole
        message as framed), ``input`` ("imudp" or "imtcp") and ``from`` (the sender's IP).
        A line rsyslogd is still writing is left out."""
        try:
            text = self.messages_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.split("\n")[:-1]]

    def wait_for_messages(self, count: int = 1,
                          where: Callable[[dict[str, Any]], bool] | None = None,
                          timeout: float = 10) -> list[dict[str, Any]]:
        """The received messages ``where`` accepts (all of them when None), once there are
        at least ``count``; AssertionError, with the last messages received, after
        ``timeout`` seconds."""
        found: list[dict[str, Any]] = []

        def enough() -> bool:
            found[:] = [m for m in self.messages() if where is None or where(m)]
            return len(found) >= count

        try:
            wait_for(enough, timeout, f"{count} such message(s) received by rsyslogd")
        except AssertionError as error:
            raise AssertionError(f"{error}; the last received: {self.messages()[-5:]}") from None
        return found

    def wait_for_message(self, timeout: float = 10, **fields: object) -> dict[str, Any]:
        """The first received message whose fields equal ``fields`` (e.g.
        ``app_name="orders", msg="paid"``), waiting up to ``timeout`` seconds for it
        (AssertionError then)."""
        return self.wait_for_messages(
            1, lambda m: all(m.get(k) == v for k, v in fields.items()), timeout)[0]


def _bound_udp(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds an unconnected UDP socket bound to ``port``."""
    return holds(pid, ("udp",), lambda fields: int(fields[1].rsplit(":", 1)[1], 16) == port
                 and fields[2] == "00000000:0000")
