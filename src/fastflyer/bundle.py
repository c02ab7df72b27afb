"""The running FastFlyer SDK as a wheel, so a project can install exactly it.

    from fastflyer.bundle import sdk_wheel
    wheel = sdk_wheel(Path("wheels"))    # wheels/fastflyer-0.2.0-py3-none-any.whl

How the wheel is made depends on how the running SDK was installed:

- a regular install is packed again from its own files: those its ``RECORD`` lists under
  site-packages, with a new ``RECORD``. Left out: byte code, the installer's own files
  (``INSTALLER``, ``REQUESTED``, ``direct_url.json``) and what lies outside site-packages
  (console scripts, which the installer writes again from ``entry_points.txt``);
- an editable install (its ``direct_url.json`` says so) is built from the source tree it
  points at, with ``pip wheel --no-deps``.

Either way the wheel's version is checked against the running ``fastflyer.__version__``.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

from fastflyer.exceptions import FastFlyerError
from fastkit import __version__

__all__ = ["DISTRIBUTION", "BundleError", "installed_from", "sdk_wheel", "wheel_name"]

DISTRIBUTION = "fastflyer"
# Written by the installer, not part of the wheel; signatures of the old RECORD are void.
_INSTALLER_FILES = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD", "RECORD.jws",
                    "RECORD.p7s"}
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed: the same files give the same wheel


class BundleError(FastFlyerError, RuntimeError):
    """The running SDK cannot be made into a wheel; the message says why in one line."""


def wheel_name(version: str = __version__, tag: str = "py3-none-any") -> str:
    """The file name of the SDK's wheel, e.g. ``fastflyer-0.2.0-py3-none-any.whl``."""
    return f"{DISTRIBUTION}-{version}-{tag}.whl"


def sdk_wheel(directory: Path) -> Path:
    """Write a wheel of the running FastFlyer SDK into ``directory``; its path."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise BundleError(f"no {DISTRIBUTION} distribution is installed for {sys.executable} "
                          "(install it with pip to bundle it)") from None
    directory.mkdir(parents=True, exist_ok=True)
    source = _editable_source(dist)
    if source is not None:
        return _build_from_source(source, directory)
    return _repack(dist, directory)


def installed_from() -> str | None:
    """Where the running SDK was installed from when it was not a package index: the URL
    its ``direct_url.json`` records (PEP 610: a directory, a wheel file, a VCS); ``None``
    for an index (or no record), from which ``fastflyer==<version>`` installs again."""
    try:
        text = importlib.metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    url = json.loads(text).get("url")
    return str(url) if url else None


def _running_package() -> Path:
    spec = importlib.util.find_spec(DISTRIBUTION)
    if spec is None or spec.origin is None:  # pragma: no cover - we are running from it
        raise BundleError(f"the running {DISTRIBUTION} package cannot be located")
    return Path(spec.origin).resolve().parent


def _editable_source(dist: importlib.metadata.Distribution) -> Path | None:
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    info = json.loads(text)
    if not info.get("dir_info", {}).get("editable"):
        return None
    url = urlsplit(info.get("url", ""))
    if url.scheme != "file":
        raise BundleError(f"the editable {DISTRIBUTION} install points at {info.get('url')!r}, "
                          "not a local source tree")
    return Path(unquote(url.path))


def _build_from_source(source: Path, directory: Path) -> Path:
    package = _running_package()
    if not package.is_relative_to(source.resolve()):
        raise BundleError(f"the running {DISTRIBUTION} ({package}) is not the editable "
                          f"install's source tree ({source})")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
               "--disable-pip-version-check", "--wheel-dir"]
    with tempfile.TemporaryDirectory(prefix="fastflyer-wheel-") as scratch:
        try:
            result = subprocess.run([*command, scratch, str(source)], capture_output=True,
                                    text=True, timeout=600, check=False)
        except FileNotFoundError:  # pragma: no cover - sys.executable always exists
            raise BundleError(f"cannot run {sys.executable}") from None
        built = sorted(Path(scratch).glob("*.whl"))
        if result.returncode != 0 or len(built) != 1:
            lines = [line for line in (result.stderr or result.stdout).splitlines()
                     if line.strip() and "Location 'file:" not in line]
            why = lines[-1].strip() if lines else f"exit status {result.returncode}"
            raise BundleError(f"`pip wheel {source}` failed: {why}")
        version = built[0].name.split("-")[1]
        if version != __version__:
            raise BundleError(f"the source tree {source} builds {DISTRIBUTION} {version}, "
                              f"but {__version__} is running")
        target = directory / built[0].name
        shutil.copyfile(built[0], target)
    return target


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def _compressed_tag(wheel_metadata: str) -> str:
    tags = re.findall(r"^Tag:\s*(\S+)\s*$", wheel_metadata, flags=re.MULTILINE)
    if not tags:
        return "py3-none-any"
    parts = [tag.split("-") for tag in tags]

    def join(index: int) -> str:
        return ".".join(dict.fromkeys(part[index] for part in parts))

    return f"{join(0)}-{join(1)}-{join(2)}"


def _repack(dist: importlib.metadata.Distribution, directory: Path) -> Path:
    listed = dist.files
    if not listed:
        raise BundleError(f"the installed {DISTRIBUTION} {dist.version} has no RECORD: "
                          "it cannot be packed again")
    dist_info = next((f.parts[0] for f in listed
                      if f.parts[0].endswith(".dist-info") and f.name == "METADATA"), None)
    if dist_info is None:
        raise BundleError(f"the installed {DISTRIBUTION} lists no .dist-info/METADATA")
    init = Path(str(dist.locate_file(f"{DISTRIBUTION}/__init__.py"))).resolve()
    if init.parent != _running_package():
        raise BundleError(f"the running {DISTRIBUTION} ({_running_package()}) is not the "
                          f"installed distribution ({init.parent})")
    if dist.version != __version__:
        raise BundleError(f"the installed {DISTRIBUTION} is {dist.version}, "
                          f"but {__version__} is running")

    contents: list[tuple[str, bytes]] = []
    metadata: list[tuple[str, bytes]] = []
    for file in listed:
        name = file.as_posix()
        if (name.startswith("../") or "__pycache__" in file.parts or file.suffix == ".pyc"
                or (file.parts[0] == dist_info and len(file.parts) == 2
                    and file.name in _INSTALLER_FILES)):
            continue
        path = Path(str(dist.locate_file(file)))
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BundleError(f"{path}, listed in the RECORD of {DISTRIBUTION}, cannot be "
                              f"read: {exc.strerror}") from None
        (metadata if file.parts[0] == dist_info else contents).append((name, data))

    wheel_file = dict(metadata).get(f"{dist_info}/WHEEL", b"").decode()
    target = directory / wheel_name(dist.version, _compressed_tag(wheel_file))
    record = f"{dist_info}/RECORD"
    rows = [f"{name},{_record_hash(data)},{len(data)}"
            for name, data in sorted(contents) + sorted(metadata)]
    rows.append(f"{record},,")
    partial = target.with_name(f"{target.name}.part")
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
            # Packages first, .dist-info last, RECORD at the very end (as wheels are laid out).
            for name, data in [*sorted(contents), *sorted(metadata),
                               (record, ("\n".join(rows) + "\n").encode())]:
                info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                wheel.writestr(info, data)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target
