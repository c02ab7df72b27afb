"""The specification's code blocks and status tables, carried by the tests.

``tests/seed_data/NNN.md`` holds what the tests read of seed document ``NNN``
(written by ``tests/seed_data/extract.py``), so a clone passes with nothing beside it.
"""

from __future__ import annotations

from pathlib import Path

from seed_data.extract import PYTHON_BLOCK, STATUS_ROW

SEED_DATA = Path(__file__).resolve().parent / "seed_data"


def _carried(prefix: str) -> str:
    return (SEED_DATA / f"{prefix.rstrip('_')}.md").read_text(encoding="utf-8")


def python_blocks(prefix: str) -> list[str]:
    """The fenced ``python`` blocks of seed ``prefix`` (``"000_"``), in order."""
    return PYTHON_BLOCK.findall(_carried(prefix))


def status_rows(prefix: str) -> list[tuple[int, str, str]]:
    """The status table of seed ``prefix``: (code, name, description) rows, in order."""
    return [(int(code), name, description)
            for code, name, description in STATUS_ROW.findall(_carried(prefix))]
