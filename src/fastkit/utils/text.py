"""Hashing and random strings."""

from __future__ import annotations

import hashlib
import secrets
import string

__all__ = ["get_md5", "get_random_str"]

_ALPHABET = string.ascii_letters + string.digits


def get_md5(data: str | bytes) -> str:
    """The hex MD5 digest of ``data`` (a checksum, not a password hash)."""
    raw = data.encode() if isinstance(data, str) else data
    return hashlib.md5(raw, usedforsecurity=False).hexdigest()


def get_random_str(length: int = 16, alphabet: str = _ALPHABET) -> str:
    """``length`` characters from ``alphabet``, from a cryptographic source."""
    if length < 0:
        raise ValueError(f"length must be ≥ 0, got {length}")
    return "".join(secrets.choice(alphabet) for _ in range(length))
