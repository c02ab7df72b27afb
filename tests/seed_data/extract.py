"""Write the parts of the specification the tests read into this folder.

    python tests/seed_data/extract.py [SEEDS_DIR]     (default: ../shared/seeds beside the clone)

The tests carry these files, so a clone passes on any machine; ``tests/test_seed_data.py``
checks them against the specification whenever it lies beside the clone. For each seed
document ``NNN_*.txt`` the file ``NNN.md`` holds, in order, its fenced ``python`` code blocks
and its status-code table rows, verbatim.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
STATUS_ROW = re.compile(r"^\|?\s*(\d{3,4})\s*\|\s*((?:HTTP|WS)_\w+)\s*\|\s*(.*?)\s*\|\s*$", re.M)


def carried_text(seed_text: str) -> str:
    """What the tests carry of one seed document: its python blocks and status rows."""
    parts = [f"```python\n{block}```\n" for block in PYTHON_BLOCK.findall(seed_text)]
    rows = [match.group(0) for match in STATUS_ROW.finditer(seed_text)]
    if rows:
        parts.append("\n".join(rows) + "\n")
    return "\n".join(parts)


def seed_documents(seeds: Path) -> dict[str, Path]:
    """The seed documents by their three-digit prefix."""
    return {path.name[:3]: path for path in sorted(seeds.glob("[0-9][0-9][0-9]_*.txt"))}


def main(argv: list[str]) -> int:
    seeds = Path(argv[0]) if argv else ROOT.parent / "shared" / "seeds"
    for prefix, path in seed_documents(seeds).items():
        (HERE / f"{prefix}.md").write_text(carried_text(path.read_text(encoding="utf-8")),
                                           encoding="utf-8")
        print(f"{path.name} -> tests/seed_data/{prefix}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
