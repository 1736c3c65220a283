"""The bundled OTLP receiver, its fault injection, the blackhole, and the ``serve`` command."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from otlp_receiver import (
    Blackhole,
    FaultyReceiver,
    Partial,
    Reject,
    export_logs,
    export_spans,
    free_port,
    http_post,
    log_record,
    logs_request,
    retry_delay_of,
    span,
    spans_request,
    status_details,
)
from paths import ROOT

from highlight_logging._devtools import cli as _cli

REPO_ROOT = ROOT
TRACE_ID = bytes(range(16))
SPAN_ID = bytes(range(8))
STACK = (
    'Traceback (most recent call last):\n  File "app.py", line 3, in <module>\n    boom()\nValueError: bad'
)


@pytest.fixture
def rx() -> Iterator[FaultyReceiver]:
    with FaultyReceiver() as receiver:
        yield receiver


def _error_log() -> logs_service_pb2.ExportLogsServiceRequest:
    return logs_request(
        log_record(
            "it broke",
            severity_text="ERROR",
            severity_number=17,
            attributes={
                "exception.type": "ValueError",
                "exception.message": "bad",
                "exception.stacktrace": STACK,
                "user": "ada",
            },
        )
    )


# -- receiving -----------------------------------------------------------------------------------


def test_grpc_gzip_logs_arrive_decoded(rx: FaultyReceiver) -> None:
    """A gzip-compressed gRPC logs export is stored and decoded with resource, scope and fields."""
    attrs = {
        "n": 3,
        "ok": True,
        "ratio": 0.5,
        "raw": b"\x00\x01",
        "tags": ["a", 1],
        "ctx": {"k": {"x": None}},
    }
    record = log_record("hello", attributes=attrs, trace_id=TRACE_ID, span_id=SPAN_ID)
    response = export_logs(rx.endpoint, logs_request(record, service="svc", scope="my.scope"))
    assert response == logs_service_pb2.ExportLogsServiceResponse()
    [got] = rx.log_records()
    assert got.body == "hello"
    assert got.attributes == attrs
    assert got.resource_attributes == {"service.name": "svc"}
    assert got.scope.name == "my.scope"
    assert got.record.trace_id == TRACE_ID
    [info] = rx.requests
    assert (info.transport, info.signal, info.items, info.encoding, info.wire_size) == (
        "grpc",
        "logs",
        1,
        None,
        None,
    )
    assert info.size == rx.requests_logs[0].ByteSize()


def test_grpc_spans_arrive_decoded(rx: FaultyReceiver) -> None:
    """A gRPC traces export is stored and flattened into (resource, scope, span)."""
    export_spans(rx.endpoint, spans_request(span("GET /", trace_id=TRACE_ID), span("db"), service="svc"))
    assert [s.span.name for s in rx.spans()] == ["GET /", "db"]
    assert rx.spans()[0].span.trace_id == TRACE_ID
    assert rx.spans()[0].resource_attributes == {"service.name": "svc"}
    assert len(rx.requests_spans) == 1


def test_http_gzip_logs_arrive(rx: FaultyReceiver) -> None:
    """OTLP/HTTP with a gzip body is decoded, answered with protobuf, and its wire size recorded."""
    body = logs_request(log_record("via http")).SerializeToString()
    status, headers, payload = http_post(f"{rx.http_endpoint}/v1/logs", body, gzip=True)
    assert status == 200
    assert headers["Content-Type"] == "application/x-protobuf"
    assert (
        logs_service_pb2.ExportLogsServiceResponse.FromString(payload)
        == logs_service_pb2.ExportLogsServiceResponse()
    )
    assert [r.body for r in rx.log_records()] == ["via http"]
    [info] = rx.requests
    assert (info.transport, info.encoding, info.size) == ("http", "gzip", len(body))
    assert info.wire_size is not None and info.wire_size != len(body)


def test_http_plain_traces_arrive(rx: FaultyReceiver) -> None:
    """OTLP/HTTP traces without compression arrive; the answer is an ExportTraceServiceResponse."""
    body = spans_request(span("s")).SerializeToString()
    status, _, payload = http_post(f"{rx.http_endpoint}/v1/traces", body)
    assert status == 200
    assert trace_service_pb2.ExportTraceServiceResponse.FromString(payload).ByteSize() == 0
    assert [s.span.name for s in rx.spans()] == ["s"]
    assert rx.requests[0].encoding is None and rx.requests[0].wire_size == len(body)


def test_http_rejects_unknown_path_bad_body_and_other_types(rx: FaultyReceiver) -> None:
    """Unknown paths get 404, undecodable bodies 400, other content types 415, and nothing is stored."""
    assert http_post(f"{rx.http_endpoint}/v1/metrics", b"")[0] == 404
    assert http_post(f"{rx.http_endpoint}/v1/logs", b"\xff\xff\xff")[0] == 400
    assert http_post(f"{rx.http_endpoint}/v1/logs", b"{", content_type="application/json")[0] == 400
    assert (
        http_post(f"{rx.http_endpoint}/v1/logs", b'{"resourceLogs": 1}', content_type="application/json")[0]
        == 400
    )
    assert http_post(f"{rx.http_endpoint}/v1/logs", b"x", content_type="text/plain")[0] == 415
    assert rx.log_records() == [] and rx.requests == []


def test_http_accepts_otlp_json(rx: FaultyReceiver) -> None:
    """OTLP/HTTP's JSON encoding (what OpenTelemetry's JavaScript exporters send): hex ids, camelCase, answered in JSON."""
    body = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
                "scopeLogs": [
                    {
                        "scope": {"name": "js"},
                        "logRecords": [
                            {
                                "timeUnixNano": "1700000000000000000",
                                "severityNumber": 9,
                                "body": {"stringValue": "from JSON"},
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "attributes": [{"key": "n", "value": {"intValue": "3"}}],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    status, headers, payload = http_post(
        f"{rx.http_endpoint}/v1/logs", json.dumps(body).encode(), content_type="application/json"
    )
    assert status == 200 and headers["Content-Type"] == "application/json" and json.loads(payload) == {}
    (rec,) = rx.log_records()
    assert (
        rec.body == "from JSON"
        and rec.attributes == {"n": 3}
        and rec.resource_attributes == {"service.name": "web"}
    )
    assert (
        rec.record.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
        and rec.record.span_id.hex() == "eee19b7ec3c1b174"
    )
    assert rec.record.time_unix_nano == 1700000000000000000


def test_wait_for_logs_times_out_then_sees_arrivals(rx: FaultyReceiver) -> None:
    """wait_for_logs returns False on timeout and True once enough records arrived from another thread."""
    assert rx.wait_for_logs(1, timeout=0.05) is False
    sender = threading.Thread(
        target=export_logs,
        args=(rx.endpoint, logs_request(log_record("a"), log_record("b"), log_record("c"))),
    )
    sender.start()
    try:
        assert rx.wait_for_logs(3, timeout=5)
    finally:
        sender.join(5)
    assert rx.wait_for_spans(1, timeout=0.01) is False


def test_clear_forgets_everything(rx: FaultyReceiver) -> None:
    """clear() empties stored requests and resets the wait counters."""
    export_logs(rx.endpoint, logs_request(log_record()))
    rx.clear()
    assert rx.log_records() == [] and rx.requests == []
    assert rx.wait_for_logs(1, timeout=0.01) is False


# -- output ----------------------------------------------------------------------------------------


def test_jsonl_has_one_object_per_record_and_span(tmp_path: Path) -> None:
    """The JSONL file gets one parseable object per log record and span, ids hex, bytes base64."""
    path = tmp_path / "out.jsonl"
    with FaultyReceiver(jsonl_path=str(path)) as rx:
        record = log_record(
            "hi", attributes={"raw": b"\x00\xff", "nested": {"a": [1, "x"]}}, trace_id=TRACE_ID
        )
        export_logs(rx.endpoint, logs_request(record, log_record("second"), service="svc", scope="sc"))
        export_spans(rx.endpoint, spans_request(span("op", trace_id=TRACE_ID, span_id=SPAN_ID, error="boom")))
        assert rx.wait_for_spans(1, timeout=5)
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [obj["kind"] for obj in lines] == ["log", "log", "span"]
    first = lines[0]
    assert first["resource"] == {"service.name": "svc"}
    assert first["scope"]["name"] == "sc"
    assert first["body"] == "hi"
    assert first["attributes"] == {"raw": "AP8=", "nested": {"a": [1, "x"]}}
    assert first["trace_id"] == TRACE_ID.hex() and first["span_id"] == ""
    assert first["severity_text"] == "INFO" and first["severity_number"] == 9
    spanobj = lines[2]
    assert spanobj["name"] == "op" and spanobj["span_id"] == SPAN_ID.hex() and "span_kind" in spanobj
    assert spanobj["status"] == {"message": "boom", "code": 2}


def test_printer_shows_body_severity_and_exceptions() -> None:
    """Printed output has one line per record with severity/body/attrs and the stacktrace indented."""
    lines: list[str] = []
    with FaultyReceiver(printer=lines.append) as rx:
        export_logs(rx.endpoint, _error_log())
        exc = ("KeyError", "'k'", "Traceback (most recent call last):\nKeyError: 'k'")
        export_spans(
            rx.endpoint, spans_request(span("checkout", trace_id=TRACE_ID, error="failed", exception=exc))
        )
        assert rx.wait_for_spans(1, timeout=5)
    text = "\n".join(lines)
    assert "service.name=test-service" in text
    [log_line] = [line for line in lines if "it broke" in line]
    assert "ERROR" in log_line and "[test.scope]" in log_line and "user=ada" in log_line
    assert "exception.stacktrace" not in log_line
    assert log_line[:4].isdigit() and log_line[23] == "Z"  # ISO UTC timestamp with ms leads
    assert "ValueError: bad" in text
    assert '         File "app.py", line 3, in <module>' in lines  # indented under the record
    [span_line] = [line for line in lines if "checkout" in line]
    assert f"trace={TRACE_ID.hex()}" in span_line and "status=ERROR(failed)" in span_line
    assert "KeyError: 'k'" in text


def test_callbacks_see_each_accepted_request() -> None:
    """on_logs/on_spans are called with every accepted request before waiters are woken."""
    got: list[object] = []
    with FaultyReceiver(on_logs=got.append, on_spans=got.append) as rx:
        export_logs(rx.endpoint, logs_request(log_record()))
        export_spans(rx.endpoint, spans_request(span()))
        assert rx.wait_for_spans(1, timeout=5)
    assert [type(r) for r in got] == [
        logs_service_pb2.ExportLogsServiceRequest,
        trace_service_pb2.ExportTraceServiceRequest,
    ]


# -- fault injection -------------------------------------------------------------------------------


def test_fail_next_returns_code_with_retry_info_then_recovers(rx: FaultyReceiver) -> None:
    """fail_next(n) rejects exactly n calls with the code and a decodable RetryInfo, then accepts."""
    rx.fail_next(2, grpc.StatusCode.RESOURCE_EXHAUSTED, message="slow down", retry_delay=1.5)
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as caught:
            export_logs(rx.endpoint, logs_request(log_record()))
        err = caught.value
        assert isinstance(err, grpc.Call)
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.details() == "slow down"
        details = status_details(err)
        assert details.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert retry_delay_of(err) == pytest.approx(1.5)
    export_logs(rx.endpoint, logs_request(log_record("third")))
    assert [r.body for r in rx.log_records()] == ["third"]
    assert len(rx.requests) == 3 and len(rx.injected) == 2


def test_fail_without_retry_delay_has_no_details(rx: FaultyReceiver) -> None:
    """A rejection without retry_delay carries the code but no status details."""
    rx.fail_next(1, grpc.StatusCode.INVALID_ARGUMENT)
    with pytest.raises(grpc.RpcError) as caught:
        export_logs(rx.endpoint, logs_request(log_record()))
    assert isinstance(caught.value, grpc.Call)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert status_details(caught.value) is None and retry_delay_of(caught.value) is None


def test_fail_always_until_cleared_and_signal_filter(rx: FaultyReceiver) -> None:
    """fail_always(signal=...) hits only that signal until clear_faults()."""
    rx.fail_always(grpc.StatusCode.UNAVAILABLE, signal="traces")
    export_logs(rx.endpoint, logs_request(log_record()))
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as caught:
            export_spans(rx.endpoint, spans_request(span()))
        assert isinstance(caught.value, grpc.Call)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    rx.clear_faults()
    export_spans(rx.endpoint, spans_request(span()))
    assert len(rx.spans()) == 1 and len(rx.log_records()) == 1


def test_http_rejection_maps_status_and_retry_after(rx: FaultyReceiver) -> None:
    """Over HTTP a rejection becomes the mapped status, a Status body with RetryInfo, and Retry-After."""
    rx.fail_next(1, grpc.StatusCode.RESOURCE_EXHAUSTED, message="throttled", retry_delay=1.2)
    rx.fail_next(1, grpc.StatusCode.UNAVAILABLE, http_status=502)
    body = logs_request(log_record()).SerializeToString()
    status, headers, payload = http_post(f"{rx.http_endpoint}/v1/logs", body, gzip=True)
    assert status == 429 and headers["Retry-After"] == "2"
    decoded = status_pb2.Status.FromString(payload)
    assert decoded.message == "throttled" and retry_delay_of(decoded) == pytest.approx(1.2)
    assert http_post(f"{rx.http_endpoint}/v1/logs", body)[0] == 502
    assert http_post(f"{rx.http_endpoint}/v1/logs", body)[0] == 200


def test_partial_success_over_grpc_and_http(rx: FaultyReceiver) -> None:
    """partial_success answers with the rejected count and message; the records are still stored."""
    rx.partial_success(3, "dropped 3", n=2)
    logs = export_logs(rx.endpoint, logs_request(log_record()))
    assert logs.partial_success.rejected_log_records == 3
    assert logs.partial_success.error_message == "dropped 3"
    _, _, payload = http_post(f"{rx.http_endpoint}/v1/traces", spans_request(span()).SerializeToString())
    traces = trace_service_pb2.ExportTraceServiceResponse.FromString(payload)
    assert traces.partial_success.rejected_spans == 3
    assert not export_logs(rx.endpoint, logs_request(log_record())).HasField("partial_success")
    assert len(rx.log_records()) == 2 and len(rx.spans()) == 1
    assert [type(outcome) for _, outcome in rx.injected] == [Partial, Partial]


def test_delay_holds_the_response(rx: FaultyReceiver) -> None:
    """set_delay(D) holds each answer D seconds: a shorter client deadline expires, a longer one succeeds."""
    rx.set_delay(0.3)
    with pytest.raises(grpc.RpcError) as caught:
        export_logs(rx.endpoint, logs_request(log_record()), timeout=0.05)
    assert isinstance(caught.value, grpc.Call)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    started = time.monotonic()
    export_logs(rx.endpoint, logs_request(log_record()), timeout=5)
    assert time.monotonic() - started >= 0.29


def test_stop_interrupts_an_injected_delay() -> None:
    """stop() cuts a long injected delay short; the in-flight client gets an error promptly."""
    rx = FaultyReceiver()
    rx.start()
    rx.set_delay(60)
    errors: queue.Queue[BaseException | None] = queue.Queue()

    def call() -> None:
        try:
            export_logs(rx.endpoint, logs_request(log_record()), timeout=30)
            errors.put(None)
        except BaseException as exc:
            errors.put(exc)

    threading.Thread(target=call, daemon=True).start()
    assert rx.wait_for_requests(1, timeout=5)
    started = time.monotonic()
    rx.stop(grace=0.5)
    assert time.monotonic() - started < 5
    assert isinstance(errors.get(timeout=5), grpc.RpcError)
    assert rx.log_records() == []


def test_down_window_answers_unavailable(rx: FaultyReceiver) -> None:
    """While down, gRPC gets UNAVAILABLE and HTTP 503; after come_up both are accepted."""
    rx.go_down()
    assert rx.is_down
    with pytest.raises(grpc.RpcError) as caught:
        export_logs(rx.endpoint, logs_request(log_record()))
    assert isinstance(caught.value, grpc.Call)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    body = logs_request(log_record()).SerializeToString()
    assert http_post(f"{rx.http_endpoint}/v1/logs", body)[0] == 503
    rx.come_up()
    export_logs(rx.endpoint, logs_request(log_record()))
    assert http_post(f"{rx.http_endpoint}/v1/logs", body)[0] == 200
    assert len(rx.log_records()) == 2
    assert all(isinstance(outcome, Reject) for _, outcome in rx.injected)


# -- unreachable collectors ------------------------------------------------------------------------


def test_blackhole_accepts_but_never_answers() -> None:
    """A call to the blackhole connects, then runs into its deadline."""
    with Blackhole() as hole:
        with pytest.raises(grpc.RpcError) as caught:
            export_logs(hole.endpoint, logs_request(log_record()), timeout=0.5)
        assert isinstance(caught.value, grpc.Call)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert hole.wait_for_connections(1, timeout=5)


def test_free_port_refuses_connections() -> None:
    """Nothing listens on free_port(): a gRPC call fails UNAVAILABLE well before its deadline."""
    port = free_port()
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        export_logs(f"127.0.0.1:{port}", logs_request(log_record()), timeout=5)
    assert isinstance(caught.value, grpc.Call)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 4


def test_receiver_refuses_a_busy_port(rx: FaultyReceiver) -> None:
    """Starting a second receiver on a port in use fails instead of silently sharing it."""
    other = FaultyReceiver(port=rx.port, http_port=None)
    with pytest.raises(RuntimeError):
        other.start()


# -- command line ----------------------------------------------------------------------------------


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version and exits 0."""
    with pytest.raises(SystemExit) as exited:
        _cli.main(["--version"])
    assert exited.value.code == 0
    assert "0." in capsys.readouterr().out


def test_cli_without_command_prints_help() -> None:
    """No subcommand is a usage error (status 2)."""
    assert _cli.main([]) == 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_serve_receives_and_exits_cleanly_on_signal(tmp_path: Path, signum: int) -> None:
    """`python -m highlight_logging serve --port 0` writes its port, prints a record, exits 0 on the signal."""
    ready = tmp_path / "port"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "highlight_logging", "serve", "--port", "0", "--http-port", "0"]
    argv += ["--ready-file", str(ready), "--jsonl", str(tmp_path / "out.jsonl")]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()

    def wait_line(needle: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"exited before {needle!r}: {seen}")
            seen.append(line)
            if needle in line:
                return line

    try:
        wait_line("Press Ctrl-C")
        port = int(ready.read_text().strip())  # written before the banner
        export_logs(f"127.0.0.1:{port}", _error_log())
        assert "it broke" in wait_line("it broke")
        wait_line("ValueError: bad")
        proc.send_signal(signum)
        assert proc.wait(timeout=5) == 0
        wait_line("received 1 log records")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
