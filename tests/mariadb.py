"""The real MariaDB of 127.0.0.1:3306 (root, no password, database ``test``), reached
beside the pools under test: plain statements, KILL, and a restart."""

from __future__ import annotations

import subprocess
import time

import pymysql
import pytest

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


def restart_mariadb() -> None:
    """Shut MariaDB down, wait until its process has exited, and start it again."""
    sql("SHUTDOWN")
    deadline = time.monotonic() + 60
    # The port closes before the process ends; starting earlier would find it running.
    while subprocess.run(["pgrep", "-x", "mariadbd"], capture_output=True).returncode == 0:
        if time.monotonic() > deadline:
            raise TimeoutError("MariaDB did not stop within 60 s")
        time.sleep(0.1)
    subprocess.run(["start-stop-daemon", "--start", "--oknodo", "--background", "--exec",
                    "/usr/sbin/mariadbd"], check=True)
    wait_until_answering()


def answering_or_fail() -> None:
    """Fail (never skip) the calling test when MariaDB does not answer."""
    try:
        admin().close()
    except pymysql.err.OperationalError as exc:
        pytest.fail(f"MariaDB is not answering on {HOST}:{PORT} ({exc}); start it with "
                    "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd")
