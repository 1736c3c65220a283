"""The viewer's store: every log record and span the receiver accepts, in SQLite, bounded.

The receiver's threads only queue decoded requests (:meth:`Store.submit_logs`); one writer thread
turns everything queued into rows and commits it in one transaction, then drops what is past the
newest ``keep`` records. One connection, one lock: readers wait at most one batch.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
    "INSERT INTO items (kind, time_ns, end_ns, severity, level, body, scope, service, resource_id, trace_id, "
    "span_id, parent_id, request_id, session_id, req_key, raw) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
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


class _Pending:
    """A queued request and its record count."""

    __slots__ = ("n", "request")

    def __init__(
        self,
        request: logs_service_pb2.ExportLogsServiceRequest | trace_service_pb2.ExportTraceServiceRequest,
        n: int,
    ) -> None:
        self.request = request
        self.n = n


class Store:
    """Logs, spans and error groups in SQLite (in memory, or ``path``), the newest ``keep`` records."""

    def __init__(self, path: str | None = None, keep: int = 100_000) -> None:
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
        self._writer = threading.Thread(target=self._run, name="highlight-logging-viewer-store", daemon=True)
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

    def _submit(
        self,
        request: logs_service_pb2.ExportLogsServiceRequest | trace_service_pb2.ExportTraceServiceRequest,
        n: int,
    ) -> None:
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
        self._writer.join(30)
        with self._lock:
            self._db.close()

    def _run(self) -> None:
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
        started = time.perf_counter()
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                rows: list[_Row] = []
                for p in batch:
                    if isinstance(p.request, logs_service_pb2.ExportLogsServiceRequest):
                        self._log_rows(db, p.request, rows)
                    else:
                        self._span_rows(db, p.request, rows)
                # Ids in time order within a batch: the Logs view pages by id, which is then time order
                # but for records that arrive late.
                rows.sort(key=_row_time)
                self._insert(db, rows)
                # Kept as counts, so that the page's status line costs no scan of the table.
                counts = [self._counts[0], self._counts[1]]
                for item, _ in rows:
                    counts[item[0]] += 1
                if self._new_links:
                    # Records of these traces that came before the link was seen join the request.
                    db.executemany(
                        "UPDATE items SET req_key = ? WHERE req_key = ? AND req_key != ''", self._new_links
                    )
                    self._new_links = []
                last = db.execute("SELECT max(id) FROM items").fetchone()[0]
                if last is not None and last > self.keep:
                    cutoff = last - self.keep
                    for kind, n in db.execute(
                        "SELECT kind, count(*) FROM items WHERE id <= ? GROUP BY kind", (cutoff,)
                    ):
                        counts[kind] -= n
                    db.execute("DELETE FROM items WHERE id <= ?", (cutoff,))
                    db.execute("DELETE FROM errors WHERE first_item <= ?", (cutoff,))
                errors = db.execute("SELECT count(*) FROM errors").fetchone()[0]
                db.execute("COMMIT")
                self._counts = (counts[0], counts[1], errors, last or 0)
            except BaseException:
                db.execute("ROLLBACK")
                raise
        self.ingest_seconds += time.perf_counter() - started

    def _resource_id(self, db: sqlite3.Connection, attrs: dict[str, PyValue]) -> tuple[int, str]:
        key = _dumps(attrs)
        rid = self._resources.get(key)
        service = _text(attrs.get("service.name", "")) if attrs.get("service.name") is not None else ""
        if rid is None:
            db.execute("INSERT OR IGNORE INTO resources (json, service) VALUES (?, ?)", (key, service))
            rid = int(db.execute("SELECT id FROM resources WHERE json = ?", (key,)).fetchone()[0])
            self._resources[key] = rid
        return rid, service

    def _req_key(self, trace_id: str, request_id: str) -> str:
        if not request_id:
            return self._links.get(trace_id, trace_id) if trace_id else ""
        if trace_id and self._links.get(trace_id) != request_id:
            if len(self._links) > 200_000:  # bounded: older traces just stop being joined
                self._links.clear()
            self._links[trace_id] = request_id
            self._new_links.append((request_id, trace_id))
        return request_id

    def _log_rows(
        self, db: sqlite3.Connection, request: logs_service_pb2.ExportLogsServiceRequest, out: list[_Row]
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
                        self._req_key(trace_id, request_id) if trace_id or request_id else "",
                        raw,
                    )
                    out.append((item, exc))

    def _span_rows(
        self, db: sqlite3.Connection, request: trace_service_pb2.ExportTraceServiceRequest, out: list[_Row]
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
                        self._req_key(trace_id, request_id),
                        raw,
                    )
                    exc: dict[str, PyValue] | None = None
                    for ev in span.events:
                        if ev.name == "exception":
                            exc = {**attrs, **_attributes(ev.attributes), "__time_ns": ev.time_unix_nano}
                            break
                    out.append((item, exc))

    def _insert(self, db: sqlite3.Connection, rows: list[_Row]) -> None:
        """Runs of plain records in one executemany each; a record with an exception alone (its id is needed)."""
        run: list[tuple[Any, ...]] = []
        for item, exc in rows:
            if exc is None:
                run.append(item)
                continue
            if run:
                db.executemany(_INSERT_ITEM, run)
                run = []
            item_id = db.execute(_INSERT_ITEM, item).lastrowid
            if item_id is not None:
                self._insert_error(db, item_id, item, exc, log=item[0] == LOG)
        if run:
            db.executemany(_INSERT_ITEM, run)

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
        """Counts for the status line (as of the last batch written)."""
        logs, spans, errors, last = self._counts
        return {"logs": logs, "spans": spans, "errors": errors, "last_id": last, "keep": self.keep}

    def last_id(self) -> int:
        """The newest record's id (ids grow with arrival)."""
        return int(self._query("SELECT coalesce(max(id), 0) FROM items")[0][0])

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
        rows = self._query(
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            [*params, limit],
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
            return None
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
