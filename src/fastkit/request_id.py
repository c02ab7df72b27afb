"""The request id of the work in progress, shared by logging and outgoing HTTP calls.

The framework binds one per incoming request; every log line written while it is
bound carries it, and FastKit clients forward it as ``X-Request-ID``.

    >>> from fastkit.request_id import bind_request_id, get_request_id
    >>> with bind_request_id("abc123"):
    ...     get_request_id()
    'abc123'
    >>> get_request_id() is None
    True
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

__all__ = [
    "REQUEST_ID_HEADER",
    "bind_request_id",
    "get_request_id",
    "new_request_id",
    "reset_request_id",
    "set_request_id",
]

REQUEST_ID_HEADER = "X-Request-ID"

_request_id: ContextVar[str | None] = ContextVar("fastkit_request_id", default=None)


# Request ids must be unique, not secret: a PRNG seeded from the OS (and reseeded in
# each forked worker) costs a fraction of a system call per id.
_random = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))


def new_request_id() -> str:
    """A fresh random request id (32 hex characters)."""
    return f"{_random.getrandbits(128):032x}"


def get_request_id() -> str | None:
    """The request id bound in the current context, or ``None``."""
    return _request_id.get()


def set_request_id(request_id: str | None) -> Token[str | None]:
    """Bind ``request_id`` in the current context; pass the token to :func:`reset_request_id`."""
    return _request_id.set(request_id)


def reset_request_id(token: Token[str | None]) -> None:
    """Restore the request id that was bound before :func:`set_request_id`."""
    _request_id.reset(token)


@contextmanager
def bind_request_id(request_id: str | None = None) -> Iterator[str]:
    """Bind ``request_id`` (or a new one) for the duration of the ``with`` block."""
    value = request_id or new_request_id()
    token = _request_id.set(value)
    try:
        yield value
    finally:
        _request_id.reset(token)
