"""Where locks live: Redis (shared by every process) or this process's memory.

A lock has a name. Taking it sets ``run`` (one holder at a time, released at the end or
left to expire when the holder dies) and, for a scheduled fire, moves the job's ``mark``
(the latest fire slot taken, in ms since the epoch) forward: a fire whose slot is not
later than the mark was taken already, by whichever process, however late this one is
and whatever the lock's ttl, so it is skipped. Each successful take increments the
name's fencing number.

Redis keys, in one hash slot per name (``{name}``), for one round trip per take; the
prefix is where a service namespaces its locks (``fastkit:lock:<service>:``)::

    <prefix>{name}:run                  token, PX ttl
    <prefix>{name}:mark:<job>:<width>   latest slot taken (of that width, in ms), kept the
                                        width, the misfire grace and a day more
    <prefix>{name}:fence                INCR on every take

A scheduled fire's lock name is ``<lock>/<job id>`` (see ``Locks.acquire``).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from fastkit.exceptions import FastKitError

if TYPE_CHECKING:
    import redis

__all__ = ["FIRE_TAKEN", "HELD", "FireMark", "LocalLockBackend", "LockBackend",
           "LockUnavailable", "RedisLockBackend", "redis_backend"]

FIRE_TAKEN = -1  # this fire already ran (or runs) in some process
HELD = -2        # another run of this lock is still going


class LockUnavailable(FastKitError, RuntimeError):
    """The lock store cannot be reached: whatever needed the lock does not run."""


class FireMark(NamedTuple):
    """What a lock store needs of a scheduled fire (see :class:`~fastkit.executor.Fire`)."""

    job: str      # the job's id: each job of a lock has its own mark
    slot_ms: int  # the fire's slot, ms since the epoch: the same in every process
    keep_ms: int  # how long the mark outlives its last move; 0: for good
    grid_ms: int = 0  # the slot's width: each width of a job has its own mark

    @property
    def key(self) -> str:
        return f"{self.job}:{self.grid_ms}"


class LockBackend(Protocol):
    """What :class:`~fastkit.executor.Locks` needs from a lock store."""

    shared: bool  # True when other processes see the same locks

    def acquire(self, name: str, token: str, ttl_ms: int, fire: FireMark | None) -> int:
        """The new fencing number (≥ 1), :data:`FIRE_TAKEN` (the fire's slot is not later
        than its job's mark) or :data:`HELD`. A fire's mark moves even when the run is
        held: that fire is skipped everywhere."""

    def extend(self, name: str, token: str, ttl_ms: int) -> bool:
        """Renew what ``token`` holds; False when the ``run`` key is no longer ours."""

    def release(self, name: str, token: str) -> None:
        """Free the ``run`` key if ``token`` still holds it (a mark stays)."""

    def describe(self) -> str:
        """Where the locks live, for log lines (no password)."""


# KEYS: run, fence[, mark]  ARGV: token, ttl_ms[, slot_ms, keep_ms]
_ACQUIRE = """
if KEYS[3] then
  local last = tonumber(redis.call('get', KEYS[3]))
  if last and last >= tonumber(ARGV[3]) then return -1 end
  if tonumber(ARGV[4]) > 0 then
    redis.call('set', KEYS[3], ARGV[3], 'PX', ARGV[4])
  else
    redis.call('set', KEYS[3], ARGV[3])
  end
end
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return -2 end
return redis.call('incr', KEYS[2])
"""
# KEYS: run  ARGV: token, ttl_ms
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: run  ARGV: token
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class RedisLockBackend:
    """Locks in Redis, seen by every process using the same server and ``prefix``.

    ``prefix`` namespaces the keys: services sharing one Redis give each its own
    (FastFlyer uses ``fastkit:lock:<service name>:``), or same-named jobs of two services
    would share their locks and split their fires.
    """

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

    def acquire(self, name: str, token: str, ttl_ms: int, fire: FireMark | None) -> int:
        if fire is None:
            return int(self._call(self._acquire, self._keys(name, "run", "fence"),
                                  [token, ttl_ms]))
        keys = self._keys(name, "run", "fence", f"mark:{fire.key}")
        return int(self._call(self._acquire, keys, [token, ttl_ms, fire.slot_ms, fire.keep_ms]))

    def extend(self, name: str, token: str, ttl_ms: int) -> bool:
        return bool(self._call(self._extend, self._keys(name, "run"), [token, ttl_ms]))

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
        self._marks: dict[tuple[str, str], tuple[int, float]] = {}
        self._fences: defaultdict[str, int] = defaultdict(int)

    def _purge(self, now: float) -> None:
        for table in (self._runs, self._marks):
            for key in [k for k, (_, deadline) in table.items() if deadline <= now]:
                del table[key]  # type: ignore[arg-type]

    def acquire(self, name: str, token: str, ttl_ms: int, fire: FireMark | None) -> int:
        now = time.monotonic()
        deadline = now + ttl_ms / 1000
        with self._lock:
            self._purge(now)
            if fire is not None:
                last = self._marks.get((name, fire.key))
                if last is not None and last[0] >= fire.slot_ms:
                    return FIRE_TAKEN
                keep = now + fire.keep_ms / 1000 if fire.keep_ms > 0 else float("inf")
                self._marks[name, fire.key] = (fire.slot_ms, keep)
            if name in self._runs:
                return HELD
            self._runs[name] = (token, deadline)
            self._fences[name] += 1
            return self._fences[name]

    def extend(self, name: str, token: str, ttl_ms: int) -> bool:
        now = time.monotonic()
        deadline = now + ttl_ms / 1000
        with self._lock:
            self._purge(now)
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


def redis_backend(config: redis.Redis | str | Mapping[str, Any],
                  prefix: str = "fastkit:lock:") -> Callable[[], RedisLockBackend]:
    """A lock backend factory from a client, a ``redis://`` URL or ``get_redis_pool``
    keywords; ``prefix`` namespaces the keys (see :class:`RedisLockBackend`)."""

    def build() -> RedisLockBackend:
        if isinstance(config, str):
            from fastkit.cache import get_redis_pool

            return RedisLockBackend(get_redis_pool(config), prefix)
        if isinstance(config, Mapping):
            from fastkit.cache import get_redis_pool

            return RedisLockBackend(get_redis_pool(**config), prefix)
        return RedisLockBackend(config, prefix)

    return build
