"""The FastAPI internals :mod:`fastflyer.routing` plans with, in one place.

FastAPI's public surface has the route class (``APIRoute.get_route_handler``) but not the
pieces its own handler is made of: how a parameter's request key is chosen, how a value is
validated against its field, which callables it awaits. The fast handler must make exactly
the same choices, so it calls these same functions. Each is imported here and nowhere else;
when one is missing or has changed shape (a FastAPI upgrade), :data:`AVAILABLE` is false and
every route keeps FastAPI's own handler: the planner fails closed, never open. FastAPI's own
test suite, run with the route class (``tools/fastapi_parity.py``), is the check that the
choices still agree.

Instrumentation libraries wrap functions of ``fastapi.routing`` to see inside FastAPI's
handler: Sentry its ``get_request_handler``, Logfire its ``solve_dependencies`` and
``run_endpoint_function``. A handler that does not call them would hide the requests from
them, so :meth:`_Internals.instrumented` says when any of :data:`HOOKS` (or of
:data:`UTIL_HOOKS`, in the module that defines them) is no longer FastAPI's own function;
the planner and the planned handler then defer to FastAPI's.

FastAPI's native telemetry reads its per-request state from the OpenTelemetry context:
:meth:`_Internals.operation_spans` says whether the request is to have operation spans (the
planned handler, which opens none, defers to FastAPI's then), and
:attr:`_Internals.validation_failed` records a validation error as FastAPI's handler does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AVAILABLE", "HOOKS", "UTIL_HOOKS", "internals"]

#: The functions of ``fastapi.routing`` that instrumentation replaces.
HOOKS = ("get_request_handler", "solve_dependencies", "run_endpoint_function",
         "serialize_response")
#: The same in ``fastapi.dependencies.utils``, which calls them by these names itself
#: (``solve_dependencies`` for each sub-dependency).
UTIL_HOOKS = ("solve_dependencies", "request_params_to_args", "request_body_to_args")


class _Internals:
    """The imported names (attributes), present only when :data:`AVAILABLE`."""

    def __init__(self) -> None:
        from fastapi._body_limit import get_body_limit_error
        from fastapi._compat import Undefined
        from fastapi._compat.shared import field_annotation_is_sequence
        from fastapi.datastructures import DefaultPlaceholder
        from fastapi.dependencies.models import (
            _get_cache_key,
            _get_oauth_scopes,
            _is_async_gen_callable,
            _is_coroutine_callable,
            _is_gen_callable,
        )
        from fastapi.dependencies.utils import (
            _get_form_models,
            _get_param_aliases,
            _get_param_model,
            _is_json_field,
            _should_embed_body_fields,
            _solve_generator,
            _validate_value_with_model_field,
            request_body_to_args,
        )
        from fastapi.routing import _effective_route_context_var, _extract_endpoint_context
        from fastapi.telemetry._api import _get_request_telemetry, _validation_failed
        from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY

        self.MAX_BODY_SIZE_SCOPE_KEY = MAX_BODY_SIZE_SCOPE_KEY
        self.get_body_limit_error = get_body_limit_error
        self.Undefined = Undefined
        self.DefaultPlaceholder = DefaultPlaceholder
        self.get_cache_key = _get_cache_key
        self.get_oauth_scopes = _get_oauth_scopes
        self.is_async_gen_callable = _is_async_gen_callable
        self.is_coroutine_callable = _is_coroutine_callable
        self.is_gen_callable = _is_gen_callable
        self.get_form_models = _get_form_models
        self.solve_generator = _solve_generator
        self.get_param_aliases = _get_param_aliases
        self.get_param_model = _get_param_model
        self.is_json_field = _is_json_field
        self.should_embed_body_fields = _should_embed_body_fields
        self.validate_value = _validate_value_with_model_field
        self.field_annotation_is_sequence = field_annotation_is_sequence
        self.request_body_to_args = request_body_to_args
        self.effective_route_context_var = _effective_route_context_var
        self.extract_endpoint_context = _extract_endpoint_context
        self.request_telemetry = _get_request_telemetry
        self.validation_failed = _validation_failed

        import fastapi.dependencies.utils
        import fastapi.routing

        self.routing = fastapi.routing
        self.utils = fastapi.dependencies.utils
        self.hooks = tuple(getattr(fastapi.routing, name) for name in HOOKS)
        self.util_hooks = tuple(getattr(fastapi.dependencies.utils, name) for name in UTIL_HOOKS)
        own = {fastapi.routing.__file__, fastapi.dependencies.utils.__file__}
        # Already replaced before this import: never plan (the originals are unknown).
        self.hooked_early = any(getattr(getattr(hook, "__code__", None), "co_filename", None)
                                not in own for hook in (*self.hooks, *self.util_hooks))

    def instrumented(self) -> bool:
        """Whether a function of :data:`HOOKS` or :data:`UTIL_HOOKS` has been replaced (a
        cheap check: seven attribute reads, run on every request)."""
        routing, utils = self.routing, self.utils
        get_request_handler, solve_dependencies, run_endpoint_function, serialize = self.hooks
        solve, params_to_args, body_to_args = self.util_hooks
        return (self.hooked_early
                or routing.get_request_handler is not get_request_handler
                or routing.solve_dependencies is not solve_dependencies
                or routing.run_endpoint_function is not run_endpoint_function
                or routing.serialize_response is not serialize
                or utils.solve_dependencies is not solve
                or utils.request_params_to_args is not params_to_args
                or utils.request_body_to_args is not body_to_args)

    def operation_spans(self) -> bool:
        """Whether FastAPI's telemetry opens operation spans (dependencies, endpoint,
        serialization) for the request being served: its tracer is set for the request
        only then."""
        telemetry = self.request_telemetry()
        return telemetry is not None and telemetry.tracer is not None


def _load() -> _Internals | None:
    try:
        return _Internals()
    except (ImportError, AttributeError):
        return None


internals: Any = _load()
AVAILABLE: bool = internals is not None
