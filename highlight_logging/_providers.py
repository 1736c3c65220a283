"""Route records through the app's own OpenTelemetry providers (``use_otel_providers=True``).

For apps that already run an OpenTelemetry SDK, e.g. under ``opentelemetry-instrument`` or after
``opentelemetry._logs.set_logger_provider(...)`` / ``opentelemetry.trace.set_tracer_provider(...)``:
each record becomes a log record emitted on the global ``LoggerProvider`` and each exception a
span started on the global ``TracerProvider``, so they share the app's resource, processors,
exporters and sampling.  Our own queue, worker and exporter are not used, and the export settings
(endpoint, headers, batching, ``stats()``) do not apply; the record settings (limits, scrubbing,
``include_exception_message``) still do.

Unlike our pipeline, this runs on the caller's thread: the provider's processor does the
batching (use ``BatchLogRecordProcessor``/``BatchSpanProcessor``; a ``Simple*`` processor exports
synchronously inside the logging call).

Correlation is kept: the exception span is started as a child of the span that was active when
the record was made, and the log record carries the started span's trace and span ids, so the
log line, the error and the request trace link up as with our pipeline.

Loops are avoided: records from ``opentelemetry.*`` loggers (the SDK's own export warnings), records
made while instrumentation is suppressed (the SDK's export threads), and records logged from
inside an emit on the same thread are not sent.
"""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as _otel_context
from opentelemetry import trace as _trace
from opentelemetry.util.types import AnyValue

from highlight_logging._core import diag as _diag
from highlight_logging._core.convert import to_record
from highlight_logging._core.record import INT64_MAX, INT64_MIN, Attributes, Pending, Record, Value
from highlight_logging._core.settings import Settings
from highlight_logging._export import otel_flush, process
from highlight_logging._export.counters import new_counters
from highlight_logging._export.prepare import RecordEncoder, span_attributes

if TYPE_CHECKING:  # opentelemetry._logs is imported when a record is first emitted
    from opentelemetry._logs import Logger, LoggerProvider, LogRecord, SeverityNumber

__all__ = ["ProviderPipeline", "get"]


class _Busy(threading.local):
    active = False


_busy = _Busy()
_keyword_emit: dict[type, bool] = {}


