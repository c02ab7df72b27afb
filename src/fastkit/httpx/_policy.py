"""Retry policy: the seed's keys, validated once, at construction.

    Client(stop_max_attempt_number=3, stop_max_delay=60,
           wait_exponential_multiplier=2, wait_exponential_max=10)

All durations are seconds. The wait before retry ``k`` (1-based) is
``min(wait_exponential_multiplier * 2 ** (k - 1), wait_exponential_max)`` plus a
uniform random jitter in ``[0, wait_jitter_max]``.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import httpx

__all__ = [
    "DEFAULT_RETRY_METHODS",
    "DEFAULT_RETRY_STATUSES",
    "RETRY_KEYS",
    "RetryOption",
    "RetryPolicy",
    "UrllibExceptionWarning",
]

DEFAULT_RETRY_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
DEFAULT_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

ResultPredicate = Callable[[httpx.Response], bool]


class UrllibExceptionWarning(UserWarning):
    """A urllib3/requests exception class was given to ``retry_by_except``.

    httpx never raises those, so FastKit retries on the httpx exception that
    stands for the same failure instead, and says so once, when the client is made.
    """


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry, how long to wait, and when to give up.

    Field names are the constructor keys of :class:`~fastkit.httpx.Client`.
    """

    stop_max_attempt_number: int = 3
    stop_max_delay: float | None = 60.0
    wait_exponential_multiplier: float = 1.0
    wait_exponential_max: float = 10.0
    wait_jitter_max: float = 0.0
    retry_by_result: ResultPredicate | None = None
    retry_by_except: tuple[type[BaseException], ...] | None = None
    retry_methods: frozenset[str] = DEFAULT_RETRY_METHODS
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    respect_retry_after: bool = True
    enabled: bool = field(default=True, compare=False)

    def __post_init__(self) -> None:
        _check_int("stop_max_attempt_number", self.stop_max_attempt_number, minimum=1)
        if self.stop_max_delay is not None:
            _check_number("stop_max_delay", self.stop_max_delay)
        _check_number("wait_exponential_multiplier", self.wait_exponential_multiplier)
        _check_number("wait_exponential_max", self.wait_exponential_max)
        _check_number("wait_jitter_max", self.wait_jitter_max)
        if self.retry_by_result is not None and not callable(self.retry_by_result):
            raise TypeError(
                "retry_by_result must be a callable taking the response and returning a bool, "
                f"not {type(self.retry_by_result).__name__}"
            )
        if self.retry_by_except is not None:
            object.__setattr__(self, "retry_by_except", _exception_tuple(self.retry_by_except))
        object.__setattr__(self, "retry_methods", _methods(self.retry_methods))
        object.__setattr__(self, "retry_statuses", _statuses(self.retry_statuses))

    def backoff(self, retry_number: int) -> float:
        """The wait (without jitter) before retry ``retry_number`` (1 for the first retry)."""
        exponent = min(retry_number - 1, 64)
        return float(min(self.wait_exponential_multiplier * 2**exponent,
                         self.wait_exponential_max))

    def merged(self, overrides: Mapping[str, Any]) -> RetryPolicy:
        """A copy with ``overrides`` (retry keys) applied; unknown keys raise ``TypeError``."""
        check_keys(overrides, where="retry")
        return replace(self, **overrides)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RetryPolicy:
        """Build from constructor keywords (retry keys only)."""
        check_keys(options, where="Client()")
        return cls(**options)


RETRY_KEYS = frozenset(f.name for f in fields(RetryPolicy) if f.name != "enabled")

RetryOption = bool | Mapping[str, Any] | RetryPolicy | None
"""Per call: ``None`` (the client's policy), ``False`` (no retry), ``True``,
a mapping of retry keys overriding the client's, or a whole :class:`RetryPolicy`."""

def resolve(base: RetryPolicy, option: RetryOption) -> RetryPolicy:
    """The policy for one call, given the client's and the call's ``retry=`` argument."""
    if option is None or option is True:
        return base
    if option is False:
        return NO_RETRY
    if isinstance(option, RetryPolicy):
        return option
    if isinstance(option, Mapping):
        return base.merged(option)
    raise TypeError(
        "retry must be True, False, a dict of retry options or a RetryPolicy, "
        f"not {type(option).__name__}"
    )


def looks_like_retry_key(name: str) -> bool:
    """True for keywords meant for the retry policy (``stop_*``, ``wait_*``, ``retry_*``)."""
    return name in RETRY_KEYS or name.startswith(("stop_", "wait_", "retry_"))


def check_keys(options: Mapping[str, Any], *, where: str) -> None:
    for key in options:
        if key not in RETRY_KEYS:
            close = difflib.get_close_matches(key, sorted(RETRY_KEYS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"{where}: unknown retry option {key!r}{hint}")


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}"
                        f" ({value!r})")
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"{name} must be >= 0 seconds, got {value}")


def _methods(methods: Collection[str]) -> frozenset[str]:
    if isinstance(methods, str) or not all(isinstance(m, str) for m in methods):
        raise TypeError("retry_methods must be a collection of method names such as {'GET'}")
    return frozenset(m.upper() for m in methods)


def _statuses(statuses: Collection[int]) -> frozenset[int]:
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in statuses):
        raise TypeError("retry_statuses must be a collection of int status codes")
    return frozenset(statuses)


# urllib3 / requests exception names -> the httpx exception raised for the same failure.
_FOREIGN_MAP: tuple[tuple[str, type[httpx.HTTPError]], ...] = (
    ("NewConnectionError", httpx.ConnectError),
    ("NameResolutionError", httpx.ConnectError),
    ("ConnectTimeoutError", httpx.ConnectTimeout),
    ("ConnectTimeout", httpx.ConnectTimeout),
    ("ConnectionError", httpx.ConnectError),
    ("ReadTimeoutError", httpx.ReadTimeout),
    ("TimeoutError", httpx.TimeoutException),
    ("Timeout", httpx.TimeoutException),
)
_FOREIGN_PACKAGES = ("urllib3", "requests")


def _translate(cls: type[BaseException]) -> type[BaseException]:
    """httpx's equivalent of a urllib3/requests exception class (others unchanged)."""
    if cls.__module__.split(".")[0] not in _FOREIGN_PACKAGES:
        return cls
    for base in cls.__mro__:
        if base.__module__.split(".")[0] in _FOREIGN_PACKAGES:
            found = next((t for name, t in _FOREIGN_MAP if name == base.__name__), None)
            if found is not None:
                return found
    return httpx.TransportError


def _exception_tuple(value: object) -> tuple[type[BaseException], ...]:
    items = value if isinstance(value, (tuple, list, set, frozenset)) else (value,)
    out: list[type[BaseException]] = []
    mapped: list[str] = []
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise TypeError(
                f"retry_by_except must hold exception classes, got {item!r}"
            )
        translated = _translate(item)
        if translated is not item:
            mapped.append(f"{item.__module__}.{item.__name__} -> httpx.{translated.__name__}")
        if translated not in out:
            out.append(translated)
    if mapped:
        warnings.warn(
            "retry_by_except: httpx never raises urllib3/requests exceptions; retrying on "
            "their httpx equivalents instead: " + ", ".join(mapped),
            UrllibExceptionWarning,
            stacklevel=6,
        )
    return tuple(out)


NO_RETRY = RetryPolicy(stop_max_attempt_number=1, enabled=False)
