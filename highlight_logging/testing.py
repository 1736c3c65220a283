"""Capture what highlight_logging would export, in memory, for your own tests.

In the spirit of ``structlog.testing.capture_logs``::

    from highlight_logging.testing import capture

    def test_checkout_logs_the_order(client):
        with capture() as cap:
            client.post("/checkout")
        assert cap.logs[0]["body"] == "order placed"
        assert cap.logs[0]["attributes"]["order_id"] == 42
        assert not cap.spans  # no exception

While a capture is active, every front end (``HighlightHandler``, ``StructlogProcessor``,
``LoguruSink``) and :func:`highlight_logging.record_exception` hands its records to the capture
instead of exporting them; nothing reaches a collector.  Records are converted exactly as the
export worker converts them (the worker's own encoder, then decoded with the opentelemetry-proto
classes), so scrubbing, truncation and attribute limits apply as in production, with each front
end's own settings, and in each front end's output shape (``backend``: in the ``highlight``
shape an exception arrives on its log record only, and ``spans`` stays empty).  A capture also
records what a disabled front end (``disabled=True``, ``OTEL_SDK_DISABLED``) would have sent.

Thread safety: a capture is process-wide, not per thread or task, so records logged on other
threads (a thread pool, a server thread in a live-server test) are captured too; records are
appended under a lock and each list only grows while the capture is active.  Captures nest: the
innermost active one receives the records.  Two captures active at once on different threads
see each other's records (the innermost wins), so don't run capturing tests concurrently in one
process (pytest-xdist's processes are fine).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, TypedDict

from highlight_logging._core import convert as _convert
from highlight_logging._core.record import Pending
from highlight_logging._core.settings import Settings
from highlight_logging._export.prepare import RecordEncoder
from highlight_logging._frontends import binding as _binding

__all__ = ["Capture", "CapturedEvent", "CapturedLog", "CapturedSpan", "capture"]


class CapturedLog(TypedDict):
    """One log record as the collector would receive it."""

    body: Any
    severity_number: int
    severity_text: str
    scope: str
    attributes: dict[str, Any]  # exception.*, highlight.*, code.*, thread.* and yours
    trace_id: str  # 32 hex digits, or "" outside any trace
    span_id: str  # 16 hex digits, or ""
    time_ns: int
    dropped_attributes_count: int


class CapturedEvent(TypedDict):
    name: str
    time_ns: int
    attributes: dict[str, Any]


class CapturedSpan(TypedDict):
    """One exception span: status ERROR and one ``exception`` event."""

    name: str
    scope: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for the root of a new trace
    start_time_ns: int
    end_time_ns: int
    attributes: dict[str, Any]
    status: str  # "ERROR"
    status_message: str
    events: list[CapturedEvent]


class Capture:
    """What was captured: :attr:`logs` and :attr:`spans` (plain dicts), in submission order.

    :attr:`errors` holds exceptions raised while converting a record (expected to stay empty).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.logs: list[CapturedLog] = []
        self.spans: list[CapturedSpan] = []
        self.errors: list[Exception] = []
        self._sinks: dict[Settings, _Sink] = {}

    def clear(self) -> None:
        """Forget everything captured so far."""
        with self._lock:
            self.logs.clear()
            self.spans.clear()
            self.errors.clear()

    def sink(self, settings: Settings) -> _Sink:
        """The object a front end with these settings submits to (``Binding.get()`` returns it)."""
        sink = self._sinks.get(settings)
        if sink is None:
            with self._lock:
                sink = self._sinks.get(settings)
                if sink is None:
                    sink = self._sinks[settings] = _Sink(self, settings)
        return sink

    def _add(self, log: CapturedLog | None, span: CapturedSpan | None) -> None:
        with self._lock:
            if log is not None:
                self.logs.append(log)
            if span is not None:
                self.spans.append(span)

    def _error(self, error: Exception) -> None:
        with self._lock:
            self.errors.append(error)


class _Sink:
    """A pipeline look-alike: converts on the caller's thread, exports nothing."""

    def __init__(self, capture: Capture, settings: Settings) -> None:
        self.capture = capture
        self.settings = settings
        self._encoder = RecordEncoder(settings)  # what the export worker's general path sends

    def submit(self, pending: Pending) -> None:
        try:
            record = _convert.to_record(pending, self.settings)
            log_bytes, span_bytes = self._encoder.encode(record)
            # An error report is a span only, except in the highlight shape (a log carries it).
            sent_log = not record.span_only or self._encoder.highlight
            log = _decode_log(record.scope, log_bytes) if sent_log else None
            span = None if span_bytes is None else _decode_span(record.scope, span_bytes)
        except Exception as error:
            self.capture._error(error)
            return
        self.capture._add(log, span)

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def shutdown(self, timeout: float | None = None) -> bool:
        return True


def _decode_log(scope: str, data: bytes) -> CapturedLog:
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

    from highlight_logging._devtools.receiver import any_value_to_python, attributes_to_dict

    rec = LogRecord.FromString(data)
    return {
        "body": any_value_to_python(rec.body),
        "severity_number": int(rec.severity_number),
        "severity_text": str(rec.severity_text),
        "scope": scope,
        "attributes": attributes_to_dict(rec.attributes),
        "trace_id": bytes(rec.trace_id).hex(),
        "span_id": bytes(rec.span_id).hex(),
        "time_ns": int(rec.time_unix_nano),
        "dropped_attributes_count": int(rec.dropped_attributes_count),
    }


def _decode_span(scope: str, data: bytes) -> CapturedSpan:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    from highlight_logging._devtools.receiver import attributes_to_dict

    span = Span.FromString(data)
    return {
        "name": str(span.name),
        "scope": scope,
        "trace_id": bytes(span.trace_id).hex(),
        "span_id": bytes(span.span_id).hex(),
        "parent_span_id": bytes(span.parent_span_id).hex(),
        "start_time_ns": int(span.start_time_unix_nano),
        "end_time_ns": int(span.end_time_unix_nano),
        "attributes": attributes_to_dict(span.attributes),
        "status": str(Status.StatusCode.Name(span.status.code)).removeprefix("STATUS_CODE_"),
        "status_message": str(span.status.message),
        "events": [
            {
                "name": str(e.name),
                "time_ns": int(e.time_unix_nano),
                "attributes": attributes_to_dict(e.attributes),
            }
            for e in span.events
        ],
    }


# --- the process-wide stack of active captures -------------------------------------------------------

_stack: list[Capture] = []
_stack_lock = threading.Lock()


def _install() -> None:
    _binding.set_capture(_stack[-1] if _stack else None)


@contextlib.contextmanager
def capture() -> Iterator[Capture]:
    """Capture every record in memory instead of exporting it, until the block ends."""
    cap = Capture()
    with _stack_lock:
        _stack.append(cap)
        _install()
    try:
        yield cap
    finally:
        with _stack_lock:
            # Exits need not be LIFO across threads: remove this capture wherever it is.
            for i in range(len(_stack) - 1, -1, -1):
                if _stack[i] is cap:
                    del _stack[i]
                    break
            _install()
