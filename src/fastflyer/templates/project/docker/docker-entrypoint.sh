#!/bin/sh
# Container entry point: run what the image's CMD (or the caller) asks for.
set -eu
if [ -f /app/requirements.txt ] && [ "${FLYER_INSTALL_REQUIREMENTS:-0}" = "1" ]; then
    pip install --no-cache-dir --user -r /app/requirements.txt
fi
exec "$@"
