"""The viewer's store, grouping and JSON API, fed by the real receiver (the browser tests are apart)."""

from __future__ import annotations

import gzip
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

import highlight_logging
from highlight_logging import HighlightHandler
from highlight_logging._devtools import cli as _cli
from highlight_logging._devtools.receiver import Receiver
from highlight_logging._devtools.viewer import _group
from highlight_logging._devtools.viewer._app import Viewer
from highlight_logging._devtools.viewer._store import LogQuery, Store

PY_STACK = """Traceback (most recent call last):
  File "/app/shop/views.py", line 12, in checkout
    charge(order)
  File "/app/shop/pay.py", line 40, in charge
    raise CardError(f"declined for order {order.id}")
shop.pay.CardError: declined for order 42
"""


class Served:
    def __init__(self, viewer: Viewer, receiver: Receiver) -> None:
        # The store lives in the viewer's process: submit and flush go down its pipe.
        self.viewer, self.receiver, self.store = viewer, receiver, viewer

    def get(self, path: str, **headers: str) -> Any:
        req = urllib.request.Request(self.viewer.url + path.lstrip("/"), headers=headers)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def settle(self) -> None:
        assert self.store.flush(10)


@pytest.fixture
def served() -> Iterator[Served]:
    viewer = Viewer("127.0.0.1", 0, keep=1000)
    rx = Receiver("127.0.0.1", 0, 0, on_raw=viewer.submit_raw, retain=False)
    rx.start()
    try:
        yield Served(viewer, rx)
    finally:
        from highlight_logging._export import process as _process

        _process.reset_for_tests()
        rx.stop()
        viewer.close()


def _kv(**attrs: str | int) -> list[KeyValue]:
    out = []
    for k, v in attrs.items():
        value = AnyValue(string_value=v) if isinstance(v, str) else AnyValue(int_value=v)
        out.append(KeyValue(key=k.replace("__", "."), value=value))
    return out


def _logs(
    *records: LogRecord, service: str = "svc", scope: str = "app"
) -> logs_service_pb2.ExportLogsServiceRequest:
    return logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=_kv(service__name=service)),
                scope_logs=[ScopeLogs(scope=InstrumentationScope(name=scope), log_records=list(records))],
            )
        ]
    )


def _record(body: str, severity: int = 9, t: int = 0, **attrs: str | int) -> LogRecord:
    return LogRecord(
        time_unix_nano=t or time.time_ns(),
        severity_number=severity,
        body=AnyValue(string_value=body),
        attributes=_kv(**attrs),
    )


# -- grouping ------------------------------------------------------------------------------------


def test_message_pattern_replaces_numbers_and_ids() -> None:
    p = _group.message_pattern
    assert p("declined for order 42") == p("declined for order 7") == "declined for order <n>"
    assert p("user 3fa85f64-5717-4562-b3fc-2c963f66afa6 not found") == "user <uuid> not found"
    assert p("object at 0x7f3a2b1c") == "object at <hex>"
    assert p("job_17 failed after 2.5 s") == "job_<n> failed after <n> s"
    assert p("deadbeefcafe1234 missing") == "<hex> missing"
    assert p("KeyError 'name'") == "KeyError 'name'"  # words stay
    assert p("first line 1\nsecond line") == "first line <n>"


def test_parse_stack_python_and_others() -> None:
    frames = _group.parse_stack(PY_STACK)
    assert frames == [
        _group.Frame("/app/shop/views.py", 12, "checkout", "charge(order)"),
        _group.Frame("/app/shop/pay.py", 40, "charge", 'raise CardError(f"declined for order {order.id}")'),
    ]
    assert _group.top_frame(frames) == "/app/shop/pay.py in charge"
    java = "java.lang.IllegalStateException: x\n\tat com.shop.Pay.charge(Pay.java:40)\n\tat com.shop.View.go(View.java:12)"
    assert _group.top_frame(_group.parse_stack(java)) == "Pay.java in com.shop.Pay.charge"
    js = "Error: x\n    at charge (/app/pay.js:40:7)\n    at main (/app/index.js:3:1)"
    assert _group.parse_stack(js)[-1] == _group.Frame("/app/pay.js", 40, "charge", "")
    assert _group.parse_stack("no frames here") == []


# -- store ---------------------------------------------------------------------------------------


