"""Redaction of secrets before anything reaches a log line.

One rule for every log the project writes (outgoing calls, access logs):

- the headers ``Authorization``, ``Proxy-Authorization``, ``Cookie`` and ``Set-Cookie``;
- any header or query key whose name contains ``token``, ``secret``, ``password``,
  ``passwd`` or ``key`` (``X-Api-Key``, ``access_token``, ``client_secret``...);
- the password of a URL's user info (``https://user:***@host/``), also where a
  database or Redis URL holds it unescaped, or the scheme is missing.

    >>> redact_headers({"Authorization": "Bearer abc", "Accept": "*/*"})
    {'Authorization': '***', 'Accept': '*/*'}
    >>> redact_query("q=1&access_token=abc")
    'q=1&access_token=***'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["MASK", "is_secret_key", "redact_headers", "redact_query", "redact_url"]

MASK = "***"

_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_SECRET_WORDS = re.compile(r"token|secret|passw|key", re.IGNORECASE)


def is_secret_key(name: str) -> bool:
    """True when a header or query parameter called ``name`` carries a secret."""
    return name.lower() in _SECRET_HEADERS or _SECRET_WORDS.search(name) is not None


def redact_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
) -> dict[str, str]:
    """A copy of ``headers`` with secret values replaced by ``***``.

    Repeated headers are joined with ``", "`` as HTTP allows.
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for name, value in items:
        shown = MASK if is_secret_key(name) else value
        out[name] = f"{out[name]}, {shown}" if name in out else shown
    return out


def redact_query(query: str) -> str:
    """A query string with the values of secret keys replaced by ``***``."""
    if not query or _SECRET_WORDS.search(query) is None:
        return query
    parts = []
    for part in query.split("&"):
        name, sep, _ = part.partition("=")
        parts.append(f"{name}={MASK}" if sep and is_secret_key(unquote(name)) else part)
    return "&".join(parts)


def redact_url(url: str) -> str:
    """A URL with its user-info password and secret query values replaced by ``***``.

    Text that is no URL comes back as it is (``redact_url("notaurl") == "notaurl"``).
    HTTP(S) and WebSocket URLs are read as RFC 3986 says. Other URLs (databases, Redis,
    brokers), and ``user:password@host`` without a scheme, are read as SQLAlchemy reads
    them, and leniently, since a URL that is being reported may be mistyped: the password
    runs from the first ``:`` of the user-info to the last ``@`` (so one holding an
    unescaped ``/``, ``?``, ``:`` or ``@`` is masked whole, and so is a scheme typed
    without its ``://``); with no ``@``, what follows a host's ``:`` is masked unless it
    is a port number (``redis://:secret`` forgot its host).
    """
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in _RFC_SCHEMES:
        return _redact_lenient(url)
    if "@" not in url and "?" not in url:
        return url
    split = urlsplit(url)
    netloc = split.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if has_password else netloc
    return urlunsplit(split._replace(netloc=netloc, query=redact_query(split.query)))


_RFC_SCHEMES = frozenset({"http", "https", "ws", "wss"})


def _redact_lenient(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    at = rest.rfind("@")
    if at >= 0:
        first_colon = rest.find(":", 0, at)
        if first_colon >= 0:
            rest = f"{rest[:first_colon]}:{MASK}{rest[at:]}"
    else:
        end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        host, has_port, port = rest[:end].rpartition(":")
        if has_port and not port.isdigit() and not port.endswith("]"):
            rest = f"{host}:{MASK}{rest[end:]}"
    base, has_query, query = rest.partition("?")
    if has_query:
        rest = f"{base}?{redact_query(query)}"
    return f"{scheme}{sep}{rest}"
