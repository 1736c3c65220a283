"""The viewer's store, part one: the schema, the connection and what every part shares.

The store is split by job: this base (the connection, its lock, the counters), ``_rows`` (a kept
request decoded into item rows), ``_writer`` (keeping requests as they come, filing them into rows,
indexes and error groups) and ``_reader`` (the queries of the page). ``_store.Store`` puts them
together.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from highlight_logging._devtools.receiver import PyValue, any_value_to_python

LOG, SPAN = 0, 1
#: Level names by the first severity number of their range (OTLP's 1-24 scale).
LEVELS = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17, "FATAL": 21}
_TEXT_LEVELS = {
    "WARNING": 13,
    "CRITICAL": 21,
    "EXCEPTION": 17,
    "ERR": 17,
    "NOTICE": 9,
    "SUCCESS": 9,
    "PANIC": 21,
    "ALERT": 21,
    "EMERGENCY": 21,
}
_BATCH_RECORDS = 5000  # per transaction: readers wait at most one such batch
_MAX_PENDING = 200_000  # records queued before the receiver's threads wait (the client's retry takes over)
_LIST_BODY = 4000  # characters of a body in a list; the item view has all of it
_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (id INTEGER PRIMARY KEY, json TEXT UNIQUE NOT NULL, service TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,          -- 0 log record, 1 span
    time_ns INTEGER NOT NULL,
    end_ns INTEGER,                 -- spans only
    severity INTEGER NOT NULL,      -- 1..24; 0 unknown (spans)
    level TEXT NOT NULL,
    body TEXT NOT NULL,             -- log body as text, or the span's name
    scope TEXT NOT NULL,
    service TEXT NOT NULL,
    resource_id INTEGER NOT NULL,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    request_id TEXT NOT NULL,       -- highlight.trace_id
    session_id TEXT NOT NULL,       -- highlight.session_id
    req_key TEXT NOT NULL,          -- request_id, else (the request of) trace_id: what Requests groups by
    raw BLOB NOT NULL               -- the LogRecord or Span as it came: attributes are decoded when shown
);
-- The Logs view walks the newest ids first and stops at a page: no index for level, service, scope or
-- time (each would cost every insert and make the planner sort instead of walk). Ids only, each partial.
-- Partial: a query names the same "!= ''" so that SQLite may use them with a bound value.
CREATE INDEX IF NOT EXISTS items_trace ON items (trace_id) WHERE trace_id != '';
CREATE INDEX IF NOT EXISTS items_request ON items (request_id) WHERE request_id != '';
CREATE INDEX IF NOT EXISTS items_session ON items (session_id) WHERE session_id != '';
CREATE INDEX IF NOT EXISTS items_req_key ON items (req_key, id) WHERE req_key != '';
-- Requests kept as they came, their records not yet filed as items: ids first_id .. first_id + n - 1.
CREATE TABLE IF NOT EXISTS incoming (
    first_id INTEGER PRIMARY KEY, n INTEGER NOT NULL, kind INTEGER NOT NULL, raw BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS groups (
    id INTEGER PRIMARY KEY, fp TEXT UNIQUE NOT NULL, type TEXT NOT NULL, pattern TEXT NOT NULL, frame TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS errors (
    id INTEGER PRIMARY KEY,
    key TEXT UNIQUE NOT NULL,       -- one exception sent as a log record and as a span counts once
    group_id INTEGER NOT NULL,
    time_ns INTEGER NOT NULL,
    first_item INTEGER NOT NULL,
    log_item INTEGER,
    span_item INTEGER,
    trace_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    service TEXT NOT NULL,
    type TEXT NOT NULL,
    message TEXT NOT NULL,
    stacktrace TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS errors_group ON errors (group_id, time_ns);
CREATE INDEX IF NOT EXISTS errors_first ON errors (first_item);
CREATE INDEX IF NOT EXISTS errors_log ON errors (log_item);
CREATE INDEX IF NOT EXISTS errors_span ON errors (span_item);
"""
_ITEM_COLUMNS = (
    "id, kind, time_ns, end_ns, severity, level, body, scope, service, resource_id, trace_id, span_id, "
    "parent_id, request_id, session_id, raw"
)
_INSERT_ITEM = (
    "INSERT INTO items (id, kind, time_ns, end_ns, severity, level, body, scope, service, resource_id, trace_id, "
    "span_id, parent_id, request_id, session_id, req_key, raw) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_SPAN_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
# severity number (0-24) -> level name, for records that send no severity_text
_LEVEL_NAMES = ("", *(n for n in LEVELS for _ in range(4)))
_STATUS = ("UNSET", "OK", "ERROR")


@dataclass(frozen=True)
class LogQuery:
    """Filters of the Logs view; empty strings and None mean "any"."""

    min_severity: int = 0
    scope: str = ""
    service: str = ""
    text: str = ""
    trace: str = ""  #: an OTel trace id or a highlight.trace_id
    session: str = ""
    since_ns: int | None = None
    until_ns: int | None = None
    after_id: int | None = None  #: live tail: only newer rows
    before_id: int | None = None  #: paging: only older rows
    limit: int = 100


def _attributes(attributes: Any) -> dict[str, PyValue]:
    """attributes_to_dict with a fast path for the common kinds (the writer's hottest loop)."""
    out: dict[str, PyValue] = {}
    for kv in attributes:
        value = kv.value
        kind = value.WhichOneof("value")
        if kind == "string_value":
            out[kv.key] = value.string_value
        elif kind == "int_value":
            out[kv.key] = value.int_value
        else:
            out[kv.key] = any_value_to_python(value)
    return out


def attribute_text_contains(raw: bytes, text: str) -> bool:
    """Whether an attribute value of the LogRecord ``raw`` contains ``text`` (exact case).  Its
    bytes alone would also match inside timestamps, ids and lengths: a search for "%" found records
    whose time had a 0x25 byte."""
    try:
        attributes = _attributes(LogRecord.FromString(raw).attributes)
    except Exception:  # not a LogRecord after all: no match, never an error in a query
        return False
    return any(
        text in (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))
        for value in attributes.values()
    )


