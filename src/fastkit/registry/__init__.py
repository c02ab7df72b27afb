"""Service registry and discovery on etcd.

Each serving instance of a service is a key ``/{namespace}/{service}/{host}:{port}`` held by
an etcd lease that its process keeps alive; the value is the instance's JSON record
(:class:`Instance`). Clients list the live instances and call them by service name.
"""

from __future__ import annotations

from fastkit.registry._instance import Instance, service_prefix
from fastkit.registry._registration import TTL_BEATS, Registration

__all__ = ["Instance", "service_prefix"]
__all__ += ["TTL_BEATS", "Registration"]

# Discovery: the directory is light; the HTTP transports import httpx on first use.
from typing import TYPE_CHECKING  # noqa: E402

from fastkit._lazy import lazy_exports  # noqa: E402
from fastkit.registry._discovery import Followed, ServiceDirectory  # noqa: E402

if TYPE_CHECKING:
    from fastkit.registry._transport import AsyncServiceTransport, ServiceTransport

__all__ += ["AsyncServiceTransport", "Followed", "ServiceDirectory", "ServiceTransport"]
__getattr__ = lazy_exports(__name__, globals(), {
    "AsyncServiceTransport": "._transport", "ServiceTransport": "._transport"})
