"""``python -m fastflyer``: the ``fastflyer`` command, for when its script is not on PATH."""

from fastflyer.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
