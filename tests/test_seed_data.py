"""The seed data the tests carry is what the specification says, when it lies beside the clone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from seed_data.extract import ROOT, carried_text, seed_documents
from seeds import SEED_DATA, python_blocks, status_rows

SPEC = Path(os.environ.get("FASTFLYER_SEEDS") or ROOT.parent / "shared" / "seeds")


@pytest.mark.skipif(not SPEC.is_dir(), reason=f"the specification is not beside the clone ({SPEC})")
def test_the_carried_data_matches_the_specification():
    documents = seed_documents(SPEC)
    assert documents, f"no seed documents in {SPEC}"
    for prefix, path in documents.items():
        carried = (SEED_DATA / f"{prefix}.md").read_text(encoding="utf-8")
        assert carried == carried_text(path.read_text(encoding="utf-8")), (
            f"tests/seed_data/{prefix}.md is out of date: run python tests/seed_data/extract.py")


def test_the_carried_data_holds_the_blocks_and_tables():
    assert len(python_blocks("000_")) == 6
    for prefix in ("000_", "004_"):
        assert len(status_rows(prefix)) == 81
