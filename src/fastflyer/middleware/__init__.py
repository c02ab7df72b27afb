"""The framework's middleware, all pure ASGI (never ``BaseHTTPMiddleware``).

Outermost first, as :class:`~fastflyer.FlyerAPI` stacks them:

1. ``ProxyHeadersMiddleware`` (uvicorn's), only with ``flyer_trusted_proxies``: the
   client address and scheme from ``X-Forwarded-*``, believed from those peers only;
2. :class:`RequestContextMiddleware`: request id, ``X-Lasting-Time``, ``nosniff``, the
   health fast path, the access log, and the last word on errors;
3. :class:`ConcurrencyLimitMiddleware`: 503 (``Retry-After: 1``) beyond
   ``flyer_worker_connections`` requests in flight in the process;
4. :class:`BodyLimitMiddleware`: 413 for a body over ``flyer_max_body_size``;
5. FastAPI's own stack, with CORS and GZip inside it when configured.
"""

from __future__ import annotations

from fastflyer.middleware.access_log import AccessLog
from fastflyer.middleware.body_limit import BodyLimitMiddleware
from fastflyer.middleware.context import RequestContextMiddleware
from fastflyer.middleware.limit import ConcurrencyLimitMiddleware

__all__ = ["AccessLog", "BodyLimitMiddleware", "ConcurrencyLimitMiddleware",
           "RequestContextMiddleware"]
