"""The address this host uses to reach other machines."""

from __future__ import annotations

import socket

__all__ = ["WILDCARD_HOSTS", "get_host_ip", "routable_host"]

#: The addresses a server binds to listen on every interface: none that others can call.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})


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


def routable_host(host: str = "0.0.0.0", probe: str = "192.0.2.1",
                  probe_v6: str = "2001:db8::1") -> str:
    """The address other machines reach a server bound to ``host`` at.

    ``host`` itself when it names one address (an IP address or a host name, returned as
    given); for a wildcard (:data:`WILDCARD_HOSTS`: ``0.0.0.0``, ``::``, ``""``) the
    address of the default route: the source address the kernel picks for a UDP socket
    "connected" to ``probe`` (IPv4; ``probe_v6`` too for ``::`` when there is no IPv4
    route). No packet is sent; the defaults are documentation addresses (RFC 5737, RFC
    3849) that route like any public one. ``127.0.0.1`` when there is no route. Raises
    nothing; does no DNS lookup.
    """
    if host.strip() not in WILDCARD_HOSTS:
        return host
    found = get_host_ip(probe)
    if found == "127.0.0.1" and host.strip() in ("::", "[::]"):
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            try:
                sock.connect((probe_v6, 1))
                return str(sock.getsockname()[0])
            except OSError:
                pass
    return found
