from __future__ import annotations

import pytest

from fastkit.logging.redact import (
    is_secret_key,
    redact_headers,
    redact_query,
    redact_text,
    redact_url,
)


@pytest.mark.parametrize("name", ["Authorization", "proxy-authorization", "Cookie", "Set-Cookie",
                                  "X-Api-Key", "access_token", "client_secret", "password",
                                  "X-Auth-Token", "passwd", "apikey"])
def test_secret_names(name):
    assert is_secret_key(name)


@pytest.mark.parametrize("name", ["Accept", "User-Agent", "q", "page", "X-Request-ID"])
def test_plain_names(name):
    assert not is_secret_key(name)


def test_headers_keep_order_and_join_repeats():
    assert redact_headers([("Accept", "a"), ("Cookie", "x"), ("Accept", "b")]) == \
        {"Accept": "a, b", "Cookie": "***"}


def test_query_and_url():
    assert redact_query("a=1&token=t&b=2") == "a=1&token=***&b=2"
    assert redact_query("a=1&flag") == "a=1&flag"
    assert redact_query("") == ""
    assert redact_url("https://u:p@h.example/x?api_key=k&q=1") == \
        "https://u:***@h.example/x?api_key=***&q=1"
    assert redact_url("https://u@h.example/") == "https://***@h.example/"  # a token as user


@pytest.mark.parametrize(("url", "shown"), [
    ("notaurl", "notaurl"),
    ("sqlite:///data/app.db", "sqlite:///data/app.db"),
    ("mysql://u@h/db", "mysql://u@h/db"),
    ("mysql+pymysql://u:secret@h:x/db", "mysql+pymysql://u:***@h:x/db"),
    ("mysql://u:se/cr?et@h/db", "mysql://u:***@h/db"),  # SQLAlchemy reads it so
    ("mysql://u:se@cret@h/db", "mysql://u:***@h/db"),
    ("root:secret@db:3306/flyer", "root:***@db:3306/flyer"),  # the scheme forgotten
    ("redis://:secret@cache:6379/0", "redis://:***@cache:6379/0"),
    ("unix://:secret@/run/redis.sock?db=1", "unix://:***@/run/redis.sock?db=1"),
    ("mysql://h/db?password=secret&charset=utf8", "mysql://h/db?password=***&charset=utf8"),
    ("https://h.example:8443/users/bob@example.com", "https://h.example:8443/users/bob@example.com"),
])
def test_url_passwords_only_are_masked(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize("url", ["mysql+pymysql://u:secret@h:x/db", "root:secret@db/flyer",
                                 "notaurl", "mysql+pymysql://u:secret@h:3306/db"])
def test_the_database_helper_masks_by_the_same_rule(url):
    from fastkit.database import masked

    assert masked(url) == redact_url(url)
    assert "secret" not in masked(url)


@pytest.mark.parametrize("name", ["pwd", "auth", "X-Auth", "sig", "hmac_sig", "X-Amz-Signature",
                                  "sessionid", "session", "PHPSESSID", "api_key",
                                  "refresh_token", "credential", "X-Amz-Credential"])
def test_more_secret_names(name):
    assert is_secret_key(name)


@pytest.mark.parametrize("name", ["signal", "design", "author", "OAuth", "sign", "assign"])
def test_words_holding_a_short_stem_are_no_secret_names(name):
    assert not is_secret_key(name)


@pytest.mark.parametrize(("text", "shown"), [
    ("Client error '401 Unauthorized' for url 'http://h.example:8080/v1?token=t1&page=2'",
     "Client error '401 Unauthorized' for url 'http://h.example:8080/v1?token=***&page=2'"),
    ("cannot reach mysql://app:pw1@db.internal:3306/shop, giving up",
     "cannot reach mysql://app:***@db.internal:3306/shop, giving up"),
    ("GET /orders?access_token=t1&sig=s1 200", "GET /orders?access_token=***&sig=*** 200"),
    ("Authorization: Bearer abc.def", "Authorization: ***"),
    ("proxy-authorization: Basic dXNlcjpwdw==", "proxy-authorization: ***"),
    ("Cookie: theme=dark; tracker=c1", "Cookie: ***"),
    ("Set-Cookie: sid=c1; Path=/; HttpOnly\nnext line", "Set-Cookie: ***\nnext line"),
    ("{'authorization': 'Bearer b1', 'accept': '*/*'}",
     "{'authorization': '***', 'accept': '*/*'}"),
    ('{"password": "p\\"1", "user": "bob"}', '{"password": "***", "user": "bob"}'),
    ("username=bob&pwd=p1&client_secret=c1", "username=bob&pwd=***&client_secret=***"),
    ("('x-api-key', 'k1')", "('x-api-key', '***')"),
    ("X-Amz-Credential=AKIA1/2026&X-Amz-Signature=abc",
     "X-Amz-Credential=***&X-Amz-Signature=***"),
    ("KeyError: 'user_id'", "KeyError: 'user_id'"),  # an exception's name is no secret's
    ("Handling signal: term", "Handling signal: term"),
    ("Booting worker with pid: 42", "Booting worker with pid: 42"),
    ("http://[::1/x?token=t1", "http://[::1/x?token=***"),  # not RFC 3986: still masked
])
def test_free_text(text, shown):
    assert redact_text(text) == shown


def test_a_line_without_a_hint_is_the_same_object():
    line = "GET /flyer/items/42 200 1.52 ms"
    assert redact_text(line) is line
