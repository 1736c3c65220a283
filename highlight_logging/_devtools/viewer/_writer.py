"""The viewer's store, part three: keeping requests as they come and filing them into rows.

In process, the receiver's threads only queue requests (:meth:`StoreWriter.submit_logs`); one writer
thread keeps everything queued and files it at once. ``serve --ui`` runs the store in its own
process instead (``_process``), whose main thread hands batches of request bytes to
:meth:`StoreWriter.ingest` and files them with :meth:`StoreWriter.index` while its input is quiet.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from highlight_logging._devtools.receiver import PyValue
from highlight_logging._devtools.viewer import _group
from highlight_logging._devtools.viewer._rows import RowDecoder
from highlight_logging._devtools.viewer._schema import (
    _BATCH_RECORDS,
    _INSERT_ITEM,
    _MAX_PENDING,
    LOG,
    SPAN,
    _text,
)

_Request = logs_service_pb2.ExportLogsServiceRequest | trace_service_pb2.ExportTraceServiceRequest


class _Pending:
    """A queued request (decoded, or its protobuf bytes and whether it holds logs) and its record count."""

    __slots__ = ("logs", "n", "raw", "request")

    def __init__(self, request: _Request | None, n: int, raw: bytes = b"", logs: bool = True) -> None:
        self.request = request
        self.n = n
        self.raw = raw
        self.logs = logs


class StoreWriter(RowDecoder):
    """Keeps requests (one row each, ids reserved) and files them into items, errors and requests."""

    def __init__(self, path: str | None = None, keep: int = 100_000, *, writer: bool = True) -> None:
        """``writer=False``: no writer thread; the owner calls :meth:`ingest` (the viewer's process)."""
        super().__init__(path, keep)
        self._cond = threading.Condition()  # the queue and the counters below
        self._queue: deque[_Pending] = deque()
        self._pending = 0
        self._submitted = 0
        self._written = 0
        self._closed = False
        self._groups: dict[str, int] = {}
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
                # Kept as counts, so that the page's status line costs no scan of the table.
                counts = [self._counts[0], self._counts[1]]
                params: list[tuple[Any, ...]] = []  # each row built once, with its id, for executemany
                excs: list[tuple[int, tuple[Any, ...], dict[str, PyValue]]] = []
                for first_id, n, kind, raw in todo:
                    # A request that decoded to more records than it declared keeps those it has ids for.
                    rows = self._rows(db, kind, raw)[:n]
                    counts[kind] += len(rows)
                    for item_id, (item, exc) in enumerate(rows, first_id):
                        params.append((item_id, *item))
                        if exc is not None:
                            excs.append((item_id, item, exc))
                db.executemany(_INSERT_ITEM, params)
                for item_id, item, exc in excs:
                    self._insert_error(db, item_id, item, exc, log=item[0] == LOG)
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
