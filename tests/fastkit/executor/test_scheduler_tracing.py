"""Scheduler traces: a span per job run, current while the job runs (in its worker thread,
or on the loop), the failure recorded on it and on the line logging it; a scheduled fire
starts its own trace, a run now continues the caller's; a skipped fire makes no span."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from loguru import logger
from opentelemetry.trace import SpanKind, StatusCode
from scheduler_jobs import KINDS, job_function, job_id, redis_locks, soon, stop

from fastkit import tracing
from fastkit.executor import Scheduler
from waiting import until


def inside() -> dict:
    """What a job sees of the current span and its thread."""
    return {"ids": tracing.current_ids(), "thread": threading.current_thread().name}


def spans_of(exporter, job: str) -> list:
    return [span for span in exporter.get_finished_spans() if span.name == f"job {job}"]


def hex_ids(span) -> tuple[str, str]:
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_scheduled_run_is_a_span_of_its_own_current_in_the_job(kind, kit_spans):
    job, seen = job_id(), []
    scheduler = Scheduler("traced", kind)
    with tracing.span("adding the job"):  # a fire is no caller's: it starts its own trace
        scheduler.add_job(job_function(kind, lambda: seen.append(inside())), "date",
                          run_date=soon(), id=job)
    scheduler.start()
    try:
        await until(lambda: spans_of(kit_spans, job), what="the job's span")
    finally:
        await stop(scheduler)
    (span,) = spans_of(kit_spans, job)
    assert span.kind == SpanKind.INTERNAL and span.parent is None
    assert span.status.status_code == StatusCode.UNSET
    assert span.attributes["fastkit.job.id"] == job
    assert span.attributes["fastkit.job.scheduler"] == "traced"
    assert span.attributes["code.function.name"].endswith("job_function.<locals>.job")
    assert seen[0]["ids"] == hex_ids(span)  # current while the job ran
    if kind == "background":
        assert seen[0]["thread"].startswith("traced-job")  # in the pool's worker thread


@pytest.mark.parametrize("kind", KINDS)
async def test_a_failed_run_records_the_error_on_its_span_and_its_log_line(kind, kit_spans):
    job, logged = job_id(), []

    def body():
        raise ValueError("cannot connect with password=hunter2")

    def sink(message):
        if message.record["level"].name == "ERROR":
            logged.append((message.record["message"], tracing.current_ids()))

    handler = logger.add(sink, level="ERROR")
    scheduler = Scheduler("traced", kind)
    scheduler.add_job(job_function(kind, body), "interval", seconds=3600, id=job)
    scheduler.start()
    try:
        scheduler.run_job(job)
        await until(lambda: spans_of(kit_spans, job) and logged, what="the span and the log")
    finally:
        await stop(scheduler)
        logger.remove(handler)
    (span,) = spans_of(kit_spans, job)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "ValueError"
    (event,) = span.events
    assert event.name == "exception" and event.attributes["exception.type"] == "ValueError"
    assert "hunter2" not in event.attributes["exception.message"]  # masked, as in logs
    assert "hunter2" not in event.attributes["exception.stacktrace"]
    assert "hunter2" not in span.status.description
    message, ids = logged[0]
    assert f"job {job!r} of scheduler 'traced' raised ValueError" in message
    assert ids == hex_ids(span)  # the failure's log line carries the run's trace


@pytest.mark.parametrize("kind", KINDS)
async def test_a_run_now_continues_the_callers_trace(kind, kit_spans):
    job = job_id()
    scheduler = Scheduler("traced", kind)
    scheduler.add_job(job_function(kind, lambda: None), "interval", seconds=3600, id=job)
    scheduler.start()
    try:
        with tracing.span("request") as request:
            scheduler.run_job(job)
        await until(lambda: spans_of(kit_spans, job), what="the job's span")
    finally:
        await stop(scheduler)
    (span,) = spans_of(kit_spans, job)
    assert span.context.trace_id == request.get_span_context().trace_id
    assert span.parent.span_id == request.get_span_context().span_id


@pytest.mark.parametrize("kind", KINDS)
async def test_a_locked_run_has_one_span_and_a_skipped_fire_none(kind, prefix, kit_spans,
                                                                  logs):
    ran, skipped, seen = job_id(), job_id(), []
    scheduler = Scheduler("traced", kind, locks=redis_locks(prefix))
    body = job_function(kind, lambda: seen.append(inside()))
    other_instance = redis_locks(prefix)
    with other_instance.held(f"traced-lock/{skipped}") as lease:
        assert lease is not None
        scheduler.add_job(scheduler.lock(name="traced-lock")(body), "date", run_date=soon(),
                          id=skipped)
        scheduler.add_job(body, "date", run_date=soon(), id=ran, single_job=True)
        scheduler.start()
        try:
            await until(lambda: spans_of(kit_spans, ran), what="the locked run's span")
            await until(lambda: "is held by a run still going" in logs.text(),
                        what="the other fire skipped")
        finally:
            await stop(scheduler)
    (span,) = spans_of(kit_spans, ran)
    assert seen == [{"ids": hex_ids(span), "thread": seen[0]["thread"]}]  # only one ran
    assert spans_of(kit_spans, skipped) == []


@pytest.mark.parametrize("kind", KINDS)
async def test_a_missed_fire_makes_no_span(kind, kit_spans, metrics_on):
    from prometheus_client import REGISTRY

    job = job_id()
    scheduler = Scheduler("traced", kind)
    scheduler.add_job(job_function(kind, lambda: None), "date", id=job, misfire_grace_time=1,
                      run_date=datetime.now(UTC) - timedelta(seconds=30))
    scheduler.start()
    try:
        await until(lambda: REGISTRY.get_sample_value(
            "scheduler_job_skips_total", {"job": job, "reason": "missed"}) == 1,
            what="the missed fire")
    finally:
        await stop(scheduler)
    assert spans_of(kit_spans, job) == []
