"""A private redis-server on a reserved loopback port, for tests that stop and start Redis
(the shared one on 6379 stays up for everything else), and the ports such child servers
listen on."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import weakref
from collections.abc import Callable, Iterator

import redis


def reserve_port() -> socket.socket:
    """A socket bound to a port of 127.0.0.1 with SO_REUSEADDR, not listening; its port is
    ``getsockname()[1]``.

    While it stays open the kernel gives that port to nobody else (binding port 0 skips
    it, a plain bind of it fails with EADDRINUSE), yet a server that sets SO_REUSEADDR
    itself (redis-server, mariadbd and tansu do) binds and listens there. For servers that
    cannot bind port 0 and report the port they got: unlike picking a free port and
    closing it, nothing can take the port between the choice and the server's bind."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port of 127.0.0.1 bound but not listening, held for the block: a connection to it
    is refused, and no other program can listen there meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def holds(pid: int, tables: tuple[str, ...], wanted: Callable[[list[str]], bool]) -> bool:
    """Whether process ``pid`` holds a socket of the kernel's ``tables`` (``tcp``,
    ``udp``... under /proc/self/net) whose row (split in fields) ``wanted`` picks, from
    /proc: the tables and the process's descriptors; False once it has ended."""
    sockets = set()
    for table in tables:
        with open(f"/proc/self/net/{table}") as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if wanted(fields):
                    sockets.add(f"socket:[{fields[9]}]")
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in descriptors:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") in sockets:
                return True
    return False


def _port(address: str) -> int:
    """The port of a /proc/net address (``0100007F:1F90``)."""
    return int(address.rsplit(":", 1)[1], 16)


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds the socket listening on TCP ``port``; False once it
    has ended."""
    return holds(pid, ("tcp", "tcp6"),
                 lambda fields: fields[3] == "0A" and _port(fields[1]) == port)


class ChildServer:
    """A server run as a child process of the tests on a port reserved for it (see
    :func:`reserve_port`) for the object's lifetime, so a restart finds it free too;
    ``stop()`` ends the process."""

    process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def program(name: str, package: str) -> str:
        """The path of ``name``; RuntimeError naming the Debian ``package`` when it is
        missing (.ci/run installs it; a test must fail, not skip, without it)."""
        binary = shutil.which(name)
        if binary is None:
            raise RuntimeError(f"{name} is not installed (apt-get install {package})")
        return binary

    def reserve(self) -> int:
        """Reserve a port for this server until the object is collected; the port."""
        sock = reserve_port()
        weakref.finalize(self, sock.close)
        return int(sock.getsockname()[1])

    def check_listening(self, port: int) -> None:
        """Raise RuntimeError unless this server's process is the one listening on ``port``
        (a server that answers may be another program's, or one about to exit)."""
        if self.process is None or not listens(self.process.pid, port):
            self.stop()
            raise RuntimeError(f"{type(self).__name__} is not the one listening on "
                               f"127.0.0.1:{port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


class RedisServer(ChildServer):
    """``start()``, ``stop()`` and ``url`` of one redis-server process."""

    def __init__(self) -> None:
        self.binary = self.program("redis-server", "redis-server")
        self.port = self.reserve()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        with redis.Redis(port=self.port, socket_connect_timeout=0.2) as client:
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)  # polling to the deadline above
        self.check_listening(self.port)
