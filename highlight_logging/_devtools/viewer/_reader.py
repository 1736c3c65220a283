"""The viewer's store, part four: the queries of the page, over filed rows and kept requests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from highlight_logging._devtools.viewer import _group
from highlight_logging._devtools.viewer._rows import RowDecoder, _numbered
from highlight_logging._devtools.viewer._schema import (
    _ITEM_COLUMNS,
    _LEVEL_NAMES,
    _LIST_BODY,
    _SPAN_KINDS,
    _STATUS,
    LEVELS,
    LOG,
    SPAN,
    LogQuery,
    _attributes,
    _is_hex,
    attribute_text_contains,
)


class StoreReader(RowDecoder):
    """Logs, one item, error groups, requests and traces, as the page asks for them."""

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
            where.append("(body LIKE ? ESCAPE '\\' OR (instr(raw, ?) > 0 AND attr_has(raw, ?)))")
            params += [like, q.text.encode("utf-8", "surrogatepass"), q.text]
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
            and (
                not q.text
                or lowered in body.lower()
                or (needle in raw and attribute_text_contains(raw, q.text))
            )
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
