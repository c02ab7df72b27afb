"""The README's Python examples run as tests, against the local test server."""

from __future__ import annotations

import re

import pytest

from seeds import ROOT

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"),
                    re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example(index, server, request):
    names = {"__name__": "readme", "base_url": server.url}
    if "kafka_servers" in BLOCKS[index]:  # a real broker (tansu) for the messaging examples
        names["kafka_servers"] = request.getfixturevalue("broker").servers
    exec(compile(BLOCKS[index], f"<README block {index}>", "exec"), names)