def test_package_records_and_one_error_per_exception(served: Served) -> None:
    highlight_logging.configure(endpoint=served.receiver.endpoint, service_name="shop", schedule_delay=0.05)
    log = logging.getLogger("viewer.test")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(HighlightHandler())
    try:
        log.info("hello %s", "world", extra={"user": "ada"})
        for order in (1, 22, 333):
            try:
                raise KeyError(f"order {order}")
            except KeyError:
                log.exception("lookup failed")
        with highlight_logging.context("sess-1", "req-1"):
            log.warning("in a request")
        assert highlight_logging.flush(10)
    finally:
        log.handlers.clear()
    served.settle()
    stats = served.get("api/stats")
    assert (
        stats["logs"] == 5 and stats["spans"] == 3 and stats["errors"] == 3
    )  # a log and a span per exception
    (group,) = served.get("api/errors")["groups"]
    assert group["type"] == "KeyError" and group["pattern"] == "'order <n>'" and group["count"] == 3
    assert group["frame"].endswith("test_viewer.py in test_package_records_and_one_error_per_exception")
    detail = served.get(f"api/errors/{group['id']}")
    occ = detail["occurrences"][0]
    assert occ["log_item"] and occ["span_item"] and occ["message"] == "'order 333'"
    assert occ["frames"][-1]["function"] == "test_package_records_and_one_error_per_exception"
    assert occ["frames"][-1]["line"] > 0
    log_line = served.get(f"api/item/{occ['log_item']}")
    assert log_line["body"] == "lookup failed" and log_line["group_id"] == group["id"]
    assert log_line["resource"]["service.name"] == "shop"
    request = served.get(f"api/trace?trace={occ['trace_id']}")["items"]
    assert [i["kind"] for i in request] == ["log", "span"]
    session = served.get("api/trace?session=sess-1")["items"]
    assert [i["body"] for i in session] == ["in a request"]
    assert served.get("api/logs?trace=req-1")["items"][0]["body"] == "in a request"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_any_otlp_client_opentelemetry_sdk(served: Served) -> None:
    """OpenTelemetry's own SDK (logs through its LoggingHandler, a span with record_exception) over gRPC."""
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource as SdkResource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    endpoint = served.receiver.endpoint
    resource = SdkResource.create({"service.name": "otel-app"})
    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True)))
    traces = TracerProvider(resource=resource)
    traces.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    log = logging.getLogger("otel.sdk.app")
    log.propagate = False
    log.addHandler(LoggingHandler(logger_provider=logs))
    try:
        with traces.get_tracer("otel.app").start_as_current_span("work") as span:
            log.warning("from the OTel handler")
            try:
                raise ValueError("bad value 12")
            except ValueError as exc:
                span.record_exception(exc)
    finally:
        log.handlers.clear()
        logs.shutdown()
        traces.shutdown()
    served.settle()
    (row,) = served.get("api/logs")["items"]
    assert row["body"] == "from the OTel handler" and row["service"] == "otel-app" and row["level"] == "WARN"
    (group,) = served.get("api/errors")["groups"]
    assert group["type"] == "ValueError" and group["pattern"] == "bad value <n>"
    items = served.get(f"api/trace?trace={row['trace_id']}")["items"]
    assert {i["kind"] for i in items} == {"log", "span"}
    span_item = next(i for i in items if i["kind"] == "span")
    assert (
        span_item["body"] == "work" and span_item["duration_ns"] >= 0 and span_item["group_id"] == group["id"]
    )


def _post(url: str, body: bytes, **headers: str) -> int:
    req = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/x-protobuf", **headers}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return int(r.status)


def test_text_search_matches_attribute_values_not_the_records_bytes(served: Served) -> None:
    """A search for "%" once found records whose timestamp held a 0x25 byte (and "a" any record
    with 0x61 in its time): attribute values are matched as text, filed or not yet."""
    t = (time.time_ns() & ~0xFFFF) | 0x2525  # the byte of "%" in the time's fixed64
    http = f"{served.receiver.http_endpoint}/v1/logs"
    records = [_record("plain", 9, t), _record("tagged", 9, t + 1, note="100% sure")]
    assert _post(http, _logs(*records).SerializeToString()) == 200
    # Perhaps before it is filed: asked until the request reaches the store (it comes down a pipe
    # after the receiver's answer), which holds both records or neither.
    deadline = time.monotonic() + 10
    while (
        not (found := [i["body"] for i in served.get("api/logs?q=%25")["items"]])
        and time.monotonic() < deadline
    ):
        time.sleep(0.005)
    served.settle()
    assert found == ["tagged"]
    assert [i["body"] for i in served.get("api/logs?q=%25")["items"]] == ["tagged"]


