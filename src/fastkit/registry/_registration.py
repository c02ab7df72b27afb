"""One instance's registration: its key, held by an etcd lease that a heartbeat renews.

    import threading
    from fastkit.etcd import EtcdClient, EtcdError
    from fastkit.registry import Instance, Registration

    registration = Registration(EtcdClient("http://10.0.0.1:2379"),
                                Instance("orders", "10.0.0.5", 8080), heartbeat=5)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.is_set():
            try:
                registration.beat()         # grant or renew the lease, put the key
            except EtcdError as exc:        # etcd away: try again at the next beat
                print("not registered:", exc)
            stop.wait(registration.heartbeat)

    threading.Thread(target=heartbeat, daemon=True).start()
    ...
    stop.set(); registration.close(); registration.withdraw()   # leave the registry

The key ``/{namespace}/{service}/{host}:{port}`` holds :meth:`Instance.to_json
<fastkit.registry.Instance.to_json>` and is attached to a lease of ``3 × heartbeat``
seconds: a process that dies without withdrawing (``SIGKILL``, a lost machine) disappears
from the registry within that time, once its lease ends. :meth:`Registration.beat` renews
the lease and puts the key again at every beat; when the lease has ended meanwhile (etcd
was out of reach for longer than its TTL, or lost it), it grants a new one and puts the
key with it: the instance is registered again as soon as etcd answers.

Several processes serving one address (the workers of one server) each run their own
:class:`Registration` of the same instance: each has its own lease and puts the key with
it at every beat, so the key is held by the lease of the process that put it last. When
one process dies, another puts the key again with its own lease within one heartbeat,
well within the TTL: the instance stays listed while any of them lives, and disappears
within one TTL of the last one's end.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING

from fastkit.etcd._client import EtcdError

if TYPE_CHECKING:
    from fastkit.etcd._client import EtcdClient
    from fastkit.registry._instance import Instance

__all__ = ["TTL_BEATS", "Registration"]

#: The lease's TTL in heartbeats: two beats may be missed before the key ends.
TTL_BEATS = 3


def _lease_gone(exc: EtcdError) -> bool:
    """etcd refused a call because the lease is not there (it ended, or never was)."""
    return "lease not found" in str(exc)


class Registration:
    """``instance`` registered in etcd through ``client``, renewed every ``heartbeat``
    seconds (> 0) by whoever calls :meth:`beat` that often (see the module docstring).

    Thread-safe: :meth:`beat` and :meth:`withdraw` run one at a time. Nothing is sent
    before the first :meth:`beat`. Every call to etcd is bounded by the client's timeout.
    """

    def __init__(self, client: EtcdClient, instance: Instance, heartbeat: float = 5.0) -> None:
        if not heartbeat > 0 or math.isinf(heartbeat):
            raise ValueError(f"heartbeat must be a number of seconds > 0, got {heartbeat!r}")
        self.client = client
        self.instance = instance
        self.heartbeat = float(heartbeat)
        #: The lease's time to live, in whole seconds: ``3 × heartbeat``, rounded up.
        self.ttl = max(1, math.ceil(TTL_BEATS * self.heartbeat))
        self._lock = threading.Lock()
        self._lease: int | None = None
        self._registered = False
        self._closed = False

    def __repr__(self) -> str:
        return (f"Registration({self.key!r}, heartbeat={self.heartbeat:g}, "
                f"lease={self._lease!r}, registered={self._registered})")

    @property
    def key(self) -> str:
        """The instance's key in etcd."""
        return self.instance.key

    @property
    def lease(self) -> int | None:
        """The id of this registration's lease (``None``: none granted yet, or withdrawn)."""
        return self._lease

    @property
    def registered(self) -> bool:
        """Whether the last :meth:`beat` put the key (and nothing withdrew it since). After
        a beat that failed it is ``False``, though the key may still be in etcd until the
        lease ends."""
        return self._registered

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called: :meth:`beat` does nothing any more."""
        return self._closed

    def beat(self) -> bool:
        """Renew the lease (grant one if there is none, or a new one if it ended) and put
        the key with it. Call every :attr:`heartbeat` seconds.

        Returns ``True`` when a new lease was granted (the first registration, or again
        after the lease ended), ``False`` when the lease was renewed, or when the
        registration is closed (nothing is sent). Raises
        :class:`~fastkit.etcd.EtcdUnavailable` when etcd cannot be reached,
        :class:`~fastkit.etcd.EtcdAuthError` when it refuses the credentials and
        :class:`~fastkit.etcd.EtcdError` when it refuses a call; the next beat tries again.
        """
        with self._lock:
            if self._closed:
                return False
            self._registered = False
            granted = False
            if self._lease is not None and not self.client.keepalive(self._lease):
                self._lease = None  # it ended: its key is gone with it
            if self._lease is None:
                self._lease = self.client.grant(self.ttl)
                granted = True
            try:
                self.client.put(self.key, self.instance.to_json(), lease=self._lease)
            except EtcdError as exc:
                if not _lease_gone(exc):
                    raise
                # It ended between the renewal and the put: a new one.
                self._lease = self.client.grant(self.ttl)
                granted = True
                self.client.put(self.key, self.instance.to_json(), lease=self._lease)
            self._registered = True
            return granted

    def withdraw(self) -> None:
        """Delete the key (whichever lease holds it) and revoke this registration's lease:
        the instance leaves the registry now. Idempotent: a key already gone or a lease
        already ended is no error. A later :meth:`beat` registers it again (unless
        closed). Raises as :meth:`beat` does; the lease is then kept, to be renewed or
        revoked by the next call (or to end by itself within its TTL).
        """
        with self._lock:
            self._registered = False
            self.client.delete(self.key)
            if self._lease is not None:
                try:
                    self.client.revoke(self._lease)
                except EtcdError as exc:
                    if not _lease_gone(exc):
                        raise
                self._lease = None

    def close(self) -> None:
        """Stop beating: every later :meth:`beat` does nothing. Leaves the key and the lease
        as they are (the lease ends within its TTL unless :meth:`withdraw` revokes it);
        a beat running now finishes. Returns at once; sends nothing."""
        self._closed = True
