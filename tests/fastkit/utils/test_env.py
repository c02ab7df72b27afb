"""env: the four documented forms work for set and unset variables."""

from __future__ import annotations

import pytest

from fastflyer import env as flyer_env
from fastkit.utils import env, get_host_ip, get_md5, get_random_str


@pytest.fixture(autouse=True)
def _vars(monkeypatch):
    monkeypatch.setenv("demo_set", "42")
    monkeypatch.setenv("demo_empty", "")
    monkeypatch.delenv("demo_unset", raising=False)


def test_the_four_forms_for_a_set_variable():
    assert env.get("demo_set", "d") == "42"
    assert (env.demo_set or "d") == "42"
    assert env.demo_set["d"] == "42"
    assert env.demo_set("d") == "42"


def test_the_four_forms_for_an_unset_variable():
    assert env.get("demo_unset", "d") == "d"
    assert (env.demo_unset or "d") == "d"
    assert env.demo_unset["d"] == "d"
    assert env.demo_unset("d") == "d"
    assert env.demo_unset() is None
    assert env.get("demo_unset") is None


def test_a_set_value_behaves_as_its_string():
    value = env.demo_set
    assert value == "42"
    assert isinstance(value, str)
    assert int(value) == 42
    assert value + "!" == "42!"
    assert value[0] == "4"
    assert value[-1:] == "2"
    assert value.is_set
    assert not env.demo_unset.is_set
    assert f"{value}" == "42"


def test_an_empty_variable_is_set_but_falsy():
    assert env.demo_empty.is_set
    assert env.demo_empty("d") == ""
    assert (env.demo_empty or "d") == "d"


def test_reads_the_environment_at_each_access(monkeypatch):
    monkeypatch.setenv("demo_set", "1")
    assert env.demo_set == "1"
    assert "demo_set" in env
    assert env["demo_set"] == "1"


def test_dunder_lookups_are_not_variables():
    with pytest.raises(AttributeError):
        env.__wrapped__  # noqa: B018


def test_fastflyer_exports_the_same_object():
    assert flyer_env is env


def test_small_helpers():
    assert get_md5("abc") == "900150983cd24fb0d6963f7d28e17f72"
    assert get_md5(b"abc") == get_md5("abc")
    token = get_random_str(24)
    assert len(token) == 24
    assert token.isalnum()
    assert get_random_str(24) != token
    with pytest.raises(ValueError, match="length must be ≥ 0"):
        get_random_str(-1)
    assert get_host_ip().count(".") == 3
