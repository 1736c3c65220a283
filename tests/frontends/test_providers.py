"""use_otel_providers: records and exception spans through the app's own OpenTelemetry providers.

The OTel globals are set-once.  The ``otel`` fixture installs an SDK LoggerProvider and
TracerProvider (with the SDK's in-memory exporters and Simple processors, so export is
synchronous) by swapping in fresh ``Once`` guards with ``monkeypatch``, as the SDK's own tests do;
monkeypatch restores the previous globals and guards at teardown.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import _logs, trace
from opentelemetry._logs import _internal as logs_internal
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

import highlight_logging
from highlight_logging import HighlightHandler, _providers
from highlight_logging._core.convert import capture_record, to_record
from highlight_logging._core.record import Pending, Record
from highlight_logging._core.settings import Settings
from highlight_logging._devtools.receiver import any_value_to_python, attributes_to_dict
from highlight_logging._export import process as _process
from highlight_logging._export.pipeline import Pipeline
from highlight_logging._export.prepare import RecordEncoder, span_attributes
from highlight_logging._providers import ProviderPipeline


class Otel:
    def __init__(self) -> None:
        self.logs = InMemoryLogRecordExporter()
        self.spans = InMemorySpanExporter()
        self.logger_provider = LoggerProvider(resource=Resource.create({"service.name": "app"}))
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.logs))
        self.tracer_provider = TracerProvider(resource=Resource.create({"service.name": "app"}))
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))

    def finished_logs(self) -> list[ReadableLogRecord]:
        return list(self.logs.get_finished_logs())

    def finished_spans(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())


def _unset_globals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs_internal, "_LOGGER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(logs_internal, "_LOGGER_PROVIDER", None)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)


@pytest.fixture
def otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Otel]:
    o = Otel()
    _unset_globals(monkeypatch)
    _logs.set_logger_provider(o.logger_provider)
    trace.set_tracer_provider(o.tracer_provider)
    yield o
    _providers.reset_for_tests()
    o.logger_provider.shutdown()
    o.tracer_provider.shutdown()


def _handler(**settings: Any) -> HighlightHandler:
    return HighlightHandler(use_otel_providers=True, **settings)


@pytest.fixture
def log(otel: Otel) -> Iterator[logging.Logger]:
    logger = logging.getLogger("tests.providers")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = _handler()
    logger.addHandler(handler)
    yield logger
    logger.removeHandler(handler)


def _hex(n: int, width: int) -> str:
    return format(n, f"0{width}x")


def test_log_record_fields(log: logging.Logger, otel: Otel) -> None:
    """Body, severity, scope, attributes and times arrive on the app's LoggerProvider, with its resource."""
    log.warning("user %s", "ada", extra={"user_id": 7, "nested": {"a": [1, 2]}, "big": 2**70})
    (data,) = otel.finished_logs()
    rec = data.log_record
    assert rec.body == "user ada"
    assert rec.severity_number is not None and rec.severity_number.value == 13
    assert rec.severity_text == "WARNING"
    assert data.instrumentation_scope is not None and data.instrumentation_scope.name == "tests.providers"
    assert data.resource.attributes["service.name"] == "app"
    attrs = dict(rec.attributes or {})
    assert attrs["user_id"] == 7 and attrs["nested"] == {"a": (1, 2)}
    assert attrs["big"] == str(2**70)  # beyond int64: digits, as our own encoder does
    assert attrs["code.function.name"] == "test_log_record_fields"
    assert rec.timestamp is not None and rec.observed_timestamp >= rec.timestamp
    assert rec.trace_id == 0 and rec.span_id == 0
    assert otel.finished_spans() == []


def test_log_inside_a_span_carries_its_ids(log: logging.Logger, otel: Otel) -> None:
    """A record logged inside an active span carries that span's trace and span ids."""
    with trace.get_tracer("app").start_as_current_span("request") as span:
        log.info("inside")
    rec = otel.finished_logs()[0].log_record
    ctx = span.get_span_context()
    assert (rec.trace_id, rec.span_id) == (ctx.trace_id, ctx.span_id)


