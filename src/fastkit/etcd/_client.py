"""The glue between FastKit and etcd: ``etcd3gw`` on etcd's v3 JSON gateway, with several
endpoints, user/password authentication and UTF-8 text.

etcd3gw does the protocol (ranges, puts, leases, watches). What it leaves to its caller,
done here: trying the next endpoint when one cannot be reached, authenticating (a token
from ``/v3/auth/authenticate``, sent as ``Authorization`` and renewed when etcd answers
401), a bound on every call, UTF-8 text rather than latin-1, and one error type per way a
call can fail.
"""

from __future__ import annotations

import base64
import contextlib
import math
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastkit.exceptions import FastKitError

if TYPE_CHECKING:
    import requests

__all__ = ["DEFAULT_ENDPOINT", "EtcdAuthError", "EtcdClient", "EtcdError", "EtcdUnavailable",
           "Snapshot", "prefix_end"]

DEFAULT_ENDPOINT = "http://127.0.0.1:2379"
# The longest one etcd watch stream lasts (seconds): wait_for_change waits in such slices.
_WATCH_SLICE = 1.0


class EtcdError(FastKitError, RuntimeError):
    """etcd refused or failed a call (the message is etcd's own, never a credential)."""


class EtcdUnavailable(EtcdError, ConnectionError):
    """No endpoint answered: each was refused, timed out or is unreachable. The message
    names every endpoint tried."""


class EtcdAuthError(EtcdError, PermissionError):
    """etcd refused the user name and password (or authentication is off and some were
    given, or it is on and none were)."""


def prefix_end(prefix: bytes) -> bytes:
    """The end of the key range of ``prefix`` (its last byte plus one), as etcd ranges
    take it. Raises ``ValueError`` for an empty prefix or one ending in ``0xff``."""
    if not prefix or prefix[-1] == 0xFF:
        raise ValueError("a key prefix must be non-empty and not end in byte 0xff")
    return prefix[:-1] + bytes([prefix[-1] + 1])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _shown(endpoint: str) -> str:
    """``endpoint`` with any user or password left out."""
    url = urlsplit(endpoint)
    host = url.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{url.scheme}://{host}" + (f":{url.port}" if url.port else "")


def _endpoint(endpoint: str) -> str:
    """``endpoint`` as ``scheme://host[:port]`` without a trailing ``/`` (``host[:port]``
    alone is ``http://host[:port]``); ``ValueError`` when it is no http(s) URL with a
    host and nothing after the port (no path, query or space; the message never quotes
    what stands before an ``@``)."""
    text = endpoint.strip()
    text = (text if "://" in text else f"http://{text}").rstrip("/")
    try:
        url = urlsplit(text)
        url.port  # noqa: B018 -- raises ValueError for a port that is no number
    except ValueError:
        url = None
    if (url is None or url.scheme.lower() not in ("http", "https") or not url.hostname
            or url.path or url.query or url.fragment or "?" in text or "#" in text
            or any(char.isspace() or not char.isprintable() for char in text)):
        raise ValueError(f"an etcd endpoint is http(s)://host[:port], not "
                         f"{endpoint.rsplit('@', 1)[-1]!r}")
    return text


# The read bound of the watch stream a thread is opening (seconds; None: no bound), set by
# EtcdClient.wait_for_change for the etcd3gw watch it starts on that thread.
_watch_bound = threading.local()


class Snapshot(dict[str, str]):
    """The keys under a prefix (``{key: value}``, UTF-8 text) and the store's revision when
    they were read (``revision``; watch from ``revision + 1`` to miss nothing).
    ``undecodable``: the keys left out because key or value is not UTF-8 text (each key
    as text, with ``\\x..`` for its bytes that are not UTF-8), for the caller to report."""

    revision: int = 0
    undecodable: tuple[str, ...] = ()


