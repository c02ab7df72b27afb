"""What goes on the wire: message values, keys and headers as bytes.

``dict`` and ``list`` values become JSON (UTF-8, no ASCII escaping); ``str`` is encoded
as UTF-8; ``bytes`` go as they are; ``None`` is a tombstone. Anything else is refused
with a ``TypeError`` naming its type, before anything is sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from fastkit.request_id import get_request_id

__all__ = ["REQUEST_ID_HEADER", "encode_headers", "encode_key", "encode_value"]

REQUEST_ID_HEADER = "x-request-id"

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # one, not one per call


def encode_value(message: Any) -> bytes | None:
    if message is None or isinstance(message, bytes):
        return message
    if isinstance(message, bytearray | memoryview):
        return bytes(message)
    if isinstance(message, str):
        return message.encode()
    if isinstance(message, dict | list):
        return _JSON.encode(message).encode()
    raise TypeError(f"cannot send a value of type {type(message).__name__}: send dict, list, "
                    "str or bytes")


def encode_key(key: str | bytes | None) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    raise TypeError(f"a message key is str or bytes, not {type(key).__name__}")


def encode_headers(headers: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]]
                   | None) -> list[tuple[str, bytes]] | None:
    """Headers as Kafka wants them (``None`` for none); the current request id travels
    as ``x-request-id``."""
    request_id = get_request_id()
    if not headers:
        return [(REQUEST_ID_HEADER, request_id.encode())] if request_id else None
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    encoded = [(str(name), value if isinstance(value, bytes) else str(value).encode())
               for name, value in pairs]
    if request_id and not any(name.lower() == REQUEST_ID_HEADER for name, _ in encoded):
        encoded.append((REQUEST_ID_HEADER, request_id.encode()))
    return encoded
