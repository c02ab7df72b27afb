"""Where a benchmarked server listens: it binds port 0 itself and the port is read back
from /proc, so no port number is chosen ahead and handed to it (something else could take
that port between the choice and the server's bind)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time


def listening_port(process: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """The TCP port ``process`` listens on, once it does: a listening socket of the
    kernel's tables (``/proc/net/tcp``, ``tcp6``) that is one of the process's descriptors.

    Polls every 50 ms; raises RuntimeError when the process ends first or after
    ``timeout`` seconds. Linux only."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode}")
        ports: dict[str, int] = {}
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as rows:
                for row in list(rows)[1:]:
                    fields = row.split()
                    if fields[3] == "0A":  # LISTEN
                        ports[f"socket:[{fields[9]}]"] = int(fields[1].rsplit(":", 1)[1], 16)
        with contextlib.suppress(OSError):  # the process may end meanwhile
            for fd in os.listdir(f"/proc/{process.pid}/fd"):
                with contextlib.suppress(OSError):
                    found = ports.get(os.readlink(f"/proc/{process.pid}/fd/{fd}"))
                    if found:
                        return found
        time.sleep(0.05)  # polling to the deadline above
    raise RuntimeError(f"server did not listen within {timeout:g} s")
