#!/usr/bin/env python3
"""Run FastAPI's own test suite twice, plain and with a custom ``APIRoute`` class, and diff.

A route class (an ``APIRoute`` subclass whose ``get_route_handler`` returns a faster handler)
ships only if FastAPI's own tests pass with it exactly as they pass without it. This command:

1. reads the FastAPI version installed in the interpreter given by ``--python`` (default: the
   project's ``.venv/bin/python``, else the running interpreter);
2. downloads the FastAPI sdist of exactly that version from PyPI into the cache dir
   (``~/.cache/fastflyer-parity/fastapi-X/``; reused when present) and extracts it, moving the
   sdist's own ``fastapi/`` package to ``fastapi_src_unused/`` so that the *installed* FastAPI
   is what the tests import;
3. creates a venv for the suite in the cache dir (reused while its marker file matches) and
   installs this project (``pip install -e``), ``fastapi==X`` and the suite's test dependencies
   (the sdist's ``requirements-tests*.txt`` or ``[dependency-groups] tests``, less its type
   checkers and pytest output/coverage/benchmark plugins, plus a known list for what it
   leaves out);
4. writes a small pytest plugin (``_route_class_plugin``) that reads
   ``FASTAPI_PARITY_ROUTE_CLASS=module:Class``, imports the class and makes it the default
   ``route_class`` of every ``APIRouter`` (and so of the router each ``FastAPI()`` creates),
   at plugin import, before any test module builds an app. A ``sitecustomize`` next to it
   does the same in the Python subprocesses some tests start (it patches once ``fastapi``
   has been imported there);
5. runs the suite's ``tests/`` with pytest-xdist twice, with no route class and with
   ``--route-class``, reads the outcomes from JUnit XML (kept in ``CACHE/results/``), prints
   the counts of both runs (unique test ids, so a collection error that pytest reports once
   per worker counts once) and the tests that fail only with the route class.

Exit status: 0 when no test fails only with the route class; 1 when some do (or pass plain
but are skipped or missing with the route class), or when either run could not run (a
collection error, an internal error or no test collected is a failure, never a pass); 2 for
a bad command line.

The route class's module must be importable in the suite venv: this project is installed
there, and ``PYTHONPATH`` is passed through to both runs (the plugin's dir is prepended), so a
class outside the project works with ``PYTHONPATH=/some/dir``.

Usage::

    python tools/fastapi_parity.py                                  # fastflyer.routing:FlyerRoute
    PYTHONPATH=/tmp/probe python tools/fastapi_parity.py --route-class probe:Probe
    python tools/fastapi_parity.py -k "test_tutorial" --workers 3 --keep-going

Reproducing by hand, with public tools only::

    pip download --no-deps --no-binary :all: fastapi==X -d DIR && tar xzf DIR/fastapi-X.tar.gz
    cd fastapi-X && mv fastapi fastapi_src_unused
    python -m venv venv && venv/bin/pip install -e /path/to/fastflyer fastapi==X \\
        <the [dependency-groups] tests list of pyproject.toml> pytest-xdist
    venv/bin/python -m pytest tests -n 2 -p no:cacheprovider -q --junitxml=plain.xml
    # then the same with the plugin this file writes (CACHE/plugin/) on PYTHONPATH, and
    FASTAPI_PARITY_ROUTE_CLASS=module:Class venv/bin/python -m pytest tests -n 2 \\
        -p _route_class_plugin -p no:cacheprovider -q --junitxml=route.xml

and compare the failed/errored test ids of the two XML files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROUTE_CLASS = "fastflyer.routing:FlyerRoute"
ENV_VAR = "FASTAPI_PARITY_ROUTE_CLASS"
PLUGIN_NAME = "_route_class_plugin"

# What FastAPI 0.165's suite needs, for sdists whose pyproject does not list it (or lists only
# part of it). The sdist's own `tests` dependency group wins for any name it names.
KNOWN_TEST_DEPS = (
    "httpx",
    "pytest<9.2",
    "pytest-xdist",
    "pytest-timeout",
    "inline-snapshot",
    "dirty-equals",
    "sqlmodel",
    "pyjwt",
    "pwdlib[argon2]",
    "flask",
    "a2wsgi",
    "strawberry-graphql",
    "sentry-sdk",
    "logfire",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-instrumentation-fastapi",
    "anyio[trio]",
    "python-multipart",
    "email-validator",
    "jinja2",
    "typer",
    "uvicorn",
    "coverage",
    "fastapi-cli",
    "orjson",
    "ujson",
    "pyyaml",
    "pydantic-settings",
    "pydantic-extra-types",
)
# In the sdist's group but of no use here: type checkers, coverage plugins, output decoration.
SKIPPED_GROUP_DEPS = frozenset({"mypy", "ty", "pytest-cov", "pytest-sugar", "pytest-codspeed"})

PLUGIN_SOURCE = '''\
"""pytest plugin: make $FASTAPI_PARITY_ROUTE_CLASS (module:Class) every APIRouter's default.

