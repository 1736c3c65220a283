"""record_exception(): an error report is the front ends' exception span, without a log line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

import highlight_logging
from highlight_logging._devtools.receiver import ReceivedSpan, Receiver
from highlight_logging._frontends.errors import record_exception


class PaymentError(Exception):
    pass


@pytest.fixture
def rx(receiver: Receiver) -> Iterator[Receiver]:
    highlight_logging.configure(endpoint=receiver.endpoint)
    yield receiver


def one_span(receiver: Receiver) -> ReceivedSpan:
    assert highlight_logging.flush(5)
    assert receiver.wait_for_spans(1, 5)
    (span,) = receiver.spans()
    return span


def _fail() -> None:
    raise PaymentError("card declined")


def test_report_is_an_exception_span(rx: Receiver) -> None:
    """Inside except, record_exception() sends an ERROR span with the exception event's three attributes."""
    try:
        _fail()
    except PaymentError:
        assert record_exception() is True
    span = one_span(rx)
    assert span.scope.name == __name__
    assert span.span.name == f"{__name__}.PaymentError"
    assert span.span.status.code == 2 and span.span.status.message == "card declined"
    (event,) = span.span.events
    ev = {kv.key: kv.value.string_value for kv in event.attributes}
    assert ev["exception.type"] == f"{__name__}.PaymentError"
    assert ev["exception.message"] == "card declined"
    assert (
        "in _fail" in ev["exception.stacktrace"]
        and "PaymentError: card declined" in ev["exception.stacktrace"]
    )
    a = span.attributes
    assert a["code.function.name"] == "test_report_is_an_exception_span"
    assert a["code.file.path"] == __file__
    assert a["thread.name"] == "MainThread"


def test_no_log_line_and_custom_attributes_on_the_span(rx: Receiver) -> None:
    """A report sends no log record; the span carries the custom attributes and the request context."""
    with highlight_logging.context(session_id="s1", request_id="r1"):
        assert record_exception(PaymentError("x"), attributes={"order_id": 42, "cart": {"items": [1, 2]}})
    span = one_span(rx)
    assert not rx.log_records()
    a = span.attributes
    assert a["order_id"] == 42 and a["cart"] == {"items": [1, 2]}
    assert a["highlight.session_id"] == "s1" and a["highlight.trace_id"] == "r1"
    assert not any(k.startswith("exception.") for k in a)  # those are on the event
    stats = highlight_logging.stats()
    assert stats["logs"]["queued"] == 0 and stats["logs"]["dropped_total"] == 0
    assert stats["spans"]["exported"] == 1


def test_scrubbing_applies_to_reports(rx: Receiver) -> None:
    """Secret attributes and secrets in the message are scrubbed as for any record."""
    token = "Bearer abcdefghijklmnop0123456789"
    record_exception(PaymentError(f"auth failed with {token}"), attributes={"password": "hunter2"})
    span = one_span(rx)
    assert span.attributes["password"] == "[scrubbed]"
    assert token not in span.span.status.message
    assert "highlight.scrubbed" in span.attributes


def test_without_an_exception_nothing_happens(rx: Receiver) -> None:
    """Outside an except block (and for exc_info without an exception) it returns False and sends nothing."""
    assert sys.exc_info()[1] is None
    assert record_exception() is False
    assert record_exception((None, None, None)) is False  # type: ignore[arg-type]
    assert highlight_logging.flush(5)
    assert highlight_logging.stats()["spans"]["queued"] == 0
    assert not rx.requests


@pytest.mark.parametrize("form", ["instance", "tuple", "unraised"])
def test_exception_forms(rx: Receiver, form: str) -> None:
    """An exception instance, an exc_info tuple, or an exception that was never raised all work."""
    exc: Any
    if form == "unraised":
        exc = PaymentError("never raised")
    else:
        try:
            _fail()
        except PaymentError as caught:
            exc = caught if form == "instance" else sys.exc_info()
    assert record_exception(exc) is True
    (event,) = one_span(rx).span.events
    stack = {kv.key: kv.value.string_value for kv in event.attributes}["exception.stacktrace"]
    assert stack.rstrip().endswith(
        "PaymentError: " + ("never raised" if form == "unraised" else "card declined")
    )


def test_child_of_the_active_span(rx: Receiver) -> None:
    """Inside an OpenTelemetry span the report is its child, in its trace."""
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("request") as parent:
        record_exception(PaymentError("x"))
    ctx = parent.get_span_context()
    span = one_span(rx).span
    assert span.trace_id == ctx.trace_id.to_bytes(16, "big")
    assert span.parent_span_id == ctx.span_id.to_bytes(8, "big")


def test_settings_scope_and_configure(receiver: Receiver) -> None:
    """Keyword settings and scope= apply; process defaults are re-read after configure()."""
    assert record_exception(
        PaymentError("a"), scope="payments", endpoint=receiver.endpoint, service_name="pay"
    )
    span = one_span(receiver)
    assert span.scope.name == "payments"
    assert span.resource_attributes["service.name"] == "pay"
    receiver.clear()
    highlight_logging.configure(disabled=True)
    assert record_exception(PaymentError("b")) is False
    highlight_logging.configure(endpoint=receiver.endpoint, include_exception_message=False)
    assert record_exception(PaymentError("secret detail")) is True
    span = one_span(receiver)
    assert "secret detail" not in span.span.status.message + str(span.span.events)


def test_never_raises(rx: Receiver, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad settings or attributes give False and a stderr line; hostile exceptions and values are reported."""

    class Hostile(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("nope")

        __repr__ = __str__

    assert record_exception(PaymentError("x"), no_such_setting=1) is False
    assert record_exception(PaymentError("x"), attributes=42) is False  # type: ignore[arg-type]
    assert "record_exception failed" in capsys.readouterr().err
    assert record_exception(Hostile(), attributes={"v": Unprintable()}) is True
    span = one_span(rx)
    assert span.span.name == f"{__name__}.test_never_raises.<locals>.Hostile"
