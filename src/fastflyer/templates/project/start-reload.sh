#!/bin/sh
# Development: one uvicorn process that reloads when the code changes.
set -eu
cd "$(dirname "$0")"
flyer_reload="${flyer_reload:-1}"
export flyer_reload
exec fastflyer run "$@"
