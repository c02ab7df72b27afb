"""The address this host uses to reach other machines."""

from __future__ import annotations

import socket

__all__ = ["get_host_ip"]


def get_host_ip(probe: str = "10.255.255.255") -> str:
    """The local IP of the interface that routes to ``probe``, else ``127.0.0.1``.

    Connecting a UDP socket sends nothing: the kernel only picks the route. Called,
    never run at import.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((probe, 1))
            return str(sock.getsockname()[0])
        except OSError:
            return "127.0.0.1"
