from __future__ import annotations

import pytest

from fastkit.logging.redact import is_secret_key, redact_headers, redact_query, redact_url


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
    assert redact_url("https://u@h.example/") == "https://u@h.example/"
