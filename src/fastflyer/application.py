"""``FlyerAPI``: the FastAPI app of a FastFlyer project.

    # main.py
    from fastflyer import FlyerAPI
    app = FlyerAPI(app_path=__file__)      # or create_app(__file__)

Building it reads and validates the ``flyer_*`` settings, takes the project's
``settings.py`` overrides, loads every app under ``app/`` (sorted) and mounts each
``router`` under ``flyer_base_url``, and installs the envelope error handlers, the
middleware, the health checks, the offline docs and HTTP Basic auth when enabled.
Nothing runs until the server starts the lifespan.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, cast

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from fastflyer.app_context import AppContext, bind, bound, built, unbind
from fastflyer.auth import document_basic_auth, task_api_closed, task_api_is_open
from fastflyer.components import register_components
from fastflyer.config_center import register_config_center
from fastflyer.discovery import LoadedApp, find_app_dir, load_apps
from fastflyer.docs import install_docs
from fastflyer.errors import ErrorRenderer, FlyerError
from fastflyer.exceptions import FastFlyerError
from fastflyer.executor import register_executors
from fastflyer.health import Readiness, ReadinessReport, health_paths
from fastflyer.lifespan import Lifecycle
from fastflyer.message import KafkaRouter, register_kafka
from fastflyer.metrics import HTTPMetricsMiddleware, check_metrics_path, metrics_route
from fastflyer.middleware import (
    AccessLog,
    BodyLimitMiddleware,
    ConcurrencyLimitMiddleware,
    RequestContextMiddleware,
)
from fastflyer.middleware.auth import BasicAuthMiddleware
from fastflyer.middleware.context import HEALTH_METHODS, Liveness
from fastflyer.middleware.json_text import JSONTextMiddleware
from fastflyer.middleware.methods import HeadAsGetMiddleware, method_not_allowed
from fastflyer.middleware.redirects import RelativeRedirectMiddleware
from fastflyer.middleware.unanswered import UnansweredErrorMiddleware
from fastflyer.middleware.websocket import WebSocketContextMiddleware
from fastflyer.openapi import document_answers
from fastflyer.registry import register_registry
from fastflyer.routing import FlyerRoute, adopt
from fastflyer.schemas import DataResponse, ErrorResponse
from fastflyer.service import service_name
from fastflyer.settings import BaseConfig, FlyerSettings, SettingsError, load_settings
from fastflyer.task_state import register_task_state
from fastflyer.tracing import FASTAPI_TELEMETRY, register_tracing
from fastkit.logging import configure as configure_logging
from fastkit.logging import logger
from fastkit.metrics import MetricsConfigError
from fastkit.metrics import enable as enable_metrics

try:  # FastAPI ≥ 0.16x keeps included routers whole; walk their routes
    from fastapi.routing import iter_route_contexts as _iter_route_contexts
except ImportError:  # older FastAPI copies included routes into the app's list
    def _iter_route_contexts(routes: Sequence[Any]) -> Any:  # type: ignore[misc]
        return iter(routes)

# FastAPI ≥ 0.16x instruments every request with OpenTelemetry unless told otherwise.
_FASTAPI_HAS_TELEMETRY = "telemetry" in inspect.signature(FastAPI.__init__).parameters

__all__ = ["DuplicateRouteError", "FlyerAPI", "create_app"]

# FastAPI's arguments for the docs pages; FlyerAPI serves its own (offline, auth-aware).
_DOCS_ARGUMENTS = ("openapi_url", "docs_url", "redoc_url", "swagger_ui_oauth2_redirect_url")


# The readiness route answers JSONResponse itself (200 or 503, even with always_http_200).
_READINESS_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"model": DataResponse[ReadinessReport],
          "description": "No component is down (each is up or degraded)"},
    503: {"model": DataResponse[ReadinessReport],
          "description": "A component is down (its error says why)"},
}


_TASK_API_CLOSED: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorResponse, "description": "The task API is closed: flyer_auth_enable=1 "
          "or flyer_task_api_open=1 opens it"}}


class DuplicateRouteError(FastFlyerError, RuntimeError):
    """Two apps declare the same method and path; start-up stops."""


def _check_docs_arguments(paths: dict[str, Any], base_url: str, version: Any, title: Any,
                          docs_enabled: bool) -> None:
    """Refuse docs pages FlyerAPI could not serve as asked, one line each (FastAPI refuses
    the first and the last at build too). Raises
    :class:`~fastflyer.settings.SettingsError`."""
    problems = []
    health = ("/health_check", f"{base_url}/health_check")
    static = f"{base_url}/static"
    for name, path in paths.items():
        if not path:
            continue  # None or "": no such page
        if not isinstance(path, str) or not path.startswith("/"):
            problems.append(f"{name}={path!r} is not allowed: a path starting with '/'")
        elif any(path == open_path or path.startswith(f"{open_path}/") for open_path in health):
            problems.append(f"{name}={path!r} is not allowed: a path outside the health "
                            f"checks ({' and '.join(health)} stay open when auth is on)")
        elif path == static or path.startswith(f"{static}/"):
            problems.append(f"{name}={path!r} is not allowed: a path outside {static}, "
                            "where the docs pages' files are served")
    if docs_enabled and paths.get("openapi_url", True):
        for name, value in (("title", title), ("version", version)):
            if not isinstance(value, str) or not value:
                problems.append(f"{name}={value!r} is not allowed: text, which the OpenAPI "
                                "schema requires")
    if problems:
        raise SettingsError(problems)


def _project_config(project: Path | None) -> type[BaseConfig]:
    """The ``BaseConfig`` subclass of the project's ``settings.py``, else ``BaseConfig``."""
    if project is None or not (project / "settings.py").is_file():
        return BaseConfig
    spec = importlib.util.spec_from_file_location("settings", project / "settings.py")
    if spec is None or spec.loader is None:
        return BaseConfig
    module = sys.modules.get("settings")
    if module is None or Path(getattr(module, "__file__", "")).resolve() != project / "settings.py":
        module = importlib.util.module_from_spec(spec)
        sys.modules["settings"] = module
        spec.loader.exec_module(module)
    found = [value for value in vars(module).values()
             if isinstance(value, type) and issubclass(value, BaseConfig)
             and value is not BaseConfig and value.__module__ == module.__name__]
    return found[-1] if found else BaseConfig


