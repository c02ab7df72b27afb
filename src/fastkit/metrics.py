"""Prometheus metrics: what FastKit records, and the text a ``/metrics`` route serves.

Off until :func:`enable` is called (FastFlyer calls it when ``flyer_metrics_enabled=1``,
the default): importing or using FastKit registers nothing in ``prometheus_client``'s
default registry, and each instrumented call pays one boolean test. Once enabled, the
metric families are created on first use, in the default registry (so a user's own
``prometheus_client`` metrics are served beside them), once per process however many
times they are asked for.

    >>> from fastkit import metrics
    >>> metrics.enable()
    >>> calls = metrics.counter("demo_calls_total", "Demo calls.", ("result",))
    >>> calls.labels("ok").inc()
    >>> body, content_type = metrics.exposition()

**Several processes.** With ``PROMETHEUS_MULTIPROC_DIR`` set before ``prometheus_client``
is first imported (``fastflyer serve`` sets it to a directory it creates and removes),
every process writes its values to files there and :func:`exposition` sums them, so one
scrape of any worker shows all workers, those recycled included. Gauges created here
sum the live processes' values (``livesum``). See prometheus-client's "Multiprocess mode".

Names follow Prometheus's conventions (base units, ``_total`` on counters, ``_seconds``
on durations); label values are bounded by the caller (route templates, never raw paths).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastkit.exceptions import FastKitError

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "CARDINALITY_LIMIT",
    "MULTIPROC_DIR_ENV",
    "OVERFLOW",
    "CardinalityLimit",
    "MetricsConfigError",
    "check_multiprocess_directory",
    "counter",
    "disable",
    "enable",
    "enabled",
    "exposition",
    "gauge",
    "histogram",
    "mark_process_dead",
    "multiprocess_directory",
]

#: prometheus-client's variable naming the multiprocess directory.
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: The most values a label filled from the caller's data (a host called, a job id, a Kafka
#: topic) takes in one process: OpenTelemetry's default cardinality limit.
CARDINALITY_LIMIT = 2000
#: The value such a label takes once it has had :data:`CARDINALITY_LIMIT` others.
OVERFLOW = "_OTHER"

_enabled = False
_families: dict[str, tuple[str, tuple[str, ...], Any]] = {}
_lock = threading.Lock()


class MetricsConfigError(FastKitError, ValueError):
    """``PROMETHEUS_MULTIPROC_DIR`` names what cannot hold the metrics' files; the message
    (one line) names the variable and its value."""


def enable() -> None:
    """Record FastKit's metrics in this process from now on.

    Raises :class:`MetricsConfigError` when ``PROMETHEUS_MULTIPROC_DIR`` is set to what
    cannot be the multiprocess directory (:func:`check_multiprocess_directory`): every
    value recorded would fail there."""
    global _enabled
    check_multiprocess_directory()
    _enabled = True


def check_multiprocess_directory() -> str | None:
    """The multiprocess directory ``PROMETHEUS_MULTIPROC_DIR`` names, made if missing;
    ``None`` when the variable is unset. prometheus-client writes a file there for each
    metric of each process: a path that is a file, or a directory this process cannot
    make or write, fails every value recorded (and every scrape). Raises
    :class:`MetricsConfigError` (one line, naming the variable) for one."""
    directory = multiprocess_directory()
    if directory is None:
        return None
    try:
        os.makedirs(directory, exist_ok=True)
        problem = None if os.access(directory, os.W_OK | os.X_OK) else "not writable"
    except OSError as exc:
        problem = exc.strerror or type(exc).__name__
    if problem is not None:
        raise MetricsConfigError(f"{MULTIPROC_DIR_ENV}={directory!r} is not allowed: a "
                                 f"directory this process can create or write ({problem})")
    return directory


class CardinalityLimit:
    """The values one label takes, at most ``limit`` distinct ones in this process; every
    later one is :data:`OVERFLOW`, so that a label filled from the caller's data (hosts
    called, job ids, topics) cannot grow a series per value without bound (each series
    is memory in the process and in Prometheus). Thread-safe; a value seen before costs
    one set look-up.

        >>> hosts = CardinalityLimit(2)
        >>> [hosts("a"), hosts("b"), hosts("c"), hosts("a")]
        ['a', 'b', '_OTHER', 'a']
    """

    __slots__ = ("_limit", "_lock", "_seen")

    def __init__(self, limit: int = CARDINALITY_LIMIT) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        """``value`` itself while it is one of the first ``limit`` seen, else
        :data:`OVERFLOW`."""
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return OVERFLOW


def disable() -> None:
    """Stop recording (the families created so far stay registered, unchanged)."""
    global _enabled
    _enabled = False


def enabled() -> bool:
    """True once :func:`enable` was called (and not undone by :func:`disable`)."""
    return _enabled


def multiprocess_directory() -> str | None:
    """The multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``), or ``None``."""
    return os.environ.get(MULTIPROC_DIR_ENV) or None


def _family(kind: str, name: str, labelnames: Sequence[str], build: Any) -> Any:
    labels = tuple(labelnames)
    found = _families.get(name)
    if found is None:
        with _lock:
            found = _families.get(name)
            if found is None:
                found = (kind, labels, build(labels))
                _families[name] = found
    if found[0] != kind or found[1] != labels:
        raise ValueError(f"metric {name!r} exists as a {found[0]} with labels {found[1]}, "
                         f"not a {kind} with labels {labels}")
    return found[2]


def counter(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
    """The counter ``name`` (created on first use), with ``labelnames``.

    Raises :class:`ValueError` when ``name`` was created as another kind or with other
    labels."""
    from prometheus_client import Counter

    return _family("counter", name, labelnames,  # type: ignore[no-any-return]
                   lambda labels: Counter(name, documentation, labels))


def histogram(name: str, documentation: str, labelnames: Sequence[str] = (),
              buckets: Sequence[float] | None = None) -> Histogram:
    """The histogram ``name`` (created on first use); ``buckets`` in the metric's unit
    (``None``: prometheus-client's default, 5 ms to 10 s). Raises as :func:`counter`."""
    from prometheus_client import Histogram

    def build(labels: tuple[str, ...]) -> Histogram:
        if buckets is None:
            return Histogram(name, documentation, labels)
        return Histogram(name, documentation, labels, buckets=tuple(buckets))

    return _family("histogram", name, labelnames, build)  # type: ignore[no-any-return]


def gauge(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
    """The gauge ``name`` (created on first use); across processes, the sum of the live
    ones' values. Raises as :func:`counter`."""
    from prometheus_client import Gauge

    return _family("gauge", name, labelnames,  # type: ignore[no-any-return]
                   lambda labels: Gauge(name, documentation, labels,
                                        multiprocess_mode="livesum"))


def exposition(accept: str | None = None) -> tuple[bytes, str]:
    """The metrics text and its content type, for a scrape sending ``Accept: accept``
    (OpenMetrics when asked for, else Prometheus's text format 0.0.4, which an ``Accept``
    prometheus-client cannot read gets too, as an unknown one does). In multiprocess
    mode, every process's values from the directory; else this process's registry
    (the process and platform figures included)."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.exposition import (
        CONTENT_TYPE_PLAIN_0_0_4,
        choose_encoder,
        generate_latest,
    )

    registry = REGISTRY
    if multiprocess_directory() is not None:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    try:
        encoder, content_type = choose_encoder(accept or "")
        return encoder(registry), content_type
    except (TypeError, ValueError):  # a version it cannot read (``version=abc``)
        return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4


def mark_process_dead(pid: int) -> None:
    """Drop the live gauge values of process ``pid``, which has exited (a process
    manager calls this for each worker it reaps; no-op outside multiprocess mode)."""
    if multiprocess_directory() is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
