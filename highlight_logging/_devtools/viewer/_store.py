"""The viewer's store: every log record and span the receiver accepts, in SQLite, bounded.

In process, the receiver's threads only queue requests (:meth:`Store.submit_logs`); one writer
thread turns everything queued into rows and commits it in one transaction, then drops what is past
the newest ``keep`` records. ``serve --ui`` runs the store in its own process instead
(``_process``), whose main thread hands batches of request bytes to :meth:`Store.ingest`.
One connection, one lock: readers wait at most one batch.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from highlight_logging._devtools.receiver import PyValue, any_value_to_python
from highlight_logging._devtools.viewer import _group

__all__ = ["LEVELS", "LogQuery", "Store"]

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


# A row for the items table, and the attributes of its exception (None: no exception).
_Row = tuple[tuple[Any, ...], "dict[str, PyValue] | None"]


def _numbered(
    rows: list[_Row], first_id: int, n: int
) -> list[tuple[int, tuple[Any, ...], dict[str, PyValue] | None]]:
    """A request's rows with the ids it reserved (a request that decoded to more records than it
    declared keeps only those it has ids for)."""
    return [(first_id + i, item, exc) for i, (item, exc) in enumerate(rows[:n])]


def _row_time(row: _Row) -> int:
    t: int = row[0][1]
    return t


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


_Request = logs_service_pb2.ExportLogsServiceRequest | trace_service_pb2.ExportTraceServiceRequest


class _Pending:
    """A queued request (decoded, or its protobuf bytes and whether it holds logs) and its record count."""

    __slots__ = ("logs", "n", "raw", "request")

    def __init__(self, request: _Request | None, n: int, raw: bytes = b"", logs: bool = True) -> None:
        self.request = request
        self.n = n
        self.raw = raw
        self.logs = logs


class Store:
    """Logs, spans and error groups in SQLite (in memory, or ``path``), the newest ``keep`` records."""

    def __init__(self, path: str | None = None, keep: int = 100_000, *, writer: bool = True) -> None:
        """``writer=False``: no writer thread; the owner calls :meth:`ingest` (the viewer's process)."""
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.keep = keep
        self.path = path
        self._db = sqlite3.connect(path or ":memory:", check_same_thread=False, isolation_level=None)
        if path:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
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
        self._cond = threading.Condition()  # the queue and the counters below
        self._queue: deque[_Pending] = deque()
        self._pending = 0
        self._submitted = 0
        self._written = 0
        self._closed = False
        self._resources: dict[str, int] = {}
        self._groups: dict[str, int] = {}
        # OTel trace id -> the highlight.trace_id its records carried: the app's own spans, which
        # have no highlight attributes, then show in that request.
        self._links: dict[str, str] = {}
        self._new_links: list[tuple[str, str]] = []
        self.ingest_seconds = 0.0  #: writer time spent in transactions (for the benchmark)
        self._writer: threading.Thread | None = None
        if writer:
            self._writer = threading.Thread(
                target=self._run, name="highlight-logging-viewer-store", daemon=True
            )
            self._writer.start()

    # -- ingest ----------------------------------------------------------------------------------

    def submit_logs(self, request: logs_service_pb2.ExportLogsServiceRequest) -> None:
        """Queue an accepted log export request (called on the receiver's threads)."""
        self._submit(
            request, sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
        )

    def submit_spans(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        """Queue an accepted trace export request (called on the receiver's threads)."""
        self._submit(request, sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans))

    def ingest(self, batch: Sequence[tuple[bool, bytes, int]]) -> None:
        """Keep requests given as (holds logs, protobuf bytes, record count) as they came, in the caller's
        thread: their records are in the store (and in the Logs view) now; :meth:`index` files them."""
        try:
            self._append(batch)
        except sqlite3.Error as exc:  # a full disk must not stop ingest: report and go on
            import sys

            print(f"highlight-logging viewer: store write failed: {exc}", file=sys.stderr)

    def unindexed(self) -> int:
        """Records kept as they came and not yet filed by :meth:`index`."""
        return self._unindexed[0] + self._unindexed[1]

    def index(self, records: int = _BATCH_RECORDS) -> int:
        """File the oldest kept requests (at least ``records`` records' worth, if there are so many)
        into rows, errors and requests, in one transaction; returns the records filed."""
        try:
            return self._index(records)
        except sqlite3.Error as exc:
            import sys

            print(f"highlight-logging viewer: store write failed: {exc}", file=sys.stderr)
            return 0

    def _submit(self, request: _Request, n: int) -> None:
        with self._cond:
            # Backpressure: a slow store slows the answers, so the client's own buffering takes over.
            self._cond.wait_for(lambda: self._pending < _MAX_PENDING or self._closed, 30)
            if self._closed:
                return
            self._queue.append(_Pending(request, n))
            self._pending += n
            self._submitted += 1
            self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far is committed; False on timeout."""
        with self._cond:
            target = self._submitted
            return self._cond.wait_for(lambda: self._written >= target or self._closed, timeout)

    def close(self) -> None:
        """Write what is queued, stop the writer and close the database."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._writer is not None:
            self._writer.join(30)
        with self._lock:
            self._db.close()

    def _run(self) -> None:
        while self.index():  # what a previous run kept and did not file (--db)
            pass
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._closed)
                if not self._queue:
                    return
                batch: list[_Pending] = []
                n = 0
                while self._queue and n < _BATCH_RECORDS:
                    p = self._queue.popleft()
                    batch.append(p)
                    n += p.n
            try:
                self._write(batch)
            except sqlite3.Error as exc:  # a full disk must not kill the writer: report and go on
                import sys

                print(f"highlight-logging viewer: store write failed: {exc}", file=sys.stderr)
            with self._cond:
                self._pending -= n
                self._written += len(batch)
                self._cond.notify_all()

    def _write(self, batch: list[_Pending]) -> None:
        """In process: keep the batch and file it at once."""
        self._append(
            [
                (p.logs, p.raw, p.n)
                if p.request is None
                else (
                    isinstance(p.request, logs_service_pb2.ExportLogsServiceRequest),
                    p.request.SerializeToString(),
                    p.n,
                )
                for p in batch
            ]
        )
        while self._index(_BATCH_RECORDS):
            pass

    def _append(self, batch: Sequence[tuple[bool, bytes, int]]) -> None:
        # One row per request, ids reserved for its records: the cheap half of ingest, so that a burst
        # is in the store as fast as it arrives; the costly half (rows, indexes, errors) follows.
        started = time.perf_counter()
        with self._lock:
            first = self._next_id
            rows = []
            unindexed = list(self._unindexed)
            for logs, raw, n in batch:
                if n > 0:
                    rows.append((first, n, LOG if logs else SPAN, raw))
                    unindexed[0 if logs else 1] += n
                    first += n
            if not rows:
                return
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT INTO incoming (first_id, n, kind, raw) VALUES (?,?,?,?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._next_id = first
            self._unindexed = (unindexed[0], unindexed[1])
        self.ingest_seconds += time.perf_counter() - started

    def _index(self, records: int) -> int:
        started = time.perf_counter()
        with self._lock:
            db = self._db
            todo: list[tuple[int, int, int, bytes]] = []
            n_todo = 0
            for first_id, n, kind, raw in db.execute(
                "SELECT first_id, n, kind, raw FROM incoming ORDER BY first_id LIMIT 256"
            ):
                todo.append((first_id, n, kind, raw))
                n_todo += n
                if n_todo >= records:
                    break
            if not todo:
                return 0
            db.execute("BEGIN")
            try:
                rows: list[tuple[int, tuple[Any, ...], dict[str, PyValue] | None]] = []
                for first_id, n, kind, raw in todo:
                    rows += _numbered(self._rows(db, kind, raw), first_id, n)
                self._insert(db, rows)
                # Kept as counts, so that the page's status line costs no scan of the table.
                counts = [self._counts[0], self._counts[1]]
                for _, item, _ in rows:
                    counts[item[0]] += 1
                if self._new_links:
                    # Records of these traces that came before the link was seen join the request.
                    db.executemany(
                        "UPDATE items SET req_key = ? WHERE req_key = ? AND req_key != ''", self._new_links
                    )
                    self._new_links = []
                db.execute("DELETE FROM incoming WHERE first_id <= ?", (todo[-1][0],))
                last = todo[-1][0] + todo[-1][1] - 1
                if last > self.keep:
                    cutoff = last - self.keep
                    for kind, n in db.execute(
                        "SELECT kind, count(*) FROM items WHERE id <= ? GROUP BY kind", (cutoff,)
                    ):
                        counts[kind] -= n
                    db.execute("DELETE FROM items WHERE id <= ?", (cutoff,))
                    db.execute("DELETE FROM errors WHERE first_item <= ?", (cutoff,))
                errors = db.execute("SELECT count(*) FROM errors").fetchone()[0]
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                self._new_links = []
                raise
            unindexed = list(self._unindexed)
            for _, n, kind, _ in todo:
                unindexed[kind] -= n
            self._unindexed = (unindexed[0], unindexed[1])
            self._counts = (counts[0], counts[1], errors, last)
        self.ingest_seconds += time.perf_counter() - started
        return n_todo

    def _rows(self, db: sqlite3.Connection | None, kind: int, raw: bytes) -> list[_Row]:
        """A kept request's records as rows, in time order (``db`` None: only to show them, nothing filed)."""
        rows: list[_Row] = []
        try:
            if kind == LOG:
                self._log_rows(db, logs_service_pb2.ExportLogsServiceRequest.FromString(raw), rows)
            else:
                self._span_rows(db, trace_service_pb2.ExportTraceServiceRequest.FromString(raw), rows)
        except DecodeError:  # the receiver decoded it already: not expected
            return []
        # Ids in time order within a request: the Logs view pages by id, which is then time order but
        # for records that arrive late.
        rows.sort(key=_row_time)
        return rows

    def _resource_id(self, db: sqlite3.Connection | None, attrs: dict[str, PyValue]) -> tuple[int | str, str]:
        """The resource's row id and service; ``db`` None: its JSON instead of an id, nothing filed."""
        key = _dumps(attrs)
        service = _text(attrs.get("service.name", "")) if attrs.get("service.name") is not None else ""
        if db is None:
            return key, service
        rid = self._resources.get(key)
        if rid is None:
            db.execute("INSERT OR IGNORE INTO resources (json, service) VALUES (?, ?)", (key, service))
            rid = int(db.execute("SELECT id FROM resources WHERE json = ?", (key,)).fetchone()[0])
            self._resources[key] = rid
        return rid, service

    def _req_key(self, db: sqlite3.Connection | None, trace_id: str, request_id: str) -> str:
        if db is None:
            return ""
        if not request_id:
            return self._links.get(trace_id, trace_id) if trace_id else ""
        if trace_id and self._links.get(trace_id) != request_id:
            if len(self._links) > 200_000:  # bounded: older traces just stop being joined
                self._links.clear()
            self._links[trace_id] = request_id
            self._new_links.append((request_id, trace_id))
        return request_id

    def _log_rows(
        self,
        db: sqlite3.Connection | None,
        request: logs_service_pb2.ExportLogsServiceRequest,
        out: list[_Row],
    ) -> None:
        # The writer's hot loop: columns read straight from the message, the record kept as its bytes,
        # and attributes decoded only when they may hold highlight ids or an exception.
        level_names = _LEVEL_NAMES
        for rl in request.resource_logs:
            rid, service = self._resource_id(db, _attributes(rl.resource.attributes))
            for sl in rl.scope_logs:
                scope = sl.scope.name
                for rec in sl.log_records:
                    raw = rec.SerializeToString()
                    request_id = session_id = ""
                    exc = None
                    if b"highlight." in raw or b"exception." in raw:
                        attrs = _attributes(rec.attributes)
                        request_id = _text(attrs.get("highlight.trace_id", ""))
                        session_id = _text(attrs.get("highlight.session_id", ""))
                        if "exception.type" in attrs or "exception.message" in attrs:
                            exc = attrs
                    severity: int = rec.severity_number
                    if not 1 <= severity <= 24:
                        severity = _severity(severity, rec.severity_text)
                    body = rec.body
                    trace_id = rec.trace_id.hex() if rec.trace_id else ""
                    item = (
                        LOG,
                        rec.time_unix_nano or rec.observed_time_unix_nano,
                        None,
                        severity,
                        rec.severity_text or level_names[severity],
                        body.string_value if body.WhichOneof("value") == "string_value" else _body(body),
                        scope,
                        service,
                        rid,
                        trace_id,
                        rec.span_id.hex() if rec.span_id else "",
                        "",
                        request_id,
                        session_id,
                        self._req_key(db, trace_id, request_id) if trace_id or request_id else "",
                        raw,
                    )
                    out.append((item, exc))

    def _span_rows(
        self,
        db: sqlite3.Connection | None,
        request: trace_service_pb2.ExportTraceServiceRequest,
        out: list[_Row],
    ) -> None:
        for rs in request.resource_spans:
            rid, service = self._resource_id(db, _attributes(rs.resource.attributes))
            for ss in rs.scope_spans:
                scope = ss.scope.name
                for span in ss.spans:
                    raw = span.SerializeToString()
                    attrs = (
                        _attributes(span.attributes) if b"highlight." in raw or b"exception." in raw else {}
                    )
                    error = span.status.code == 2
                    trace_id = span.trace_id.hex()
                    request_id = _text(attrs.get("highlight.trace_id", ""))
                    item = (
                        SPAN,
                        span.start_time_unix_nano,
                        span.end_time_unix_nano,
                        17 if error else 0,
                        "ERROR" if error else "SPAN",
                        span.name,
                        scope,
                        service,
                        rid,
                        trace_id,
                        span.span_id.hex(),
                        span.parent_span_id.hex(),
                        request_id,
                        _text(attrs.get("highlight.session_id", "")),
                        self._req_key(db, trace_id, request_id),
                        raw,
                    )
                    exc: dict[str, PyValue] | None = None
                    for ev in span.events:
                        if ev.name == "exception":
                            exc = {**attrs, **_attributes(ev.attributes), "__time_ns": ev.time_unix_nano}
                            break
                    out.append((item, exc))

    def _insert(
        self, db: sqlite3.Connection, rows: list[tuple[int, tuple[Any, ...], dict[str, PyValue] | None]]
    ) -> None:
        db.executemany(_INSERT_ITEM, [(item_id, *item) for item_id, item, _ in rows])
        for item_id, item, exc in rows:
            if exc is not None:
                self._insert_error(db, item_id, item, exc, log=item[0] == LOG)

    def _insert_error(
        self,
        db: sqlite3.Connection,
        item_id: int,
        row: tuple[Any, ...],
        attrs: dict[str, PyValue],
        *,
        log: bool,
    ) -> None:
        exc_type = _text(attrs.get("exception.type", "")) or "(no type)"
        message = _text(attrs.get("exception.message", ""))
        stack = _text(attrs.get("exception.stacktrace", ""))
        frame = _group.top_frame(_group.parse_stack(stack))
        pattern = _group.message_pattern(message)
        fp = _group.fingerprint(exc_type, pattern, frame)
        gid = self._groups.get(fp)
        if gid is None:
            db.execute(
                "INSERT OR IGNORE INTO groups (fp, type, pattern, frame) VALUES (?, ?, ?, ?)",
                (fp, exc_type, pattern, frame),
            )
            gid = int(db.execute("SELECT id FROM groups WHERE fp = ?", (fp,)).fetchone()[0])
            self._groups[fp] = gid
        event_ns = attrs.get("__time_ns")
        time_ns = event_ns if isinstance(event_ns, int) and event_ns else row[1]
        trace_id, span_id = row[9], row[10]
        # This package sends a logged exception as a log record and as a span with the same ids and time.
        key = f"{trace_id}/{span_id}/{time_ns}/{exc_type}/{message}" if span_id else f"item:{log}:{item_id}"
        column = "log_item" if log else "span_item"
        db.execute(
            f"INSERT INTO errors (key, group_id, time_ns, first_item, {column}, trace_id, request_id, session_id,"
            " service, type, message, stacktrace) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
            f" ON CONFLICT (key) DO UPDATE SET {column} = coalesce({column}, excluded.{column})",
            (
                key,
                gid,
                time_ns,
                item_id,
                item_id,
                trace_id,
                row[12],
                row[13],
                row[7],
                exc_type,
                message,
                stack,
            ),
        )

    # -- queries ---------------------------------------------------------------------------------

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

    def _kept(
        self, kind: int, after_id: int | None = None, before_id: int | None = None, text: str = ""
    ) -> Iterator[Sequence[Any]]:
        """The records of kept, not yet filed requests of ``kind`` (only those that may hold an id
        between ``after_id`` and ``before_id``, or ``text``), newest first, as item rows
        (``_ITEM_COLUMNS``, with the resource's JSON in place of its id)."""
        spans = self._query(
            "SELECT first_id, n FROM incoming WHERE kind = ? AND first_id + n > ? AND first_id < ?"
            " ORDER BY first_id DESC",
            (kind, after_id or 0, before_id if before_id is not None else 1 << 62),
        )
        # A request without the text in its bytes (in any ASCII case, as LIKE matches) has no record
        # that matches; a non-string body's JSON may, and then shows once it is filed.
        needle = text.encode("utf-8", "surrogatepass").lower()
        for first_id, n in spans:
            found = self._query("SELECT raw FROM incoming WHERE first_id = ?", (first_id,))
            if not found:  # filed meanwhile
                yield from self._query(
                    f"SELECT {_ITEM_COLUMNS} FROM items WHERE id >= ? AND id < ? AND kind = ? ORDER BY id DESC",
                    (first_id, first_id + n, kind),
                )
                continue
            raw: bytes = found[0][0]
            if needle and needle not in raw.lower():
                continue
            for item_id, item, _ in reversed(_numbered(self._rows(None, kind, raw), first_id, n)):
                yield (item_id, *item[:14], item[15])

    def _first_unindexed(self) -> int | None:
        rows = self._query("SELECT min(first_id) FROM incoming")
        return int(rows[0][0]) if rows[0][0] is not None else None

    def facets(self) -> dict[str, list[str]]:
        """Services and scopes present, for the filter lists."""
        services = [
            r[0] for r in self._query("SELECT DISTINCT service FROM items ORDER BY service LIMIT 500")
        ]
        scopes = [
            r[0]
            for r in self._query("SELECT DISTINCT scope FROM items WHERE kind = 0 ORDER BY scope LIMIT 500")
        ]
        return {"services": services, "scopes": scopes, "levels": list(LEVELS)}

    def logs(self, q: LogQuery) -> list[dict[str, object]]:
        """A page of log records, newest first (ids follow time within each batch written)."""
        where = ["kind = 0"]
        params: list[object] = []
        if q.min_severity > 0:
            where.append("severity >= ?")
            params.append(q.min_severity)
        if q.scope:
            where.append("scope = ?")
            params.append(q.scope)
        if q.service:
            where.append("service = ?")
            params.append(q.service)
        if q.text:
            like = "%" + q.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            # Attribute values are searched in the record's bytes: exact case (the message: any case).
            where.append("(body LIKE ? ESCAPE '\\' OR instr(raw, ?) > 0)")
            params += [like, q.text.encode("utf-8", "surrogatepass")]
        if q.trace:
            where.append("((trace_id = ? AND trace_id != '') OR (request_id = ? AND request_id != ''))")
            params += [q.trace.lower() if _is_hex(q.trace) else q.trace, q.trace]
        if q.session:
            where.append("session_id = ? AND session_id != ''")
            params.append(q.session)
        if q.since_ns is not None:
            where.append("time_ns >= ?")
            params.append(q.since_ns)
        if q.until_ns is not None:
            where.append("time_ns <= ?")
            params.append(q.until_ns)
        if q.after_id is not None:
            where.append("id > ?")
            params.append(q.after_id)
        if q.before_id is not None:
            where.append("id < ?")
            params.append(q.before_id)
        limit = max(1, min(q.limit, 1000))
        # The newest records may be kept as they came and not yet filed: those are read here.
        boundary = self._first_unindexed()
        rows: list[Sequence[Any]] = []
        if boundary is not None and (q.before_id is None or q.before_id > boundary):
            match = _matcher(q)
            for row in self._kept(LOG, q.after_id, q.before_id, q.text):
                if match(row):
                    rows.append(row)
                    if len(rows) >= limit:
                        break
            where.append("id < ?")  # what was filed meanwhile was read above
            params.append(boundary)
        if len(rows) < limit:
            rows += self._query(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
                [*params, limit - len(rows)],
            )
        items = [_item(r, brief=True) for r in rows]
        self._attach_errors(items)
        return items

    def item(self, item_id: int) -> dict[str, object] | None:
        """One log record or span in full, with its resource and its error group, if any."""
        rows = self._query(
            f"SELECT {_ITEM_COLUMNS}, (SELECT json FROM resources WHERE resources.id = items.resource_id)"
            " FROM items WHERE id = ?",
            (item_id,),
        )
        if not rows:
            boundary = self._first_unindexed()
            if boundary is None or item_id < boundary:
                return None
            found = self._query(
                "SELECT kind FROM incoming WHERE first_id <= ? AND ? < first_id + n", (item_id, item_id)
            )
            kept = (
                (r for r in self._kept(found[0][0], item_id - 1, item_id + 1) if r[0] == item_id)
                if found
                else iter(())
            )
            row = next(kept, None)
            if row is None:
                return None
            if not isinstance(row[9], str):  # filed meanwhile: now it is a row like the others
                return self.item(item_id)
            rows = [(*row, row[9])]  # the resource's JSON
        out = _item(rows[0][:-1], brief=False)
        out["resource"] = json.loads(rows[0][-1] or "{}")
        self._attach_errors([out])
        return out

    def _attach_errors(self, items: list[dict[str, object]]) -> None:
        ids = [i["id"] for i in items if i.get("exception")]
        if not ids:
            return
        marks = ",".join("?" * len(ids))
        rows = self._query(
            f"SELECT log_item, span_item, group_id, id FROM errors WHERE log_item IN ({marks})"
            f" OR span_item IN ({marks})",
            [*ids, *ids],
        )
        by_item: dict[object, tuple[int, int]] = {}
        for log_item, span_item, gid, eid in rows:
            for i in (log_item, span_item):
                if i is not None:
                    by_item[i] = (gid, eid)
        for it in items:
            found = by_item.get(it["id"])
            if found is not None:
                it["group_id"], it["error_id"] = found

    def error_groups(
        self, service: str = "", since_ns: int | None = None, limit: int = 200
    ) -> list[dict[str, object]]:
        """Error groups, most recently seen first."""
        where = ["1"]
        params: list[object] = []
        if service:
            where.append("e.service = ?")
            params.append(service)
        if since_ns is not None:
            where.append("e.time_ns >= ?")
            params.append(since_ns)
        rows = self._query(
            "SELECT g.id, g.type, g.pattern, g.frame, count(*), min(e.time_ns), max(e.time_ns),"
            " group_concat(DISTINCT e.service)"
            f" FROM errors e JOIN groups g ON g.id = e.group_id WHERE {' AND '.join(where)}"
            " GROUP BY g.id ORDER BY max(e.time_ns) DESC LIMIT ?",
            [*params, max(1, min(limit, 1000))],
        )
        return [
            {
                "id": r[0],
                "type": r[1],
                "pattern": r[2],
                "frame": r[3],
                "count": r[4],
                "first_ns": r[5],
                "last_ns": r[6],
                "services": (r[7] or "").split(","),
            }
            for r in rows
        ]

    def error_group(self, group_id: int, limit: int = 50) -> dict[str, object] | None:
        """One group with its newest occurrences, each with its parsed stack trace."""
        groups = [g for g in self.error_groups(limit=1000) if g["id"] == group_id]
        if not groups:
            return None
        rows = self._query(
            "SELECT id, time_ns, log_item, span_item, trace_id, request_id, session_id, service, type, message,"
            " stacktrace FROM errors WHERE group_id = ? ORDER BY time_ns DESC, id DESC LIMIT ?",
            (group_id, max(1, min(limit, 500))),
        )
        group = groups[0]
        group["occurrences"] = [
            {
                "id": r[0],
                "time_ns": r[1],
                "log_item": r[2],
                "span_item": r[3],
                "trace_id": r[4],
                "request_id": r[5],
                "session_id": r[6],
                "service": r[7],
                "type": r[8],
                "message": r[9],
                "stacktrace": r[10],
                "frames": [f._asdict() for f in _group.parse_stack(r[10])],
            }
            for r in rows
        ]
        return group

    def requests(self, limit: int = 100) -> list[dict[str, object]]:
        """The newest requests/traces: grouped by highlight.trace_id, else by trace id."""
        rows = self._query(
            "SELECT req_key, count(*), min(time_ns), max(coalesce(end_ns, time_ns)), sum(kind = 1),"
            " max(severity), max(id), group_concat(DISTINCT service), max(session_id)"
            " FROM items WHERE req_key != '' AND id > (SELECT coalesce(max(id), 0) FROM items) - 20000"
            " GROUP BY req_key ORDER BY max(id) DESC LIMIT ?",
            (max(1, min(limit, 1000)),),
        )
        out = []
        for key, n, start, end, spans, severity, _last, services, session in rows:
            # Its name: the first span without a parent (the request's own span), else its first record.
            first = self._query(
                "SELECT body FROM items WHERE req_key = ? AND req_key != '' ORDER BY kind = 1 AND parent_id = '' DESC, time_ns, id"
                " LIMIT 1",
                (key,),
            )
            out.append(
                {
                    "key": key,
                    "name": first[0][0][:200] if first else "",
                    "count": n,
                    "spans": spans,
                    "start_ns": start,
                    "duration_ns": max(0, end - start),
                    "level": _LEVEL_NAMES[severity] if 0 <= severity <= 24 else "",
                    "services": (services or "").split(","),
                    "session_id": session,
                }
            )
        return out

    def trace(self, trace: str = "", session: str = "", limit: int = 2000) -> list[dict[str, object]]:
        """Everything of one trace id or highlight.trace_id, or of one highlight.session_id, in time order."""
        limit = max(1, min(limit, 10_000))
        if session:
            rows = self._query(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE session_id = ? AND session_id != '' ORDER BY time_ns, kind, id LIMIT ?",
                (session, limit),
            )
        elif trace:
            # The OTel traces that a highlight request ran in belong to it too, and the other way round.
            key = trace.lower() if _is_hex(trace) else trace
            traces = {key} | {
                r[0]
                for r in self._query(
                    "SELECT DISTINCT trace_id FROM items WHERE request_id = ? AND request_id != '' AND trace_id != ''",
                    (trace,),
                )
            }
            requests = {trace} | {
                r[0]
                for r in self._query(
                    "SELECT DISTINCT request_id FROM items WHERE trace_id = ? AND trace_id != '' AND request_id != ''",
                    (key,),
                )
            }
            tm = ",".join("?" * len(traces))
            rm = ",".join("?" * len(requests))
            rows = self._query(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE (trace_id IN ({tm}) AND trace_id != '')"
                f" OR (request_id IN ({rm}) AND request_id != '')"
                " ORDER BY time_ns, kind, id LIMIT ?",
                [*traces, *requests, limit],
            )
        else:
            return []
        items = [_item(r, brief=True) for r in rows]
        self._attach_errors(items)
        return items


def _item(r: Sequence[Any], *, brief: bool) -> dict[str, object]:
    (iid, kind, time_ns, end_ns, severity, level, body, scope, service, _rid, trace_id, span_id, parent_id,
     request_id, session_id, raw) = r  # fmt: skip
    out: dict[str, object] = {
        "id": iid,
        "kind": "span" if kind == SPAN else "log",
        "time_ns": time_ns,
        "severity": severity,
        "level": level,
        "scope": scope,
        "service": service,
        "trace_id": trace_id,
        "span_id": span_id,
        "request_id": request_id,
        "session_id": session_id,
    }
    if brief and len(body) > _LIST_BODY:
        out["body"] = body[:_LIST_BODY]
        out["body_truncated"] = len(body)
    else:
        out["body"] = body
    if kind == SPAN:
        span = Span.FromString(raw)
        attrs = _attributes(span.attributes)
        events = [
            {"time_ns": ev.time_unix_nano, "name": ev.name, "attributes": _attributes(ev.attributes)}
            for ev in span.events
        ]
        code = span.status.code
        out.update(
            parent_id=parent_id,
            end_ns=end_ns,
            duration_ns=max(0, end_ns - time_ns) if end_ns else None,
            span_kind=_SPAN_KINDS[span.kind] if 0 <= span.kind < len(_SPAN_KINDS) else str(span.kind),
            status=_STATUS[code] if 0 <= code < len(_STATUS) else str(code),
            status_message=span.status.message,
            events=events,
        )
        has_exc = any(e["name"] == "exception" for e in events)
    else:
        attrs = _attributes(LogRecord.FromString(raw).attributes)
        has_exc = "exception.type" in attrs or "exception.message" in attrs
    out["attributes"] = attrs
    if has_exc:
        out["exception"] = True
    return out


def _matcher(q: LogQuery) -> Callable[[Sequence[Any]], bool]:
    """The filters of ``logs()`` on an item row, for the records not yet filed (what the SQL says)."""
    trace = q.trace.lower() if _is_hex(q.trace) else q.trace
    lowered = q.text.lower()
    needle = q.text.encode("utf-8", "surrogatepass")

    def match(r: Sequence[Any]) -> bool:
        (iid, kind, time_ns, _end, severity, _level, body, scope, service, _rid, trace_id, _span, _parent,
         request_id, session_id, raw) = r  # fmt: skip
        return (
            kind == LOG
            and severity >= q.min_severity
            and (not q.scope or scope == q.scope)
            and (not q.service or service == q.service)
            and (not q.text or lowered in body.lower() or needle in raw)
            and (
                not q.trace
                or (trace_id != "" and trace_id == trace)
                or (request_id != "" and request_id == q.trace)
            )
            and (not q.session or session_id == q.session)
            and (q.since_ns is None or time_ns >= q.since_ns)
            and (q.until_ns is None or time_ns <= q.until_ns)
            and (q.after_id is None or iid > q.after_id)
            and (q.before_id is None or iid < q.before_id)
        )

    return match


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