def test_otlp_http_and_every_filter(served: Served) -> None:
    base_ms = time.time_ns() // 1_000_000 - 60_000
    base, ms = base_ms * 1_000_000, 1_000_000
    trace_id = bytes(range(16))
    records = [
        _record("debug line", 5, base + 1 * ms),
        _record("50% off_sale", 9, base + 2 * ms, user="ada"),
        _record("warn line", 13, base + 3 * ms, highlight__session_id="s-9"),
        _record("error line", 17, base + 4 * ms, highlight__trace_id="r-1"),
        LogRecord(
            time_unix_nano=base + 5 * ms,
            severity_text="CRITICAL",
            body=AnyValue(string_value="text-only level"),
        ),
        LogRecord(
            time_unix_nano=base + 6 * ms,
            severity_number=9,
            trace_id=trace_id,
            body=AnyValue(string_value="traced"),
        ),
    ]
    http = f"{served.receiver.http_endpoint}/v1/logs"
    assert (
        _post(http, gzip.compress(_logs(*records[:3]).SerializeToString()), **{"Content-Encoding": "gzip"})
        == 200
    )
    assert _post(http, _logs(*records[3:], service="other", scope="lib").SerializeToString()) == 200
    served.settle()

    def bodies(query: str) -> list[str]:
        return [i["body"] for i in served.get("api/logs?" + query)["items"]]

    assert bodies("") == [
        "traced",
        "text-only level",
        "error line",
        "warn line",
        "50% off_sale",
        "debug line",
    ]
    assert bodies("level=WARN") == ["text-only level", "error line", "warn line"]
    assert bodies("level=fatal") == ["text-only level"]
    assert bodies("service=other") == ["traced", "text-only level", "error line"]
    assert bodies("scope=app") == ["warn line", "50% off_sale", "debug line"]
    assert bodies("q=%25") == ["50% off_sale"]  # LIKE's wildcards are literal
    assert bodies("q=f_s") == ["50% off_sale"]
    assert bodies("q=OFF") == ["50% off_sale"]  # the message in any case
    assert bodies("q=ada") == ["50% off_sale"]  # attribute values too, in their case
    assert bodies("q=nothing-like-this") == []
    assert bodies("session=s-9") == ["warn line"]
    assert bodies("trace=r-1") == ["error line"]
    assert bodies(f"trace={trace_id.hex().upper()}") == ["traced"]
    assert bodies(f"since={base_ms + 3}&until={base_ms + 4}") == ["error line", "warn line"]
    assert bodies(f"since={base_ms + 4}.5") == ["traced", "text-only level"]  # the page sends milliseconds
    page = served.get("api/logs?limit=2")
    assert [i["body"] for i in page["items"]] == ["traced", "text-only level"]
    assert bodies(f"limit=2&before={page['items'][-1]['id']}") == ["error line", "warn line"]
    last = page["last_id"]
    assert bodies(f"after={last}") == []
    assert _post(http, _logs(_record("newer", 9)).SerializeToString()) == 200
    served.settle()
    assert bodies(f"after={last}") == ["newer"]


def test_app_spans_join_the_request_their_logs_name(served: Served) -> None:
    """An app's own spans carry no highlight.trace_id; its log records do: the Requests view joins them."""
    trace_id, t = b"\x01" * 16, time.time_ns()
    spans = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=_kv(service__name="svc")),
                scope_spans=[
                    ScopeSpans(
                        spans=[
                            Span(
                                trace_id=trace_id,
                                span_id=b"\x02" * 8,
                                name="GET /",
                                start_time_unix_nano=t,
                                end_time_unix_nano=t + 5_000_000,
                            )
                        ]
                    )
                ],
            )
        ]
    )
    served.store.submit_spans(spans)  # the span first: its request is known only later
    served.settle()
    served.store.submit_logs(
        _logs(
            LogRecord(
                time_unix_nano=t + 1000,
                trace_id=trace_id,
                body=AnyValue(string_value="in GET /"),
                attributes=_kv(highlight__trace_id="req-7"),
            )
        )
    )
    served.settle()
    (request,) = served.get("api/requests")["requests"]
    assert request["key"] == "req-7" and request["count"] == 2 and request["duration_ns"] == 5_000_000
    assert request["name"] == "GET /"
    items = served.get("api/trace?trace=req-7")["items"]
    assert [(i["kind"], i["body"]) for i in items] == [("span", "GET /"), ("log", "in GET /")]
    assert items[0]["duration_ns"] == 5_000_000


