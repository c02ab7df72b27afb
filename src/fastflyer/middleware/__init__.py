"""The framework's middleware, all pure ASGI (never ``BaseHTTPMiddleware``).

Outermost first, as :class:`~fastflyer.FlyerAPI` stacks them:

1. ``ProxyHeadersMiddleware`` (uvicorn's), only with ``flyer_trusted_proxies``: the
   client address and scheme from ``X-Forwarded-*``, believed from those peers only;
2. :class:`~fastflyer.middleware.websocket.WebSocketContextMiddleware` (websockets: request
   id, refusals that say why) around :class:`RequestContextMiddleware`: request id,
   ``X-Lasting-Time``, ``nosniff``, the health fast path, the access log, and the last
   word on errors;
3. ``CORSMiddleware`` (Starlette's), only with ``flyer_cors_origins``, and just inside it
   :class:`~fastflyer.middleware.unanswered.UnansweredErrorMiddleware`: outside every
   layer that answers by itself, so that every answer, errors included, carries CORS;
4. :class:`BasicAuthMiddleware`, only with ``flyer_auth_enable``: 401 without the
   credentials, for every path but the health checks, before routing and any body read;
5. :class:`ConcurrencyLimitMiddleware`: 503 (``Retry-After: 1``) beyond
   ``flyer_worker_connections`` requests in flight in the process;
6. :class:`BodyLimitMiddleware`: 413 for a body over ``flyer_max_body_size``;
7. :class:`~fastflyer.middleware.redirects.RelativeRedirectMiddleware` (a redirect to the
   request's own origin goes out relative) and
   :class:`~fastflyer.middleware.methods.HeadAsGetMiddleware` (``HEAD`` wherever ``GET``
   is), for every route, however it is handled;
8. FastAPI's own stack, with GZip inside it when configured.
"""

from __future__ import annotations

from fastflyer.middleware.access_log import AccessLog
from fastflyer.middleware.auth import BasicAuthMiddleware
from fastflyer.middleware.body_limit import BodyLimitMiddleware
from fastflyer.middleware.context import RequestContextMiddleware
from fastflyer.middleware.limit import ConcurrencyLimitMiddleware

__all__ = ["AccessLog", "BasicAuthMiddleware", "BodyLimitMiddleware",
           "ConcurrencyLimitMiddleware",
           "RequestContextMiddleware"]