Written by tools/fastapi_parity.py. Load with ``-p _route_class_plugin``, this dir on PYTHONPATH.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

ENV_VAR = "FASTAPI_PARITY_ROUTE_CLASS"
SPEC = os.environ.get(ENV_VAR, "").strip()
_patched: list[type] = []


def _load_class(spec: str) -> type:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise RuntimeError(f"{ENV_VAR}={spec!r}: expected 'module:Class'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def patch() -> type | None:
    """Make the class the default route_class of APIRouter; check FastAPI() picks it up."""
    if not SPEC:
        return None
    if _patched:
        return _patched[0]
    from fastapi import FastAPI, routing

    cls = _load_class(SPEC)
    if not (isinstance(cls, type) and issubclass(cls, routing.APIRoute)):
        raise RuntimeError(f"{ENV_VAR}={SPEC!r} is not an APIRoute subclass")
    init = routing.APIRouter.__init__
    kwdefaults = init.__kwdefaults__ or {}
    if "route_class" not in kwdefaults:
        raise RuntimeError("APIRouter.__init__ has no keyword-only route_class default")
    kwdefaults["route_class"] = cls
    init.__kwdefaults__ = kwdefaults
    if routing.APIRouter().route_class is not cls:
        raise RuntimeError("APIRouter() does not use the patched route_class default")
    if FastAPI().router.route_class is not cls:
        raise RuntimeError("FastAPI() passes its own route_class: patch FastAPI as well")
    _patched.append(cls)
    return cls


def pytest_report_header(config: Any) -> str:
    import fastapi

    used = _patched[0] if _patched else None
    where = f"{used.__module__}.{used.__qualname__}" if used else "fastapi.routing.APIRoute"
    return f"route_class: {where}; fastapi {fastapi.__version__} from {fastapi.__file__}"


# At plugin import: before pytest imports any test module (and so before any app exists).
patch()
'''

SITECUSTOMIZE_SOURCE = '''\
"""Written by tools/fastapi_parity.py: the route class in the suite's Python subprocesses too.

With FASTAPI_PARITY_ROUTE_CLASS set, imports _route_class_plugin (which patches APIRouter) right
after the first `import fastapi`, so an interpreter that never imports fastapi is unchanged.
"""

import importlib
import importlib.abc
import importlib.machinery
import os
import sys


class _AfterFastAPIImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "fastapi":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_patch(module):
            exec_module(module)
            importlib.import_module("_route_class_plugin")

        spec.loader.exec_module = exec_then_patch
        return spec


if os.environ.get("FASTAPI_PARITY_ROUTE_CLASS") and "fastapi" not in sys.modules:
    sys.meta_path.insert(0, _AfterFastAPIImport())
'''


def log(message: str) -> None:
    print(f"[parity] {message}", flush=True)


def run(cmd: Sequence[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    log("$ " + " ".join(str(part) for part in cmd))
    return subprocess.run([str(part) for part in cmd], text=True, check=False, **kwargs)  # type: ignore[call-overload, no-any-return]


def default_python() -> str:
    venv_python = REPO_ROOT / ".venv/bin/python"
    return str(venv_python) if venv_python.exists() else sys.executable


def installed_fastapi_version(python: str) -> str:
    code = "import importlib.metadata as m; print(m.version('fastapi'))"
    result = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, check=False, cwd="/"
    )
    version = result.stdout.strip()
    if result.returncode != 0 or not version:
        raise SystemExit(f"no FastAPI installed in {python}: {result.stderr.strip()}")
    return version


def download_sdist(version: str, python: str, dest: Path) -> Path:
    """The sdist of fastapi==version in dest (pip download, else PyPI's JSON API)."""
    dest.mkdir(parents=True, exist_ok=True)
    found = sorted(dest.glob(f"fastapi-{version}.tar.gz"))
    if found:
        log(f"sdist cached: {found[0]}")
        return found[0]
    for pip_python in dict.fromkeys([python, sys.executable]):
        result = run(
            [
                pip_python,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"fastapi=={version}",
                "-d",
                dest,
            ],
            capture_output=True,
        )
        found = sorted(dest.glob(f"fastapi-{version}.tar.gz"))
        if result.returncode == 0 and found:
            return found[0]
        log(f"pip download failed ({result.returncode}): {result.stderr.strip()[-400:]}")
    url = f"https://pypi.org/pypi/fastapi/{version}/json"
    with urllib.request.urlopen(url, timeout=60) as response:
        release = json.load(response)
    sdists = [u for u in release["urls"] if u["packagetype"] == "sdist"]
    if not sdists:
        raise SystemExit(f"PyPI has no sdist for fastapi=={version}")
    target = dest / str(sdists[0]["filename"])
    with urllib.request.urlopen(sdists[0]["url"], timeout=120) as response:
        data = response.read()
    if hashlib.sha256(data).hexdigest() != sdists[0]["digests"]["sha256"]:
        raise SystemExit(f"sha256 mismatch for {sdists[0]['url']}")
    target.write_bytes(data)
    return target


def extract_sdist(sdist: Path, version: str, dest: Path) -> Path:
    """The extracted sdist, its own fastapi/ package moved out of the way."""
    root = dest / f"fastapi-{version}"
    marker = dest / ".extracted"
    if marker.exists() and (root / "tests").is_dir():
        log(f"sdist extracted: {root}")
        return root
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(dest, filter="data")
    if not (root / "tests").is_dir():
        raise SystemExit(f"{sdist} has no fastapi-{version}/tests")
    own_package = root / "fastapi"
    if own_package.is_dir():
        own_package.rename(root / "fastapi_src_unused")
    marker.write_text(version + "\n")
    return root


def canonical_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def dependency_group(pyproject: dict[str, object], name: str) -> list[str]:
    """A PEP 735 dependency group, its include-group entries expanded."""
    groups = pyproject.get("dependency-groups")
    if not isinstance(groups, dict) or name not in groups:
        return []
    out: list[str] = []
    for entry in groups[name]:
        if isinstance(entry, str):
            out.append(entry)
        elif isinstance(entry, dict) and "include-group" in entry:
            out.extend(dependency_group(pyproject, str(entry["include-group"])))
    return out


def test_requirements(sdist_root: Path, version: str) -> list[str]:
    """fastapi==version, the sdist's test requirements, then the known ones it leaves out."""
    reqs: dict[str, str] = {}
    for path in sorted(sdist_root.glob("requirements-tests*.txt")):
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                reqs.setdefault(canonical_name(line), line)
    pyproject_path = sdist_root / "pyproject.toml"
    if pyproject_path.exists():
        pyproject = tomllib.loads(pyproject_path.read_text())
        for line in dependency_group(pyproject, "tests"):
            reqs.setdefault(canonical_name(line), line)
    for name in SKIPPED_GROUP_DEPS:
        reqs.pop(name, None)
    reqs.pop("fastapi", None)
    for line in KNOWN_TEST_DEPS:
        reqs.setdefault(canonical_name(line), line)
    return [f"fastapi=={version}", *reqs.values()]


def ensure_venv(base_python: str, venv: Path, requirements: list[str]) -> Path:
    """The suite's venv, with the project and the requirements; reused while its marker holds."""
    python = venv / "bin/python"
    marker = venv / ".parity-complete"
    # The project is installed editable: its code is live, but a changed pyproject.toml (new
    # dependencies) means installing again.
    pyproject = hashlib.sha256((REPO_ROOT / "pyproject.toml").read_bytes()).hexdigest()
    wanted = json.dumps(
        {"project": str(REPO_ROOT), "pyproject": pyproject, "requirements": requirements},
        indent=1,
    )
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        log(f"suite venv reused: {venv}")
        return python
    shutil.rmtree(venv, ignore_errors=True)
    if run([base_python, "-m", "venv", venv]).returncode != 0:
        raise SystemExit(f"could not create {venv}")
    pip: list[str | Path] = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    result = run([*pip, "-e", REPO_ROOT, *requirements], capture_output=True)
    # pip warns about each unusable extra index location it is configured with: noise here.
    noise = re.compile(r"^WARNING: Location '.*' is ignored")
    for line in (result.stdout + result.stderr).splitlines():
        if not noise.match(line):
            print(line, flush=True)
    if result.returncode != 0:
        raise SystemExit("could not install the suite's requirements (see pip's output above)")
    marker.write_text(wanted)
    return python


def write_plugin(plugin_dir: Path) -> None:
    plugin_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (
        (f"{PLUGIN_NAME}.py", PLUGIN_SOURCE),
        ("sitecustomize.py", SITECUSTOMIZE_SOURCE),
    ):
        path = plugin_dir / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def check_suite_env(python: Path, sdist_root: Path, version: str, env: dict[str, str]) -> None:
    """The suite imports the installed fastapi==version, not the sdist's copy."""
    code = "import fastapi, sys; print(fastapi.__version__); print(fastapi.__file__)"
    result = subprocess.run(
        [str(python), "-c", code],
        capture_output=True,
        text=True,
        cwd=sdist_root,
        env=env,
        check=False,
    )
    lines = result.stdout.split()
    if result.returncode != 0 or len(lines) != 2:
        raise SystemExit(f"the suite venv cannot import fastapi: {result.stderr.strip()}")
    if lines[0] != version or "site-packages" not in lines[1]:
        raise SystemExit(f"the suite would test fastapi {lines[0]} from {lines[1]}")
    log(f"suite imports fastapi {lines[0]} from {lines[1]}")


@dataclass
class Outcome:
    """One run's result: pytest's exit code and each test id by outcome."""

    label: str
    returncode: int
    seconds: float
    passed: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    errors: set[str] = field(default_factory=set)
    skipped: set[str] = field(default_factory=set)
    xfailed: set[str] = field(default_factory=set)
    problem: str = ""

    @property
    def bad(self) -> set[str]:
        return self.failed | self.errors

    def counts(self) -> str:
        return (
            f"{len(self.passed)} passed, {len(self.failed)} failed, {len(self.errors)} errors, "
            f"{len(self.skipped)} skipped, {len(self.xfailed)} xfailed "
            f"(pytest exit {self.returncode}, {self.seconds:.0f} s)"
        )


def read_junit(path: Path, outcome: Outcome) -> None:
    tree = ET.parse(path)
    for case in tree.iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        test_id = f"{classname}::{name}" if classname else name
        kinds = {child.tag: child for child in case}
        if "error" in kinds:
            outcome.errors.add(test_id)
        elif "failure" in kinds:
            outcome.failed.add(test_id)
        elif "skipped" in kinds:
            if kinds["skipped"].get("type") == "pytest.xfail":
                outcome.xfailed.add(test_id)
            else:
                outcome.skipped.add(test_id)
        else:
            outcome.passed.add(test_id)
    # A teardown error is reported as one more entry for a test that also passed.
    outcome.passed -= outcome.bad


def run_suite(
    label: str,
    python: Path,
    sdist_root: Path,
    results: Path,
    env: dict[str, str],
    args: argparse.Namespace,
) -> Outcome:
    junit = results / f"{label}.xml"
    junit.unlink(missing_ok=True)
    cmd: list[str | Path] = [
        python,
        "-m",
        "pytest",
        "tests",
        "-n",
        str(args.workers),
        "-p",
        "no:cacheprovider",
        "-p",
        "no:sugar",
        "-p",
        PLUGIN_NAME,
        "-q",
        "-rfE",
        "--color=no",
        f"--junitxml={junit}",
    ]
    if args.k:
        cmd += ["-k", args.k]
    if args.keep_going:
        cmd.append("--continue-on-collection-errors")
    log(f"run '{label}' ({env.get(ENV_VAR) or 'fastapi.routing.APIRoute'})")
    started = time.monotonic()
    result = run(cmd, cwd=sdist_root, env=env)
    outcome = Outcome(label, result.returncode, time.monotonic() - started)
    if junit.exists():
        read_junit(junit, outcome)
    collection_errors = {t for t in outcome.errors if "::" not in t or t.endswith("::")}
    if result.returncode not in (0, 1):
        outcome.problem = f"pytest exit {result.returncode} (collection/usage/internal error)"
    elif not junit.exists():
        outcome.problem = "no JUnit XML written"
    elif not (outcome.passed or outcome.bad):
        outcome.problem = "no test ran"
    elif collection_errors:
        outcome.problem = f"collection errors: {sorted(collection_errors)}"
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--route-class",
        default=DEFAULT_ROUTE_CLASS,
        metavar="MODULE:CLASS",
        help=f"the APIRoute subclass to test (default {DEFAULT_ROUTE_CLASS})",
    )
    parser.add_argument(
        "--python",
        default=None,
        help="the interpreter whose FastAPI version is tested "
        "(default: the project's .venv/bin/python)",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="default ~/.cache/fastflyer-parity/fastapi-X"
    )
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (default 2)")
    parser.add_argument("-k", default=None, help="passed to pytest's -k")
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="run both suites even if the plain one cannot run, and let pytest "
        "continue past collection errors (the exit status stays 1)",
    )
    args = parser.parse_args(argv)
    if ":" not in args.route_class:
        parser.error("--route-class must be module:Class")

    timings: dict[str, float] = {}
    python = args.python or default_python()
    version = installed_fastapi_version(python)
    cache = args.cache_dir or Path.home() / ".cache/fastflyer-parity" / f"fastapi-{version}"
    cache = cache.expanduser().resolve()
    log(f"FastAPI {version} (from {python}); cache {cache}")

    started = time.monotonic()
    sdist = download_sdist(version, python, cache / "download")
    sdist_root = extract_sdist(sdist, version, cache / "src")
    timings["download + extract"] = time.monotonic() - started

    started = time.monotonic()
    requirements = test_requirements(sdist_root, version)
    suite_python = ensure_venv(python, cache / "venv", requirements)
    plugin_dir = cache / "plugin"
    write_plugin(plugin_dir)
    timings["suite venv"] = time.monotonic() - started

    base_env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    base_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(plugin_dir), os.environ.get("PYTHONPATH", "")) if p
    )
    base_env.pop("PYTEST_ADDOPTS", None)
    base_env.pop("VIRTUAL_ENV", None)
    check_suite_env(suite_python, sdist_root, version, base_env)
    route_env = {**base_env, ENV_VAR: args.route_class}
    probe = subprocess.run(
        [str(suite_python), "-c", f"import {PLUGIN_NAME} as p; print(p.patch())"],
        capture_output=True,
        text=True,
        cwd=sdist_root,
        env=route_env,
        check=False,
    )
    if probe.returncode != 0:
        log(f"cannot use route class {args.route_class}:\n{probe.stderr.strip()}")
        return 1
    log(f"route class patched in: {probe.stdout.strip()}")

    results = cache / "results"
    results.mkdir(exist_ok=True)
    plain = run_suite("plain", suite_python, sdist_root, results, base_env, args)
    timings["suite, plain"] = plain.seconds
    log(f"plain: {plain.counts()}")
    if plain.problem and not args.keep_going:
        log(f"the plain run could not run: {plain.problem}")
        return 1
    routed = run_suite("route-class", suite_python, sdist_root, results, route_env, args)
    timings["suite, route class"] = routed.seconds

    print()
    print(f"FastAPI {version}, route class {args.route_class}")
    for outcome in (plain, routed):
        print(f"  {outcome.label:12} {outcome.counts()}")
        if outcome.problem:
            print(f"  {outcome.label:12} COULD NOT RUN: {outcome.problem}")
    both = sorted(plain.bad & routed.bad)
    if both:
        print(f"failing in both runs (not counted), {len(both)}:")
        print("".join(f"    {t}\n" for t in both), end="")
    only_plain = sorted(plain.bad - routed.bad)
    if only_plain:
        print(f"failing only without the route class (flaky?), {len(only_plain)}:")
        print("".join(f"    {t}\n" for t in only_plain), end="")
    only_routed = sorted(routed.bad - plain.bad)
    print(f"failing only with the route class: {len(only_routed)}")
    print("".join(f"    {t}\n" for t in only_routed), end="")
    # A test that passes plain must pass with the route class, not vanish or turn into a skip.
    vanished = sorted(plain.passed - routed.passed - routed.bad) if not routed.problem else []
    if vanished:
        print(f"passing plain but skipped or not run with the route class: {len(vanished)}")
        print("".join(f"    {t}\n" for t in vanished), end="")
    print("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    if plain.problem or routed.problem or only_routed or vanished:
        print("PARITY: FAIL")
        return 1
    print("PARITY: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
