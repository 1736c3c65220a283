"""OTLP/HTTP: protobuf bodies, gzip, the same mapping and retry rules as gRPC."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
import pytest
from otlp_receiver import FaultyReceiver

import highlight_logging
from highlight_logging import HighlightHandler
from highlight_logging._settings import resolve


@pytest.fixture
def rx() -> Iterator[FaultyReceiver]:
    with FaultyReceiver() as receiver:
        yield receiver
        from highlight_logging import _pipeline

        receiver.clear_faults()
        _pipeline.reset_for_tests()


def _logger(name: str, **settings: object) -> logging.Logger:
    log = logging.getLogger(name)
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(HighlightHandler(**settings))  # type: ignore[arg-type]
    return log


def test_logs_and_exception_spans_over_http_with_gzip(rx: FaultyReceiver) -> None:
    """protocol="http/protobuf" posts gzip-compressed protobuf to /v1/logs and /v1/traces."""
    log = _logger("http.basic", endpoint=rx.http_endpoint, protocol="http/protobuf")
    log.info("over http", extra={"k": 1})
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("failed")
    assert highlight_logging.flush(10)
    assert sorted(str(r.body) for r in rx.log_records()) == ["failed", "over http"]
    assert rx.wait_for_spans(1, 5)
    assert {info.encoding for info in rx.requests} == {"gzip"}
    assert all(info.transport == "http" for info in rx.requests)
    (span,) = rx.spans()
    failed = next(r for r in rx.log_records() if r.body == "failed")
    assert span.span.span_id == failed.record.span_id


def test_protocol_from_environment(rx: FaultyReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf selects HTTP; its default port is 4318."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert resolve({}).endpoint == "https://otel.highlight.io:4318"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", str(rx.http_endpoint))
    log = _logger("http.env")
    log.warning("env says http")
    assert highlight_logging.flush(10)
    assert [r.body for r in rx.log_records()] == ["env says http"]


def test_http_retries_503_and_drops_400(rx: FaultyReceiver) -> None:
    """503 is retried; 400 is not, and is counted."""
    log = _logger("http.retry", endpoint=rx.http_endpoint, protocol="http/protobuf")
    rx.fail_next(2, grpc.StatusCode.UNAVAILABLE, signal="logs")
    log.warning("retried")
    assert highlight_logging.flush(10)
    rx.fail_next(1, grpc.StatusCode.INVALID_ARGUMENT, signal="logs")
    log.warning("refused")
    assert not highlight_logging.flush(10)
    assert [r.body for r in rx.log_records()] == ["retried"]
    assert highlight_logging.stats()["logs"]["dropped"]["non_retryable"] == 1
