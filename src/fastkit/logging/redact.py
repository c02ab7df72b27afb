"""Redaction of secrets before anything reaches a log line.

One rule for every log the project writes (outgoing calls, access logs, and every line
of the framework's logger, exception messages and tracebacks included):

- the headers ``Authorization``, ``Proxy-Authorization``, ``Cookie`` and ``Set-Cookie``;
- any header or query key whose name matches :data:`SECRET_NAMES` (``X-Api-Key``,
  ``access_token``, ``client_secret``, ``X-Amz-Signature``, ``sessionid``...);
- the password of a URL's user info (``https://user:***@host/``), also where a
  database or Redis URL holds it unescaped, or the scheme is missing; an HTTP(S) or
  WebSocket URL's whole user info when it has no password (``https://***@host/``: a
  token given as the user name, which the client sends as credentials);
- in free text (:func:`redact_text`): each URL as :func:`redact_url` masks it, and the
  value of each ``name=value`` / ``name: value`` / ``"name": "value"`` pair whose name is
  a secret's (``Authorization: ***``, ``{"password": "***"}``, ``Cookie: ***``).

A name is told a secret's as the receiver reads it: a query key or a ``name=value`` name
after percent-decoding (``to%6Ben`` is ``token``, ``+`` a blank), a quoted name after its
JSON ``\\uXXXX`` escapes (``"pass\\u0077ord"``); the pre-checks that skip a string with
no secret's name look at it decoded too.

    >>> redact_headers({"Authorization": "Bearer abc", "Accept": "*/*"})
    {'Authorization': '***', 'Accept': '*/*'}
    >>> redact_query("q=1&access_token=abc")
    'q=1&access_token=***'
    >>> redact_text("GET https://api.example/v1?token=abc failed, password: hunter2")
    'GET https://api.example/v1?token=*** failed, password: ***'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote_plus, urlsplit, urlunsplit

__all__ = [
    "MASK",
    "SECRET_NAMES",
    "is_secret_key",
    "redact_exception",
    "redact_headers",
    "redact_query",
    "redact_text",
    "redact_url",
]

MASK = "***"

#: The one table of secret names: a header, query key, or name in free text is a secret's
#: when it matches one of these (any case). Each row: the stem as found anywhere in the
#: name (``part=False``) or only as a whole part of it, between non-letters (``part=True``,
#: for stems that would also match plain words: ``signal``, ``author``), and examples.
SECRET_NAMES: tuple[tuple[str, bool, str], ...] = (
    ("token", False, "token, access_token, refresh_token, X-Auth-Token, csrftoken"),
    ("secret", False, "secret, client_secret"),
    ("passw", False, "password, passwd"),
    ("pwd", False, "pwd, db_pwd"),
    ("key", False, "api_key, apikey, X-Api-Key"),
    ("credential", False, "credential, credentials, X-Amz-Credential"),
    ("session", False, "session, sessionid, session_id"),
    ("sessid", False, "PHPSESSID"),
    ("signature", False, "signature, X-Amz-Signature"),
    ("sig", True, "sig, hmac_sig (not signal, design)"),
    ("authoriz", False, "Authorization, Proxy-Authorization"),
    ("auth", True, "auth, X-Auth, auth_code (not author, OAuth)"),
    ("cookie", False, "Cookie, Set-Cookie"),
)


def _stem_pattern(stem: str, part: bool) -> str:
    return rf"(?<![a-z]){stem}(?![a-z])" if part else stem


_SECRET_WORDS = re.compile("|".join(_stem_pattern(*row[:2]) for row in SECRET_NAMES),
                           re.IGNORECASE)
# The fast pre-check of redact_text: ``@`` (a URL's user info) or any stem at all (``sig``
# inside ``signal`` too), looked for in the lower-cased text with ``in`` (a tenth of what one
# case-blind regular expression costs). A stem holding another (``authoriz``) is left out.
_STEMS = tuple(row[0] for row in SECRET_NAMES)
_HINTS = ("@", *(s for s in _STEMS if not any(o != s and o in s for o in _STEMS)))


def is_secret_key(name: str) -> bool:
    """True when a header or query parameter called ``name`` carries a secret
    (:data:`SECRET_NAMES`)."""
    return _SECRET_WORDS.search(name) is not None


_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _decoded(text: str) -> str:
    """``text`` as a receiver reads the names in it: percent-decoded (``+`` a blank) when
    it holds a ``%``, JSON ``\\uXXXX`` escapes decoded when it holds one; else itself."""
    if "%" in text:
        text = unquote_plus(text)
    if "\\u" in text:
        text = _JSON_ESCAPE.sub(lambda found: chr(int(found.group(1), 16)), text)
    return text


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
    if not query or _SECRET_WORDS.search(_decoded(query)) is None:
        return query
    parts = []
    for part in query.split("&"):
        name, sep, _ = part.partition("=")
        parts.append(f"{name}={MASK}" if sep and is_secret_key(_decoded(name)) else part)
    return "&".join(parts)


def redact_url(url: str) -> str:
    """A URL with its user-info password and secret query values replaced by ``***``.

    Text that is no URL comes back as it is (``redact_url("notaurl") == "notaurl"``).
    HTTP(S) and WebSocket URLs are read as RFC 3986 says; user info without a password is
    masked whole there (``https://***@host/``: a token given as the user name is sent as
    credentials). Other URLs (databases, Redis,
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
        netloc = f"{user}:{MASK}@{hostport}" if has_password else f"{MASK}@{hostport}"
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


# A URL with a scheme, or a path with a query string, up to a blank, a quote or a bracket.
_URL = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s'"<>]+|/[^\s'"<>?]*\?[^\s'"<>]+""")
# A cookie header written as ``Cookie: a=1; b=2``: its whole value, to the end of the line.
_COOKIE = re.compile(r"""(\b(?:set-)?cookie\s*:\s*)(?!["'\s])[^\r\n]+""", re.IGNORECASE)
# ``name=value``, ``name: value``, ``"name": "value"``, ``('name', 'value')``: the name, the
# separator, the value (quoted, or an auth scheme and its credentials, or up to a delimiter).
# Any name is matched (a name is read whole, from its start, never backtracked into:
# linear time), then told a secret's or not by is_secret_key.
# The name and its separator are looked for first, the value only after a secret's name: a
# name that is no secret's consumes no value, which may hold a pair (``ValueError: token=x``).
_NAME_SEP = re.compile(
    r"""(?<![\w.-])(?P<name>(?:[\w.-]|%[0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4})++)"""
    r"""(?P<sep>["']?[ \t]*[:=][ \t]*|["'][ \t]*,[ \t]*(?=["']))""",
    re.IGNORECASE,
)
_VALUE = re.compile(
    r"""(?P<value>"(?:[^"\\\r\n]|\\.)*"|'(?:[^'\\\r\n]|\\.)*'"""
    r"""|(?:(?:bearer|basic|digest|negotiate|token)[ \t]+)?[^\s&,;'"<>(){}\[\]]+)""",
    re.IGNORECASE,
)
# What follows a URL's scheme and its ":" (as _URL reads a URL).
_AFTER_SCHEME = re.compile(r"""//[^\s'"<>]*""")
# Names of that shape that are no secret's: exception classes (``KeyError: 'id'``).
_NOT_NAMES = ("error", "exception", "warning")


def _mask_url(found: re.Match[str]) -> str:
    try:
        return redact_url(found.group(0))
    except ValueError:  # not RFC 3986 (``http://[::1``): read leniently
        return _redact_lenient(found.group(0))


def _mask_pairs(text: str) -> str:
    """``text`` with the value of each pair whose name is a secret's masked. The value
    after a name that is not a secret's is searched too (``ValueError: password=x``,
    ``failed: token=x``); each character is read once by the search (linear time)."""
    parts: list[str] = []
    pos = search_at = 0
    while (found := _NAME_SEP.search(text, search_at)) is not None:
        search_at = found.end()
        read = _decoded(found.group("name"))
        if not is_secret_key(read) or read.lower().endswith(_NOT_NAMES):
            url = _AFTER_SCHEME.match(text, search_at) if found.group("sep") == ":" else None
            if url is not None:  # a URL's scheme: the URL was masked already, as a URL
                search_at = url.end()
            continue
        value = _VALUE.match(text, search_at)
        if value is None:
            continue
        quote = value.group(0)[0] if value.group(0)[0] in "\"'" else ""
        parts.append(f"{text[pos:search_at]}{quote}{MASK}{quote}")
        pos = search_at = value.end()
    parts.append(text[pos:])
    return "".join(parts)


def redact_text(text: str) -> str:
    """``text`` (a log message, an exception's message, a traceback) with its secrets
    masked as ``***``: each URL as :func:`redact_url` masks it, the value of a
    ``Cookie:``/``Set-Cookie:`` header to the end of its line, and the value of each
    ``name=value``, ``name: value`` or quoted ``"name": "value"`` pair whose name is a
    secret's (:data:`SECRET_NAMES`; an auth scheme such as ``Bearer`` is masked with its
    credentials). The names, hosts and paths stay.

    Text with no ``@`` and no stem of :data:`SECRET_NAMES` comes back unchanged after one
    scan of its lower-cased copy (about half a microsecond for a 100-character line), a
    text holding ``%`` or ``\\u`` after one scan of its decoded copy. Never raises.
    """
    lowered = text.lower()
    if "%" in lowered or "\\u" in lowered:
        lowered = _decoded(text).lower()
    for hint in _HINTS:
        if hint in lowered:
            break
    else:
        return text
    if "://" in text or "?" in text:
        text = _URL.sub(_mask_url, text)
    if hint == "@" and not any(stem in lowered for stem in _HINTS[1:]):
        return text
    if "cookie" in lowered:
        text = _COOKIE.sub(lambda found: found.group(1) + MASK, text)
    return _mask_pairs(text)


def redact_exception(error: BaseException) -> str:
    """The message of ``error`` (``str(error)``) with its secrets masked as
    :func:`redact_text` masks them; ``<exception str() failed>`` (as tracebacks write it)
    for an exception whose ``str()`` raises. Never raises."""
    try:
        text = str(error)
    except Exception:
        return "<exception str() failed>"
    return redact_text(text)
