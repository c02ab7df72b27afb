"""One registered instance of a service: its key and its record in etcd."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Instance", "service_prefix"]

# A key segment: letters, digits, '.', '_', '-' (no '/', which separates segments).
SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")


def _segment(value: str, what: str) -> str:
    if not isinstance(value, str) or not SEGMENT.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"{what} {value!r} is not allowed: letters, digits, '.', '_' and '-'")
    return value


def service_prefix(namespace: str, service: str) -> str:
    """The key prefix under which ``service``'s instances register: ``/{namespace}/{service}/``.
    Raises ``ValueError`` for a namespace or service that is no key segment."""
    return f"/{_segment(namespace, 'namespace')}/{_segment(service, 'service')}/"


@dataclass(frozen=True)
class Instance:
    """A serving instance of ``service``, registered under
    ``/{namespace}/{service}/{host}:{port}`` with :meth:`to_json` as its value.

    ``base_url``: the URL of the instance's API root (``http://10.0.0.5:8080/flyer``);
    ``address``: its origin (``http://10.0.0.5:8080``), which clients call through discovery.

    Raises ``ValueError`` for a bad namespace or service, a port that is no integer from 1
    to 65535, a host that is no IP address or host name (an IPv6 address is written
    without brackets), or a scheme other than ``http``/``https`` (kept in lower case).
    """

    service: str
    host: str
    port: int
    base_url: str = ""
    version: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    namespace: str = "default"
    scheme: str = "http"

    def __post_init__(self) -> None:
        service_prefix(self.namespace, self.service)
        if (not isinstance(self.port, int) or isinstance(self.port, bool)
                or not 0 < self.port < 65536):
            raise ValueError(f"port {self.port!r} is not between 1 and 65535")
        if (not isinstance(self.host, str) or not self.host
                or any(char in self.host for char in "/@?#[]\\")
                or not self.host.isprintable() or any(c.isspace() for c in self.host)):
            raise ValueError(f"host {self.host!r} is not an IP address or host name")
        if ":" in self.host:  # only an IPv6 address holds one (a port goes in ``port``)
            try:
                ipaddress.IPv6Address(self.host)
            except ValueError:
                raise ValueError(f"host {self.host!r} is not an IP address or host "
                                 "name") from None
        if not isinstance(self.scheme, str) or self.scheme.lower() not in ("http", "https"):
            raise ValueError(f"scheme {self.scheme!r} is neither http nor https")
        object.__setattr__(self, "scheme", self.scheme.lower())
        if not self.base_url:
            object.__setattr__(self, "base_url", self.address)

    @property
    def hostport(self) -> str:
        """``host:port`` (``[v6]:port``), the last segment of the key."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def key(self) -> str:
        """The instance's etcd key."""
        return f"{service_prefix(self.namespace, self.service)}{self.hostport}"

    @property
    def address(self) -> str:
        """``scheme://host:port``: where clients send requests."""
        return f"{self.scheme}://{self.hostport}"

    def to_json(self) -> str:
        """The record etcd holds: ``{"service", "host", "port", "base_url", "version",
        "metadata", "namespace", "scheme"}``."""
        return json.dumps({"service": self.service, "host": self.host, "port": self.port,
                           "base_url": self.base_url, "version": self.version,
                           "metadata": dict(self.metadata), "namespace": self.namespace,
                           "scheme": self.scheme}, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, *, namespace: str = "default",
                  service: str | None = None) -> Instance:
        """The instance a record describes; ``namespace``/``service`` fill in what the record
        leaves out (the key says them). Raises ``ValueError`` for a record that is no
        instance (not JSON, no host or port, a scheme other than http or https)."""
        try:
            record: Any = json.loads(text)
        except ValueError:
            raise ValueError("the record is not JSON") from None
        if not isinstance(record, dict):
            raise ValueError("the record is not a JSON object")
        metadata = record.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ValueError("the record's metadata is not an object")
        port = record.get("port")
        if isinstance(port, str) and port.isascii() and port.isdigit():
            port = int(port)
        return cls(service=str(record.get("service") or service or ""),
                   host=str(record.get("host") or ""), port=port,  # type: ignore[arg-type]
                   base_url=str(record.get("base_url") or ""),
                   version=str(record.get("version") or ""),
                   metadata={str(k): str(v) for k, v in metadata.items()},
                   namespace=str(record.get("namespace") or namespace),
                   scheme=str(record.get("scheme") or "http"))
