"""The ``fastflyer`` command.

    fastflyer create_app [--name N] [--prefix /P] [-f]      a new project here
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
from typing import NoReturn

from fastkit import __version__

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


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--app-dir", type=Path, default=Path("."),
                        help="the project directory, holding main.py (default: here)")
    parser.add_argument("--host", help="bind address (default: flyer_host, 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port (default: flyer_port, 8080)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fastflyer`` command."""
    parser = _Parser(prog="fastflyer", description="FastFlyer: create and serve API projects.")
    parser.add_argument("--version", action="version", version=f"fastflyer {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    create_app = commands.add_parser(
        "create_app", help="write a new project into the current directory",
        description="Write a new FastFlyer project (apps items, users, tasks; scripts, "
                    "Dockerfile, tests) into the current directory.")
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
                    "flyer_worker_connections, flyer_timeout, flyer_graceful_timeout, "
                    "flyer_keepalive, flyer_enable_max_requests, flyer_max_requests and "
                    "flyer_max_requests_jitter configure it.")
    _add_server_options(serve)
    serve.add_argument("--workers", type=int, help="worker processes (default: flyer_workers)")

    demo = commands.add_parser(
        "demo", help="generate the demo project and serve it on 127.0.0.1:8080",
        description="Generate the demo project in a scratch directory and serve it with "
                    "embedded defaults (no Redis, no database), printing where the docs are.")
    demo.add_argument("--dir", type=Path,
                      help="directory for the project (default: a new temporary directory)")
    demo.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    return parser


def _create(args: argparse.Namespace) -> int:
    from fastflyer.scaffold import ScaffoldError, create_project

    target: Path = args.dir
    name = args.name or target.resolve().name
    try:
        written = create_project(target, name=name, prefix=args.prefix, force=args.force)
    except ScaffoldError as exc:
        print(f"fastflyer: error: {exc}", file=sys.stderr)
        return 1
    print(f"created project {name!r} ({len(written)} files) in {target.resolve()}; "
          f"start it with ./start-reload.sh, docs at {args.prefix}/docs")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from fastflyer.launch import run, serve
    from fastflyer.settings import load_settings

    project = args.app_dir.resolve()
    if not (project / "main.py").is_file():
        print(f"fastflyer: error: no main.py in {project} (use --app-dir, or "
              "fastflyer create_app to make a project)", file=sys.stderr)
        return 1
    overrides = {key: value for key, value in (("host", args.host), ("port", args.port))
                 if value is not None}
    if getattr(args, "reload", False):
        overrides["reload"] = True
    if getattr(args, "workers", None) is not None:
        overrides["workers"] = args.workers
    settings = load_settings(**overrides)  # SettingsError: one line per bad value, exit 1
    if args.command == "run":
        run(settings, project)
    else:
        serve(settings, project)
    return 0


def _demo(args: argparse.Namespace) -> int:
    import tempfile

    from fastflyer.launch import run
    from fastflyer.scaffold import create_project
    from fastflyer.settings import load_settings

    settings = load_settings(host=args.host, port=args.port)
    target = args.dir or Path(tempfile.mkdtemp(prefix="fastflyer-demo-"))
    target.mkdir(parents=True, exist_ok=True)
    create_project(target, name="demo", prefix=settings.base_url, force=True)
    base = f"http://{args.host}:{args.port}"
    print(f"FastFlyer demo project in {target}\n"
          f"  serving on {base} (Ctrl-C stops)\n"
          f"  Swagger UI  {base}{settings.base_url}/docs\n"
          f"  ReDoc       {base}{settings.base_url}/redoc\n"
          f"  try         {base}{settings.base_url}/demo?id=1", flush=True)
    run(settings, target)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fastflyer`` command; the exit status."""
    args = build_parser().parse_args(argv)
    if args.command in ("create_app", "create"):
        return _create(args)
    if args.command == "demo":
        return _demo(args)
    return _serve(args)


if __name__ == "__main__":
    raise SystemExit(main())
