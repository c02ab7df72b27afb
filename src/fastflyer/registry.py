"""The service registry: each serving instance of the app listed in etcd while it serves.

With ``flyer_registry_enabled=1`` (or the seed's ``flyer_polaris_enabled=1``) the
instance registers under ``/{flyer_registry_namespace}/{service}/{host}:{port}`` in the
etcd cluster of ``flyer_registry_endpoints``; the value is its JSON record
(:meth:`fastkit.registry.Instance.to_json`): ``host``, ``port``, ``base_url``
(``http://host:port`` and ``flyer_base_url``), ``version`` (the app's), ``metadata``
(``flyer_registry_metadata_<NAME>`` variables), ``service``, ``namespace``, ``scheme``.

- **Which service**: ``flyer_registry_service``, else the service's name
  (:func:`fastflyer.service.service_name`).
- **Which address**: ``flyer_registry_host`` when set (a wildcard there is refused at
  build: nobody can call it); else ``flyer_host``, unless it is a wildcard (``0.0.0.0``,
  ``::``), which other machines cannot call: then the address of this machine's default
  route (:func:`fastkit.utils.net.routable_host`). The port is the one the server bound
  (``fastflyer run``/``serve --port 0`` tell the app which).
- **Lease and heartbeat**: the key is held by an etcd lease of ``3 ×
  flyer_registry_heartbeat_interval`` seconds, renewed every heartbeat; a killed instance
  (``SIGKILL``, a lost machine) leaves the registry within one TTL.
- **Readiness**: every heartbeat runs the app's readiness checks first; the instance
  registers only once they pass, and is withdrawn (its key deleted) while they fail. The
  registry is no readiness check itself: an unreachable registry never makes the app
  unready. Its state changes are logged (below). Checks that take longer than two
  heartbeats do not hold the lease's renewal: the last verdict stands for that beat.
- **Several workers** (``fastflyer serve --workers N``: N processes on one address): each
  worker has its own lease and puts the key with it at every heartbeat, so the key is held
  by the lease of the worker that put it last. When a worker dies, another puts the key
  again within one heartbeat, well within the TTL: the instance stays listed while any
  worker lives. A worker's readiness speaks for the instance: one that turns unready
  deletes the key, which a ready worker puts again at its next heartbeat.
- **Stopping**: a stop by signal (``SIGTERM``/``SIGINT``, the server's master gone, a
  second Ctrl-C) withdraws the instance from the stopping hook
  (:meth:`fastflyer.lifespan.Lifecycle.stopping`), before the listener closes: the
  heartbeat stops first, then the key is deleted and the lease revoked. Every worker does
  it (each put of a worker comes before its own delete, so the key is gone once all have
  stopped); a key or lease already gone is no error. A worker replaced while the server
  goes on (recycled after ``flyer_max_requests``, which stops it with no signal; or
  stopped by gunicorn's master in a reload on SIGHUP, or for fewer workers on SIGTTOU,
  which it marks first: :func:`fastflyer.server.replaced`) says so in
  :attr:`Lifecycle.recycling <fastflyer.lifespan.Lifecycle.recycling>`, and only stops its
  heartbeat: the key stays with the other workers and the ones that replace it; its lease
  ends within the TTL (a replacement that takes longer than the TTL to load the app,
  with no other worker left, leaves a gap until its first heartbeat). The withdraw gets
  most of the stopping hooks' budget; when etcd does not answer in time a WARNING says
  so and the key ends with its lease. Under a server other than ``fastflyer
  run``/``serve`` (plain ``uvicorn main:app``) the withdraw happens at the lifespan's
  shutdown, after the listener closed, and the port registered is ``flyer_port``.
- **etcd away**: a heartbeat that cannot reach etcd logs one WARNING per outage (naming the
  endpoints, never the credentials) and the next heartbeats try again; the key stays
  until its lease ends. When etcd answers again, the lease is renewed or, if it ended
  (an outage longer than the TTL, or etcd lost it), a new one is granted and the key put
  again, and an INFO line says the instance is registered again. Nothing waits for etcd
  in a request: the heartbeat is a task on the server's event loop and every etcd call
  runs on a daemon thread, bounded by the client's timeout.
- **Credentials**: ``flyer_registry_token`` (``user:password``) is etcd's user name and
  password; the password is in no log line and no error.

Nothing starts at import or when the app is built: the heartbeat starts with the app's
lifespan and stops with it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from typing import TYPE_CHECKING, Any

from fastflyer.settings import SettingsError
from fastkit.logging import logger
from fastkit.utils.threads import run_in_daemon_thread

if TYPE_CHECKING:
    from fastflyer.health import Readiness
    from fastflyer.lifespan import Lifecycle
    from fastflyer.settings import FlyerSettings
    from fastkit.etcd import EtcdClient
    from fastkit.registry import Instance, Registration

__all__ = ["RegistryService", "register_registry"]

#: The longest one etcd call may take (seconds), whatever the heartbeat.
CALL_TIMEOUT = 5.0


def _credentials(settings: FlyerSettings) -> tuple[str | None, str | None]:
    user, _, password = settings.registry_token.get_secret_value().partition(":")
    return (user or None), (password or None)


class RegistryService:
    """The app's registration in the etcd service registry and its heartbeat (see the
    module docstring). Built by :func:`register_registry`; its hooks run in the app's
    lifespan.

    ``settings``: the app's. ``readiness``: the app's checks, run before each heartbeat.
    ``lifecycle``: the app's (its ``recycling`` says a stop is a recycled worker's).
    ``service``: the service's key segment. ``base_url``: the app's ``flyer_base_url``.
    ``version``: the app's version. ``stopping_budget``: seconds the withdraw may take
    when the server stops.
    """

    def __init__(self, settings: FlyerSettings, readiness: Readiness, lifecycle: Lifecycle,
                 service: str, base_url: str, version: str, stopping_budget: float) -> None:
        self.settings = settings
        self.readiness = readiness
        self.lifecycle = lifecycle  # its ``recycling`` tells a recycled worker's stop
        self.service = service
        self.base_url = base_url
        self.version = version
        self.heartbeat = settings.registry_heartbeat_interval
        self.stopping_budget = stopping_budget
        #: The registration, once the lifespan started it.
        self.registration: Registration | None = None
        #: The last state logged: "registered", "unready", "failing", "stopped" or None
        #: (started, nothing known yet).
        self.state: str | None = None
        self._client: EtcdClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._failure = ""  # the kind of the last failure logged (one WARNING per outage)
        self._ready = False  # the last verdict of the readiness checks
        self._listed = False  # this process put the key and has not withdrawn it since

    def instance(self) -> Instance:
        """The instance this process serves, as registered. Raises ``ValueError`` when the
        address is not one a key can hold."""
        from fastkit.registry import Instance
        from fastkit.utils.net import routable_host

        settings = self.settings
        host = settings.registry_host or routable_host(settings.host)
        instance = Instance(service=self.service, host=host, port=settings.port,
                            version=self.version, metadata=dict(settings.registry_metadata),
                            namespace=settings.registry_namespace)
        return dataclasses.replace(instance, base_url=f"{instance.address}{self.base_url}")

    # --- the lifespan's hooks -----------------------------------------------------------
    async def start(self) -> None:
        """Start the heartbeat on the running event loop (the lifespan's start hook). Sends
        nothing itself: the first heartbeat runs the readiness checks, then registers."""
        from fastkit.etcd import EtcdClient
        from fastkit.registry import Registration

        user, password = _credentials(self.settings)
        timeout = min(CALL_TIMEOUT, max(1.0, self.heartbeat))
        self._client = EtcdClient(self.settings.registry_endpoints, user=user,
                                  password=password, timeout=timeout)
        self.registration = Registration(self._client, self.instance(), self.heartbeat)
        self.state = None
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                            name="fastflyer-registry")

    async def stopping(self) -> None:
        """The server starts stopping (the stopping hook): stop the heartbeat, then, on a
        stop by signal, withdraw the instance (delete the key, revoke the lease) within
        :attr:`stopping_budget`; on a worker's recycling leave the key to the others."""
        registration = self.registration
        if registration is None:
            return
        await self._stop_heartbeat()
        if self.lifecycle.recycling:
            logger.info("service registry: worker recycled; heartbeat stopped, {} left to "
                        "the other workers (this worker's lease ends within {} s)",
                        registration.key, registration.ttl)
            return
        try:
            await asyncio.wait_for(run_in_daemon_thread(registration.withdraw),
                                   self.stopping_budget)
        except TimeoutError:
            logger.warning("service registry: etcd did not answer within {:g} s; {} leaves "
                           "the registry when its lease ends, within {} s",
                           self.stopping_budget, registration.key, registration.ttl)
        except Exception as exc:
            logger.warning("service registry: cannot withdraw {} ({}); it leaves the "
                           "registry when its lease ends, within {} s",
                           registration.key, _why(exc), registration.ttl)
        else:
            if self._listed:
                logger.info("service registry: {} withdrawn (stopping)", registration.key)
            self._listed = False

    async def stop(self) -> None:
        """Stop the heartbeat if it still runs and close the etcd client (the stop hook)."""
        await self._stop_heartbeat()
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def _stop_heartbeat(self) -> None:
        if self.registration is not None:
            self.registration.close()  # a beat running now finishes; none after
        self.state = "stopped"
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})  # its beat on a thread is not waited for

    # --- the heartbeat ------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_beat = loop.time()
        registration = self.registration
        while True:
            await self.tick()
            # Closed: the heartbeat is over, even when the cancel that came with the close
            # was lost (on Python 3.11, ``asyncio.wait_for`` swallows a cancel that arrives
            # as its awaitable completes, and the loop would go on beating forever).
            if registration is None or registration.closed:
                return
            next_beat += self.heartbeat
            delay = next_beat - loop.time()
            if delay < 0:  # the tick overran: the next one now, and the rhythm from there
                next_beat, delay = loop.time(), 0.0
            await asyncio.sleep(delay)

    async def tick(self) -> None:
        """One heartbeat: the readiness checks, then register (grant or renew the lease,
        put the key) when they pass, or withdraw when they fail. Logs what changed; raises
        nothing but ``CancelledError``."""
        registration = self.registration
        if registration is None or registration.closed:
            return
        from fastkit.registry import TTL_BEATS
        try:
            try:
                # Bounded: a slow check must not hold the lease's renewal past its TTL.
                report = await asyncio.wait_for(self.readiness.report(),
                                                (TTL_BEATS - 1) * self.heartbeat)
            except TimeoutError:  # no verdict in time: the last one stands
                report = {"ready": self._ready, "components": {}}
            self._ready = bool(report.get("ready"))
            if self._ready:
                granted = await run_in_daemon_thread(registration.beat)
                if registration.closed:  # stopped meanwhile: the stop logs what happens
                    return
                self._registered(registration, granted)
            else:
                if registration.lease is not None:  # registered by this process before
                    await run_in_daemon_thread(registration.withdraw)
                    self._listed = False
                if self.state != "unready":
                    down = [f"{name}: {health.get('error', 'down')}"
                            for name, health in report.get("components", {}).items()
                            if health.get("status") == "down"]
                    logger.warning("service registry: not ready ({}); {} not registered "
                                   "until the readiness checks pass",
                                   "; ".join(down) or "the checks gave no verdict in time",
                                   registration.key)
                    self.state = "unready"
                    self._failure = ""
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(registration, exc)

    def _registered(self, registration: Registration, granted: bool) -> None:
        endpoint = self._client.endpoint if self._client is not None else "etcd"
        if self.state == "failing":
            logger.info("service registry: etcd at {} answers again; {} registered{}",
                        endpoint, registration.key,
                        " again with a new lease" if granted else "")
        elif self.state in (None, "unready"):
            logger.info("service registry: {} registered at {} (lease of {} s renewed every "
                        "{:g} s)", registration.key, endpoint, registration.ttl,
                        self.heartbeat)
        elif granted:
            logger.info("service registry: the lease of {} had ended; registered again "
                        "with a new lease", registration.key)
        self.state = "registered"
        self._failure = ""
        self._listed = True

    def _failed(self, registration: Registration, exc: Exception) -> None:
        kind = type(exc).__name__
        if self.state != "failing" or self._failure != kind:
            if not self._listed:  # nothing put by this process (a lease may be granted)
                logger.warning("service registry: {} not registered: {}; trying again "
                               "every {:g} s", registration.key, _why(exc), self.heartbeat)
            else:
                logger.warning("service registry: {} not renewed: {}; trying again every "
                               "{:g} s (the key stays until its lease ends, within {} s)",
                               registration.key, _why(exc), self.heartbeat,
                               registration.ttl)
        self.state = "failing"
        self._failure = kind


