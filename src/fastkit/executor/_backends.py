"""Where locks live: Redis (shared by every process) or this process's memory.

A lock has a name. Taking it sets ``run`` (one holder at a time, released at the end or
left to expire when the holder dies) and, for a scheduled fire, ``fire`` (the job id and
the fire time: taken once, never released, so no replica runs that fire again while the
key lives). Each successful take increments the name's fencing number.

Redis keys, in one hash slot per name (``{name}``), for one round trip per take::

    fastkit:lock:{name}:run                  token, PX ttl
    fastkit:lock:{name}:fire:<job>:<ms>      token, PX ttl (left to expire)
    fastkit:lock:{name}:fence                INCR on every take
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import redis

__all__ = ["FIRE_TAKEN", "HELD", "LocalLockBackend", "LockBackend", "LockUnavailable",
           "RedisLockBackend", "redis_backend"]

FIRE_TAKEN = -1  # this fire already ran (or runs) in some process
HELD = -2        # another run of this lock is still going


class LockUnavailable(RuntimeError):
    """The lock store cannot be reached: whatever needed the lock does not run."""


class LockBackend(Protocol):
    """What :class:`~fastkit.executor.Locks` needs from a lock store."""

    shared: bool  # True when other processes see the same locks

    def acquire(self, name: str, token: str, ttl_ms: int, fire: str | None) -> int:
        """The new fencing number (≥ 1), :data:`FIRE_TAKEN` or :data:`HELD`."""

    def extend(self, name: str, token: str, ttl_ms: int, fire: str | None) -> bool:
        """Renew what ``token`` holds; False when the ``run`` key is no longer ours."""

    def release(self, name: str, token: str) -> None:
        """Free the ``run`` key if ``token`` still holds it (a ``fire`` key stays)."""

    def describe(self) -> str:
        """Where the locks live, for log lines (no password)."""


# KEYS: run, fence[, fire]  ARGV: token, ttl_ms
_ACQUIRE = """
if KEYS[3] and not redis.call('set', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return -1
end
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return -2 end
return redis.call('incr', KEYS[2])
"""
# KEYS: run[, fire]  ARGV: token, ttl_ms
_EXTEND = """
if KEYS[2] and redis.call('get', KEYS[2]) == ARGV[1] then
  redis.call('pexpire', KEYS[2], ARGV[2])
end
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: run  ARGV: token
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class RedisLockBackend:
    """Locks in Redis, seen by every process using the same server and ``prefix``."""

    shared = True

    def __init__(self, client: redis.Redis, prefix: str = "fastkit:lock:") -> None:
        self.client = client
        self.prefix = prefix
        # register_script only hashes the text: no round trip until the first call.
        self._acquire = client.register_script(_ACQUIRE)
        self._extend = client.register_script(_EXTEND)
        self._release = client.register_script(_RELEASE)

    def _keys(self, name: str, *parts: str) -> list[str]:
        base = f"{self.prefix}{{{name}}}"
        return [f"{base}:{part}" for part in parts]

    def acquire(self, name: str, token: str, ttl_ms: int, fire: str | None) -> int:
        keys = self._keys(name, "run", "fence", *([f"fire:{fire}"] if fire else []))
        return int(self._call(self._acquire, keys, [token, ttl_ms]))

    def extend(self, name: str, token: str, ttl_ms: int, fire: str | None) -> bool:
        keys = self._keys(name, "run", *([f"fire:{fire}"] if fire else []))
        return bool(self._call(self._extend, keys, [token, ttl_ms]))

    def release(self, name: str, token: str) -> None:
        self._call(self._release, self._keys(name, "run"), [token])

    def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        import redis

        try:
            return script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise LockUnavailable(f"{self.describe()}: {type(exc).__name__}: {exc}") from exc

    def describe(self) -> str:
        kwargs = self.client.connection_pool.connection_kwargs
        host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
        where = kwargs.get("path") or f"{host}:{port}"
        return f"Redis at {where}"

    def __repr__(self) -> str:
        return f"RedisLockBackend({self.describe()!r}, prefix={self.prefix!r})"


class LocalLockBackend:
    """Locks in this process only: several processes each take their own."""

    shared = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[str, float]] = {}
        self._fires: dict[tuple[str, str], tuple[str, float]] = {}
        self._fences: defaultdict[str, int] = defaultdict(int)

    def _purge(self, now: float) -> None:
        for table in (self._runs, self._fires):
            for key in [k for k, (_, deadline) in table.items() if deadline <= now]:
                del table[key]  # type: ignore[arg-type]

    def acquire(self, name: str, token: str, ttl_ms: int, fire: str | None) -> int:
        now = time.monotonic()
        deadline = now + ttl_ms / 1000
        with self._lock:
            self._purge(now)
            if fire is not None:
                if (name, fire) in self._fires:
                    return FIRE_TAKEN
                self._fires[name, fire] = (token, deadline)
            if name in self._runs:
                return HELD
            self._runs[name] = (token, deadline)
            self._fences[name] += 1
            return self._fences[name]

    def extend(self, name: str, token: str, ttl_ms: int, fire: str | None) -> bool:
        now = time.monotonic()
        deadline = now + ttl_ms / 1000
        with self._lock:
            self._purge(now)
            if fire is not None and self._fires.get((name, fire), ("",))[0] == token:
                self._fires[name, fire] = (token, deadline)
            if self._runs.get(name, ("",))[0] != token:
                return False
            self._runs[name] = (token, deadline)
            return True

    def release(self, name: str, token: str) -> None:
        with self._lock:
            if self._runs.get(name, ("",))[0] == token:
                del self._runs[name]

    def describe(self) -> str:
        return "this process (no Redis configured)"

    def __repr__(self) -> str:
        return "LocalLockBackend()"


def redis_backend(config: redis.Redis | str | Mapping[str, Any]) -> Callable[[], RedisLockBackend]:
    """A lock backend factory from a client, a ``redis://`` URL or ``get_redis_pool`` keywords."""

    def build() -> RedisLockBackend:
        if isinstance(config, str):
            from fastkit.cache import get_redis_pool

            return RedisLockBackend(get_redis_pool(config))
        if isinstance(config, Mapping):
            from fastkit.cache import get_redis_pool

            return RedisLockBackend(get_redis_pool(**config))
        return RedisLockBackend(config)

    return build