@pytest.mark.parametrize("in_span", [True, False])
def test_exception_span_and_correlation(log: logging.Logger, otel: Otel, in_span: bool) -> None:
    """An exception becomes an ERROR span (child of the active span, or a root) whose ids the log carries."""

    def fail() -> None:
        try:
            raise KeyError("k")
        except KeyError:
            log.exception("lookup failed")

    if in_span:
        with trace.get_tracer("app").start_as_current_span("request") as parent:
            fail()
    else:
        fail()
    spans = {s.name: s for s in otel.finished_spans()}
    exc_span = spans["KeyError"]
    (data,) = otel.finished_logs()
    rec = data.log_record
    ctx = exc_span.get_span_context()
    assert ctx is not None
    assert (rec.trace_id, rec.span_id) == (ctx.trace_id, ctx.span_id)
    if in_span:
        assert exc_span.parent is not None
        assert exc_span.parent.span_id == parent.get_span_context().span_id
        assert ctx.trace_id == parent.get_span_context().trace_id
    else:
        assert exc_span.parent is None
    assert exc_span.status.status_code == trace.StatusCode.ERROR
    assert exc_span.status.description == "'k'"
    assert (
        exc_span.instrumentation_scope is not None
        and exc_span.instrumentation_scope.name == "tests.providers"
    )
    (event,) = exc_span.events
    assert event.name == "exception"
    ev = dict(event.attributes or {})
    assert set(ev) == {"exception.type", "exception.message", "exception.stacktrace"}
    assert ev["exception.type"] == "KeyError" and ev["exception.message"] == "'k'"
    assert exc_span.start_time == exc_span.end_time == event.timestamp == rec.timestamp
    attrs = dict(rec.attributes or {})
    assert attrs["exception.stacktrace"] == ev["exception.stacktrace"]
    assert {k.split(".")[0] for k in exc_span.attributes or {}} <= {"code", "thread", "highlight"}


class _Recorder:
    """Stands in for a pipeline: keeps the Records a front end makes (converted as a sink does)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.records: list[Record] = []

    def submit(self, pending: Pending) -> None:
        self.records.append(to_record(pending, self.settings))

    def flush(self, timeout: float | None = None) -> bool:
        return True


def test_same_scrubbing_and_limits_as_the_export_worker() -> None:
    """prepare() gives exactly what the worker's encoder writes: scrubbed, truncated, limited."""
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    handler = HighlightHandler(
        max_body_length=20, attribute_value_length_limit=30, scrub_extra_keys=["pin"], backend="otel"
    )
    recorder = _Recorder(handler._binding.settings)
    handler._binding.pipeline = recorder  # type: ignore[assignment,unused-ignore]
    logger = logging.getLogger("tests.providers.prepare")
    logger.propagate = False
    logger.addHandler(handler)
    extra = {"password": "hunter2", "pin": 1234, "card": "4111 1111 1111 1111", "long": "z" * 100}
    try:
        logger.info("Bearer abcdefghijklmnopqrstuvwxyz0123 " + "x" * 40, extra=extra)
        try:
            raise ValueError("token Bearer abcdefghijklmnopqrstuvwxyz0123 leaked " + "y" * 50)
        except ValueError:
            logger.exception("failed", extra=extra)
    finally:
        logger.removeHandler(handler)
    settings = recorder.settings
    encoder = RecordEncoder(settings)
    for record in recorder.records:
        body, attrs, event_attrs = encoder.prepare(record)
        log_bytes, span_bytes = encoder.encode(record)
        encoded = LogRecord.FromString(log_bytes)
        assert body == any_value_to_python(encoded.body)
        assert attrs == attributes_to_dict(encoded.attributes)
        assert attrs["password"] == attrs["pin"] == "[scrubbed]" and "4111" not in str(attrs["card"])
        assert attrs["code.function.name"] == "test_same_scrubbing_and_limits_as_the_export_worker"
        assert {k: attrs[k] for k in event_attrs} == event_attrs
        assert (span_bytes is not None) == bool(event_attrs)
        if span_bytes is not None:
            span = Span.FromString(span_bytes)
            assert span_attributes(attrs, report=False) == attributes_to_dict(span.attributes)
            assert event_attrs == attributes_to_dict(span.events[0].attributes)


def test_settings_select_the_provider_pipeline_via_env(otel: Otel, monkeypatch: pytest.MonkeyPatch) -> None:
    """HIGHLIGHT_USE_OTEL_PROVIDERS=true (or the keyword) makes front ends use the providers."""
    monkeypatch.setenv("HIGHLIGHT_USE_OTEL_PROVIDERS", "true")
    handler = HighlightHandler()
    assert isinstance(handler._binding.get(), ProviderPipeline)
    assert isinstance(HighlightHandler(use_otel_providers=False)._binding.get(), Pipeline)
    handler.handle(logging.LogRecord("tests.env", logging.INFO, __file__, 1, "via env", None, None))
    assert [d.log_record.body for d in otel.finished_logs()] == ["via env"]
    assert handler._binding.settings not in {p.settings for p in _process.pipelines()}  # no exporter of ours


