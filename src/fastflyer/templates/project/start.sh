#!/bin/sh
# Production: gunicorn with uvicorn workers. flyer_workers unset = the CPUs this container may use.
set -eu
cd "$(dirname "$0")"

# The FastFlyer SDK: fastflyer on PATH, else the project's virtualenv (.venv or venv),
# else a python3 that imports it.
if command -v fastflyer >/dev/null 2>&1; then
    set -- fastflyer serve "$@"
elif [ -x .venv/bin/fastflyer ]; then
    set -- .venv/bin/fastflyer serve "$@"
elif [ -x venv/bin/fastflyer ]; then
    set -- venv/bin/fastflyer serve "$@"
elif command -v python3 >/dev/null 2>&1 && python3 -c "import fastflyer" >/dev/null 2>&1; then
    set -- python3 -m fastflyer serve "$@"
else
    echo "$0: the FastFlyer SDK is not installed (no fastflyer on PATH, in .venv/bin or venv/bin); install it: python3 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt (see README.md, Setting up)" >&2
    exit 127
fi
exec "$@"
