"""OTLP protobuf, written directly on the wire format.

Why not the generated message classes: building an OTLP ``LogRecord`` through them, or the OTel
SDK's ``encode_logs()``, costs several times more, under the GIL in the worker.  Writing the few
fields we need straight to bytes is cheap because keys, severities, the resource and each call
site's ``code.*``/``thread.*`` attributes are encoded once and reused (``benchmarks/encode.py``;
figures in docs/performance.md).  The tests decode every request with the opentelemetry-proto
classes, so the two can never drift apart unnoticed.

Field numbers are from opentelemetry/proto/{common,resource,logs,trace}/v1/*.proto.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from highlight_logging._core.record import INT64_MAX, INT64_MIN, Attributes, Site, Value

_Q = struct.Struct("<Q")
_D = struct.Struct("<d")
_I = struct.Struct("<I")
_TIMES = struct.Struct("<BQBQ")  # LogRecord.time_unix_nano (1) and observed_time_unix_nano (11)
_SPAN_TIMES = struct.Struct("<BQBQ")  # Span.start (7) and end (8)

_SMALL = [bytes([i]) for i in range(128)]
CACHE_MAX = 4096  # entries per cache below; cleared when full (keys repeat, so a rare reset is cheap)


def varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n] if n >= 0 else varint(n & 0xFFFFFFFFFFFFFFFF)
    if n < 2097152:  # two or three bytes: most lengths and counters, without the loop
        if n < 16384:
            return bytes((n & 0x7F | 0x80, n >> 7))
        return bytes((n & 0x7F | 0x80, (n >> 7) & 0x7F | 0x80, n >> 14))
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
        if INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
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
    parts: list[bytes] = []
    add_attributes(parts, tag, attrs)
    return b"".join(parts)


_kv_heads: dict[str, bytes] = {}
_STRING_HEAD = [bytes((n + 2, 0x0A, n)) for n in range(126)]  # AnyValue length, string tag, length
_INT_HEAD = [bytes((n + 1, 0x18)) for n in range(11)]  # AnyValue length, int tag (then the varint)


def _kv_head(key: str) -> bytes:
    """KeyValue.key (field 1) and the tag of KeyValue.value (field 2): what precedes every value."""
    if len(_kv_heads) > 8192:  # user keys are usually few; bound it for the ones that are not
        _kv_heads.clear()
    head = _kv_heads[key] = field(b"\x0a", text(key)) + b"\x12"
    return head


def add_attributes(parts: list[bytes], tag: bytes, attrs: Attributes) -> None:
    """Append ``attrs`` as repeated KeyValue fields under ``tag`` to ``parts``, for one join.

    The worker's hot loop, once per attribute: for short strings and int64s, by far the most
    common values, every length is a single byte known in advance, so the pieces go straight into
    ``parts`` with no intermediate bytes objects.
    """
    heads = _kv_heads
    for k, v in attrs.items():
        head = heads.get(k) or _kv_head(k)
        kind = type(v)
        if kind is str:
            string: str = v  # type: ignore[assignment]  # narrowed by the type() test
            try:
                raw = string.encode()
            except UnicodeEncodeError:
                raw = text(string)
            n = len(raw)
            if n < 126 and len(head) + 3 + n < 128:
                parts += (tag, _SMALL[len(head) + 3 + n], head, _STRING_HEAD[n], raw)
                continue
            value = field(b"\x0a", raw)
        elif kind is int and 0 <= v <= INT64_MAX:  # type: ignore[operator]
            number: int = v  # type: ignore[assignment]
            if number < 128:
                digits = _SMALL[number]
            elif number < 16384:  # two bytes, without the call
                digits = bytes((number & 0x7F | 0x80, number >> 7))
            else:
                digits = varint(number)
            if len(head) + 2 + len(digits) < 128:
                parts += (tag, _SMALL[len(head) + 2 + len(digits)], head, _INT_HEAD[len(digits)], digits)
                continue
            value = b"\x18" + digits
        else:
            value = any_value(v)
        kv = head + varint(len(value)) + value
        parts += (tag, varint(len(kv)), kv)


# --- the call site: code.* and thread.*, encoded once per distinct site ----------------------------

site_cache: dict[Site, bytes] = {}


def site_attributes(site: Site) -> bytes:
    """A record's :data:`~highlight_logging._core.record.Site` as LogRecord attributes (field 6).

    Every record of a call site on one thread repeats the same five values, and the thread id
    alone is a 7-byte varint: encoded once here, they cost one dict lookup per record
    (``site_cache[site]`` in :func:`log_record`).
    """
    encoded = attributes(b"\x32", site_dict(site))
    try:
        if len(site_cache) >= CACHE_MAX:
            site_cache.clear()
        site_cache[site] = encoded
    except TypeError:
        pass  # an unhashable value (a filter set record.lineno to a list): encoded every time
    return encoded


def site_dict(site: Site) -> Attributes:
    """The site's attributes as a plain dict (for spans, and for merging with user attributes)."""
    return dict(zip(site[0], site[1:], strict=False))


# --- Resource and scope -----------------------------------------------------------------------------


def resource(attrs: Attributes) -> bytes:
    """Resource: attributes 1."""
    return attributes(b"\x0a", attrs)


