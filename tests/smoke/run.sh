#!/usr/bin/env bash
# The user-facing installs, each in a fresh venv with no dev or test tool, each running the
# smoke checks of tests/smoke/smoke.py:
#   pip install .          the framework alone (what `pip install fastflyer` gives)
#   pip install '.[all]'   with Redis, MySQL and Kafka
# Needs the machine's Redis and MariaDB (as `make test` does) and the dev venv's Kafka-protocol
# broker (`make install-dev`), which it starts on a loopback port and stops.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/fastflyer-smoke-XXXXXX")
broker=""
cleanup() {
    if [ -n "$broker" ]; then kill "$broker" 2>/dev/null || true; wait "$broker" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# The tests' broker launcher: it reserves the port tansu needs up front (no port is picked,
# released and handed on), prints host:port once tansu listens, and stops it on SIGTERM.
mkfifo "$work/broker.address"
.venv/bin/python tests/kafka_broker.py >"$work/broker.address" 2>"$work/broker.log" &
broker=$!
if ! read -r -t 60 servers <"$work/broker.address"; then
    echo "smoke: the Kafka-protocol broker did not start:" >&2
    cat "$work/broker.log" >&2
    exit 1
fi
export SMOKE_KAFKA_SERVERS="$servers"

for spec in "." ".[all]"; do
    venv="$work/venv-$( [ "$spec" = "." ] && echo plain || echo all )"
    echo "smoke: pip install '$spec' into a fresh venv" >&2
    started=$(date +%s)
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$spec" 2>"$work/pip.log" \
        || { cat "$work/pip.log" >&2; exit 1; }
    echo "smoke: installed in $(( $(date +%s) - started )) s" >&2
    if "$venv/bin/python" -c 'import pytest' 2>/dev/null; then
        echo "smoke: pytest is in the user install '$spec': a dev tool leaked into it" >&2
        exit 1
    fi
    args=()
    [ "$spec" = "." ] || args=(--all)
    (cd "$work" && "$venv/bin/python" "$OLDPWD/tests/smoke/smoke.py" "${args[@]}")
done
echo "smoke: both user installs passed" >&2
