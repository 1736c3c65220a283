"""The rules every transport shares, as pure functions: a gRPC status or an HTTP answer to an
Outcome (the OTLP specification's retry rules), RetryInfo, partial_success."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from highlight_logging._transport import LOGS, TRACES, Outcome, StatusCode, classify_grpc
from highlight_logging._transport.base import (
    classify_http,
    grpc_target,
    partial_success,
    retry_delay,
    status_code,
    status_for_http,
    status_for_reset,
)
from highlight_logging._transport.grpcio import classify_error

S = StatusCode


def _retry_info(seconds: int, nanos: int = 0, code: StatusCode = S.RESOURCE_EXHAUSTED) -> bytes:
    packed = any_pb2.Any()
    packed.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=seconds, nanos=nanos)))
    return status_pb2.Status(code=code.value, message="slow down", details=[packed]).SerializeToString()


def test_status_codes_are_grpcs() -> None:
    """Our enum stands in for grpc.StatusCode (which the built-in client never imports)."""
    assert {c.name: c.value for c in StatusCode} == {c.name: c.value[0] for c in grpc.StatusCode}


# (code, retryable, reconnect): the specification's retryable codes, and UNAVAILABLE reconnects.
_BY_CODE = [
    (S.CANCELLED, True, False),
    (S.UNKNOWN, False, False),
    (S.INVALID_ARGUMENT, False, False),
    (S.DEADLINE_EXCEEDED, True, False),
    (S.NOT_FOUND, False, False),
    (S.ALREADY_EXISTS, False, False),
    (S.PERMISSION_DENIED, False, False),
    (S.RESOURCE_EXHAUSTED, False, False),  # without RetryInfo
    (S.FAILED_PRECONDITION, False, False),
    (S.ABORTED, True, False),
    (S.OUT_OF_RANGE, True, False),
    (S.UNIMPLEMENTED, False, False),
    (S.INTERNAL, False, False),
    (S.UNAVAILABLE, True, True),
    (S.DATA_LOSS, True, False),
    (S.UNAUTHENTICATED, False, False),
]


def test_the_table_covers_every_failing_code() -> None:
    assert {code for code, _, _ in _BY_CODE} == set(StatusCode) - {S.OK}


@pytest.mark.parametrize(("code", "retryable", "reconnect"), _BY_CODE)
def test_each_status_code(code: StatusCode, retryable: bool, reconnect: bool) -> None:
    assert classify_grpc(code, "why") == Outcome(
        False, retryable=retryable, reconnect=reconnect, detail=f"{code.name}: why"
    )
    assert classify_grpc(code).detail == code.name  # no message: the name alone


@pytest.mark.parametrize("code", [S.UNAVAILABLE, S.ABORTED, S.RESOURCE_EXHAUSTED])
def test_retry_info_gives_the_delay(code: StatusCode) -> None:
    """RetryInfo makes RESOURCE_EXHAUSTED retryable; on any retryable code it sets the delay."""
    out = classify_grpc(code, "slow down", _retry_info(1, 500_000_000, code))
    assert (out.ok, out.retryable, out.retry_after, out.too_large) == (False, True, 1.5, False)


def test_resource_exhausted_without_retry_info_is_not_retried() -> None:
    for trailer in (None, b"", b"\xff\xfe not a status", status_pb2.Status(code=8).SerializeToString()):
        out = classify_grpc(S.RESOURCE_EXHAUSTED, "quota", trailer)
        assert (out.retryable, out.retry_after, out.too_large) == (False, None, False), trailer


@pytest.mark.parametrize(
    "message",
    [
        "Received message larger than max (2000000 vs. 1048576)",  # grpcio, grpc-js uncompressed
        "Sent message larger than max (70000000 vs. 67108864)",  # grpcio, sending
        "grpc: received message larger than max (2000000 vs. 1048576)",  # grpc-go
        "grpc: received message after decompression larger than max (2000000 vs. 1048576)",  # grpc-go
        "Received message that decompresses to a size larger than 1048576",  # grpc-js
        "message too large",  # Envoy and others
        "Request Too Large",
    ],
)
def test_too_large_wordings_of_every_server(message: str) -> None:
    out = classify_grpc(S.RESOURCE_EXHAUSTED, message)
    assert out.too_large and not out.retryable and out.detail == f"RESOURCE_EXHAUSTED: {message}"
    # Too large even when the server also asks to wait: the size, not the rate, is the problem.
    assert classify_grpc(S.RESOURCE_EXHAUSTED, message, _retry_info(2)).too_large


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (S.UNKNOWN, "Received http2 header with status: 413"),  # grpcio, a proxy's body limit
        (S.INTERNAL, "failed: HTTP 413 from the proxy"),
    ],
)
def test_a_proxys_413_is_too_large_whatever_the_code(code: StatusCode, message: str) -> None:
    out = classify_grpc(code, message)
    assert (out.too_large, out.retryable) == (True, False)


def test_status_code_from_grpc_status() -> None:
    assert [status_code(v) for v in (0, 8, 14, 16)] == [
        S.OK,
        S.RESOURCE_EXHAUSTED,
        S.UNAVAILABLE,
        S.UNAUTHENTICATED,
    ]
    assert status_code(17) is S.UNKNOWN and status_code(-1) is S.UNKNOWN


@pytest.mark.parametrize(
    ("http", "code"),
    [
        (400, S.INTERNAL),
        (401, S.UNAUTHENTICATED),
        (403, S.PERMISSION_DENIED),
        (404, S.UNIMPLEMENTED),
        (429, S.UNAVAILABLE),
        (502, S.UNAVAILABLE),
        (503, S.UNAVAILABLE),
        (504, S.UNAVAILABLE),
        (200, S.UNKNOWN),
        (500, S.UNKNOWN),
        (-1, S.UNKNOWN),  # no :status at all
    ],
)
def test_http_status_without_grpc_status(http: int, code: StatusCode) -> None:
    """gRPC's doc/http-grpc-status-mapping.md: so a proxy's 502 is retried, its 401 is not."""
    assert status_for_http(http) is code


@pytest.mark.parametrize(
    ("error", "code"), [(7, S.UNAVAILABLE), (8, S.CANCELLED), (11, S.RESOURCE_EXHAUSTED), (2, S.INTERNAL)]
)
def test_stream_reset_without_grpc_status(error: int, code: StatusCode) -> None:
    assert status_for_reset(error) is code


@pytest.mark.parametrize(
    ("status", "retryable", "too_large"),
    [
        (400, False, False),
        (401, False, False),
        (403, False, False),
        (404, False, False),
        (413, False, True),
        (429, True, False),
        (500, False, False),
        (502, True, False),
        (503, True, False),
        (504, True, False),
    ],
)
def test_otlp_http_status(status: int, retryable: bool, too_large: bool) -> None:
    assert classify_http(status) == Outcome(
        False, retryable=retryable, too_large=too_large, detail=f"HTTP {status}"
    )
    assert classify_http(status, 3.0, "HTTP 503 (through proxy)").retry_after == 3.0


def test_retry_delay() -> None:
    assert retry_delay(_retry_info(0, 250_000_000)) == 0.25
    assert retry_delay(None) is None and retry_delay(b"") is None and retry_delay(b"\x0a\xff") is None


def test_partial_success() -> None:
    logs = logs_service_pb2.ExportLogsServiceResponse()
    logs.partial_success.rejected_log_records = 3
    logs.partial_success.error_message = "too old"
    spans = trace_service_pb2.ExportTraceServiceResponse()
    spans.partial_success.rejected_spans = 2
    assert partial_success(logs.SerializeToString(), LOGS) == (3, "too old")
    assert partial_success(spans.SerializeToString(), TRACES) == (2, "")
    assert partial_success(b"", LOGS) == (0, "")
    assert partial_success(b"\xff\xff\xff", LOGS) == (0, "")  # unreadable: accepted, nothing rejected


def test_grpc_target() -> None:
    assert grpc_target("https://collector:4317/") == "collector:4317"
    assert grpc_target("GRPC://collector:4317") == "collector:4317"
    assert grpc_target("unix:/run/otel.sock") == "unix:/run/otel.sock"


class _RpcError(grpc.RpcError):
    """What grpcio raises for a failed call: an RpcError that is also a grpc.Call."""

    def __init__(
        self, code: grpc.StatusCode, details: str, trailers: tuple[tuple[str, bytes], ...] = ()
    ) -> None:
        self._code, self._details, self._trailers = code, details, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._trailers


@pytest.mark.parametrize(("code", "retryable", "reconnect"), _BY_CODE)
def test_the_grpcio_client_reads_its_errors_through_the_same_rule(
    code: StatusCode, retryable: bool, reconnect: bool
) -> None:
    err = _RpcError(getattr(grpc.StatusCode, code.name), "why")
    assert classify_error(err) == classify_grpc(code, "why")
    details = _retry_info(2, code=code)
    err = _RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota", (("grpc-status-details-bin", details),))
    assert classify_error(err) == classify_grpc(S.RESOURCE_EXHAUSTED, "quota", details)
    assert classify_error(err).retry_after == 2.0
