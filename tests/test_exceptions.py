"""One root error per package; each error is also the builtin it is a kind of, and the
module that holds the roots draws the whole tree (as httpx's does)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from fastflyer.exceptions import FastFlyerError
from fastkit.exceptions import FastKitError

# name -> (package's exceptions module, root, the builtin it also is)
EXPECTED = {
    "DatabaseConfigError": ("fastkit", ValueError),
    "CachePoolError": ("fastkit", ValueError),
    "JobNotFound": ("fastkit", KeyError),
    "LockUnavailable": ("fastkit", RuntimeError),
    "MessageError": ("fastkit", RuntimeError),
    "ProduceError": ("fastkit", RuntimeError),
    "ConsumeError": ("fastkit", RuntimeError),
    "SettingsError": ("fastflyer", ValueError),
    "AppLoadError": ("fastflyer", RuntimeError),
    "DuplicateRouteError": ("fastflyer", RuntimeError),
    "KafkaNotReady": ("fastflyer", RuntimeError),
    "NotServiceWide": ("fastflyer", RuntimeError),
    "TaskStateUnavailable": ("fastflyer", RuntimeError),
    "BundleError": ("fastflyer", RuntimeError),
    "ScaffoldError": ("fastflyer", ValueError),
    "BindError": ("fastflyer", OSError),
}
ROOTS = {"fastkit": FastKitError, "fastflyer": FastFlyerError}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_error_is_its_roots_and_its_builtins(name: str) -> None:
    package, builtin = EXPECTED[name]
    module = importlib.import_module(f"{package}.exceptions")
    error = getattr(module, name)
    assert issubclass(error, ROOTS[package]) and issubclass(error, builtin)
    assert not issubclass(error, SystemExit)
    assert name in module.__all__
    assert name in (module.__doc__ or ""), "the tree in the module docstring names it"


@pytest.mark.parametrize("package", ["fastkit", "fastflyer"])
def test_every_error_of_the_tree_is_listed(package: str) -> None:
    module = importlib.import_module(f"{package}.exceptions")
    listed = {name for name in module.__all__ if name != ROOTS[package].__name__}
    assert listed == {name for name, (home, _) in EXPECTED.items() if home == package}
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        module.Nope  # noqa: B018


def test_fastkit_errors_are_not_fastflyers() -> None:
    assert not issubclass(FastKitError, FastFlyerError)
    assert not issubclass(FastFlyerError, FastKitError)


def test_a_bad_setting_is_caught_by_except_exception() -> None:
    from fastflyer.settings import SettingsError, load_settings

    caught: BaseException | None = None
    try:
        load_settings(port=0)
    except Exception as exc:  # a SystemExit would walk past this
        caught = exc
    assert isinstance(caught, SettingsError) and isinstance(caught, ValueError)
    assert "port" in str(caught) and "1 to 65535" in str(caught)


def test_the_command_tells_a_bad_setting_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from fastflyer.cli import main

    demo = Path(__file__).parent / "fastflyer" / "demo_project"
    assert main(["serve", "--app-dir", str(demo), "--workers", "0"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [err.strip()], err  # one line
    assert "--workers 0 is not allowed" in err and "Traceback" not in err