def test_record_exception_sends_only_the_span(otel: Otel) -> None:
    """A report through the providers is a span with the custom attributes and no log record."""
    assert highlight_logging.record_exception(
        ValueError("v"), attributes={"order": 9, "cart": {"n": 1}}, use_otel_providers=True
    )
    assert otel.finished_logs() == []
    (span,) = otel.finished_spans()
    attrs = dict(span.attributes or {})
    assert attrs["order"] == 9 and attrs["cart"] == '{"n":1}'  # a map becomes JSON text on a span
    assert not any(k.startswith("exception.") for k in attrs)


def test_no_feedback_loops(log: logging.Logger, otel: Otel) -> None:
    """The SDK's own loggers, suppressed instrumentation and logging from inside emit are not sent."""

    class Chatty(LogRecordProcessor):
        def on_emit(self, log_record: Any) -> None:
            log.warning("logged from inside a processor")

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    otel.logger_provider.add_log_record_processor(Chatty())
    logging.getLogger("opentelemetry.sdk.whatever").addHandler(log.handlers[0])
    try:
        logging.getLogger("opentelemetry.sdk.whatever").warning("export failed")
    finally:
        logging.getLogger("opentelemetry.sdk.whatever").removeHandler(log.handlers[0])
    token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        log.info("suppressed")
    finally:
        detach(token)
    log.info("sent")
    assert [d.log_record.body for d in otel.finished_logs()] == ["sent"]


def test_without_providers_it_warns_once_and_never_raises(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no provider set, records are discarded with one stderr line; a failing provider is counted."""
    _unset_globals(monkeypatch)
    monkeypatch.delenv("OTEL_PYTHON_LOGGER_PROVIDER", raising=False)
    pipeline = ProviderPipeline(Settings())
    record = capture_record(Settings(), 1, 20, "INFO", "s", "b", {}, [])
    pipeline.submit(record)
    pipeline.submit(record)
    assert capsys.readouterr().err.count("no OpenTelemetry LoggerProvider is set") == 1

    class Broken:
        def get_logger(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("broken provider")

    broken = ProviderPipeline(Settings(), logger_provider=Broken())
    broken.submit(record)
    assert broken.counters["logs"]["dropped"]["encode_error"] == 1
    assert "broken provider" in capsys.readouterr().err


def test_legacy_emit_api(otel: Otel) -> None:
    """A Logger whose emit() takes only a LogRecord (API < 1.35) gets one with the right ids."""
    received: list[Any] = []

    class OldLogger:
        def emit(self, record: Any) -> None:
            received.append(record)

    class OldProvider:
        def get_logger(self, name: str, *args: Any) -> OldLogger:
            return OldLogger()

    pipeline = ProviderPipeline(Settings(), logger_provider=OldProvider())
    with trace.get_tracer("app").start_as_current_span("request") as span:
        pipeline.submit(capture_record(Settings(), 5, 20, "INFO", "s", "old api", {}, [("k", "v")]))
    (rec,) = received
    assert rec.body == "old api" and rec.timestamp == 5 and dict(rec.attributes) == {"k": "v"}
    assert (rec.trace_id, rec.span_id) == (span.get_span_context().trace_id, span.get_span_context().span_id)


def test_flush_and_shutdown_leave_the_providers_running(otel: Otel, monkeypatch: pytest.MonkeyPatch) -> None:
    """flush() force-flushes both providers; shutdown() stops only us, the app's providers keep working."""
    calls: list[str] = []
    monkeypatch.setattr(otel.logger_provider, "force_flush", lambda ms=0: calls.append("logs") or True)
    monkeypatch.setattr(otel.tracer_provider, "force_flush", lambda ms=0: calls.append("spans") or True)
    pipeline = ProviderPipeline(Settings())
    assert pipeline.flush(1) and calls == ["logs", "spans"]
    assert pipeline.shutdown(1)
    pipeline.submit(capture_record(Settings(), 1, 20, "INFO", "s", "late", {}, []))
    assert pipeline.counters["logs"]["dropped"]["shutdown"] == 1
    _logs.get_logger("app").emit(body="still works")
    assert [d.log_record.body for d in otel.finished_logs()] == ["still works"]
    assert os.environ.get("HIGHLIGHT_USE_OTEL_PROVIDERS") is None