def test_keep_bounds_the_store_to_the_newest_records(tmp_path: Path) -> None:
    store = Store(keep=50)
    try:
        base = time.time_ns()
        for batch in range(6):
            recs = [_record(f"r{batch * 20 + i}", 9, base + batch * 20 + i) for i in range(20)]
            recs[0] = _record(
                f"r{batch * 20}", 17, base + batch * 20, exception__type="E", exception__message="m"
            )
            store.submit_logs(_logs(*recs))
        assert store.flush(10)
        stats = store.stats()
        assert stats["logs"] == 50 and stats["last_id"] == 120
        bodies = [i["body"] for i in store.logs(LogQuery(limit=1000))]
        assert bodies[0] == "r119" and bodies[-1] == "r70"
        (group,) = store.error_groups()
        assert group["count"] == 2  # the errors of dropped records go with them (r80 and r100 remain)
    finally:
        store.close()


def test_db_keeps_records_across_restarts(tmp_path: Path) -> None:
    path = str(tmp_path / "viewer.sqlite3")
    store = Store(path, keep=10)
    store.submit_logs(
        _logs(_record("kept", 9), _record("boom", 17, exception__type="E", exception__message="x 1"))
    )
    assert store.flush(10)
    store.close()
    store = Store(path, keep=10)
    try:
        assert [i["body"] for i in store.logs(LogQuery())] == ["boom", "kept"]
        store.submit_logs(_logs(_record("boom", 17, exception__type="E", exception__message="x 2")))
        assert store.flush(10)
        (group,) = store.error_groups()
        assert group["count"] == 2  # the same group as before the restart
    finally:
        store.close()


# -- server --------------------------------------------------------------------------------------


def _status(served: Served, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(served.viewer.url + path.lstrip("/"), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status), dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), dict(exc.headers), exc.read()


def test_page_headers_static_files_and_errors(served: Served) -> None:
    status, headers, body = _status(served, "/")
    assert status == 200 and b"viewer.js" in body and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"] and "unsafe-inline" not in body.decode()
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
    for name in ("viewer.js", "viewer.css", "favicon.svg"):
        assert _status(served, f"/static/{name}")[0] == 200
    assert b"innerHTML" not in _status(served, "/static/viewer.js")[2]  # records become text nodes only
    for bad in (
        "/static/../_store.py",
        "/static/%2e%2e/_store.py",
        "/static/.x.js",
        "/static/nope.js",
        "/nope",
    ):
        assert _status(served, bad)[0] == 404, bad
    assert _status(served, "/api/nope")[0] == 404
    assert _status(served, "/api/logs?after=x")[0] == 400
    assert _status(served, "/api/item/999")[0] == 404
    # DNS rebinding: a page on another name that resolves to 127.0.0.1 must not read the records.
    assert _status(served, "/api/stats", Host="attacker.example:8686")[0] == 421
    assert _status(served, "/api/stats", Host=f"localhost:{served.viewer.port}")[0] == 200


def test_values_json_cannot_carry_are_text(served: Served) -> None:
    rec = LogRecord(time_unix_nano=time.time_ns(), body=AnyValue(string_value="line\u2028separator"))
    rec.attributes.add(key="nan", value=AnyValue(double_value=float("nan")))
    rec.attributes.add(key="raw", value=AnyValue(bytes_value=b"\x00\xff"))
    served.store.submit_logs(_logs(rec))
    served.settle()
    (item,) = served.get("api/logs")["items"]
    assert item["attributes"] == {"nan": "nan", "raw": "AP8="}


