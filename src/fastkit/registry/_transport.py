"""``ServiceTransport`` and ``AsyncServiceTransport``: call a service by its name.

    from fastkit.httpx import Client
    from fastkit.registry import ServiceDirectory, ServiceTransport

    client = Client(transport=ServiceTransport(directory))   # FastKit retries around it
    client.get("http://orders/flyer/v1/items?page=2")

The URL's host is the service's name (its port, if any, is ignored). Each request goes to
the next live instance of that service in turn (round-robin over the list the directory
follows, see :meth:`~fastkit.registry.ServiceDirectory.follow`): the transport changes the
request's origin only, to the instance's scheme, host and port, and its ``Host`` header
to the instance's ``host:port``; the path and query stay as written (an instance's
``base_url`` path is not prepended: write it in the URL).

Failures are httpx's own, so FastKit's retry transport around this one decides: a refused
connection raises ``httpx.ConnectError`` (retried, whatever the method, by the default
policy; the next attempt goes to the next instance); a 503 answer is returned as it came
(retried for the idempotent methods by the default policy); a service with no live
instance raises ``httpx.ConnectError`` naming it.

An instance that could not be connected to (``httpx.ConnectError``/``ConnectTimeout``) is
passed over for the directory's ``refresh`` seconds while the service has others, so the
calls that follow do not each pay a failed attempt and a retry wait; when every instance
is resting they are all tried in turn as before.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable

import httpx

from fastkit.etcd import EtcdError
from fastkit.httpx import INSTANCE_EXTENSION
from fastkit.registry._discovery import Followed, ServiceDirectory
from fastkit.registry._instance import Instance

__all__ = ["AsyncServiceTransport", "ServiceTransport"]


class _Balancer:
    """What both transports share: the service a request names and the next instance."""

    def __init__(self, directory: ServiceDirectory, services: Iterable[str]) -> None:
        self.directory = directory
        # URL hosts come lower-cased: the spelling of the services named here is kept.
        self._names = {name.lower(): name for name in services}
        for name in self._names.values():
            directory.prefix(name)
        self._turns: dict[str, itertools.count[int]] = {}
        self._resting: dict[str, float] = {}  # instance key -> monotonic end of its rest
        self._lock = threading.Lock()

    def service(self, request: httpx.Request) -> str:
        host = request.url.host
        service = self._names.get(host, host)
        try:
            self.directory.prefix(service)
        except ValueError:
            raise httpx.UnsupportedProtocol(
                f"{host!r} is not a service name (letters, digits, '.', '_' and '-')",
                request=request) from None
        return service

    def unreachable(self, service: str, request: httpx.Request,
                    error: EtcdError) -> httpx.ConnectError:
        return httpx.ConnectError(
            f"cannot look up service {service!r} in namespace "
            f"{self.directory.namespace!r}: {error}", request=request)

    def target(self, service: str, followed: Followed,
               request: httpx.Request) -> tuple[Instance, httpx.Request]:
        """The next instance and the request to send it (``request`` itself is unchanged,
        so every attempt of a retried call starts again from the service's name)."""
        instances = followed.current()
        if not instances:
            raise httpx.ConnectError(
                f"no live instance of service {service!r} in namespace "
                f"{self.directory.namespace!r}", request=request)
        with self._lock:
            turns = self._turns.get(service)
            if turns is None:
                turns = self._turns[service] = itertools.count()
            turn = next(turns)
            if self._resting:
                now = time.monotonic()
                for key in [key for key, end in self._resting.items() if end <= now]:
                    del self._resting[key]
                instances = [i for i in instances if i.key not in self._resting] or instances
        instance = instances[turn % len(instances)]
        url = request.url.copy_with(scheme=instance.scheme, host=instance.host,
                                    port=instance.port)
        headers = request.headers.copy()
        # httpx sets Host only when it builds a request from content; given a stream it
        # keeps the headers as they are, so the instance's Host is set here.
        headers["Host"] = url.netloc.decode("ascii")
        return instance, httpx.Request(request.method, url, headers=headers,
                                       stream=request.stream, extensions=request.extensions)

    def failed(self, error: httpx.TransportError, service: str, instance: Instance) -> None:
        """Note the instance on ``error``; one that could not be connected to rests."""
        error.add_note(f"fastkit: instance {instance.address} of service {service!r}")
        if isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout)):
            with self._lock:
                self._resting[instance.key] = time.monotonic() + self.directory.refresh


class ServiceTransport(httpx.BaseTransport):
    """Sends each request for ``http://<service>/...`` to the next live instance of the
    service in ``directory`` (round-robin), through ``transport`` (an
    ``httpx.HTTPTransport()`` when omitted).

    ``services``: names whose letter case the URL loses (URL hosts are lower-case), e.g.
    ``["Orders"]``; lower-case names need not be listed.

    Raises, per request: ``httpx.ConnectError`` when the service has no live instance or
    its first look-up fails (etcd unreachable: the message says why), or what
    ``transport`` raises (a refused connection: ``httpx.ConnectError``, with a note naming
    the instance, which then rests for ``refresh`` seconds); ``httpx.UnsupportedProtocol``
    when the URL's host is no service name;
    ``RuntimeError`` once the directory is closed. Closing the transport closes
    ``transport``, not the directory.
    """

    def __init__(self, directory: ServiceDirectory, *,
                 transport: httpx.BaseTransport | None = None,
                 services: Iterable[str] = ()) -> None:
        self.directory = directory
        self.transport = transport if transport is not None else httpx.HTTPTransport()
        self._balancer = _Balancer(directory, services)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        balancer = self._balancer
        service = balancer.service(request)
        try:
            followed = self.directory.follow(service)
        except EtcdError as error:
            raise balancer.unreachable(service, request, error) from error
        instance, sent = balancer.target(service, followed, request)
        try:
            response = self.transport.handle_request(sent)
        except httpx.TransportError as error:
            balancer.failed(error, service, instance)
            raise
        response.extensions[INSTANCE_EXTENSION] = instance.address  # for the call's log line
        return response

    def close(self) -> None:
        self.transport.close()


class AsyncServiceTransport(httpx.AsyncBaseTransport):
    """The asynchronous :class:`ServiceTransport`, through ``transport`` (an
    ``httpx.AsyncHTTPTransport()`` when omitted); the same arguments and errors. The
    first request for a service reads the registry on a worker thread."""

    def __init__(self, directory: ServiceDirectory, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 services: Iterable[str] = ()) -> None:
        self.directory = directory
        self.transport = transport if transport is not None else httpx.AsyncHTTPTransport()
        self._balancer = _Balancer(directory, services)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        balancer = self._balancer
        service = balancer.service(request)
        try:
            followed = await self.directory.afollow(service)
        except EtcdError as error:
            raise balancer.unreachable(service, request, error) from error
        instance, sent = balancer.target(service, followed, request)
        try:
            response = await self.transport.handle_async_request(sent)
        except httpx.TransportError as error:
            balancer.failed(error, service, instance)
            raise
        response.extensions[INSTANCE_EXTENSION] = instance.address  # for the call's log line
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()