class StoreBase:
    """The connection (in memory, or ``path``), its schema, the ids handed out and the counts."""

    def __init__(self, path: str | None = None, keep: int = 100_000) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.keep = keep
        self.path = path
        self._db = sqlite3.connect(path or ":memory:", check_same_thread=False, isolation_level=None)
        if path:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.create_function("attr_has", 2, attribute_text_contains, deterministic=True)
        self._db.executescript(_SCHEMA)
        self._counts = self._count(self._db)
        # Ids are handed out here (each kept request reserves its records' ids), never reused.
        next_id, logs, spans = self._db.execute(
            "SELECT coalesce(max(first_id + n), 1), coalesce(sum(n * (kind = 0)), 0), coalesce(sum(n * (kind = 1)), 0)"
            " FROM incoming"
        ).fetchone()
        self._next_id: int = max(int(next_id), self._counts[3] + 1)
        self._unindexed = (int(logs), int(spans))
        self._lock = threading.Lock()  # the connection: the writer's batches and the readers' queries

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    @staticmethod
    def _count(db: sqlite3.Connection) -> tuple[int, int, int, int]:
        """(log records, spans, errors, newest id), counted once when the store opens."""
        logs, spans, errors, last = db.execute(
            "SELECT (SELECT count(*) FROM items WHERE kind = 0), (SELECT count(*) FROM items WHERE kind = 1),"
            " (SELECT count(*) FROM errors), (SELECT coalesce(max(id), 0) FROM items)"
        ).fetchone()
        return int(logs), int(spans), int(errors), int(last)

    def stats(self) -> dict[str, object]:
        """Counts for the status line (as of the last batch kept; ``unindexed``: not yet in errors and requests)."""
        with self._lock:
            logs, spans, errors, _ = self._counts
            unindexed = self._unindexed
            last = self._next_id - 1
        return {
            "logs": logs + unindexed[0],
            "spans": spans + unindexed[1],
            "errors": errors,
            "last_id": last,
            "keep": self.keep,
            "unindexed": unindexed[0] + unindexed[1],
        }

    def last_id(self) -> int:
        """The newest record's id (ids grow with arrival)."""
        with self._lock:
            return self._next_id - 1

    def _first_unindexed(self) -> int | None:
        rows = self._query("SELECT min(first_id) FROM incoming")
        return int(rows[0][0]) if rows[0][0] is not None else None


def _severity(number: int, text: str) -> int:
    if 1 <= number <= 24:
        return number
    upper = text.strip().upper()
    return LEVELS.get(upper) or _TEXT_LEVELS.get(upper, 0)


def _body(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None:
        return ""
    return _dumps(any_value_to_python(value))


def _text(value: PyValue) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return _dumps(value)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def json_default(obj: object) -> str:
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode("ascii")
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=json_default, allow_nan=True)