def test_cli_prints_the_address_and_warns_only_off_loopback(tmp_path: Path) -> None:
    assert _cli._host_warning("127.0.0.1") is None and _cli._host_warning("::1") is None
    assert _cli._host_warning("localhost") is None
    warning = _cli._host_warning("0.0.0.0")
    assert warning is not None and "WARNING" in warning and "no login" in warning
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-m", "highlight_logging", "serve", "--ui", "--port", "0", "--http-port", "0",
         "--ui-port", "0", "--keep", "500", "--ready-file", str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = ready.read_text().splitlines()
        assert lines[1].startswith("http ") and lines[2].startswith("ui http://127.0.0.1:")
        with urllib.request.urlopen(lines[2].split()[1] + "api/stats", timeout=10) as r:
            assert json.load(r)["keep"] == 500
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert f"Viewer     {lines[2].split()[1]}" in out and "WARNING" not in err
    assert "received 0 log records, 0 spans" in out


def test_otlp_json_client(served: Served) -> None:
    """OTLP/HTTP's JSON encoding, as OpenTelemetry's JavaScript exporters send it: a span and a log in one trace."""
    trace_id, t = "5b8efff798038103d269b633813fc60c", time.time_ns()
    spans = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "fetch"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": "eee19b7ec3c1b174",
                                "name": "GET /api/cart",
                                "kind": 3,
                                "startTimeUnixNano": str(t),
                                "endTimeUnixNano": str(t + 3_000_000),
                                "status": {"code": 2, "message": "502"},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    logs = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
                "scopeLogs": [
                    {
                        "logRecords": [
                            {
                                "timeUnixNano": str(t + 1000),
                                "severityText": "WARN",
                                "body": {"stringValue": "cart fetch failed"},
                                "traceId": trace_id,
                            }
                        ]
                    }
                ],
            }
        ]
    }
    base = served.receiver.http_endpoint
    assert (
        _post(f"{base}/v1/traces", json.dumps(spans).encode(), **{"Content-Type": "application/json"}) == 200
    )
    assert _post(f"{base}/v1/logs", json.dumps(logs).encode(), **{"Content-Type": "application/json"}) == 200
    served.settle()
    items = served.get(f"api/trace?trace={trace_id}")["items"]
    assert [(i["kind"], i["body"]) for i in items] == [
        ("span", "GET /api/cart"),
        ("log", "cart fetch failed"),
    ]
    assert (
        items[0]["duration_ns"] == 3_000_000
        and items[0]["status"] == "ERROR"
        and items[0]["span_kind"] == "CLIENT"
    )
    assert items[1]["level"] == "WARN" and items[1]["severity"] == 13


# -- ingest in two halves, and the viewer's process ---------------------------------------------


