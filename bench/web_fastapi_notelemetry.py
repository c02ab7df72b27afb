"""Bare FastAPI with its per-request telemetry off: the routes of ``web_fastapi.py``.

    taskset -c 1 python -m uvicorn web_fastapi_notelemetry:app --app-dir bench --loop uvloop \
        --http httptools --workers 1 --log-level error --no-access-log --no-proxy-headers

``FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})`` (FastAPI 0.165):
no per-request check of the OpenTelemetry providers, as FastFlyer does unless
``flyer_opentelemetry_enabled=1``. Everything else is FastAPI's defaults.
"""

from web_fastapi import build

app = build(telemetry={"tracing": False, "metrics": False, "logs": False})