class _AuthSession:
    """A ``requests.Session`` factory whose sessions send etcd's token, renew it on 401
    and bound every call (``timeout`` seconds to connect and between bytes read; a watch's
    stream is bounded by the wait it serves, see :meth:`EtcdClient.wait_for_change`)."""

    @staticmethod
    def build(base_url: str, user: str | None, password: str | None,
              timeout: float) -> requests.Session:
        import requests

        class Session(requests.Session):
            token: str | None = None
            lock = threading.Lock()

            def authenticate(self) -> None:
                response = super().request(
                    "POST", f"{base_url}/v3/auth/authenticate",
                    json={"name": user, "password": password}, timeout=timeout)
                if response.status_code != 200:
                    raise EtcdAuthError(f"etcd at {_shown(base_url)} refused user {user!r}: "
                                        f"{_message(response)}")
                self.token = response.json().get("token")

            def request(self, method: str, url: str,  # type: ignore[override]
                        **kwargs: Any) -> requests.Response:
                bound = getattr(_watch_bound, "seconds", None)
                kwargs.setdefault("timeout", (timeout, bound) if kwargs.get("stream")
                                  else timeout)
                if user is None:
                    return super().request(method, url, **kwargs)
                with self.lock:
                    if self.token is None:
                        self.authenticate()
                    token = self.token
                headers = kwargs["headers"] = dict(kwargs.get("headers") or {})
                headers["Authorization"] = token or ""
                response = super().request(method, url, **kwargs)
                if response.status_code == 401:  # the token expired: a new one, once
                    response.close()
                    with self.lock:
                        if self.token == token:
                            self.authenticate()
                        headers["Authorization"] = self.token or ""
                    response = super().request(method, url, **kwargs)
                return response

        return Session()


def _message(response: Any) -> str:
    try:
        return str(response.json().get("message") or response.reason)
    except ValueError:
        return str(response.reason or response.status_code)


