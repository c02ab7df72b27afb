"""Trace and span ids in log lines: while tracing is on (fastkit.tracing), a line logged
inside a span carries ``trace_id`` and ``span_id`` beside the request id (fields of its
record, of a JSON line and of a shipped syslog message; columns of the default text
format); outside any span, or with tracing off, it carries none."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from opentelemetry import trace
from test_ship import shipped, shipping

from fastkit import tracing
from fastkit.logging import logger
from fastkit.request_id import bind_request_id
from rsyslog_server import RsyslogServer


def ids_of(span: Any) -> tuple[str, str]:
    context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def record_of(logs: Any, message: str) -> dict[str, Any]:
    [record] = [r for r in logs.records if r["message"] == message]
    return record["extra"]


def test_a_line_inside_a_span_carries_its_ids(spans: Any, logs: Any) -> None:
    with bind_request_id("req-1"), tracing.span("charge") as outer:
        logger.info("outer line")
        with tracing.span("call") as inner:
            logger.info("inner line")
    assert record_of(logs, "outer line") == {"request_id": "req-1",
                                             "trace_id": ids_of(outer)[0],
                                             "span_id": ids_of(outer)[1]}
    inner_ids = ids_of(inner)
    assert (record_of(logs, "inner line")["trace_id"],
            record_of(logs, "inner line")["span_id"]) == inner_ids
    assert inner_ids[0] == ids_of(outer)[0] and inner_ids[1] != ids_of(outer)[1]
    assert re.fullmatch(r"[0-9a-f]{32}", inner_ids[0])
    assert re.fullmatch(r"[0-9a-f]{16}", inner_ids[1])


def test_a_line_outside_any_span_carries_none(spans: Any, logs: Any) -> None:
    logger.info("no span here")
    extra = record_of(logs, "no span here")
    assert "trace_id" not in extra and "span_id" not in extra


def test_tracing_off_adds_nothing_even_inside_a_span(spans: Any, logs: Any) -> None:
    # A span another library opened (OpenTelemetry's API directly), FastKit's tracing off.
    tracing.disable()
    with trace.get_tracer("elsewhere").start_as_current_span("theirs"):
        logger.info("not traced by fastkit")
    extra = record_of(logs, "not traced by fastkit")
    assert "trace_id" not in extra and "span_id" not in extra


def test_ids_bound_by_the_caller_are_kept(spans: Any, logs: Any) -> None:
    with tracing.span("mine"):
        logger.bind(trace_id="given", span_id="also").info("bound line")
    assert record_of(logs, "bound line")["trace_id"] == "given"


def test_lines_of_plain_loguru_are_patched_too_once_configured(tmp_path: Path) -> None:
    # The text format of the console and the files, and JSON lines, in a configured process:
    # columns after the request id inside a span, "- -" outside one while tracing is on,
    # no column while it is off; JSON lines carry fields only inside a span.
    code = f"""
import json
from loguru import logger as plain
from opentelemetry.sdk.trace import TracerProvider
import fastkit.logging as fl
from fastkit import tracing

fl.configure(fl.LogSettings(log_path={str(tmp_path)!r}, name="text"))
provider = TracerProvider(shutdown_on_exit=False)
fl.logger.info("before tracing")
tracing.enable(provider)
with tracing.span("work") as span:
    ctx = span.get_span_context()
    fl.logger.info("inside")
    plain.info("plain inside")
fl.logger.info("outside")
tracing.disable()
fl.logger.info("after tracing")
fl.configure(fl.LogSettings(log_path={str(tmp_path)!r}, name="json", json=True))
tracing.enable(provider)
with tracing.span("work") as other:
    fl.logger.info("json inside")
fl.logger.info("json outside")
other = other.get_span_context()
print(json.dumps([f"{{ctx.trace_id:032x}}", f"{{ctx.span_id:016x}}",
                  f"{{other.trace_id:032x}}", f"{{other.span_id:016x}}"]))
"""
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("flyer_")}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    trace_id, span_id, json_trace_id, json_span_id = json.loads(done.stdout.splitlines()[-1])
    lines = {line.rsplit(" - ", 1)[1]: line
             for line in (tmp_path / "text.log").read_text().splitlines()}
    assert f"| - | {trace_id} {span_id} | " in lines["inside"]
    assert f"| - | {trace_id} {span_id} | " in lines["plain inside"]
    assert "| - | - - | " in lines["outside"]
    for untraced in ("before tracing", "after tracing"):
        assert re.search(r"\| INFO     \| - \| __main__:<module>:\d+$",
                         lines[untraced].rsplit(" - ", 1)[0]), lines[untraced]
    assert f"{trace_id} {span_id}" in done.stderr  # the console: the same format
    records = {r["record"]["message"]: r["record"]["extra"] for r in
               map(json.loads, (tmp_path / "json.log").read_text().splitlines())}
    assert records["json inside"] == {"request_id": "-", "trace_id": json_trace_id,
                                      "span_id": json_span_id}
    assert records["json outside"] == {"request_id": "-"}


def test_shipped_lines_carry_the_ids(rsyslog: RsyslogServer, spans: Any) -> None:
    topic = f"t{uuid.uuid4().hex[:12]}"
    ship = shipping(rsyslog, "udp", topic)
    try:
        with tracing.span("charge") as span:
            logger.info("shipped inside")
        logger.info("shipped outside")
        ship.shipper.ship_line({"path": "/x", "request_id": "r", "trace_id": ids_of(span)[0],
                                "span_id": ids_of(span)[1]})
        ship.shipper.ship_line({"path": "/y", "request_id": "r"})
        lines = shipped(rsyslog, topic, 4)
    finally:
        ship.close()
    by_key = {line.get("message") or line["path"]: line for line in lines}
    trace_id, span_id = ids_of(span)
    assert (by_key["shipped inside"]["trace_id"], by_key["shipped inside"]["span_id"]) == \
        (trace_id, span_id)
    assert (by_key["shipped outside"]["trace_id"], by_key["shipped outside"]["span_id"]) == \
        (None, None)
    assert (by_key["/x"]["trace_id"], by_key["/x"]["span_id"]) == (trace_id, span_id)
    assert by_key["/x"]["kind"] == "access"
    assert (by_key["/y"]["trace_id"], by_key["/y"]["span_id"]) == (None, None)
