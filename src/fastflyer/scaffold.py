"""Project scaffolding: the template project shipped in the package, rendered into a directory.

    from fastflyer.scaffold import create_project
    create_project(Path("."), name="shop", prefix="/shop")

The templates are real files under ``fastflyer/templates/project``; they are read, never
written, so the installed package stays as it was. ``{{project_name}}``, ``{{image_name}}``
(the name in lower case, as Docker image names must be), ``{{prefix}}`` and
``{{fastflyer_version}}`` are replaced in every file, and ``{{fastflyer_spec}}`` by what
installs this very SDK: ``fastflyer==<version>``, or, with ``bundle_sdk``, the wheel of the
running SDK that is written into the project's ``wheels/`` (see :mod:`fastflyer.bundle`).
``gitignore``/``dockerignore`` become dotfiles; shell scripts are made executable. A directory
that already holds any of the files is left alone unless ``force`` is given.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from fastflyer.bundle import BundleError, sdk_wheel
from fastflyer.exceptions import FastFlyerError
from fastflyer.settings import BASE_URL_PATTERN
from fastkit import __version__

__all__ = ["TEMPLATE_ROOT", "ScaffoldError", "create_project", "template_files"]

TEMPLATE_ROOT = Path(__file__).resolve().parent / "templates" / "project"
_RENAMES = {"gitignore": ".gitignore", "dockerignore": ".dockerignore"}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


class ScaffoldError(FastFlyerError, ValueError):
    """The project cannot be written as asked; the message says why in one line."""


def template_files() -> list[Path]:
    """The template's files, relative to its root, in a stable order."""
    return sorted(
        path.relative_to(TEMPLATE_ROOT) for path in TEMPLATE_ROOT.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def _target_name(relative: Path) -> Path:
    return relative.with_name(_RENAMES.get(relative.name, relative.name))


def _write(target: Path, files: list[Path], name: str, prefix: str, bundle_sdk: bool,
           written: list[Path]) -> None:
    """Render and write every file, appending each written path to ``written``."""
    spec = f"fastflyer=={__version__}"
    if bundle_sdk:
        try:
            wheel = sdk_wheel(target / "wheels")
        except BundleError as exc:
            raise ScaffoldError(f"cannot bundle the SDK: {exc}") from None
        spec = f"./wheels/{wheel.name}"
        written.append(wheel)
    for relative in files:
        text = (TEMPLATE_ROOT / relative).read_text(encoding="utf-8")
        text = (text.replace("{{project_name}}", name).replace("{{prefix}}", prefix)
                .replace("{{image_name}}", name.lower())
                .replace("{{fastflyer_version}}", __version__)
                .replace("{{fastflyer_spec}}", spec))
        destination = target / _target_name(relative)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(text, encoding="utf-8")
        if destination.suffix == ".sh":
            destination.chmod(0o755)
        written.append(destination)


def create_project(target: Path, name: str, prefix: str = "/flyer",
                   force: bool = False, bundle_sdk: bool = False) -> list[Path]:
    """Write the template project into ``target``; the written paths.

    ``bundle_sdk``: also write a wheel of the running SDK into ``target/wheels`` and make
    the project (Dockerfile, dev_ctrl.sh, requirements-dev.txt) install it.
    """
    if not _NAME.fullmatch(name):
        raise ScaffoldError(f"project name {name!r} is not allowed: start with a letter, then "
                            "letters, digits, '_' or '-' (64 at most)")
    if not re.fullmatch(BASE_URL_PATTERN, prefix):
        raise ScaffoldError(f"prefix {prefix!r} is not allowed: a path like /flyer or /api/v1 "
                            "(letters, digits, '.', '_', '-'; no trailing '/')")
    files = template_files()
    existing = [target / _target_name(f) for f in files if (target / _target_name(f)).exists()]
    if existing and not force:
        raise ScaffoldError(f"{target.resolve()} already holds a project "
                            f"({existing[0].relative_to(target)} exists); use -f to overwrite")
    made_dirs = [parent for parent in (target, *(target / f.parent for f in files))
                 if not parent.exists()]
    written: list[Path] = []
    try:
        _write(target, files, name, prefix, bundle_sdk, written)
    except OSError as exc:  # a read-only directory, a file where a folder goes...
        for path in written if not existing else []:  # a new project: leave nothing behind
            path.unlink(missing_ok=True)
        for directory in sorted(set(made_dirs), key=lambda d: len(d.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
        where = f" ({exc.filename})" if exc.filename else ""
        raise ScaffoldError(f"cannot write the project into {target.resolve()}: "
                            f"{exc.strerror or exc}{where}") from None
    return written
