"""OTLP protobuf, written directly on the wire format.

Why not the generated message classes: building an OTLP ``LogRecord`` through them costs 10-20 us
per record plus 7 us to serialize (measured here; see ``benchmarks/encode.py``), and the OTel
SDK's ``encode_logs()`` 29-54 us, all under the GIL in the worker, which is most of the SDK
handler's CPU per record.  Writing the few fields we need straight to bytes costs a few
microseconds, and keys, severities and the resource are encoded once and reused.  The tests decode
every request with the opentelemetry-proto classes, so the two can never drift apart unnoticed.

Field numbers are from opentelemetry/proto/{common,resource,logs,trace}/v1/*.proto.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from highlight_logging._record import Attributes, Value

_Q = struct.Struct("<Q")
_D = struct.Struct("<d")
_I = struct.Struct("<I")
_TIMES = struct.Struct("<BQBQ")  # LogRecord.time_unix_nano (1) and observed_time_unix_nano (11)
_SPAN_TIMES = struct.Struct("<BQBQ")  # Span.start (7) and end (8)

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_SMALL = [bytes([i]) for i in range(128)]


def varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n] if n >= 0 else varint(n & 0xFFFFFFFFFFFFFFFF)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    n = len(payload)
    return tag + (_SMALL[n] if n < 128 else varint(n)) + payload


def text(value: str) -> bytes:
    """UTF-8; a lone surrogate (not valid UTF-8, so a collector rejects it) becomes ``\\udXXX``."""
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace")


# --- AnyValue (common.proto): string 1, bool 2, int 3, double 4, array 5, kvlist 6, bytes 7 -------


def any_value(value: Value) -> bytes:
    kind = type(value)
    if kind is str:
        return field(b"\x0a", text(value))  # type: ignore[arg-type]
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind is int:
        if _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
            return b"\x18" + varint(value)  # type: ignore[arg-type]
        return field(b"\x0a", str(value).encode())  # beyond int64: keep every digit, as text
    if kind is float:
        return b"\x21" + _D.pack(value)
    if kind is bytes:
        return field(b"\x3a", value)  # type: ignore[arg-type]
    if kind is list:
        return field(b"\x2a", b"".join([field(b"\x0a", any_value(v)) for v in value]))  # type: ignore[union-attr]
    if kind is dict:
        return field(b"\x32", b"".join([field(b"\x0a", key_value(k, v)) for k, v in value.items()]))  # type: ignore[union-attr]
    if value is None:
        return b""  # an empty AnyValue is OTLP's null
    return field(b"\x0a", text(str(value)))


_key_cache: dict[str, bytes] = {}


def _key(key: str) -> bytes:
    encoded = _key_cache.get(key)
    if encoded is None:
        if len(_key_cache) > 8192:  # user keys are usually few; bound it for the ones that are not
            _key_cache.clear()
        encoded = _key_cache[key] = field(b"\x0a", text(key))
    return encoded


def key_value(key: str, value: Value) -> bytes:
    """KeyValue: key 1, value 2."""
    return _key(key) + field(b"\x12", any_value(value))


def attributes(tag: bytes, attrs: Attributes) -> bytes:
    """Repeated KeyValue under ``tag``."""
    return b"".join([field(tag, _key(k) + field(b"\x12", any_value(v))) for k, v in attrs.items()])


# --- Resource and scope -----------------------------------------------------------------------------


def resource(attrs: Attributes) -> bytes:
    """Resource: attributes 1."""
    return attributes(b"\x0a", attrs)


def scope(name: str, version: str = "") -> bytes:
    """InstrumentationScope: name 1, version 2."""
    out = field(b"\x0a", text(name))
    if version:
        out += field(b"\x12", text(version))
    return out


# --- LogRecord (logs.proto) -------------------------------------------------------------------------
# time 1 (fixed64), severity_number 2, severity_text 3, body 5, attributes 6, dropped 7,
# flags 8 (fixed32), trace_id 9, span_id 10, observed_time 11 (fixed64)

_severity_cache: dict[tuple[int, str], bytes] = {}


def severity(number: int, name: str) -> bytes:
    key = (number, name)
    encoded = _severity_cache.get(key)
    if encoded is None:
        if len(_severity_cache) > 1024:
            _severity_cache.clear()
        encoded = _severity_cache[key] = b"\x10" + varint(number) + field(b"\x1a", text(name))
    return encoded


def log_record(
    time_ns: int,
    observed_ns: int,
    severity_number: int,
    severity_text: str,
    body: str,
    attrs: Attributes,
    dropped: int,
    trace_id: bytes,
    span_id: bytes,
    flags: int,
) -> bytes:
    parts = [
        _TIMES.pack(0x09, time_ns, 0x59, observed_ns),
        severity(severity_number, severity_text),
        field(b"\x2a", field(b"\x0a", text(body))),
        attributes(b"\x32", attrs),
    ]
    if dropped:
        parts.append(b"\x38" + varint(dropped))
    if trace_id:
        parts.append(b"\x45" + _I.pack(flags & 0xFF))
        parts.append(field(b"\x4a", trace_id))
        parts.append(field(b"\x52", span_id))
    return b"".join(parts)


# --- Span (trace.proto) -----------------------------------------------------------------------------
# trace_id 1, span_id 2, parent_span_id 4, name 5, kind 6, start 7, end 8 (fixed64), attributes 9,
# dropped 10, events 11, status 15, flags 16 (fixed32)
# Event: time 1 (fixed64), name 2, attributes 3.   Status: message 2, code 3 (2 = ERROR)

SPAN_KIND_INTERNAL = 1
STATUS_ERROR = 2


def exception_span(
    trace_id: bytes,
    span_id: bytes,
    parent_span_id: bytes,
    flags: int,
    name: str,
    time_ns: int,
    attrs: Attributes,
    event_attrs: Attributes,
    status_message: str,
) -> bytes:
    """An ended span with status ERROR and one ``exception`` event."""
    event = b"\x09" + _Q.pack(time_ns) + field(b"\x12", b"exception") + attributes(b"\x1a", event_attrs)
    parts = [
        field(b"\x0a", trace_id),
        field(b"\x12", span_id),
    ]
    if parent_span_id:
        parts.append(field(b"\x22", parent_span_id))
    parts += [
        field(b"\x2a", text(name)),
        b"\x30" + varint(SPAN_KIND_INTERNAL),
        _SPAN_TIMES.pack(0x39, time_ns, 0x41, time_ns),
        attributes(b"\x4a", attrs),
        field(b"\x5a", event),
        field(b"\x7a", field(b"\x12", text(status_message)) + b"\x18" + varint(STATUS_ERROR)),
        b"\x85\x01" + _I.pack(flags & 0xFF),
    ]
    return b"".join(parts)


# --- Requests ---------------------------------------------------------------------------------------
# ExportLogsServiceRequest: resource_logs 1; ResourceLogs: resource 1, scope_logs 2;
# ScopeLogs: scope 1, log_records 2.  The trace side has the same shape.

REQUEST_OVERHEAD = 64  # tags and lengths around the resource and each scope, an over-estimate


def request(resource_bytes: bytes, by_scope: Iterable[tuple[bytes, list[bytes]]]) -> bytes:
    """``by_scope``: (encoded InstrumentationScope, encoded records) pairs."""
    scopes = b"".join(
        [
            field(b"\x12", field(b"\x0a", scope_bytes) + b"".join([field(b"\x12", r) for r in records]))
            for scope_bytes, records in by_scope
        ]
    )
    return field(b"\x0a", field(b"\x0a", resource_bytes) + scopes)
