"""highlight_logging.testing.capture(): every front end's records, in memory, as they would be exported."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator

import pytest
import structlog
from loguru import logger as loguru_logger
from opentelemetry.sdk.trace import TracerProvider

import highlight_logging
from highlight_logging import HighlightHandler, LoguruSink, StructlogProcessor
from highlight_logging._devtools.receiver import Receiver
from highlight_logging._frontends.errors import record_exception
from highlight_logging.testing import capture


@pytest.fixture
def log(receiver: Receiver) -> Iterator[logging.Logger]:
    """A stdlib logger whose handler would export to the receiver (so leaks would show there)."""
    logger = logging.getLogger("tests.testing")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = HighlightHandler(endpoint=receiver.endpoint)
    logger.addHandler(handler)
    yield logger
    logger.removeHandler(handler)


def nothing_exported(receiver: Receiver) -> bool:
    return highlight_logging.flush(5) and not receiver.requests


def test_captures_instead_of_exporting(log: logging.Logger, receiver: Receiver) -> None:
    """Inside capture() records become plain dicts and nothing is exported."""
    with capture() as cap:
        log.warning("user %s logged in", "ada", extra={"user_id": 7, "roles": ["admin"]})
    (rec,) = cap.logs
    assert rec["body"] == "user ada logged in"
    assert (rec["severity_number"], rec["severity_text"]) == (13, "WARNING")
    assert rec["scope"] == "tests.testing"
    assert rec["attributes"]["user_id"] == 7 and rec["attributes"]["roles"] == ["admin"]
    assert rec["attributes"]["code.function.name"] == "test_captures_instead_of_exporting"
    assert rec["trace_id"] == rec["span_id"] == ""
    assert rec["time_ns"] > 0 and rec["dropped_attributes_count"] == 0
    assert cap.spans == [] and cap.errors == []
    assert nothing_exported(receiver)


def test_exception_log_and_span(log: logging.Logger) -> None:
    """A logged exception gives exception.* attributes and a linked ERROR span with one event."""
    tracer = TracerProvider().get_tracer("t")
    with capture() as cap, tracer.start_as_current_span("request") as parent:
        try:
            raise KeyError("k")
        except KeyError:
            log.exception("lookup failed")
    (rec,), (span,) = cap.logs, cap.spans
    assert rec["attributes"]["exception.type"] == "KeyError"
    assert rec["attributes"]["exception.message"] == "'k'"
    assert (rec["trace_id"], rec["span_id"]) == (span["trace_id"], span["span_id"])
    assert span["trace_id"] == format(parent.get_span_context().trace_id, "032x")
    assert span["parent_span_id"] == format(parent.get_span_context().span_id, "016x")
    assert (span["name"], span["status"], span["status_message"]) == ("KeyError", "ERROR", "'k'")
    (event,) = span["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.stacktrace"] == rec["attributes"]["exception.stacktrace"]
    assert span["start_time_ns"] == span["end_time_ns"] == rec["time_ns"]


def test_all_front_ends_and_reports_are_captured(receiver: Receiver) -> None:
    """structlog, loguru and record_exception go to the capture too."""
    slog = structlog.wrap_logger(
        structlog.PrintLogger(io.StringIO()),
        processors=[
            structlog.processors.add_log_level,
            StructlogProcessor(endpoint=receiver.endpoint),
            structlog.processors.KeyValueRenderer(),
        ],
    )
    sink_id = loguru_logger.add(LoguruSink(endpoint=receiver.endpoint), level="INFO")
    try:
        with capture() as cap:
            slog.info("from structlog", k=1)
            loguru_logger.info("from loguru")
            assert record_exception(
                ValueError("reported"), attributes={"order": 9}, endpoint=receiver.endpoint
            )
    finally:
        loguru_logger.remove(sink_id)
    bodies = [r["body"] for r in cap.logs]
    assert bodies[:2] == ["from structlog", "from loguru"]
    assert cap.logs[0]["attributes"]["k"] == 1
    (span,) = cap.spans
    assert span["name"] == "ValueError"
    assert len(cap.logs) == 2  # a report has no log line
    assert span["attributes"]["order"] == 9
    assert nothing_exported(receiver)


def test_scrubbing_and_limits_use_each_handlers_settings(receiver: Receiver) -> None:
    """Conversion is the worker's: secrets scrubbed, the handler's own limits applied."""
    logger = logging.getLogger("tests.testing.limits")
    logger.propagate = False
    handler = HighlightHandler(endpoint=receiver.endpoint, max_body_length=10, scrub_extra_keys=["pin"])
    logger.addHandler(handler)
    try:
        with capture() as cap:
            logger.error(
                "x" * 50, extra={"password": "hunter2", "pin": "1234", "note": "Bearer abcdefghij0123456789"}
            )
    finally:
        logger.removeHandler(handler)
    (rec,) = cap.logs
    assert rec["body"] == "x" * 10 + "...[truncated]"
    a = rec["attributes"]
    assert a["password"] == a["pin"] == "[scrubbed]"
    assert a["note"] == "Bearer [scrubbed]"
    assert a["highlight.body_truncated"] == 50
    assert set(a["highlight.scrubbed"]) >= {"password:denied_key", "pin:denied_key", "note:bearer"}


def test_other_threads_context_and_disabled(log: logging.Logger) -> None:
    """Records from other threads are captured, with the request context; disabled front ends too."""
    disabled = logging.getLogger("tests.testing.disabled")
    disabled.propagate = False
    handler = HighlightHandler(disabled=True)
    disabled.addHandler(handler)
    try:
        with capture() as cap, highlight_logging.context(session_id="s", request_id="r"):
            thread = threading.Thread(target=log.info, args=("from a thread",))
            thread.start()
            thread.join(5)
            log.info("from main")
            disabled.info("from a disabled handler")
    finally:
        disabled.removeHandler(handler)
    by_body = {r["body"]: r for r in cap.logs}
    assert set(by_body) == {"from a thread", "from main", "from a disabled handler"}
    assert "highlight.session_id" not in by_body["from a thread"]["attributes"]  # plain threads don't inherit
    assert by_body["from main"]["attributes"]["highlight.session_id"] == "s"


def test_nesting_and_restoring_export(log: logging.Logger, receiver: Receiver) -> None:
    """The innermost capture receives; after the last one ends, records are exported again."""
    with capture() as outer:
        log.info("outer 1")
        with capture() as inner:
            log.info("inner")
        log.info("outer 2")
        inner.clear()
    assert [r["body"] for r in outer.logs] == ["outer 1", "outer 2"]
    assert inner.logs == []
    log.info("exported")
    assert highlight_logging.flush(5) and receiver.wait_for_logs(1, 5)
    assert [r.body for r in receiver.log_records()] == ["exported"]