class ProviderPipeline:
    """The pipeline interface front ends use (``settings``, ``submit``, ``flush``, ``shutdown``),
    backed by the global (or the given) OpenTelemetry ``LoggerProvider`` and ``TracerProvider``."""

    def __init__(
        self,
        settings: Settings,
        *,
        logger_provider: LoggerProvider | None = None,
        tracer_provider: _trace.TracerProvider | None = None,
    ) -> None:
        self.settings = settings
        self._encoder = RecordEncoder(settings)  # the same attributes as our own pipeline sends
        self._lock = threading.Lock()
        self.counters = new_counters()
        self._fixed_lp = logger_provider  # explicit providers: for tests and embedding
        self._fixed_tp = tracer_provider
        self._lp: LoggerProvider | None = None
        self._tp: _trace.TracerProvider | None = None
        self._loggers: dict[str, Logger] = {}
        self._tracers: dict[str, _trace.Tracer] = {}
        self._stopped = False

    # --- providers, looked up per record so a provider set after us is picked up -------------------

    def _logger(self, scope: str) -> Logger:
        from opentelemetry import _logs

        provider = self._fixed_lp or _logs.get_logger_provider()
        if provider is not self._lp:
            self._lp, self._loggers = provider, {}
            if type(provider).__name__ in ("ProxyLoggerProvider", "NoOpLoggerProvider"):
                _diag.warn(
                    "use_otel_providers is on but no OpenTelemetry LoggerProvider is set: "
                    "log records are discarded until one is",
                    key="providers:no-logger-provider",
                )
        logger = self._loggers.get(scope)
        if logger is None:
            logger = self._loggers[scope] = provider.get_logger(scope)
        return logger

    def _tracer(self, scope: str) -> _trace.Tracer:
        provider = self._fixed_tp or _trace.get_tracer_provider()
        if provider is not self._tp:
            self._tp, self._tracers = provider, {}
        tracer = self._tracers.get(scope)
        if tracer is None:
            tracer = self._tracers[scope] = provider.get_tracer(scope)
        return tracer

    # --- the caller's side ------------------------------------------------------------------------

    def submit(self, pending: Pending) -> None:
        """Emit the record (and its exception span) on the providers; never raises."""
        spans = 1 if pending.exception is not None else 0
        logs = 0 if pending.span_only else 1
        if self._stopped:
            self._count("dropped", logs, spans, "shutdown")
            return
        if (
            _busy.active
            or pending.scope.startswith("opentelemetry")
            or _otel_context.get_value(_otel_context._SUPPRESS_INSTRUMENTATION_KEY)
        ):
            return  # the SDK logging about its own export: sending it would loop
        _busy.active = True
        try:
            self._emit(to_record(pending, self.settings), logs)
            self._count("exported", logs, spans)
        except Exception as exc:
            self._count("dropped", logs, spans, "encode_error")
            _diag.warn(
                f"could not emit a record on the OpenTelemetry providers: {type(exc).__name__}: {exc}",
                key=f"providers:{type(exc).__name__}",
                every=60.0,
            )
        finally:
            _busy.active = False

    def _count(self, what: str, logs: int, spans: int, reason: str = "") -> None:
        with self._lock:
            for signal, n in (("logs", logs), ("spans", spans)):
                c = self.counters[signal]
                c["queued"] += n
                if reason:
                    c["dropped"][reason] += n
                else:
                    c["exported"] += n

    def _emit(self, record: Record, logs: int) -> None:
        body, attrs, event_attrs = self._encoder.prepare(record)
        if self.settings.project_id:
            attrs["highlight.project_id"] = self.settings.project_id
        trace_id = int.from_bytes(record.trace_id, "big") if record.trace_id else 0
        span_id = int.from_bytes(record.span_id, "big") if record.span_id else 0
        span: _trace.Span | None = None
        exc = record.exception
        if exc is not None:
            parent = int.from_bytes(record.parent_span_id, "big") if record.parent_span_id else 0
            span_attrs = span_attributes(attrs, report=not logs)
            span = self._tracer(record.scope).start_span(
                exc.type,
                context=_context_for(trace_id, parent, record.flags),
                attributes={
                    k: v for k, v in ((k, _span_value(v)) for k, v in span_attrs.items()) if v is not None
                },
                start_time=record.time_ns,
                record_exception=False,
                set_status_on_exception=False,
            )
            span.add_event("exception", attributes=event_attrs, timestamp=record.time_ns)
            span.set_status(
                _trace.Status(_trace.StatusCode.ERROR, str(event_attrs.get("exception.message", exc.type)))
            )
            started = span.get_span_context()
            if started.is_valid:
                log_context = _trace.set_span_in_context(span, _otel_context.Context())
            else:  # a no-op tracer: link the log to the active span, as without an exception
                log_context = _context_for(trace_id, parent, record.flags)
        else:
            log_context = _context_for(trace_id, span_id, record.flags)
        try:
            if logs:
                self._emit_log(record, body, attrs, log_context)
        finally:
            if span is not None:
                span.end(end_time=record.time_ns)

    def _emit_log(self, record: Record, body: str, attrs: Attributes, context: _otel_context.Context) -> None:
        from opentelemetry._logs import SeverityNumber

        logger = self._logger(record.scope)
        try:
            severity = SeverityNumber(record.severity_number)
        except ValueError:
            severity = SeverityNumber.UNSPECIFIED
        log_attrs = {k: _plain(v) for k, v in attrs.items()}
        if _emits_keywords(logger):
            logger.emit(
                timestamp=record.time_ns,
                observed_timestamp=record.observed_ns,
                context=context,
                severity_number=severity,
                severity_text=record.severity_text,
                body=body,
                attributes=log_attrs,
            )
        else:
            logger.emit(_legacy_log_record(logger, record, body, log_attrs, context, severity))

    # --- flush and shutdown: the providers belong to the app; we only flush them ------------------

    def flush(self, timeout: float | None = None) -> bool:
        """``force_flush`` both providers within ``timeout`` (default ``shutdown_timeout``)."""
        import time

        from opentelemetry import _logs

        if timeout is None:
            timeout = self.settings.shutdown_timeout
        deadline = time.monotonic() + max(timeout, 0)
        ok = True
        for provider in (
            self._fixed_lp or _logs.get_logger_provider(),
            self._fixed_tp or _trace.get_tracer_provider(),
        ):
            force_flush = getattr(provider, "force_flush", None)
            if callable(force_flush):
                try:
                    left = int(max(deadline - time.monotonic(), 0) * 1000)
                    ok = force_flush(left) is not False and ok
                except Exception:
                    ok = False
        return ok

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then drop later records.  The providers are not shut down: the app owns them."""
        ok = self.flush(timeout)
        self._stopped = True
        return ok


def _context_for(trace_id: int, span_id: int, flags: int) -> _otel_context.Context:
    """A Context whose current span has these ids: the active one when it matches (keeping its
    trace state), else a non-recording stand-in; an explicitly invalid span when there are none."""
    if not trace_id or not span_id:
        return _trace.set_span_in_context(_trace.INVALID_SPAN, _otel_context.Context())
    current = _trace.get_current_span()
    sc = current.get_span_context()
    if sc.trace_id == trace_id and sc.span_id == span_id:
        return _otel_context.get_current()
    stand_in = _trace.NonRecordingSpan(
        _trace.SpanContext(trace_id, span_id, is_remote=False, trace_flags=_trace.TraceFlags(flags & 0xFF))
    )
    return _trace.set_span_in_context(stand_in, _otel_context.Context())


def _plain(value: Value) -> AnyValue:
    """A log attribute value any exporter can encode: integers beyond 64 bits become their digits."""
    if type(value) is int:
        return value if INT64_MIN <= value <= INT64_MAX else str(value)
    if type(value) is list:
        return [_plain(v) for v in value]
    if type(value) is dict:
        return {k: _plain(v) for k, v in value.items()}
    return value


def _span_value(value: Value) -> AnyValue:
    """A span attribute value in the classic attribute types (primitives and homogeneous lists),
    which every SDK version accepts; None is left out, anything else becomes JSON text."""
    if value is None or type(value) in (str, bool, float):
        return value
    if type(value) is int:
        return _plain(value)
    if type(value) is bytes:
        return value.decode("utf-8", "backslashreplace")
    if type(value) is list and value:
        kinds = {type(v) for v in value}
        if len(kinds) == 1 and kinds <= {str, bool, float, int}:
            return [_plain(v) for v in value]
    return json.dumps(_plain(value), default=str, ensure_ascii=False, separators=(",", ":"))


def _emits_keywords(logger: Logger) -> bool:
    """opentelemetry-api >= 1.35: ``Logger.emit(timestamp=..., body=..., context=...)``."""
    kind = type(logger)
    known = _keyword_emit.get(kind)
    if known is None:
        try:
            known = "body" in inspect.signature(logger.emit).parameters
        except (TypeError, ValueError):
            known = False
        _keyword_emit[kind] = known
    return known


def _legacy_log_record(
    logger: Logger,
    record: Record,
    body: str,
    attrs: Mapping[str, AnyValue],
    context: _otel_context.Context,
    severity: SeverityNumber,
) -> LogRecord:
    """A LogRecord for opentelemetry-api < 1.35, whose ``emit`` takes a record (best effort)."""
    sc = _trace.get_current_span(context).get_span_context()
    fields: dict[str, Any] = {
        "timestamp": record.time_ns,
        "observed_timestamp": record.observed_ns,
        "trace_id": sc.trace_id,
        "span_id": sc.span_id,
        "trace_flags": sc.trace_flags,
        "severity_text": record.severity_text,
        "severity_number": severity,
        "body": body,
        "attributes": dict(attrs),
    }
    try:
        from opentelemetry.sdk._logs import LogRecord as SdkLogRecord  # type: ignore[attr-defined]

        resource = getattr(logger, "resource", None) or getattr(logger, "_resource", None)
        legacy: LogRecord = SdkLogRecord(resource=resource, **fields)
        return legacy
    except ImportError:
        from opentelemetry._logs import LogRecord

        return LogRecord(**fields)


# --- the registry: one ProviderPipeline per distinct settings -----------------------------------------

_registry: dict[Settings, ProviderPipeline] = {}
_registry_lock = threading.Lock()


def get(settings: Settings) -> ProviderPipeline:
    pipeline = _registry.get(settings)
    if pipeline is None:
        with _registry_lock:
            pipeline = _registry.get(settings)
            if pipeline is None:
                pipeline = _registry[settings] = ProviderPipeline(settings)
                # Exit and SIGTERM flush the app's providers (_export.otel_flush), as for our own pipeline.
                process.ensure_exit_hook()
                process.hook_sigterm()
    return pipeline


def pipelines() -> list[ProviderPipeline]:
    with _registry_lock:
        return list(_registry.values())


def _settings() -> list[Settings]:
    return [p.settings for p in pipelines()]


otel_flush.add_settings_source(_settings)  # exit waits as long as our front ends' shutdown_timeout


def reset_for_tests() -> None:
    with _registry_lock:
        _registry.clear()
