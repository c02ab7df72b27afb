"""What ``make test`` needs from the machine, checked before anything is installed.

    python3 tests/preflight.py

Prints one line per missing piece, naming what to install or start, and exits 1; prints
nothing and exits 0 when all is there. Standard library only: it runs before the venv exists.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import sys

REDIS_START = ('redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
               '--appendonly no')
MARIADB_START = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"


def _program(name: str) -> bool:
    # mariadbd lives in /usr/sbin, which a user's PATH may lack.
    search = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin"
    return shutil.which(name, path=search) is not None


def _answering(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def libfaketime() -> str | None:
    """Debian's libfaketime, which runs a process with its clock off (``FAKETIME``)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    return found[0] if found else None


def missing() -> list[str]:
    """One line for each thing the test suite needs and this machine lacks."""
    lines = []
    if not _program("chromium"):
        lines.append("Chromium (the docs are rendered in it): apt-get install chromium")
    if not _program("redis-server"):
        lines.append("redis-server (tests start private ones): apt-get install redis-server")
    if not libfaketime():
        lines.append("libfaketime (a process with a skewed clock): apt-get install faketime")
    if not _program("etcd"):
        lines.append("etcd (tests start private ones): apt-get install etcd-server")
    if not _program("rsyslogd"):
        lines.append("rsyslogd (tests start private ones): apt-get install rsyslog")
    if not _program("prometheus"):
        lines.append("prometheus (tests start private ones): apt-get install prometheus")
    if not (_program("mariadbd") and _program("mariadb-install-db")):
        lines.append("MariaDB server (tests start private ones): apt-get install mariadb-server")
    if not _answering(6379):
        lines.append(f"Redis answering on 127.0.0.1:6379: start it with {REDIS_START}")
    if not _answering(3306):
        lines.append("MariaDB answering on 127.0.0.1:3306 (root, no password, database test): "
                     f"start it with {MARIADB_START}")
    return lines


def main() -> int:
    lines = missing()
    for line in lines:
        print(f"make test needs {line}", file=sys.stderr)
    return 1 if lines else 0


if __name__ == "__main__":
    raise SystemExit(main())
