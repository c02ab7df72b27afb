"""Locating the specification (``../shared/seeds``) and its code blocks."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def seeds_dir() -> Path:
    """The seeds folder: ``$FASTFLYER_SEEDS`` or ``../shared/seeds`` beside the checkout."""
    configured = os.environ.get("FASTFLYER_SEEDS")
    path = Path(configured) if configured else ROOT.parent / "shared" / "seeds"
    if not path.is_dir():
        raise FileNotFoundError(f"specification seeds not found at {path}; set FASTFLYER_SEEDS")
    return path


def python_blocks(name_prefix: str) -> list[str]:
    """The fenced ```python blocks of the seed whose file name starts with ``name_prefix``."""
    (path,) = sorted(seeds_dir().glob(f"{name_prefix}*"))
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
