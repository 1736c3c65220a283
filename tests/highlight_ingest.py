"""A small model of highlight.io's OTLP ingest, written by us from reading their public code.

Not copied: each rule below is restated in Python from reading, in the highlight/highlight repository
(commit 5099514e, 2026-08-20): backend/otel/extract.go (``extractFields``), backend/otel/otel.go
(``HandleLog``, ``HandleTrace``, ``getBackendError``), backend/clickhouse/log_row.go
(``makeLogLevel``), sdk/highlight-go/log/util.go (``FormatAttributes``), sdk/highlight-go/otel.go
(the attribute names), backend/stacktraces/stacktraces.go (``StructureOTELStackTrace``) and
backend/public-graph/graph/resolver.go (``HandleErrorAndGroup``).  tests/core/test_highlight_rules.py
states the rules as facts, then feeds this model what our receiver got.

What it gives: the log lines, errors and trace rows a highlight.io user would see.  What it leaves
out: syslog bodies that do parse (RFC 5424), systemd map bodies, metrics, Heroku, the workspace
setting that stores log spans as traces (off by default), ``service.external``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

# --- sdk/highlight-go/otel.go: the names -------------------------------------------------------------
PROJECT_ID = "highlight.project_id"
PROJECT_ID_HEADER = "x-highlight-project"  # read as a header, and as an attribute
DEPRECATED_PROJECT_ID = "highlight_project_id"
SESSION_ID = "highlight.session_id"
DEPRECATED_SESSION_ID = "highlight_session_id"
REQUEST_ID = "highlight.trace_id"
SOURCE = "highlight.source"
DEPRECATED_SOURCE = "Source"
ERROR_URL = "URL"
ENVIRONMENT = "environment"
SEMCONV_ENVIRONMENT = "deployment.environment"  # semconv 1.25, as extract.go imports it
LOG_SEVERITY = ("level", "severity", "log.severity")  # read in this order: the last present wins
LOG_MESSAGE = ("message", "log.message")
LOG_EVENT = "log"
EXCEPTION_EVENT = "exception"
LOG_SPAN_NAMES = ("highlight.log", "highlight.go.log")  # never trace rows (workspace setting off)

ATTRIBUTE_VALUE_LIMIT = 2 << 15  # FormatAttributes cuts longer strings and appends "..."


# --- AnyValue -> Go's AsRaw() ------------------------------------------------------------------------


def raw(value: AnyValue) -> Any:
    """An AnyValue as pcommon's AsRaw() gives it: str, bool, int, float, bytes, list, dict or None."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return int(value.int_value)
    if kind == "double_value":
        return float(value.double_value)
    if kind == "bytes_value":
        return bytes(value.bytes_value)
    if kind == "array_value":
        return [raw(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: raw(kv.value) for kv in value.kvlist_value.values}
    return None


def raw_map(attributes: Sequence[KeyValue]) -> dict[str, Any]:
    return {kv.key: raw(kv.value) for kv in attributes}


# --- util.go FormatAttributes -------------------------------------------------------------------------

_PAREN_KEY = re.compile(r"(.+)\((.+)\)")


def _go_float(value: float) -> str:
    """strconv.FormatFloat(v, 'f', -1, 64): shortest digits, never an exponent."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    if "e" in text or "E" in text:
        text = format(value, "f")  # close enough for a model: no test value needs more
    return text[:-2] if text.endswith(".0") else text


def format_attributes(key: str, value: Any, depth: int = 0) -> dict[str, str]:
    """Flatten one attribute into string pairs: strings (cut), ints, floats, non-empty lists
    (``key.0``...) and non-empty maps (``key.sub``); everything else (bool, bytes, None, empty
    containers) gives nothing."""
    if depth >= 255:
        return {}
    if "(" in key:
        key = _PAREN_KEY.sub(r"\1.\2", key)
    key = key.replace(" ", "_")
    if isinstance(value, str):
        if len(value.encode()) > ATTRIBUTE_VALUE_LIMIT:
            value = value.encode()[:ATTRIBUTE_VALUE_LIMIT].decode(errors="ignore") + "..."
        return {key: value}
    if isinstance(value, bool):  # Go's AsRaw gives bool, which FormatAttributes ignores
        return {}
    if isinstance(value, int):
        return {key: str(value)}
    if isinstance(value, float):
        return {key: _go_float(value)}
    if isinstance(value, list) and value:
        out: dict[str, str] = {}
        for i, item in enumerate(value):
            out.update(format_attributes(f"{key}.{i}", item, depth + 1))
        return out
    if isinstance(value, dict) and value:
        out = {}
        for sub, item in value.items():
            for k2, v2 in format_attributes(sub, item, depth + 1).items():
                out[f"{key}.{k2}"] = v2
        return out
    return {}


# --- extract.go extractFields ---------------------------------------------------------------------------


@dataclasses.dataclass
class Fields:
    project_id: str = ""
    session_id: str = ""
    request_id: str = ""
    environment: str = ""
    service_name: str = ""
    service_version: str = ""
    source: str = "backend"
    body: str = ""
    severity: str = ""
    message: str = ""
    exception_type: str = ""
    exception_message: str = ""
    exception_stacktrace: str = ""
    error_url: str = ""
    attrs: dict[str, str] = dataclasses.field(default_factory=dict)


def _take(attrs: dict[str, str], key: str) -> str | None:
    return attrs.pop(key) if key in attrs else None


def extract(
    headers: Mapping[str, str],
    resource: Mapping[str, Any] | None = None,
    scope: Mapping[str, Any] | None = None,
    span: Mapping[str, Any] | None = None,
    event: Mapping[str, Any] | None = None,
    log: Mapping[str, Any] | None = None,
    body: str = "",
    severity_text: str = "",
) -> Fields:
    f = Fields(body=body, severity=severity_text)
    if f.body and f.body[0] != "<" and " <" in f.body:
        # a syslog line behind a token: the token is taken as the project id, the body cut
        f.project_id, rest = f.body.split(" <", 1)
        f.body = "<" + rest
        # (an RFC 5424 line would now be parsed; bodies that are not stay as cut: modelled)
    # resource, span, event, scope, log: a later map wins
    merged: dict[str, Any] = {}
    for layer in (resource, span, event, scope, log):
        merged.update(layer or {})
    for key in (DEPRECATED_SOURCE, SOURCE):
        if key in merged and merged.pop(key) == "frontend":
            f.source = "frontend"
    for key, value in merged.items():
        for k, v in format_attributes(key, value).items():
            if value != "":  # an empty string attribute is dropped
                f.attrs[k] = v
    a = f.attrs
    for key in (DEPRECATED_PROJECT_ID, PROJECT_ID_HEADER, PROJECT_ID):
        if (v := _take(a, key)) is not None:
            f.project_id = v
    if headers.get(PROJECT_ID_HEADER):
        f.project_id = headers[PROJECT_ID_HEADER]
    for key in (DEPRECATED_SESSION_ID, SESSION_ID):
        if (v := _take(a, key)) is not None:
            f.session_id = v
    if (v := _take(a, REQUEST_ID)) is not None:
        f.request_id = v
    for key in LOG_SEVERITY:
        if (v := _take(a, key)) is not None:
            f.severity = v
    for key in LOG_MESSAGE:
        if (v := _take(a, key)) is not None:
            f.message = v
    for key in ("metric.name", "metric.value"):
        _take(a, key)
    if (v := _take(a, "exception.type")) is not None:
        f.exception_type = v
    if (v := _take(a, "exception.message")) is not None:
        f.exception_message = v
        f.message = f.message or v
    if (v := _take(a, "exception.stacktrace")) is not None:
        f.exception_stacktrace = v
    if (v := _take(a, ERROR_URL)) is not None:
        f.error_url = v
    for key in (SEMCONV_ENVIRONMENT, ENVIRONMENT):
        if (v := _take(a, key)) is not None:
            f.environment = v
    if (v := _take(a, "service.name")) is not None:
        f.service_name = v
    if (v := _take(a, "service.version")) is not None:
        f.service_version = v
    if not f.project_id and a.get("fluent.tag"):
        f.project_id = a.pop("fluent.tag")
    return f


# --- log_row.go makeLogLevel -----------------------------------------------------------------------------

_LEVELS = {
    "console.error": "error",
    "window.onerror": "error",
    "trace": "trace",
    "debug": "debug",
    "warn": "warn",
    "warning": "warn",
    "error": "error",
    "fatal": "fatal",
    "panic": "panic",
}


def log_level(severity_text: str) -> str:
    """The level shown: from the severity text alone, case-insensitively; anything else is info."""
    return _LEVELS.get(severity_text.lower(), "info")


# --- stacktraces.go, Python lines only ------------------------------------------------------------------

_PY_FRAME = re.compile(r' {2}File "(.+)", line (\d+), in (\w+)')


@dataclasses.dataclass
class Frame:
    file: str | None
    line: int | None
    function: str | None
    content: str | None


def frames(stacktrace: str) -> list[Frame]:
    """Python frames as their parser structures them, innermost first.  A ``File`` line whose
    function does not start with a word character is not parsed: it becomes a frame of text."""
    out: list[Frame] = []
    current: Frame | None = None
    lines = stacktrace.split("\n")
    python = False
    for i, line in enumerate(lines):
        if line == "Traceback (most recent call last):":
            python = True
            continue
        if i == 0 or not line or (python and i == len(lines) - 2):
            continue
        if python and re.fullmatch(r"\s*[\^~]+\s*", line):
            continue
        if current is None:
            current = Frame(None, None, None, None)
        m = _PY_FRAME.search(line)
        if m:
            current.file, current.line, current.function = m.group(1), int(m.group(2)), m.group(3)
            continue
        if python and re.match(r"^\S.+", line):
            continue  # an exception line
        current.content = line
        out.append(current)
        current = None
    return out[::-1]


# --- otel.go: what is stored ------------------------------------------------------------------------------


@dataclasses.dataclass
class LogRow:
    project_id: str
    body: str
    level: str
    environment: str
    service_name: str
    service_version: str
    session_id: str
    trace_id: str
    attrs: dict[str, str]


@dataclasses.dataclass
class ErrorRow:
    project_id: str
    title: str  # the error's Event
    type: str
    stacktrace: str
    frames: list[Frame]
    environment: str
    service_name: str
    service_version: str
    session_id: str
    request_id: str
    trace_id: str
    span_id: str
    log: LogRow | None  # the log line it links to (its LogCursor)
    payload: dict[str, str]


@dataclasses.dataclass
class TraceRow:
    project_id: str
    name: str
    environment: str
    service_name: str
    trace_id: str
    has_errors: bool


@dataclasses.dataclass
class Shown:
    """What a highlight.io user sees."""

    logs: list[LogRow] = dataclasses.field(default_factory=list)
    errors: list[ErrorRow] = dataclasses.field(default_factory=list)
    traces: list[TraceRow] = dataclasses.field(default_factory=list)


def _error(f: Fields, trace_id: str, span_id: str, log: LogRow | None) -> ErrorRow | None:
    """getBackendError, then the resolver's first checks (HandleErrorAndGroup)."""
    if not f.exception_type and not f.exception_message:
        return None  # not an error
    if not f.session_id and not f.project_id:
        return None
    if not f.exception_message:
        return None  # the resolver rejects an error whose event is empty
    return ErrorRow(
        f.project_id,
        f.exception_message,
        f.exception_type,
        f.exception_stacktrace,
        frames(f.exception_stacktrace),
        f.environment,
        f.service_name,
        f.service_version,
        f.session_id,
        f.request_id,
        trace_id,
        span_id,
        log,
        dict(f.attrs),
    )


def _row(f: Fields, body: str, severity: str, trace_id: str) -> LogRow:
    return LogRow(
        f.project_id,
        body,
        log_level(severity),
        f.environment,
        f.service_name,
        f.service_version,
        f.session_id,
        trace_id,
        dict(f.attrs),
    )


def ingest_logs(
    request: logs_service_pb2.ExportLogsServiceRequest, headers: Mapping[str, str], shown: Shown
) -> None:
    """HandleLog: each record one log line (when it has a project), plus an error when it carries one."""
    for rl in request.resource_logs:
        resource = raw_map(rl.resource.attributes)
        for sl in rl.scope_logs:
            scope = raw_map(sl.scope.attributes)  # the scope's *name* is never read
            for record in sl.log_records:
                body = record.body.string_value if record.body.WhichOneof("value") == "string_value" else ""
                f = extract(headers, resource, scope, log=raw_map(record.attributes), body=body,
                            severity_text=record.severity_text)  # fmt: skip
                trace_id = f.request_id or record.trace_id.hex()
                if not f.project_id:
                    continue  # "otel log got no project": dropped, and the collector still answers OK
                row = _row(f, f.body, f.severity, trace_id)
                shown.logs.append(row)
                error = _error(f, trace_id, record.span_id.hex(), row)
                if error is not None:
                    shown.errors.append(error)


def ingest_spans(
    request: trace_service_pb2.ExportTraceServiceRequest, headers: Mapping[str, str], shown: Shown
) -> None:
    """HandleTrace: an ``exception`` event is a synthetic ERROR log line plus an error; a ``log`` event a
    log line; every span but the log spans a trace row."""
    for rs in request.resource_spans:
        resource = raw_map(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = raw_map(ss.scope.attributes)
            for span in ss.spans:
                span_attrs = raw_map(span.attributes)
                f = extract(headers, resource, span=span_attrs)
                trace_id = f.request_id or span.trace_id.hex()
                has_errors = False
                for event in span.events:
                    ef = extract(headers, resource, scope, span_attrs, raw_map(event.attributes))
                    if event.name == EXCEPTION_EVENT:
                        if not ef.exception_message:
                            continue  # "unexpected empty exception message"
                        row = _row(ef, ef.exception_message, "ERROR", trace_id)
                        shown.logs.append(row)
                        error = _error(ef, trace_id, span.span_id.hex(), row)
                        if error is not None:
                            has_errors = True
                            shown.errors.append(error)
                    elif event.name == LOG_EVENT:
                        shown.logs.append(_row(ef, ef.message, ef.severity or "unknown", trace_id))
                if span.name in LOG_SPAN_NAMES:
                    continue
                shown.traces.append(
                    TraceRow(f.project_id, span.name, f.environment, f.service_name, trace_id, has_errors)
                )


def show(receiver: Any, headers: Mapping[str, str] | None = None) -> Shown:
    """Everything a Receiver got, through the model, in arrival order (logs requests, then traces)."""
    shown = Shown()
    for request in receiver.requests_logs:
        ingest_logs(request, headers or {}, shown)
    for request in receiver.requests_spans:
        ingest_spans(request, headers or {}, shown)
    return shown


def as_dict(message: Any) -> dict[str, Any]:
    return dict(MessageToDict(message))
