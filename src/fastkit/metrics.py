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

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "MULTIPROC_DIR_ENV",
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

_enabled = False
_families: dict[str, tuple[str, tuple[str, ...], Any]] = {}
_lock = threading.Lock()


def enable() -> None:
    """Record FastKit's metrics in this process from now on."""
    global _enabled
    _enabled = True


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
    (OpenMetrics when asked for, else Prometheus's text format 0.0.4). In multiprocess
    mode, every process's values from the directory; else this process's registry
    (the process and platform figures included)."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept or "")
    if multiprocess_directory() is None:
        return encoder(REGISTRY), content_type
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return encoder(registry), content_type


def mark_process_dead(pid: int) -> None:
    """Drop the live gauge values of process ``pid``, which has exited (a process
    manager calls this for each worker it reaps; no-op outside multiprocess mode)."""
    if multiprocess_directory() is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
