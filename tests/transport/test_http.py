"""OTLP/HTTP: protobuf bodies, gzip, the same mapping and retry rules as gRPC."""

from __future__ import annotations

import grpc
import pytest
from otlp_receiver import FaultyReceiver, handler_logger

import highlight_logging
from highlight_logging._core.settings import resolve


def test_logs_and_exception_spans_over_http_with_gzip(faulty: FaultyReceiver) -> None:
    """protocol="http/protobuf" posts gzip-compressed protobuf to /v1/logs and /v1/traces."""
    log = handler_logger("http.basic", endpoint=faulty.http_endpoint, protocol="http/protobuf")
    log.info("over http", extra={"k": 1})
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("failed")
    assert highlight_logging.flush(10)
    assert sorted(str(r.body) for r in faulty.log_records()) == ["failed", "over http"]
    assert faulty.wait_for_spans(1, 5)
    assert {info.encoding for info in faulty.requests} == {"gzip"}
    assert all(info.transport == "http" for info in faulty.requests)
    (span,) = faulty.spans()
    failed = next(r for r in faulty.log_records() if r.body == "failed")
    assert span.span.span_id == failed.record.span_id


def test_protocol_from_environment(faulty: FaultyReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf selects HTTP; its default port is 4318."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert resolve({}).endpoint == "https://otel.highlight.io:4318"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", str(faulty.http_endpoint))
    log = handler_logger("http.env")
    log.warning("env says http")
    assert highlight_logging.flush(10)
    assert [r.body for r in faulty.log_records()] == ["env says http"]


def test_http_retries_503_and_drops_400(faulty: FaultyReceiver) -> None:
    """503 is retried; 400 is not, and is counted."""
    log = handler_logger("http.retry", endpoint=faulty.http_endpoint, protocol="http/protobuf")
    faulty.fail_next(2, grpc.StatusCode.UNAVAILABLE, signal="logs")
    log.warning("retried")
    assert highlight_logging.flush(10)
    faulty.fail_next(1, grpc.StatusCode.INVALID_ARGUMENT, signal="logs")
    log.warning("refused")
    assert not highlight_logging.flush(10)
    assert [r.body for r in faulty.log_records()] == ["retried"]
    assert highlight_logging.stats()["logs"]["dropped"]["non_retryable"] == 1
