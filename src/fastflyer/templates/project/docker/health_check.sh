#!/bin/sh
# Container health check: 0 when the service answers its liveness probe.
set -eu
port="${flyer_port:-8080}"
exec python -c "import sys, urllib.request
try:
    urllib.request.urlopen('http://127.0.0.1:${port}/health_check', timeout=3)
except Exception as exc:
    sys.exit(f'unhealthy: {exc}')"
