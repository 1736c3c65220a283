"""A request refused for its size is sent again in halves, down to a single record, which alone is
dropped and counted as ``too_large``: both gRPC clients and OTLP/HTTP, against servers that word the
refusal their own way (grpcio's, grpc-js's, HTTP 413)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from h2_server import ScriptedConnection, ScriptedServer
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from otlp_receiver import FaultyReceiver

import highlight_logging
from highlight_logging._devtools import receiver as _receiver
from highlight_logging._devtools.receiver import Reject, RequestInfo
from highlight_logging._export import encode as _encode
from highlight_logging._export import process as _process

LIMIT = 20_000  # bytes of protobuf a request may have


class SizeLimited(FaultyReceiver):
    """Refuses requests over LIMIT as grpc-js does (its words), or with HTTP 413."""

    def intercept(self, info: RequestInfo) -> Reject | None:
        if info.size > LIMIT:
            return Reject(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"Received message that decompresses to a size larger than {LIMIT}",
                http_status=413,
            )
        return None


def test_split_request_keeps_every_record_in_order_with_its_resource_and_scope() -> None:
    resource = _encode.resource({"service.name": "svc"})
    scopes = [(_encode.scope("a"), [b"\x2a\x03\x0a\x01" + bytes([65 + i]) for i in range(3)])]
    scopes.append((_encode.scope("b"), [b"\x2a\x03\x0a\x01" + bytes([97 + i]) for i in range(4)]))
    payload = _encode.request(resource, scopes)
    halves = _encode.split_request(payload)
    assert halves is not None and [n for _, n in halves] == [3, 4]
    seen = []
    for part, _n in halves:
        req = logs_service_pb2.ExportLogsServiceRequest.FromString(part)
        assert (
            len(req.resource_logs) == 1
            and req.resource_logs[0].resource.attributes[0].value.string_value == "svc"
        )
        for sl in req.resource_logs[0].scope_logs:
            seen += [(sl.scope.name, r.body.string_value) for r in sl.log_records]
    assert seen == [("a", "A"), ("a", "B"), ("a", "C"), ("b", "a"), ("b", "b"), ("b", "c"), ("b", "d")]
    one = _encode.request(resource, [(_encode.scope("a"), [b"\x2a\x03\x0a\x01A"])])
    assert _encode.split_request(one) is None
    spans = trace_service_pb2.ExportTraceServiceRequest.FromString(_encode.request(resource, scopes))
    assert sum(len(s.spans) for rs in spans.resource_spans for s in rs.scope_spans) == 7  # the same shape


@pytest.fixture
def limited() -> Iterator[SizeLimited]:
    with SizeLimited() as rx:
        yield rx
        _process.reset_for_tests()


def _run(endpoint: str, **settings: object) -> logging.Logger:
    log = logging.getLogger(f"too_large.{sorted(settings.items())}")
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(highlight_logging.HighlightHandler(endpoint=endpoint, **settings))  # type: ignore[arg-type]
    return log


@pytest.mark.parametrize("client", ["h2", "grpcio", "http"])
def test_refused_for_size_is_split_down_to_one_record(
    limited: SizeLimited, client: str, capfd: pytest.CaptureFixture[str]
) -> None:
    if client == "http":
        log = _run(str(limited.http_endpoint), protocol="http/protobuf")
    else:
        log = _run(limited.endpoint, grpc_client=client)
    for i in range(400):
        log.info("record %d %s", i, "x" * 200)
        if i == 123:
            log.info("huge %s", "y" * (LIMIT * 2))  # alone over the limit: the only loss
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("with a span")
    assert not highlight_logging.flush(20)
    bodies = [str(r.body) for r in limited.log_records()]
    assert sorted(bodies) == sorted([f"record {i} {'x' * 200}" for i in range(400)] + ["with a span"])
    assert len(limited.spans()) == 1
    stats = highlight_logging.stats()
    assert stats["logs"]["exported"] == 401
    assert stats["logs"]["dropped"]["too_large"] == 1 and stats["logs"]["dropped_total"] == 1
    assert stats["spans"]["dropped_total"] == 0
    assert max(r.size for r in limited.requests) > LIMIT  # it was refused first
    err = capfd.readouterr().err
    assert "sending it again in smaller parts" in err and "too large" in err


def test_grpcio_server_limit_as_grpcio_words_it(capfd: pytest.CaptureFixture[str]) -> None:
    """A real grpcio server with grpc.max_receive_message_length: "larger than max (N vs. M)"."""
    rx = _receiver.Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(4), options=[("grpc.max_receive_message_length", LIMIT)])
    server.add_generic_rpc_handlers(_receiver._grpc_handlers(rx))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        for client in ("h2", "grpcio"):
            log = _run(f"127.0.0.1:{port}", grpc_client=client)
            for i in range(300):
                log.info("%s record %d %s", client, i, "z" * 200)
            highlight_logging.flush(20)
            got = [str(r.body) for r in rx.log_records() if str(r.body).startswith(client)]
            assert len(got) == len(set(got)) == 300, client
        assert highlight_logging.stats()["logs"]["dropped_total"] == 0
    finally:
        _process.reset_for_tests()
        server.stop(0)


def _answer_413(index: int, conn: ScriptedConnection) -> None:
    """A proxy in front of the collector refusing the body (nginx's client_max_body_size): HTTP 413."""
    while True:
        for sid in conn.requests(1):
            conn.h2.send_headers(sid, [(":status", "413"), ("content-type", "text/html")], end_stream=True)
            conn.send()


@pytest.mark.parametrize(
    "client",
    [
        "grpcio",
        "h2",
    ],
)
def test_a_proxys_http_413_is_too_large(client: str) -> None:
    from highlight_logging._core.settings import resolve
    from highlight_logging._transport import LOGS
    from highlight_logging._transport.grpcio import GrpcTransport
    from highlight_logging._transport.h2 import H2Transport

    with ScriptedServer(_answer_413) as server:
        kind = GrpcTransport if client == "grpcio" else H2Transport
        transport = kind(resolve({"endpoint": server.endpoint}))
        try:
            outcome = transport.export(LOGS, b"", 5.0)
        finally:
            transport.close()
    assert (outcome.ok, outcome.retryable, outcome.too_large) == (False, False, True), outcome.detail
