"""FastKit's errors: one root, and each error also the builtin it is a kind of, so that
``except ValueError`` around a configuration call and ``except FastKitError`` around any
FastKit call both work.

    FastKitError
     ├── DatabaseConfigError   (ValueError)     database settings that cannot work
     ├── CachePoolError        (ValueError)     a cache pool asked for with settings it cannot have
     ├── LogConfigError        (ValueError)     a log level, switch or file option that cannot work
     ├── TracingConfigError    (ValueError)     OTEL_* variables asking for what cannot be had
     ├── JobNotFound           (KeyError)       no job has this id in this scheduler
     ├── LockUnavailable       (RuntimeError)   the lock store cannot be reached
     ├── EtcdError             (RuntimeError)   etcd refused or failed a call
     │    ├── EtcdUnavailable  (ConnectionError) no endpoint answered
     │    └── EtcdAuthError    (PermissionError) the credentials were refused
     └── MessageError          (RuntimeError)   Kafka could not do what was asked
          ├── ProduceError                      a message was not acknowledged
          └── ConsumeError                      the broker is out of reach, or a dead letter failed

Each is defined beside the code that raises it and importable from here as well
(``from fastkit.exceptions import LockUnavailable``), loaded on first use. The HTTP client
raises httpx's own exceptions (``httpx.HTTPError`` and its tree), unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastkit._lazy import lazy_exports

if TYPE_CHECKING:
    from fastkit.cache._local import CachePoolError
    from fastkit.database._url import DatabaseConfigError
    from fastkit.etcd._client import EtcdAuthError, EtcdError, EtcdUnavailable
    from fastkit.executor._backends import LockUnavailable
    from fastkit.executor._scheduler import JobNotFound
    from fastkit.logging._setup import LogConfigError
    from fastkit.message._consumer import ConsumeError
    from fastkit.message._producer import MessageError, ProduceError
    from fastkit.tracing import TracingConfigError

__all__ = ["CachePoolError", "ConsumeError", "DatabaseConfigError", "EtcdAuthError",
           "EtcdError", "EtcdUnavailable", "FastKitError",
           "JobNotFound", "LockUnavailable", "LogConfigError", "MessageError", "ProduceError",
           "TracingConfigError"]


class FastKitError(Exception):
    """The root of every error FastKit raises itself."""


_HOMES = {
    "DatabaseConfigError": "fastkit.database._url",
    "CachePoolError": "fastkit.cache._local",
    "EtcdError": "fastkit.etcd._client",
    "EtcdUnavailable": "fastkit.etcd._client",
    "EtcdAuthError": "fastkit.etcd._client",
    "JobNotFound": "fastkit.executor._scheduler",
    "LogConfigError": "fastkit.logging._setup",
    "LockUnavailable": "fastkit.executor._backends",
    "MessageError": "fastkit.message._producer",
    "ProduceError": "fastkit.message._producer",
    "ConsumeError": "fastkit.message._consumer",
    "TracingConfigError": "fastkit.tracing",
}


__getattr__ = lazy_exports(__name__, globals(), _HOMES)
