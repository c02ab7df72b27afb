"""The ``fastflyer`` command.

    fastflyer create_app [--name N] [--prefix /P] [-f]      a new project here
                         [--bundle-sdk]                     ... with a wheel of this SDK
    fastflyer create openapi --name N --prefix /P [-f]      the same (the original's spelling)
    fastflyer run                                           development server (uvicorn)
    fastflyer serve                                         production server (gunicorn)
    fastflyer demo                                          the demo project, served here

Errors print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from fastkit import __version__

if TYPE_CHECKING:
    from fastflyer.settings import FlyerSettings

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_create_options(parser: argparse.ArgumentParser, name_required: bool) -> None:
    parser.add_argument("--name", required=name_required,
                        help="project name (default: the directory's name)")
    parser.add_argument("--prefix", default="/flyer",
                        help="URL prefix of the apps, like /shop (default: /flyer)")
    parser.add_argument("-f", "--force", action="store_true",
                        help="overwrite the files of an existing project")
    parser.add_argument("--dir", type=Path, default=Path("."),
                        help="directory to write the project into (default: here)")
    parser.add_argument("--bundle-sdk", action="store_true",
                        help="also write a wheel of this FastFlyer SDK into wheels/, which "
                             "the Dockerfile, dev_ctrl.sh and requirements-dev.txt install "
                             f"(default: they install fastflyer=={__version__} from the index)")


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--app-dir", type=Path, default=Path("."),
                        help="the project directory, holding main.py (default: here)")
    parser.add_argument("--host", help="bind address (default: flyer_host, 0.0.0.0)")
    parser.add_argument("--port", type=int,
                        help="port (default: flyer_port, 8080; 0: any free port, logged)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fastflyer`` command."""
    parser = _Parser(prog="fastflyer", description="FastFlyer: create and serve API projects.")
    parser.add_argument("--version", action="version", version=f"fastflyer {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    create_app = commands.add_parser(
        "create_app", help="write a new project into the current directory (or --dir)",
        description="Write a new FastFlyer project (apps items, users, tasks; scripts, "
                    "Dockerfile, tests) into the current directory, or into --dir.")
    _add_create_options(create_app, name_required=False)

    create = commands.add_parser("create", help="write a new project (create openapi ...)",
                                 description="Write a new project, as the original's "
                                             "`fastflyer create openapi` did.")
    kinds = create.add_subparsers(dest="kind", metavar="KIND", parser_class=_Parser)
    kinds.required = True
    openapi = kinds.add_parser("openapi", help="an API project",
                               description="Write a new FastFlyer API project.")
    _add_create_options(openapi, name_required=True)

    run = commands.add_parser(
        "run", help="development server: uvicorn, reloading when flyer_reload=1",
        description="Serve main:app of the project with uvicorn. flyer_* variables "
                    "configure it (flyer_reload=1 reloads on code changes).")
    _add_server_options(run)
    run.add_argument("--reload", action="store_true", help="reload on code changes")

    serve = commands.add_parser(
        "serve", help="production server: gunicorn with uvicorn workers",
        description="Serve main:app of the project with gunicorn and uvicorn workers. "
                    "flyer_workers (default: the CPUs this process may use), "
                    "flyer_timeout, flyer_graceful_timeout, "
                    "flyer_shutdown_timeout, flyer_keepalive, flyer_enable_max_requests, "
                    "flyer_max_requests and flyer_max_requests_jitter configure it. "
                    "flyer_reload=1 is refused (use run).")
    _add_server_options(serve)
    serve.add_argument("--workers", type=int, help="worker processes (default: flyer_workers)")

    demo = commands.add_parser(
        "demo", help="generate the demo project and serve it (default: 127.0.0.1:8080)",
        description="Generate the demo project in a temporary directory, removed when the "
                    "demo stops, and serve it with embedded defaults (no Redis, no database), "
                    "printing where the docs are. Ctrl-C stops it. Its log files go to the "
                    "project's logs/ unless flyer_log_path says otherwise.")
    demo.add_argument("--dir", type=Path,
                      help="directory for the project, kept afterwards (default: a temporary "
                           "directory, removed on exit)")
    demo.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8080,
                      help="port (default: 8080; 0: any free port, printed)")
    return parser