def test_records_read_the_same_before_and_after_they_are_filed() -> None:
    """``serve --ui`` keeps each request as it came at once and files its records while the pipe is
    quiet: in between, the Logs view and a record's page read them from the kept requests."""
    base = time.time_ns()
    trace_id = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    logs = [
        _logs(
            _record("debug line", 5, base),
            _record("50% off_sale", 9, base + 2, user="ada"),
            _record("warn line", 13, base + 1, highlight__session_id="s-9"),  # out of order: ids follow time
        ),
        _logs(
            _record("error line", 17, base + 4, highlight__trace_id="r-1"),
            _record("boom", 17, base + 5, exception__type="E", exception__message="m 1"),
            LogRecord(time_unix_nano=base + 6, severity_text="CRITICAL", body=AnyValue(string_value="lvl")),
            LogRecord(
                time_unix_nano=base + 7,
                severity_number=9,
                trace_id=trace_id,
                body=AnyValue(string_value="traced"),
            ),
            service="other",
            scope="lib",
        ),
    ]
    span = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                scope_spans=[ScopeSpans(spans=[Span(trace_id=trace_id, span_id=b"\x02" * 8, name="GET /")])]
            )
        ]
    )
    queries = [
        LogQuery(),
        LogQuery(limit=2),
        LogQuery(min_severity=13),
        LogQuery(service="other"),
        LogQuery(scope="app"),
        LogQuery(text="%"),
        LogQuery(text="OFF"),
        LogQuery(text="ada"),
        LogQuery(text="nothing-like-this"),
        LogQuery(session="s-9"),
        LogQuery(trace="r-1"),
        LogQuery(trace=trace_id.hex().upper()),
        LogQuery(since_ns=base + 1, until_ns=base + 4),
        LogQuery(after_id=3),
        LogQuery(before_id=3),
        LogQuery(after_id=2, before_id=6, limit=1),
    ]
    shown = ("id", "body", "level", "severity", "scope", "service", "trace_id", "attributes", "exception")

    def read(store: Store) -> tuple[list[list[dict[str, object]]], list[dict[str, object] | None]]:
        pages = [[{k: i.get(k) for k in shown} for i in store.logs(q)] for q in queries]
        items = [store.item(i) for i in range(1, 10)]
        for it in items:
            if it is not None:
                it.pop("group_id", None), it.pop("error_id", None)  # the error group comes with filing
        return pages, items

    store = Store(keep=100, writer=False)
    try:
        store.ingest([(True, r.SerializeToString(), 3 if i == 0 else 4) for i, r in enumerate(logs)])
        store.ingest([(False, span.SerializeToString(), 1)])
        assert store.stats() == {
            "logs": 7,
            "spans": 1,
            "errors": 0,
            "last_id": 8,
            "keep": 100,
            "unindexed": 8,
        }
        kept = read(store)
        assert [i["body"] for i in kept[0][0]] == [
            "traced", "lvl", "boom", "error line", "50% off_sale", "warn line", "debug line",
        ]  # fmt: skip
        assert store.item(8) is not None and store.item(9) is None  # the span, then nothing
        while store.index(2):
            pass
        assert store.stats()["unindexed"] == 0 and store.stats()["errors"] == 1
        assert read(store) == kept
        store.ingest([(True, _logs(_record("newest", 9, base + 9)).SerializeToString(), 1)])
        # Half filed, half kept: one page, in id order, without a gap or a repeat.
        assert [i["id"] for i in store.logs(LogQuery(limit=3))] == [9, 7, 6]
    finally:
        store.close()


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True  # exited; its parent has not reaped it yet
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def _serve_ui(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str, str]:
    """``serve --ui`` in a session of its own (a terminal's Ctrl-C reaches its whole process group);
    returns it, its OTLP/HTTP base and its page's address."""
    ready = tmp_path / "ready"
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "highlight_logging", "serve", "--ui", "--port", "0", "--http-port", "0",
         "--ui-port", "0", "--ready-file", str(ready), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    lines = ready.read_text().splitlines()
    return proc, f"http://127.0.0.1:{lines[1].split()[1]}", lines[2].split()[1]


def _stats(ui: str) -> dict[str, int]:
    with urllib.request.urlopen(ui + "api/stats", timeout=10) as r:
        stats: dict[str, int] = json.load(r)
        return stats


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads a process's children from /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cli_store_process_stops_cleanly_and_db_persists(tmp_path: Path, signum: int) -> None:
    """Ctrl-C (to the whole process group) or SIGTERM: both processes end, no traceback, records kept."""
    db = str(tmp_path / "viewer.sqlite3")
    proc, http, ui = _serve_ui(tmp_path, "--db", db)
    try:
        (child,) = _children(proc.pid)
        assert _post(f"{http}/v1/logs", _logs(_record("kept across restarts", 9)).SerializeToString()) == 200
        deadline = time.monotonic() + 20
        while _stats(ui)["logs"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "received 1 log records, 0 spans" in out, (out, err)
    assert _gone(child, 10)
    proc, http, ui = _serve_ui(tmp_path, "--db", db)
    try:
        assert _stats(ui)["logs"] == 1
        with urllib.request.urlopen(ui + "api/logs", timeout=10) as r:
            assert [i["body"] for i in json.load(r)["items"]] == ["kept across restarts"]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads a process's children from /proc")
def test_store_process_ends_with_a_killed_parent(tmp_path: Path) -> None:
    proc, _, _ = _serve_ui(tmp_path)
    (child,) = _children(proc.pid)
    proc.kill()
    proc.communicate(timeout=30)
    assert _gone(child, 10)  # its input ends with its parent


def test_busy_ui_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "highlight_logging", "serve", "--ui", "--port", "0", "--http-port", "0",
             "--ui-port", str(port)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert out.returncode == 1 and "cannot start the viewer" in out.stderr and "Traceback" not in out.stderr
