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
    "LogConfigError": ("fastkit", ValueError),
    "TracingConfigError": ("fastkit", ValueError),
    "MessageError": ("fastkit", RuntimeError),
    "ProduceError": ("fastkit", RuntimeError),
    "ConsumeError": ("fastkit", RuntimeError),
    "EtcdError": ("fastkit", RuntimeError),
    "EtcdUnavailable": ("fastkit", ConnectionError),
    "EtcdAuthError": ("fastkit", PermissionError),
    "SettingsError": ("fastflyer", ValueError),
    "AppLoadError": ("fastflyer", RuntimeError),
    "DuplicateRouteError": ("fastflyer", RuntimeError),
    "KafkaNotReady": ("fastflyer", RuntimeError),
    "NotServiceWide": ("fastflyer", RuntimeError),
    "TaskStateUnavailable": ("fastflyer", RuntimeError),
    "BundleError": ("fastflyer", RuntimeError),
    "ScaffoldError": ("fastflyer", ValueError),
    "BindError": ("fastflyer", OSError),
    "ConfigCenterUnavailable": ("fastflyer", ConnectionError),
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


def test_errors_survive_pickle_and_copy() -> None:
    import copy
    import errno
    import pickle

    from fastflyer.launch import BindError
    from fastflyer.settings import SettingsError
    from fastkit.exceptions import JobNotFound

    settings_error = SettingsError(["flyer_port='x' is not allowed: 1 to 65535", "b"])
    for again in (pickle.loads(pickle.dumps(settings_error)), copy.copy(settings_error)):
        assert again.lines == settings_error.lines and again.args == settings_error.args
        assert str(again) == str(settings_error)
    bind = pickle.loads(pickle.dumps(BindError(errno.EADDRINUSE, "port 8080 is already in use")))
    assert bind.port_problem and str(bind) == "port 8080 is already in use"
    assert str(pickle.loads(pickle.dumps(JobNotFound("job-1")))) == "job-1"
    assert str(JobNotFound()) == "" and str(BindError("one line")) == "one line"


def test_a_bad_setting_keeps_no_raw_value_in_its_context(monkeypatch) -> None:
    from fastflyer.settings import SettingsError, load_settings

    monkeypatch.setenv("flyer_db_url", "mysql+pymysql://u:topSECRETpw@h:bad/x")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    seen, error = [], caught.value
    while error is not None:  # what a reporter walking the chain would show
        seen.append(repr(error) + str(error))
        error = error.__cause__ or error.__context__
    assert len(seen) == 1 and "topSECRETpw" not in seen[0]


def test_the_reloaders_page_tells_each_bad_value(tmp_path: Path) -> None:
    from fastflyer.reloading import describe_load_error
    from fastflyer.settings import SettingsError

    error = describe_load_error(SettingsError(["a='1' is not allowed: x", "b='2' is not "
                                               "allowed: y"]), tmp_path)
    assert "a='1' is not allowed: x; b='2' is not allowed: y" in str(error)


def test_the_command_shows_where_an_app_failed_to_import(tmp_path: Path) -> None:
    import shutil

    from fastflyer.cli import main
    from fastflyer.discovery import AppLoadError

    project = tmp_path / "project"
    shutil.copytree(Path(__file__).parent / "fastflyer" / "demo_project", project)
    broken = project / "app" / "items" / "__init__.py"
    broken.write_text(broken.read_text() + "\nimport no_such_module_here\n")
    with pytest.raises(AppLoadError) as caught:  # a traceback, not one line
        main(["run", "--app-dir", str(project), "--port", "0"])
    assert "no_such_module_here" in str(caught.value)
