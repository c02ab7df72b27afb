"""Discovery: the live instances of a service, read from etcd and followed as they change.

    from fastkit.etcd import EtcdClient
    from fastkit.registry import ServiceDirectory

    directory = ServiceDirectory(EtcdClient("http://10.0.0.1:2379"), "prod", refresh=5)
    directory.instances("orders")            # [Instance(...), ...], one read
    for instances in directory.watch("orders"):
        ...                                  # the list now, then after each change
    with directory.client("orders") as orders:
        orders.get("/flyer/v1/items")        # to each live instance in turn

Behaviour:

- A list is sorted by key (``/{namespace}/{service}/{host}:{port}``). A key under the
  service's prefix whose value is no instance record is left out and logged once at
  WARNING, naming the key (never the value); it is logged again only if its value changes.
- A watch waits for etcd's change events, and reads the prefix again at least every
  ``refresh`` seconds even when none came (a watch stream breaks silently when etcd
  restarts). While etcd cannot be reached it keeps its last list, logs one WARNING per
  outage, tries again every ``refresh`` seconds and logs INFO when etcd answers again.
- A followed service (:meth:`ServiceDirectory.follow`, what the HTTP transports use) is
  kept in memory by one daemon thread per directory and service, running that watch.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING, Any

from fastkit.etcd import EtcdClient, EtcdError, Snapshot
from fastkit.logging import logger
from fastkit.registry._instance import Instance, service_prefix

if TYPE_CHECKING:
    from fastkit.httpx import AsyncClient, Client

__all__ = ["Followed", "ServiceDirectory"]

_STOP_MARGIN = 1.0
"""Seconds :meth:`ServiceDirectory.close` waits for a follower beyond one wait slice."""

_SLICE = 1.0
"""The longest one wait on etcd's change events lasts (seconds): a watch waits ``refresh``
seconds in slices of at most this, so a stop or a cancel takes effect within one."""


class ServiceDirectory:
    """The instances registered in one namespace of an etcd service registry.

    ``client``: the :class:`~fastkit.etcd.EtcdClient` to read with (the caller owns it and
    closes it). ``namespace``: the registry's namespace, a key segment (letters, digits,
    ``.``, ``_``, ``-``). ``refresh``: seconds, > 0: the longest a watch goes without
    reading the registry again, the retry interval while etcd is unreachable, and so the
    longest a followed list lags behind the registry when change events are lost.

    Raises ``ValueError`` for a bad namespace or ``refresh``. Nothing is read and no thread
    starts before the first call. :meth:`close` (or ``with``) stops the follower threads.
    """

    def __init__(self, client: EtcdClient, namespace: str = "default", *,
                 refresh: float = 5.0) -> None:
        service_prefix(namespace, "service")  # checks the namespace
        if isinstance(refresh, bool) or not isinstance(refresh, (int, float)) or not (
                refresh > 0 and math.isfinite(refresh)):
            raise ValueError(f"refresh must be a number of seconds > 0, got {refresh!r}")
        self.etcd = client
        self.namespace = namespace
        self.refresh = float(refresh)
        self._lock = threading.Lock()
        self._followed: dict[str, Followed] = {}
        self._closed = False
        self._reported: dict[str, str] = {}  # bad records already logged: key -> value

    def __repr__(self) -> str:
        return (f"ServiceDirectory({self.etcd!r}, {self.namespace!r}, "
                f"refresh={self.refresh:g})")

    # --- reading ----------------------------------------------------------------------
    def prefix(self, service: str) -> str:
        """The key prefix of ``service``'s instances: ``/{namespace}/{service}/``.
        Raises ``ValueError`` for a service name that is no key segment."""
        return service_prefix(self.namespace, service)

    def instances(self, service: str) -> list[Instance]:
        """The instances of ``service`` registered now (one range read), sorted by key;
        ``[]`` for a service nobody registered.

        Raises ``ValueError`` for a service name that is no key segment, and what the
        client raises: :class:`~fastkit.etcd.EtcdUnavailable` (etcd cannot be reached),
        :class:`~fastkit.etcd.EtcdAuthError`, :class:`~fastkit.etcd.EtcdError`."""
        return self._read(service)[1]

    async def ainstances(self, service: str) -> list[Instance]:
        """:meth:`instances` on a worker thread, leaving the event loop free; the same
        result and errors. Cancelling returns at once (the read ends on its thread)."""
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self.instances, service,
                                              abandon_on_cancel=True)

    def _read(self, service: str) -> tuple[Snapshot, list[Instance]]:
        prefix = self.prefix(service)
        snapshot = self.etcd.get_prefix(prefix)
        return snapshot, self._parse(service, prefix, snapshot)

    def _parse(self, service: str, prefix: str, snapshot: Snapshot) -> list[Instance]:
        found: list[Instance] = []
        bad: dict[str, tuple[str, str]] = {}
        for key in sorted(snapshot):
            value = snapshot[key]
            try:
                instance = Instance.from_json(value, namespace=self.namespace, service=service)
                if instance.namespace != self.namespace or instance.service != service:
                    raise ValueError(f"the record is of service {instance.service!r} in "
                                     f"namespace {instance.namespace!r}")
                if "/" in key[len(prefix):]:
                    raise ValueError("the key is not /{namespace}/{service}/{host}:{port}")
            except ValueError as exc:
                bad[key] = (value, str(exc))
                continue
            found.append(instance)
        for key in snapshot.undecodable:
            bad[key] = ("", "the key or its record is not UTF-8 text")
        with self._lock:
            for key in [key for key in self._reported
                        if key.startswith(prefix) and key not in bad]:
                del self._reported[key]  # fixed or gone: a new bad record is news again
            news = {key: why for key, (value, why) in bad.items()
                    if self._reported.get(key) != value}
            self._reported.update({key: bad[key][0] for key in news})
        for key, why in news.items():
            logger.warning("service registry: skipping key {!r}, which holds no instance "
                           "record: {}", key, why)
        return found

    # --- watching ---------------------------------------------------------------------
    def watch(self, service: str, *,
              stop: threading.Event | None = None) -> Generator[list[Instance], None, None]:
        """The instances of ``service`` (as :meth:`instances`): the list now, then the new
        list after each change, for as long as the caller iterates.

        It waits for etcd's change events and reads again at least every ``refresh``
        seconds. While etcd cannot be reached it keeps the last list, logs one WARNING per
        outage, retries every ``refresh`` seconds and logs INFO once etcd answers again;
        it never ends on its own. ``stop``: when set, the iteration ends within about a
        second (breaking out of the loop works too).

        The first read's errors propagate from the first ``next()``
        (:class:`~fastkit.etcd.EtcdUnavailable`, :class:`~fastkit.etcd.EtcdAuthError`,
        :class:`~fastkit.etcd.EtcdError`; ``ValueError`` for a bad service name); later
        failures are outages as above.
        """
        stop = stop if stop is not None else threading.Event()
        tracker = _Tracker(self, service)
        yield tracker.first()
        while not stop.is_set():
            stopped, changed = tracker.next(stop)
            if stopped:
                return
            if changed is not None:
                yield changed

    async def awatch(self, service: str) -> AsyncGenerator[list[Instance], None]:
        """:meth:`watch` for ``async for``, with the same lists, logs and errors; each
        blocking call runs on a worker thread of its own. Cancelling the task returns at
        once; the call then in progress ends on its thread within about a second (a read:
        within the etcd client's timeout)."""
        import anyio
        import anyio.to_thread

        limiter = anyio.CapacityLimiter(1)  # never holds a token of the shared pool

        async def run(call: Any) -> Any:
            return await anyio.to_thread.run_sync(call, limiter=limiter,
                                                  abandon_on_cancel=True)

        tracker = _Tracker(self, service)
        stop = threading.Event()  # ends a wait left running on its thread by a cancel
        try:
            yield await run(tracker.first)
            while True:
                if tracker.pause:
                    await anyio.sleep(self.refresh)
                else:
                    await run(lambda: tracker.wait(stop))
                changed = await run(tracker.read)
                if changed is not None:
                    yield changed
        finally:
            stop.set()

    # --- following --------------------------------------------------------------------
    def follow(self, service: str) -> Followed:
        """The :class:`Followed` list of ``service``: one per directory and service,
        kept by a daemon thread running :meth:`watch`.

        The first call for a service reads the registry in the caller's thread, blocks
        until that read is done and then starts the thread; if that first read fails its
        error propagates (:class:`~fastkit.etcd.EtcdUnavailable`,
        :class:`~fastkit.etcd.EtcdAuthError`, :class:`~fastkit.etcd.EtcdError`), no thread
        is left running and the next call tries again. Later calls return at once.
        Raises ``ValueError`` for a bad service name and ``RuntimeError`` once the
        directory is closed."""
        followed = self._entry(service)
        if not followed.started:
            followed._start()
        return followed

    async def afollow(self, service: str) -> Followed:
        """:meth:`follow` without blocking the event loop: the first read runs on a worker
        thread; the same result and errors."""
        followed = self._entry(service)
        if not followed.started:
            import anyio.to_thread

            await anyio.to_thread.run_sync(followed._start)
        return followed

    def _entry(self, service: str) -> Followed:
        with self._lock:
            if self._closed:
                raise RuntimeError("this ServiceDirectory is closed: it follows no service "
                                   "any more")
            followed = self._followed.get(service)
            if followed is None:
                followed = self._followed[service] = Followed(self, service)
            return followed

    def close(self) -> None:
        """Stop the follower threads, waiting at most ``min(refresh, 1)`` + 1 seconds in
        all; a thread still busy then (a read slower than that) is a daemon and ends on its
        own.
        Afterwards :meth:`follow` raises ``RuntimeError``; :meth:`instances` and
        :meth:`watch` still work (the etcd client is not closed: it is the caller's)."""
        with self._lock:
            self._closed = True
            followed = list(self._followed.values())
        for each in followed:
            each._stop.set()
        deadline = time.monotonic() + min(self.refresh, _SLICE) + _STOP_MARGIN
        for each in followed:
            each._join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> ServiceDirectory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- HTTP clients -----------------------------------------------------------------
    def client(self, service: str, **client_kwargs: Any) -> Client:
        """A :class:`fastkit.httpx.Client` calling ``service``: its base URL is
        ``http://{service}`` and its transport a :class:`ServiceTransport` on this
        directory, so ``client.get("/path")`` goes to each live instance in turn and is
        retried by FastKit's retry policy (the retry keys are accepted here).

        ``client_kwargs``: those of :class:`fastkit.httpx.Client`; ``transport=`` (an
        ``httpx.BaseTransport``) or the pool keys (``verify``, ``cert``, ``http1``,
        ``http2``, ``limits``, ``proxy``) set what carries the calls to the instances.
        Raises ``TypeError`` for ``base_url`` (the service names it) and ``ValueError``
        for a bad service name. Closing the client does not close the directory."""
        import httpx

        from fastkit.httpx import Client
        from fastkit.registry._transport import ServiceTransport

        kwargs = self._client_kwargs(service, client_kwargs, httpx.HTTPTransport)
        inner = kwargs.pop("transport")
        return Client(transport=ServiceTransport(self, transport=inner, services=[service]),
                      **kwargs)

    def async_client(self, service: str, **client_kwargs: Any) -> AsyncClient:
        """The asynchronous :meth:`client`: a :class:`fastkit.httpx.AsyncClient` whose
        transport is an :class:`AsyncServiceTransport` (``transport=`` an
        ``httpx.AsyncBaseTransport``); the same keywords and errors."""
        import httpx

        from fastkit.httpx import AsyncClient
        from fastkit.registry._transport import AsyncServiceTransport

        kwargs = self._client_kwargs(service, client_kwargs, httpx.AsyncHTTPTransport)
        inner = kwargs.pop("transport")
        return AsyncClient(
            transport=AsyncServiceTransport(self, transport=inner, services=[service]),
            **kwargs)

    def _client_kwargs(self, service: str, kwargs: dict[str, Any],
                       make_inner: Any) -> dict[str, Any]:
        self.prefix(service)
        if "base_url" in kwargs:
            raise TypeError(f"the base URL is http://{service} (the service's name); "
                            "give paths to the calls instead of base_url")
        if "mounts" in kwargs:
            raise TypeError("a service client sends every call to the service: no mounts")
        kwargs = dict(kwargs)
        pool = {key: kwargs.pop(key) for key in ("verify", "cert", "http1", "http2",
                                                 "limits", "proxy") if key in kwargs}
        if kwargs.get("transport") is None:
            kwargs["transport"] = make_inner(**pool)
        elif pool:
            raise TypeError(f"pass either transport= or {', '.join(sorted(pool))}, not both")
        kwargs["base_url"] = f"http://{service}"
        return kwargs


class Followed:
    """The live instances of one service, kept in memory by a daemon thread (named
    ``fastkit-registry:{namespace}/{service}``) that runs
    :meth:`ServiceDirectory.watch`; made by :meth:`ServiceDirectory.follow`.

    The list follows the registry within ``refresh`` seconds (usually at once: the thread
    waits on etcd's change events) and is kept as it was while etcd cannot be reached.
    """

    def __init__(self, directory: ServiceDirectory, service: str) -> None:
        directory.prefix(service)  # checks the name
        self.directory = directory
        self.service = service
        self._instances: tuple[Instance, ...] = ()
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return (f"Followed({self.service!r}, namespace={self.directory.namespace!r}, "
                f"instances={len(self._instances)})")

    @property
    def started(self) -> bool:
        """True once the first read is done and the thread started."""
        return self._thread is not None

    @property
    def running(self) -> bool:
        """True while the thread runs."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def current(self) -> list[Instance]:
        """The live instances as last read, sorted by key (a new list each call; no I/O)."""
        return list(self._instances)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            if self._stop.is_set():
                raise RuntimeError("this ServiceDirectory is closed: it follows no service "
                                   "any more")
            tracker = _Tracker(self.directory, self.service)
            self._instances = tuple(tracker.first())
            thread = threading.Thread(
                target=self._run, args=(tracker,), daemon=True,
                name=f"fastkit-registry:{self.directory.namespace}/{self.service}")
            thread.start()
            self._thread = thread

    def _run(self, tracker: _Tracker) -> None:
        stop = self._stop
        while not stop.is_set():
            try:
                stopped, changed = tracker.next(stop)
                if stopped:
                    return
            except Exception:  # never let the thread die: keep the list, try again later
                logger.exception("service registry: following service {!r} in namespace {!r} "
                                 "failed; keeping the last list", self.service,
                                 self.directory.namespace)
                tracker.pause = True
                continue
            if changed is not None:
                self._instances = tuple(changed)
                logger.debug("service registry: service {!r} in namespace {!r} has {} "
                             "instance(s): {}", self.service, self.directory.namespace,
                             len(changed),
                             ", ".join(i.address for i in changed) or "none live")

    def _join(self, timeout: float) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


class _Tracker:
    """The state of one watch of one service: the last list, the revision it was read at
    and whether etcd is failing. The blocking calls (:meth:`first`, :meth:`wait`,
    :meth:`read`) run in whatever thread the caller chooses; ``pause`` says the caller
    should sleep ``refresh`` seconds instead of calling :meth:`wait`."""

    def __init__(self, directory: ServiceDirectory, service: str) -> None:
        self.directory = directory
        self.service = service
        self.prefix = directory.prefix(service)
        self.last: list[Instance] = []
        self.revision = 0
        self.failing = False
        self.pause = False

    def first(self) -> list[Instance]:
        snapshot, self.last = self.directory._read(self.service)
        self.revision = snapshot.revision
        return self.last

    def wait(self, stop: threading.Event) -> None:
        """Wait up to ``refresh`` seconds for a change after the last read, in slices of at
        most :data:`_SLICE` seconds (each watches from the same revision: nothing is
        missed between them), returning early once ``stop`` is set."""
        etcd = self.directory.etcd
        deadline = time.monotonic() + self.directory.refresh
        try:
            while not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0 or etcd.wait_for_change(self.prefix, self.revision,
                                                     timeout=min(left, _SLICE)):
                    return
        except EtcdError:
            self.pause = True  # no busy loop on a watch etcd refuses: the read tells why

    def next(self, stop: threading.Event) -> tuple[bool, list[Instance] | None]:
        """Wait for the next change (or ``refresh`` while paused), then read:
        ``(True, None)`` once ``stop`` is set, else ``(False, the list or None)`` as
        :meth:`read` gives it."""
        if self.pause:
            if stop.wait(self.directory.refresh):
                return True, None
        else:
            self.wait(stop)
            if stop.is_set():
                return True, None
        return False, self.read()

    def read(self) -> list[Instance] | None:
        """Read again; the new list if it changed, else ``None`` (also while etcd fails)."""
        directory = self.directory
        try:
            snapshot, instances = directory._read(self.service)
        except EtcdError as exc:
            if not self.failing:
                self.failing = True
                logger.warning("service registry: cannot read service {!r} in namespace {!r} "
                               "({}); keeping its last {} instance(s), trying again every "
                               "{:g} s", self.service, directory.namespace, exc,
                               len(self.last), directory.refresh)
            self.pause = True
            return None
        self.pause = False
        if self.failing:
            self.failing = False
            logger.info("service registry: etcd answers again; service {!r} in namespace {!r} "
                        "has {} instance(s)", self.service, directory.namespace,
                        len(instances))
        self.revision = snapshot.revision
        if instances == self.last:
            return None
        self.last = instances
        return instances