def _create(args: argparse.Namespace) -> int:
    from fastflyer.scaffold import ScaffoldError, create_project

    target: Path = args.dir
    name = args.name or target.resolve().name
    try:
        written = create_project(target, name=name, prefix=args.prefix, force=args.force,
                                 bundle_sdk=args.bundle_sdk)
    except ScaffoldError as exc:
        hint = ("; it was taken from the directory's name: give one with --name"
                if not args.name and str(exc).startswith("project name") else "")
        print(f"fastflyer: error: {exc}{hint}", file=sys.stderr)
        return 1
    start = (Path(".") if target.resolve() == Path.cwd().resolve() else target) / "start-reload.sh"
    print(f"created project {name!r} ({len(written)} files) in {target.resolve()}; "
          f"start it with {start if start.is_absolute() else f'./{start}'}, "
          f"docs at {args.prefix}/docs")
    if not args.bundle_sdk:
        from fastflyer.bundle import installed_from

        source = installed_from()
        if source is not None:  # fastflyer==<version> may be on no index the project reaches
            print(f"note: this SDK (fastflyer {__version__}) was installed from {source}, not "
                  f"from a package index, and the project installs fastflyer=={__version__}; "
                  "if your index does not have it, make the project with --bundle-sdk (a "
                  "wheel of this SDK in wheels/) or install this SDK into the project's venv "
                  "first")
    return 0


def _cannot_listen(error: OSError, hint: str) -> int:
    """The one line for a server that cannot listen (``error`` is a ``BindError``)."""
    print(f"fastflyer: error: {error}; {hint}", file=sys.stderr)
    return 1


# The flags that stand for a setting: an error about the value names the flag, as typed.
_SETTING_FLAGS = {"host": "--host", "port": "--port", "workers": "--workers", "reload": "--reload"}


def _flag_settings(args: argparse.Namespace, warn_unknown: bool = True) -> FlyerSettings:
    """The environment's settings with the flags given in ``args`` on top.

    A bad flag value raises ``SettingsError`` naming the flag (``--workers 0 is not
    allowed: ...``), a bad variable naming the variable. ``--port 0`` (any free port)
    is left to :func:`~fastflyer.launch.listen` (and overrides ``flyer_port`` as any port
    does). ``warn_unknown``: log the typo warnings.
    """
    from fastflyer.settings import load_settings

    overrides: dict[str, Any] = {}
    for name in _SETTING_FLAGS:
        value = getattr(args, name, None)
        if value is None or value is False:
            continue
        # --port 0: any free port, bound later; flyer_port is not consulted, so any valid
        # number stands in for it here.
        overrides[name] = 8080 if name == "port" and value == 0 else value
    return load_settings({name: _SETTING_FLAGS[name] for name in overrides},
                         warn_unknown=warn_unknown, **overrides)


def _configure_logging(settings: FlyerSettings) -> None:
    """This process's logging from ``settings`` (gunicorn's master logs too; each worker
    configures its own when it builds the app), then the typo warnings through it."""
    from fastflyer.settings import warn_unknown_variables
    from fastkit.logging import configure

    configure(settings.log_settings())
    warn_unknown_variables()


def _export_flags(args: argparse.Namespace, port: int) -> None:
    """Make the flags the app's variables: the app reads ``flyer_*`` again where it is
    built (each worker, the reloader's server process), and must see what was checked here,
    the port actually bound included."""
    import os

    from fastflyer.config_center import FLAGS_VARIABLE

    values = {name: getattr(args, name, None) for name in _SETTING_FLAGS}
    values["port"] = port
    exported = []
    for name, value in values.items():
        if value is None or value is False:
            continue
        for key in [key for key in os.environ if key.lower() == f"flyer_{name}"]:
            del os.environ[key]  # one spelling only: the names are case-insensitive
        os.environ[f"flyer_{name}"] = "1" if value is True else str(value)
        exported.append(f"flyer_{name}")
    # The config center (read again where the app is built) leaves these alone: the
    # command line wins over it.
    os.environ[FLAGS_VARIABLE] = ",".join(exported)


