"""The viewer's store, part two: a kept request's records decoded into item rows."""

from __future__ import annotations

import sqlite3
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from highlight_logging._devtools.receiver import PyValue
from highlight_logging._devtools.viewer._schema import (
    _LEVEL_NAMES,
    LOG,
    SPAN,
    StoreBase,
    _attributes,
    _body,
    _dumps,
    _severity,
    _text,
)

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


class RowDecoder(StoreBase):
    """Turns a kept request into rows of the items table, with the state filing keeps: the resources'
    ids and which OTel traces belong to which highlight request."""

    def __init__(self, path: str | None = None, keep: int = 100_000) -> None:
        super().__init__(path, keep)
        self._resources: dict[str, int] = {}
        # OTel trace id -> the highlight.trace_id its records carried: the app's own spans, which
        # have no highlight attributes, then show in that request.
        self._links: dict[str, str] = {}
        self._new_links: list[tuple[str, str]] = []

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
