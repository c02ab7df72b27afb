"""Every status name of the seeds, today's Starlette names, and the lookups."""

from __future__ import annotations

import pytest

from fastkit.httpx import status

from seeds import status_rows as seed_rows


@pytest.mark.parametrize("prefix", ["000_", "004_"])
def test_every_seed_name_has_its_value(prefix):
    rows = seed_rows(prefix)
    assert len(rows) == 81
    for code, name, description in rows:
        assert getattr(status, name) == code, name
        assert name in status.__all__
        assert status.describe(code)
        if prefix == "000_":  # the two seeds differ only in the width of one parenthesis
            assert status.describe(code) == description


def test_names_match_starlette():
    starlette_status = pytest.importorskip("starlette.status")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette warns on its historical names
        for name in dir(starlette_status):
            if name.startswith(("HTTP_", "WS_")):
                assert getattr(status, name) == getattr(starlette_status, name), name


def test_seed_spellings_and_aliases():
    assert status.HTTP_605_THIRD_PARTY_NEWORK_ERROR == status.HTTP_605_THIRD_PARTY_NETWORK_ERROR
    assert status.HTTP_413_PAYLOAD_TOO_LARGE == status.HTTP_413_CONTENT_TOO_LARGE == 413
    assert status.HTTP_422_UNPROCESSABLE_ENTITY == status.HTTP_422_UNPROCESSABLE_CONTENT == 422
    assert status.HTTP_418_I_AM_A_TEAPOT == status.HTTP_418_IM_A_TEAPOT == 418


def test_lookups():
    assert status.describe(604) == "请求第三方服务超时异常"
    assert status.phrase(404) == "Not Found"
    assert status.phrase(606) == "Third Party Retry Error"
    assert status.phrase(1011) == "Internal Error"
    assert status.is_third_party(603)
    assert not status.is_third_party(503)
    with pytest.raises(KeyError, match="unknown status code 799"):
        status.describe(799)
    with pytest.raises(KeyError, match="799"):
        status.phrase(799)