def scope(name: str, version: str = "", attrs: Attributes | None = None) -> bytes:
    """InstrumentationScope: name 1, version 2, attributes 3."""
    out = field(b"\x0a", text(name))
    if version:
        out += field(b"\x12", text(version))
    if attrs:
        out += attributes(b"\x1a", attrs)
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


# Body (field 5) headers for a string body of n < 126 UTF-8 bytes: tag, AnyValue length, string tag, n.
_SHORT_BODY = [b"\x2a" + bytes((n + 2, 0x0A, n)) for n in range(126)]


def log_record(
    time_ns: int,
    observed_ns: int,
    severity_number: int,
    severity_text: str,
    body_text: str,
    attrs: Attributes,
    dropped: int,
    trace_id: bytes,
    span_id: bytes,
    flags: int,
    site: Site | None = None,
) -> bytes:
    """One LogRecord; ``site`` (code.*/thread.* values) is written before ``attrs``."""
    try:
        raw = body_text.encode()
    except UnicodeEncodeError:
        raw = text(body_text)
    n = len(raw)
    parts = [
        _TIMES.pack(0x09, time_ns, 0x59, observed_ns),
        _severity_cache.get((severity_number, severity_text)) or severity(severity_number, severity_text),
        _SHORT_BODY[n] if n < 126 else b"\x2a" + varint(n + 1 + len(varint(n))) + b"\x0a" + varint(n),
        raw,
    ]
    if site is not None:
        try:
            parts.append(site_cache[site])
        except (KeyError, TypeError):  # a new site, or one that cannot be a dict key
            parts.append(site_attributes(site))
    if attrs:
        add_attributes(parts, b"\x32", attrs)
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


# ScopeLogs.log_records (field 2) tag and length for records under 2 KiB, the usual size.
_RECORD_HEAD = [b"\x12" + varint(n) for n in range(2048)]


def request(resource_bytes: bytes, by_scope: Iterable[tuple[bytes, list[bytes]]]) -> bytes:
    """``by_scope``: (encoded InstrumentationScope, encoded records) pairs."""
    parts = []
    heads = _RECORD_HEAD
    for scope_bytes, records in by_scope:
        # One flat list of tags, lengths and records, joined once: no per-record copies.
        body: list[bytes] = [b"\x0a", varint(len(scope_bytes)), scope_bytes]
        body += [b""] * (2 * len(records))
        body[3::2] = [heads[n] if n < 2048 else b"\x12" + varint(n) for n in map(len, records)]
        body[4::2] = records
        parts.append(b"\x12" + varint(sum(map(len, body))))
        parts += body
    payload = b"".join(parts)
    return field(b"\x0a", field(b"\x0a", resource_bytes) + payload)


def _varint_at(data: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, bytes, bytes]]:
    """Each field of a message: (number, the field's bytes whole, its value if length-delimited)."""
    i, n = 0, len(data)
    while i < n:
        start = i
        key, i = _varint_at(data, i)
        kind = key & 7
        value = b""
        if kind == 0:
            _, i = _varint_at(data, i)
        elif kind == 1:
            i += 8
        elif kind == 5:
            i += 4
        elif kind == 2:
            length, i = _varint_at(data, i)
            value, i = data[i : i + length], i + length
        else:
            raise ValueError(f"unsupported wire type {kind}")
        if i > n:
            raise ValueError("truncated message")
        yield key >> 3, data[start:i], value


def split_request(payload: bytes) -> list[tuple[bytes, int]] | None:
    """An Export{Logs,Trace}ServiceRequest cut into two, records (or spans) in order, each half with
    its resource and scope, and its count; None when it holds fewer than two.

    Both requests have the same shape: resource groups (field 1) holding a resource and scope groups
    (field 2), each holding a scope and the records (field 2)."""
    records: list[tuple[int, int, bytes]] = []  # (resource group, scope group, the record's field)
    heads: list[bytes] = []  # each resource group's fields but its scope groups
    scope_heads: list[list[bytes]] = []  # each scope group's fields but its records
    for number, _, group in _fields(payload):
        if number != 1:
            continue
        r = len(heads)
        head, scopes = b"", list[bytes]()
        for inner, whole, scope in _fields(group):
            if inner != 2:
                head += whole
                continue
            s = len(scopes)
            scope_head = b""
            for leaf, leaf_whole, _ in _fields(scope):
                if leaf == 2:
                    records.append((r, s, leaf_whole))
                else:
                    scope_head += leaf_whole
            scopes.append(scope_head)
        heads.append(head)
        scope_heads.append(scopes)
    if len(records) < 2:
        return None
    middle = len(records) // 2
    out = []
    for part in (records[:middle], records[middle:]):
        groups: dict[int, dict[int, list[bytes]]] = {}
        for r, s, whole in part:
            groups.setdefault(r, {}).setdefault(s, []).append(whole)
        body = b"".join(
            field(
                b"\x0a",
                heads[r]
                + b"".join(
                    field(b"\x12", scope_heads[r][s] + b"".join(items)) for s, items in scopes.items()
                ),
            )
            for r, scopes in groups.items()
        )
        out.append((body, len(part)))
    return out
