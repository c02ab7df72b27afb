"""The served API keeps the promises of its own OpenAPI schema, checked by Schemathesis.

Schemathesis reads the schema from the real server (``live``) at ``/flyer/openapi.json`` and
calls every operation over HTTP with generated data, valid and invalid: no answer may be a
500, and each must match the schema (status code, content type, body). The ``errors`` routes
fail on purpose (``/flyer/errors/crash`` is a 500 by design, ``/flyer/errors/upstream`` calls
out), so they are left out. Deterministic generation with at most 50 examples per operation
keeps the run short and the same from one run to the next.

Schemathesis runs as its CLI in a child process: its pytest integration
(``schemathesis.pytest.from_fixture``, needed because the server starts with the session)
sets ``request.node._nodeid``, which pytest 9.2 no longer has.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import LiveServer

DEMO_OPERATIONS = {("GET", "/flyer/demo"), ("POST", "/flyer/users"), ("GET", "/flyer/users")}

WARNINGS = ["missing_auth", "base_url_mismatch", "validation_mismatch", "missing_deserializer",
            "unused_openapi_auth", "unsupported_regex", "method_not_allowed",
            "unmatched_filter", "unresolvable_reference", "low_valid_rate", "rate_limited",
            "dictionary_mismatch", "timeout_units"]

CHECKS = {
    "no-server-error": ["not_a_server_error"],
    "conformance": ["status_code_conformance", "content_type_conformance",
                    "response_schema_conformance"],
}


def run_schemathesis(live: LiveServer, checks: list[str], agent: str,
                     workdir: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{live.url}/flyer/openapi.json",
        "--checks", ",".join(checks),
        "--exclude-tag", "errors",
        "--max-examples", "50",
        # Deterministic: no seed, no example database; the same cases every run.
        "--generation-deterministic",
        "--workers", "1",
        "--request-timeout", "10",
        "--no-color",
        # The access log records the user agent: it tells this run's requests apart.
        "--header", f"User-Agent: {agent}",
        # Every warning but missing test data: a fuzzer cannot guess the task API's job ids,
        # so its per-job routes answer 404 (tests/fastflyer/test_task_api.py covers them).
        "--warnings", ",".join(WARNINGS),
    ]
    # In a temporary directory: whatever the CLI writes stays out of the work tree.
    return subprocess.run(command, capture_output=True, text=True, cwd=workdir, timeout=120,
                          check=False)


def requests_from(live: LiveServer, agent: str) -> set[tuple[str, str]]:
    """(method, path) of each request with this user agent in the access log.

    The log is written out at least once a second, so wait until the demo operations show.
    """
    deadline = time.monotonic() + 5
    while True:
        seen = {(entry["method"], entry["path"])
                for entry in map(json.loads, live.access_lines())
                if entry.get("user_agent") == agent}
        if seen >= DEMO_OPERATIONS or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


@pytest.mark.parametrize("name", list(CHECKS))
def test_schemathesis_against_the_served_schema(live, tmp_path, name):
    agent = f"fastflyer-tests-schemathesis-{name}"
    result = run_schemathesis(live, CHECKS[name], agent, tmp_path)
    if result.returncode != 0 or "No issues found" not in result.stdout:
        pytest.fail(f"schemathesis ({', '.join(CHECKS[name])}) exited {result.returncode}:\n"
                    f"{result.stdout}\n{result.stderr}", pytrace=False)
    seen = requests_from(live, agent)
    assert seen >= DEMO_OPERATIONS, sorted(seen)
    assert not [path for _, path in seen if path.startswith("/flyer/errors")], sorted(seen)