def _serve(args: argparse.Namespace) -> int:
    from fastflyer.launch import BindError, listen, run, serve

    project = args.app_dir.resolve()
    if not (project / "main.py").is_file():
        print(f"fastflyer: error: no main.py in {project} (use --app-dir, or "
              "fastflyer create_app to make a project)", file=sys.stderr)
        return 1
    # --port 0: any free port (flyer_port itself must be a real port)
    settings = _flag_settings(args, warn_unknown=False)  # SettingsError: one line, exit 1
    _configure_logging(settings)
    if args.command == "serve" and settings.reload:
        # Reloading is a development server's job; a production one that silently did not
        # would be a surprise, and one that did would be a risk.
        print("fastflyer: error: flyer_reload=1 is for fastflyer run (development, as "
              "./start-reload.sh does); fastflyer serve never reloads: unset flyer_reload",
              file=sys.stderr)
        return 1
    try:  # bound before the server says anything: a port in use is one line, not a banner
        sock = listen(settings.host, 0 if args.port == 0 else settings.port)
    except BindError as exc:
        return _cannot_listen(exc, "choose another port with --port (or flyer_port)"
                              if exc.port_problem else "choose another address with --host "
                              "(or flyer_host)")
    settings = settings.model_copy(update={"port": sock.getsockname()[1]})
    _export_flags(args, settings.port)
    try:
        if args.command == "run":
            run(settings, project, sock)
        else:
            serve(settings, project, sock)
    finally:  # the app may fail to build (a bad setting, an app's import error)
        sock.close()
    return 0


def _demo(args: argparse.Namespace) -> int:
    import os
    import shutil
    import tempfile

    from fastflyer.launch import BindError, listen, run
    from fastflyer.scaffold import ScaffoldError, create_project

    if args.dir is not None and args.dir.exists() and (
            not args.dir.is_dir() or any(args.dir.iterdir())):
        print(f"fastflyer: error: --dir {args.dir} is not an empty directory: the demo writes "
              "a new project there (give a new or empty one)", file=sys.stderr)
        return 1
    # A bad --host or --port is named before anything binds; typos are told later, once
    # flyer_log_path points into the demo (a first log line opens the log files).
    _flag_settings(args, warn_unknown=False)
    try:  # bound before the banner: a port in use is one line, not a banner then a failure
        sock = listen(args.host, args.port)
    except BindError as exc:
        # Under make (`make demo`), the make variable is what the user types.
        example = "make demo PORT=9000" if os.environ.get("MAKELEVEL") else "--port 9000"
        return _cannot_listen(exc, f"choose another port with --port N, e.g. {example} "
                                   "(0: any free port)"
                              if exc.port_problem else "choose another address with --host")
    port = sock.getsockname()[1]
    made = args.dir is None  # a directory of ours, removed on the way out; --dir is the user's
    target = Path(tempfile.mkdtemp(prefix="fastflyer-demo-")) if made else args.dir
    try:
        if not any(name.lower() == "flyer_log_path" for name in os.environ):
            # not ./logs where make runs (the framework's variables are lower-case)
            os.environ["flyer_log_path"] = str(target / "logs")  # noqa: SIM112
        settings = _flag_settings(args, warn_unknown=False).model_copy(update={"port": port})
        _configure_logging(settings)
        _export_flags(args, port)
        target.mkdir(parents=True, exist_ok=True)
        try:
            create_project(target, name="demo", prefix=settings.base_url)
        except ScaffoldError as exc:
            print(f"fastflyer: error: {exc}", file=sys.stderr)
            return 1
        host = f"[{args.host}]" if ":" in args.host else args.host
        base = f"http://{host}:{port}"
        print(f"FastFlyer demo project in {target}\n"
              f"  serving on {base} (Ctrl-C stops)\n"
              f"  Swagger UI  {base}{settings.base_url}/docs\n"
              f"  ReDoc       {base}{settings.base_url}/redoc\n"
              f"  try         {base}{settings.base_url}/demo?id=1\n"
              f"  health      {base}/health_check", flush=True)
        run(settings, target, sock)
    finally:
        sock.close()
        if made:
            shutil.rmtree(target, ignore_errors=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fastflyer`` command; the exit status."""
    args = build_parser().parse_args(argv)
    if args.command in ("create_app", "create"):
        return _create(args)
    from fastflyer import exceptions

    try:
        return _demo(args) if args.command == "demo" else _serve(args)
    except exceptions.FastFlyerError as exc:  # a bad setting: one line, a flag's as typed
        # Only app loading raises AppLoadError: looked up where it is loaded already, so
        # that a bad setting found before (OTEL_PROPAGATORS) imports nothing more (FastAPI).
        discovery = sys.modules.get("fastflyer.discovery")
        if discovery is not None and isinstance(exc, discovery.AppLoadError):
            raise  # an app's own import error: its traceback shows where
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