class FlyerAPI(FastAPI):
    """A FastAPI app with the framework around it. See the module docstring.

    ``app_path``: the project directory (or its ``main.py``, or its ``app/``); ``None``
    builds the framework alone. ``middlewares``: extra Starlette ``Middleware`` entries.
    ``settings``: use these instead of reading the environment. ``config``: the
    project's ``BaseConfig`` subclass (found in ``settings.py`` when not given).

    Other keyword arguments are FastAPI's, and where the framework sets one too, the
    caller's value wins: ``version`` (over ``flyer_version`` and ``VERSION``); ``middleware``
    (run before ``middlewares``, both inside the framework's own layers); ``openapi_url``,
    ``docs_url``, ``redoc_url`` and ``swagger_ui_oauth2_redirect_url`` (the paths of the
    offline docs pages, by default under ``flyer_base_url``; ``None`` leaves a page out, and
    no ``openapi_url`` leaves out all three, as in FastAPI; ``flyer_docs_enabled=0`` still
    turns them all off); ``title``, ``description``, ``telemetry`` (with
    ``flyer_opentelemetry_enabled=1``, its keys win over FastFlyer's one,
    ``operation_spans=False``: see :mod:`fastflyer.tracing`).
    """

    def __init__(
        self,
        app_path: str | Path | None = None,
        middlewares: Sequence[Middleware] | None = None,
        *,
        settings: FlyerSettings | None = None,
        config: type[BaseConfig] | None = None,
        lifespan: Callable[[Any], AbstractAsyncContextManager[Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        settings = settings if settings is not None else load_settings()
        app_dir = find_app_dir(app_path) if app_path is not None else None
        # What code running for this app sees (fastflyer.app_context): its settings and its
        # project directory (the default database's data directory is there), in its
        # requests, its lifespan and while its apps are imported.
        self.app_context = AppContext(settings, app_dir.parent if app_dir is not None else None)
        config = config or _project_config(app_dir.parent if app_dir else None)
        # The service's name namespaces what its workers and instances share in Redis, and
        # names it in shipped logs (APP-NAME) and traces (service.name).
        self.service_name = service_name(settings, kwargs.get("title", config.API_TITLE),
                                         app_dir.parent if app_dir is not None else None)
        # The app's log settings: this process's.
        configure_logging(settings.log_settings(service=self.service_name))
        explicit = settings.model_fields_set
        base_url = settings.base_url
        if config.PREFIX and "base_url" not in explicit:
            # Validated too (an error names the class), among the app's own settings: the
            # environment is not read again.
            base_url = load_settings(
                {"base_url": f"{config.__name__}.PREFIX"}, warn_unknown=False,
                config_center=False,
                **{**dict(settings), "base_url": config.PREFIX}).base_url
        version = config.VERSION if config.VERSION and "version" not in explicit \
            else settings.version
        version = kwargs.pop("version", version)  # FastAPI's own arguments: the caller's win
        self._docs_paths = {name: kwargs.pop(name) for name in _DOCS_ARGUMENTS if name in kwargs}
        _check_docs_arguments(self._docs_paths, base_url, version,
                              kwargs.get("title", config.API_TITLE),
                              settings.docs_enabled)
        if settings.metrics_enabled:
            check_metrics_path(settings.metrics_path, base_url, settings.max_url_length)
            try:
                enable_metrics()  # FastKit's clients, pools, schedulers... record from now on
            except MetricsConfigError as exc:  # PROMETHEUS_MULTIPROC_DIR: one line
                raise SettingsError([str(exc)]) from None

        self.settings = settings
        self.flyer_fast_path = settings.fast_path  # read by FlyerRoute when it plans a route
        self.base_url = base_url
        self.lifecycle = Lifecycle(settings.shutdown_timeout)
        self.readiness = Readiness()
        self.renderer = ErrorRenderer(always_http_200=settings.always_http_200)
        self.access_log = (AccessLog(settings.access_logfile, settings.access_log_exclude_uris)
                           if settings.access_log else None)
        self.apps: list[LoadedApp] = []
        # Liveness: answered by one ASGI app that __call__ sends GET and HEAD on the health
        # paths to, before anything else; behind trusted proxies, after their headers (the
        # access log names the client they forwarded).
        self._health_paths = frozenset(health_paths(base_url))
        self._liveness: ASGIApp = Liveness(self.access_log)
        if settings.trusted_proxies:
            from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

            self._liveness = cast(ASGIApp, ProxyHeadersMiddleware(
                cast(Any, self._liveness), trusted_hosts=settings.trusted_proxies))

        user_middleware = [*(kwargs.pop("middleware", None) or ()), *(middlewares or ())]
        # CORS is not user middleware: that runs inside FastAPI's ServerErrorMiddleware,
        # whose 500 would then carry no CORS header. It wraps the whole stack instead
        # (see build_middleware_stack), so that every answer, errors included, has it.
        if settings.gzip_min_size:
            user_middleware.append(Middleware(GZipMiddleware,
                                              minimum_size=settings.gzip_min_size))
        if not settings.opentelemetry_enabled and _FASTAPI_HAS_TELEMETRY:
            # Off unless asked for, as in the original: no per-request provider check.
            kwargs.setdefault("telemetry", {"tracing": False, "metrics": False, "logs": False})
        elif _FASTAPI_HAS_TELEMETRY:  # FastAPI's span per request (fastflyer.tracing)
            kwargs["telemetry"] = {**FASTAPI_TELEMETRY, **(kwargs.get("telemetry") or {})}
        kwargs.setdefault("title", config.API_TITLE)
        kwargs.setdefault("description", config.DESCRIPTION)
        super().__init__(
            version=version,
            docs_url=None, redoc_url=None, openapi_url=None,  # ours: offline, auth-aware
            middleware=user_middleware,
            lifespan=self.lifecycle.lifespan(lifespan),
            **kwargs,
        )
        self.state.settings = settings
        if settings.fast_path:  # every route added from here on: app.get, add_api_route...
            self.router.route_class = FlyerRoute
        self.lifecycle.add("thread pool", start=self._size_thread_pool)
        # First to start, last to stop: the other components' work is traced.
        register_tracing(settings, self.lifecycle, lambda: self.service_name)
        self.lifecycle.add("access log", stop=self._close_access_log)
        register_components(settings, self.readiness, self.lifecycle)
        #: What follows the config center in this process (None: flyer_config_enabled=0).
        self.config_sync = register_config_center(settings, self.readiness, self.lifecycle)
        # Before the schedulers start: the service-wide job state applies before any fire.
        self.task_state = register_task_state(settings, self.service_name, self.lifecycle)
        register_executors(settings, self.lifecycle, self.service_name)
        self._include_kafka = register_kafka(settings, self.readiness, self.lifecycle)
        self._install_error_handlers()
        if app_dir is not None:
            with bound(self.app_context):  # module-level code of an app sees this app
                self.apps = load_apps(app_dir)
            for loaded in self.apps:
                if loaded.enabled and loaded.router is not None:
                    self.include_app(loaded.name, loaded.router)
                if loaded.enabled and loaded.kafka is not None:
                    self.include_kafka(loaded.kafka, loaded.name)
        # After the apps: routing tries routes in order, and the apps' are the busy ones.
        self._install_framework_routes()
        self._refuse_duplicate_routes()
        # Last: it starts after every other component, and withdraws first when stopping.
        self.registry = register_registry(self)
        built(self.app_context)  # outside any app's context, the last app built is used

    # --- building -------------------------------------------------------------------
    async def _size_thread_pool(self) -> None:
        # On the server's loop: anyio's default limiter (which runs sync endpoints and
        # run_in_threadpool) is one per event loop, 40 threads unless told.
        anyio.to_thread.current_default_thread_limiter().total_tokens = self.settings.threads

    def _close_access_log(self) -> None:
        if self.access_log is not None:
            self.access_log.close()

    def _install_error_handlers(self) -> None:
        self.add_exception_handler(HTTPException, self.renderer.http_exception)
        # Allow: every method of the path; OPTIONS: 204 (fastflyer.middleware.methods).
        self.add_exception_handler(405, method_not_allowed(self.renderer))
        self.add_exception_handler(RequestValidationError, self.renderer.validation_error)
        self.add_exception_handler(FlyerError, self.renderer.flyer_error)
        self.add_exception_handler(Exception, self.renderer.unhandled)

    def _install_framework_routes(self) -> None:
        # The app's own dependencies (FastAPI(dependencies=...)) are for its routes: a
        # readiness probe or the docs page do not send an app's API key. The task API keeps
        # them (it acts on the service).
        app_dependencies, self.router.dependencies = self.router.dependencies, []
        try:
            self._install_open_routes()
        finally:
            self.router.dependencies = app_dependencies
        base = self.base_url
        from fastflyer.task_api import build_task_router

        # Closed (403) unless auth is on or flyer_task_api_open=1 (fastflyer.auth).
        closed = [] if task_api_is_open(self.settings) else [Depends(task_api_closed)]
        self.include_router(build_task_router(self.task_state), prefix=base,
                            dependencies=closed, responses=_TASK_API_CLOSED if closed else None)

    def _install_open_routes(self) -> None:
        base = self.base_url
        if self.settings.docs_enabled:
            # Behind the auth middleware when auth is on. FastAPI's arguments name the paths.
            paths = {"openapi_url": f"{base}/openapi.json", "docs_url": f"{base}/docs",
                     "redoc_url": f"{base}/redoc", **self._docs_paths}
            if "swagger_ui_oauth2_redirect_url" in paths:
                paths["oauth2_redirect_url"] = paths.pop("swagger_ui_oauth2_redirect_url")
            install_docs(self, base, **paths)
            if paths["openapi_url"] is None:
                paths["docs_url"] = paths["redoc_url"] = None
            self.openapi_url = paths["openapi_url"]
            self.docs_url = paths["docs_url"]
            self.redoc_url = paths["redoc_url"]
            docs = paths["docs_url"] or paths["redoc_url"]
            if docs and docs != "/":

                async def root(request: Request) -> RedirectResponse:
                    return RedirectResponse(f"{request.scope.get('root_path', '')}{docs}")

                self.add_api_route("/", root, include_in_schema=False)

        # Declared for routing, which answers the other methods (405 and Allow, OPTIONS)
        # and refuses an app's route on the same path; GET and HEAD never get this far
        # (__call__ gives them to the same answer, which logged them already).
        for path in health_paths(base):
            self.router.routes.append(Route(path, Liveness(), methods=["GET"],
                                            include_in_schema=False))

        async def readiness() -> JSONResponse:
            report = await self.readiness.report()
            code = 200 if report["ready"] else 503
            return JSONResponse({"code": code, "message": "success" if code == 200 else
                                 "Service Unavailable", "data": report}, status_code=code)

        for path in ("/health_check/ready", f"{base}/health_check/ready"):
            self.add_api_route(path, readiness, methods=["GET"], tags=["health"],
                               summary="Readiness of the configured components",
                               response_model=None, responses=_READINESS_ANSWERS,
                               include_in_schema=path != "/health_check/ready")

        if self.settings.metrics_enabled:  # behind auth when auth is on, as the docs
            self.router.routes.append(metrics_route(self.settings.metrics_path))

    def include_router(self, router: APIRouter, *args: Any, **kwargs: Any) -> None:
        """FastAPI's ``include_router``; the router's plain ``APIRoute`` routes (and those of
        routers it includes) are served by :class:`~fastflyer.routing.FlyerRoute` unless
        ``flyer_fast_path=0``."""
        if self.settings.fast_path:
            adopt(router.routes)
        super().include_router(router, *args, **kwargs)

    def include_app(self, name: str, router: Any, dependencies: Sequence[Any] = ()) -> None:
        """Mount app ``name``'s router under the base URL."""
        before = len(self.router.routes)
        self.include_router(router, prefix=self.base_url, dependencies=list(dependencies))
        for entry in self.router.routes[before:]:
            entry._flyer_app = name  # type: ignore[attr-defined]
        logger.debug("app {} mounted at {}", name, self.base_url)

    def include_kafka(self, router: KafkaRouter, app: str = "main") -> None:
        """Run ``router``'s Kafka consumers with the app (apps' ``kafka`` are included
        when found). Raises :class:`~fastflyer.settings.SettingsError` when
        ``flyer_kafka_servers`` is not set."""
        self._include_kafka(app, router)

    def route_table(self) -> list[tuple[str, str, str]]:
        """``(method, path, owner)`` of every HTTP route; the owner is an app or fastflyer."""
        table: list[tuple[str, str, str]] = []
        for entry in self.router.routes:
            owner = getattr(entry, "_flyer_app", "fastflyer")
            for route in _iter_route_contexts([entry]):
                methods, path = getattr(route, "methods", None), getattr(route, "path", None)
                if methods and path is not None:
                    table.extend((method, path, owner) for method in sorted(methods))
        return table

    def _refuse_duplicate_routes(self) -> None:
        """Two routes with the same method and path: the second could never answer."""
        owners: dict[tuple[str, str], str] = {}
        for method, path, owner in self.route_table():
            other = owners.get((method, path))
            if other is None:
                owners[(method, path)] = owner
                continue
            who = (f"twice by app {owner!r}" if other == owner
                   else f"by both app {other!r} and app {owner!r}")
            raise DuplicateRouteError(f"{method} {path} is declared {who}")

    def openapi(self) -> dict[str, Any]:
        """FastAPI's schema, with every answer documented as it is sent: the 422 and the
        ``default`` error in the envelope (see :mod:`fastflyer.openapi`)."""
        if self.openapi_schema is None:
            self.openapi_schema = document_answers(
                super().openapi(), always_http_200=self.settings.always_http_200)
            if self.settings.auth_enable:
                document_basic_auth(self.openapi_schema, self.base_url)
        return self.openapi_schema

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in HEALTH_METHODS:
            # Liveness probes are answered before anything else: FastAPI's per-request
            # telemetry check, the middleware, auth, routing. Under a root path too.
            path: str = scope["path"]
            root: str = self.root_path or scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root):]
            if path in self._health_paths:
                await self._liveness(scope, receive, send)
                return
        token = bind(self.app_context)  # what runs for this app sees its settings
        try:
            await super().__call__(scope, receive, send)
        finally:
            unbind(token)

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        # A JSON body is Unicode text on every route: a lone surrogate is a 422, not a 500.
        app = JSONTextMiddleware(app)
        # HTTP semantics of every route: HEAD wherever GET is, and
        # redirects relative, never to the request's Host.
        app = HeadAsGetMiddleware(app, lambda: self.router.routes)
        app = RelativeRedirectMiddleware(app)
        if self.settings.max_body_size:
            app = BodyLimitMiddleware(app, self.settings.max_body_size, self.renderer)
        app = ConcurrencyLimitMiddleware(app, self.settings.worker_connections, self.renderer)
        if self.settings.auth_enable:  # before routing and any body is read
            app = BasicAuthMiddleware(
                app, user=self.settings.auth_user,
                password=self.settings.auth_pass.get_secret_value(), base_url=self.base_url,
                renderer=self.renderer, preflight_passes=bool(self.settings.cors_origins))
        if self.settings.cors_origins:
            # Outside every layer that answers by itself (the 500 of FastAPI's
            # ServerErrorMiddleware, the 413, the 503): their answers carry CORS too, and
            # so do the context layer's own last-resort 500 and 503, given just inside.
            app = UnansweredErrorMiddleware(app, self.renderer)
            app = CORSMiddleware(
                app, allow_origins=self.settings.cors_origins,
                allow_methods=self.settings.cors_methods,
                allow_headers=self.settings.cors_headers,
                allow_credentials=self.settings.cors_allow_credentials)
        context = RequestContextMiddleware(app, renderer=self.renderer,
                                           access_log=self.access_log)
        app = WebSocketContextMiddleware(context)  # request id and refusals of websockets
        self.lifecycle.in_flight = lambda: context.in_flight + context.cut_off
        # Behind trusted proxies the client address needs the proxy layer first.
        if self.settings.trusted_proxies:
            from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

            app = cast(ASGIApp, ProxyHeadersMiddleware(
                cast(Any, app), trusted_hosts=self.settings.trusted_proxies))
        if self.settings.metrics_enabled:
            # Outside every layer: each answer is counted with its status, a 401 or 503
            # included. The health checks and the scrapes themselves are not.
            base = self.base_url
            app = HTTPMetricsMiddleware(
                app, lambda: self.router.routes,
                skip=(*self._health_paths, "/health_check/ready", f"{base}/health_check/ready",
                      self.settings.metrics_path))
        return app


def create_app(app_path: str | Path | None = None, **kwargs: Any) -> FlyerAPI:
    """Build a :class:`FlyerAPI` (the factory form, for ``uvicorn --factory``)."""
    return FlyerAPI(app_path, **kwargs)
