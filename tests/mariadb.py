"""The real MariaDB of 127.0.0.1:3306 (root, no password, database ``test``), reached
beside the pools under test: plain statements and KILL. A test that stops or restarts
MariaDB does it to a private server of its own (:class:`MariaDBServer`), never to the
machine's shared one."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pymysql
import pytest

from redis_server import ChildServer

HOST, PORT, USER, NAME = "127.0.0.1", 3306, "root", "test"
URL = f"mysql+pymysql://{USER}@{HOST}:{PORT}/{NAME}"


def admin() -> pymysql.connections.Connection:
    """A plain autocommit connection, beside the pools under test."""
    # A statement blocked by a test's leftover lock fails in 10 s instead of hanging.
    return pymysql.connect(host=HOST, port=PORT, user=USER, database=NAME, autocommit=True,
                           connect_timeout=3, init_command="SET SESSION lock_wait_timeout = 10")


def sql(statement: str, *args: object) -> tuple[tuple[object, ...], ...]:
    connection = admin()
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, args or None)
            return tuple(cursor.fetchall())
    finally:
        connection.close()


def kill(connection_id: int) -> None:
    sql(f"KILL {int(connection_id)}")


def wait_until_answering(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin().close()
            return
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:  # .ci/run installs it; a test must fail, not skip, without it
        raise RuntimeError(f"{name} is not installed (apt-get install mariadb-server)")
    return found


class MariaDBServer(ChildServer):
    """A private ``mariadbd`` on a reserved loopback port with a temporary data directory:
    ``start()``, ``restart()``, ``stop()``; root with no password, database ``test``."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="fastflyer-mariadb-"))
        self.port = self.reserve()
        self.process: subprocess.Popen[bytes] | None = None
        user = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run([_binary("mariadb-install-db"), "--no-defaults",
                        f"--datadir={self.directory / 'data'}", "--skip-test-db",
                        "--auth-root-authentication-method=normal", *user],
                       check=True, capture_output=True)

    def start(self) -> None:
        """Start on the port reserved for this server (the same one at every start)."""
        self.process = subprocess.Popen(
            [_binary("mariadbd"), "--no-defaults", f"--datadir={self.directory / 'data'}",
             f"--socket={self.directory / 'mysqld.sock'}", f"--port={self.port}",
             "--bind-address=127.0.0.1", "--skip-name-resolve",
             f"--pid-file={self.directory / 'mariadbd.pid'}",
             f"--log-error={self.directory / 'error.log'}",
             *(["--user=root"] if os.geteuid() == 0 else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not self._answering():
            self.stop()
            raise RuntimeError("a private MariaDB did not start; see "
                               f"{self.directory / 'error.log'}")
        self.check_listening(self.port)
        self.sql("CREATE DATABASE IF NOT EXISTS test")

    def _answering(self, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while self.process is not None and self.process.poll() is None:
            try:
                pymysql.connect(host=HOST, port=self.port, user=USER, connect_timeout=1).close()
                return True
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
        return False

    def sql(self, statement: str) -> None:
        connection = pymysql.connect(host=HOST, port=self.port, user=USER, autocommit=True)
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()

    def restart(self) -> None:
        """Shut the server down with ``SHUTDOWN``, wait for its process to end, start again."""
        assert self.process is not None
        self.sql("SHUTDOWN")
        self.process.wait(60)
        self.process = None
        self.start()

    def remove(self) -> None:
        """Stop the server and delete its data directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def answering_or_fail() -> None:
    """Fail (never skip) the calling test when MariaDB does not answer."""
    try:
        admin().close()
    except pymysql.err.OperationalError as exc:
        pytest.fail(f"MariaDB is not answering on {HOST}:{PORT} ({exc}); start it with "
                    "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd")