def _why(exc: BaseException) -> str:
    """An error as a log line may say it: FastKit's etcd errors name endpoints and user
    names only; anything else by its type and message."""
    from fastkit.etcd import EtcdError

    return str(exc) if isinstance(exc, EtcdError) else f"{type(exc).__name__}: {exc}"


def _unspecified(host: str) -> bool:
    """``host`` is a wildcard address (``0.0.0.0``, ``::`` in any spelling)."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def register_registry(app: Any) -> RegistryService | None:
    """Wire the service registry into ``app`` (a :class:`~fastflyer.FlyerAPI`: its
    ``settings``, ``readiness``, ``lifecycle``, ``service_name``, ``base_url`` and
    ``version``) when ``flyer_registry_enabled`` is set: start, stopping and stop hooks of
    a :class:`RegistryService`, which it returns (``None`` when disabled).

    Raises :class:`~fastflyer.settings.SettingsError` when the namespace or the service's
    name cannot be a key segment (letters, digits, ``.``, ``_``, ``-``; the service's from
    ``flyer_registry_service``, else the app's name), or when ``flyer_registry_host`` is a
    wildcard address (``0.0.0.0``, ``::``), which no other machine can call.
    """
    from fastkit.registry import service_prefix

    settings: FlyerSettings = app.settings
    if not settings.registry_enabled:
        return None
    segment = "a key segment: letters, digits, '.', '_', '-' (not '.' or '..')"
    try:
        service_prefix(settings.registry_namespace, "service")
    except ValueError:
        raise SettingsError([f"flyer_registry_namespace={settings.registry_namespace!r} is "
                             f"not allowed: {segment}"]) from None
    service = settings.registry_service or app.service_name
    try:
        service_prefix(settings.registry_namespace, service)
    except ValueError:
        if settings.registry_service:
            raise SettingsError([f"flyer_registry_service={service!r} is not allowed: "
                                 f"{segment}"]) from None
        raise SettingsError([
            f"the service's name {service!r} cannot be a registry key segment (letters, "
            "digits, '.', '_', '-'): set flyer_registry_service"]) from None
    if settings.registry_host is not None and _unspecified(settings.registry_host):
        raise SettingsError([f"flyer_registry_host={settings.registry_host!r} is not allowed: "
                             "an address other instances reach this one at, not a wildcard "
                             "(unset: this machine's address)"])
    lifecycle: Lifecycle = app.lifecycle
    registry = RegistryService(settings, app.readiness, lifecycle, service, app.base_url,
                               str(app.version), stopping_budget=0.8 * lifecycle.stopping_timeout)
    lifecycle.add("service registry", start=registry.start, stop=registry.stop,
                  stopping=registry.stopping)
    return registry
