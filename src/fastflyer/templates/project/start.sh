#!/bin/sh
# Production: gunicorn with uvicorn workers. flyer_workers unset = the CPUs this container may use.
set -eu
cd "$(dirname "$0")"
exec fastflyer serve "$@"