class EtcdClient:
    """A client of one etcd cluster, safe to share between threads.

    ``endpoints``: the cluster's client URLs (``http://host:2379``; ``host:port`` alone
    means ``http://``; a list, or one string with commas; ``ValueError`` for one that is
    no ``http(s)://host[:port]``); each call goes to the endpoint that last answered and
    moves on to the next when one cannot be reached. ``user``/``password``: etcd's
    authentication (unset: none). ``timeout``: seconds each call may take to connect and
    between bytes.

    Keys and values are text (UTF-8). Every call raises :class:`EtcdUnavailable` when no
    endpoint answers, :class:`EtcdAuthError` when the credentials are refused, and
    :class:`EtcdError` when etcd refuses the call. Nothing connects before the first call.
    """

    def __init__(self, endpoints: Sequence[str] | str = DEFAULT_ENDPOINT, *,
                 user: str | None = None, password: str | None = None,
                 timeout: float = 5.0) -> None:
        if isinstance(endpoints, str):
            endpoints = [part.strip() for part in endpoints.split(",") if part.strip()]
        if not endpoints:
            raise ValueError("EtcdClient needs at least one endpoint URL")
        if password and not user:
            raise ValueError("an etcd password needs a user name")
        if isinstance(timeout, bool) or not (timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.endpoints = [_endpoint(endpoint) for endpoint in endpoints]
        self.user = user or None
        self._password = password or ""
        self.timeout = timeout
        self._clients: dict[str, Any] = {}
        self._current = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        shown = ",".join(_shown(endpoint) for endpoint in self.endpoints)
        return f"EtcdClient({shown!r}, user={self.user!r})"

    @property
    def endpoint(self) -> str:
        """The endpoint calls go to now (without credentials)."""
        return _shown(self.endpoints[self._current])

    # --- key-value --------------------------------------------------------------------
    def get_prefix(self, prefix: str) -> Snapshot:
        """Every key starting with ``prefix`` and its value, with the revision read at.
        A key or value that is not UTF-8 text is left out (named in ``undecodable``)."""
        raw = prefix.encode()
        result = self._call(lambda client: _answer(client.post(
            client.get_url("/kv/range"),
            json={"key": _b64(raw), "range_end": _b64(prefix_end(raw))})))
        snapshot = Snapshot()
        snapshot.revision = int(result["header"]["revision"])
        undecodable = []
        for item in result.get("kvs", []):
            raw_key = base64.b64decode(item["key"])
            try:
                snapshot[raw_key.decode()] = base64.b64decode(item.get("value", "")).decode()
            except UnicodeDecodeError:
                undecodable.append(raw_key.decode(errors="backslashreplace"))
        snapshot.undecodable = tuple(undecodable)
        return snapshot

    def get(self, key: str) -> str | None:
        """The value of ``key``, or ``None`` when it is not set; :class:`EtcdError` when
        the value is not UTF-8 text."""
        result = self._call(lambda client: client.post(client.get_url("/kv/range"), json={
            "key": _b64(key.encode())}))
        kvs = result.get("kvs", [])
        if not kvs:
            return None
        try:
            return base64.b64decode(kvs[0].get("value", "")).decode()
        except UnicodeDecodeError:
            raise EtcdError(f"the value of etcd key {key!r} is not UTF-8 text") from None

    def put(self, key: str, value: str, *, lease: int | None = None) -> None:
        """Set ``key`` to ``value``, held by ``lease`` when given (deleted when it ends)."""
        payload: dict[str, Any] = {"key": _b64(key.encode()), "value": _b64(value.encode())}
        if lease is not None:
            payload["lease"] = str(lease)
        self._call(lambda client: client.post(client.get_url("/kv/put"), json=payload))

    def delete(self, key: str) -> bool:
        """Delete ``key``; ``True`` if it was there."""
        result = self._call(lambda client: client.post(client.get_url("/kv/deleterange"),
                                                       json={"key": _b64(key.encode())}))
        return int(result.get("deleted", 0)) > 0

    # --- leases -----------------------------------------------------------------------
    def grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds (≥ 1); its id."""
        lease = int(self._call(lambda client: client.lease(ttl=max(1, int(ttl))).id))
        if lease <= 0:  # 0 is "no lease": a key put with it would never end
            raise EtcdError(f"etcd at {self.endpoint} granted no lease (id {lease})")
        return lease

    def keepalive(self, lease: int) -> bool:
        """Renew ``lease`` for its full TTL; ``False`` when it already ended (its keys are
        gone: grant another and put them again)."""
        ttl = self._call(lambda client: self._lease(client, lease).refresh())
        return int(ttl) > 0

    def revoke(self, lease: int) -> None:
        """End ``lease`` now, deleting its keys."""
        self._call(lambda client: self._lease(client, lease).revoke())

    @staticmethod
    def _lease(client: Any, lease: int) -> Any:
        from etcd3gw.lease import Lease

        return Lease(lease, client=client)

    # --- watching ---------------------------------------------------------------------
    def wait_for_change(self, prefix: str, revision: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a change under ``prefix`` after ``revision``
        (a :class:`Snapshot`'s); ``True`` once one came (or had already come), ``False``
        when none came in time. Read the prefix again after either: a watch stream that
        breaks (etcd restarting) ends the wait only at ``timeout``. An endpoint that takes
        the watch and never answers is :class:`EtcdUnavailable` within the client's
        timeout plus a second.

        The wait is made of watches of at most a second each (from the same revision:
        nothing is missed between them), so a process whose thread is in this call exits
        within about a second of returning, whatever ``timeout``."""
        from etcd3gw.exceptions import WatchTimedOut

        raw = prefix.encode()
        deadline = time.monotonic() + timeout

        def watch(client: Any, seconds: float) -> bool:
            # The stream's answer must start within the wait (and the call's timeout): an
            # endpoint that takes the request and goes silent is then unreachable, not a
            # wait for ever.
            _watch_bound.seconds = seconds + self.timeout
            try:
                client.watch_once(raw, timeout=seconds, start_revision=revision + 1,
                                  range_end=prefix_end(raw).decode("latin-1"))
            except WatchTimedOut:
                return False
            finally:
                _watch_bound.seconds = None
            return True

        first = True
        while True:
            # etcd3gw's watch threads are joined when the interpreter exits (an atexit hook
            # of futurist's): a short watch keeps that join short.
            seconds = min(deadline - time.monotonic(), _WATCH_SLICE)
            if seconds <= 0 and not first:
                return False
            first, seconds = False, max(seconds, 0.01)  # one watch at least
            if self._call(lambda client, seconds=seconds: watch(client, seconds)):
                return True

    def close(self) -> None:
        """Close the connections (a later call opens new ones)."""
        with self._lock:
            clients, self._clients = self._clients, {}
        for client in clients.values():
            client.session.close()

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the glue ---------------------------------------------------------------------
    def _client(self, endpoint: str) -> Any:
        with self._lock:
            client = self._clients.get(endpoint)
            if client is None:
                import etcd3gw

                url = urlsplit(endpoint)
                session = _AuthSession.build(endpoint, self.user, self._password,
                                             self.timeout)
                client = etcd3gw.Etcd3Client(
                    host=url.hostname or "127.0.0.1",
                    port=url.port or (443 if url.scheme == "https" else 2379),
                    protocol=url.scheme or "http", timeout=self.timeout,
                    api_path="/v3/", session=session)
                self._clients[endpoint] = client
            return client

    def _call(self, call: Any) -> Any:
        _require_etcd3gw()
        import requests
        from etcd3gw import exceptions

        unreachable: list[str] = []
        first = self._current
        for step in range(len(self.endpoints)):
            index = (first + step) % len(self.endpoints)
            endpoint = self.endpoints[index]
            try:
                result = call(self._client(endpoint))
            except (exceptions.ConnectionFailedError, exceptions.ConnectionTimeoutError,
                    requests.ConnectionError, requests.Timeout) as exc:
                unreachable.append(f"{_shown(endpoint)} ({_reason(exc)})")
                continue
            except exceptions.Etcd3Exception as exc:
                raise _refusal(exc, endpoint) from None
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                # An answer, but not etcd's (another server on that port, a proxy's page).
                raise EtcdError(f"{_shown(endpoint)} answered, but not as etcd's v3 "
                                f"gateway does ({type(exc).__name__})") from None
            self._current = index
            return result
        raise EtcdUnavailable(f"etcd cannot be reached at {', '.join(unreachable)}")


def _answer(result: Any) -> Any:
    """``result`` if it is an answer of etcd's (each carries a ``header`` with the store's
    ``revision``); a ``KeyError`` otherwise (:meth:`EtcdClient._call` reports it)."""
    if not isinstance(result, dict) or "revision" not in (result.get("header") or {}):
        raise KeyError("header")
    return result


def _require_etcd3gw() -> None:
    """Import etcd3gw (and requests, which it drives), or say what to install."""
    try:
        import etcd3gw  # noqa: F401
        import requests  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"fastkit.etcd needs etcd3gw ({exc.name or exc} is not "
                          "installed): pip install 'fastflyer[etcd]'") from None


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "detail_text", None) or exc)
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
        return "timed out"
    if "Name or service not known" in text or "NameResolution" in text:
        return "unknown host"
    return type(exc).__name__


def _refusal(exc: Any, endpoint: str) -> EtcdError:
    detail = getattr(exc, "detail_text", None) or (exc.args[0] if exc.args else "")
    message = str(detail)
    if isinstance(detail, str) and detail.startswith("{"):
        import json

        with contextlib.suppress(ValueError):
            message = str(json.loads(detail).get("message") or detail)
    kind = EtcdAuthError if ("auth" in message or "user name" in message
                             or "permission denied" in message) else EtcdError
    if len(message) > 200:  # not etcd's one line (a proxy's error page): its start only
        message = f"{message[:200]}..."
    return kind(f"etcd at {_shown(endpoint)} refused the call: {message}")

