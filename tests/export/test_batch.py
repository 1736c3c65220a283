"""Request packing and span holding, each on its own: no receiver, a transport that records."""

from __future__ import annotations

import threading
from collections.abc import Callable

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from highlight_logging._core import settings as _settings
from highlight_logging._core.convert import capture_record
from highlight_logging._core.record import ExceptionInfo, Pending
from highlight_logging._export import batch as _batch
from highlight_logging._export import encode as _encode
from highlight_logging._export.pipeline import Pipeline
from highlight_logging._transport import Outcome

RESOURCE = _encode.resource({"service.name": "batch-test"})


def records(prefix: str, n: int, size: int = 10) -> list[bytes]:
    """Stand-ins for encoded LogRecords: a body each, padded to ``size``."""
    return [
        _encode.log_record(1, 1, 9, "INFO", f"{prefix}{i}".ljust(size, "."), {}, 0, b"", b"", 0)
        for i in range(n)
    ]


def unpack(requests: list[tuple[bytes, int]]) -> list[list[tuple[str, list[str]]]]:
    """Each request as [(scope name, [bodies])]."""
    out = []
    for payload, _ in requests:
        request = ExportLogsServiceRequest.FromString(payload)
        (rl,) = request.resource_logs
        out.append(
            [
                (sl.scope.name, [r.body.string_value.rstrip(".") for r in sl.log_records])
                for sl in rl.scope_logs
            ]
        )
    return out


def pack(by_scope: dict[str, list[bytes]], limit: int) -> list[tuple[bytes, int]]:
    return list(_batch.pack_requests(by_scope, RESOURCE, _encode.scope, limit))


def test_a_batch_that_fits_is_one_request_by_scope_in_order() -> None:
    by_scope = {"a": records("a", 3), "b": records("b", 2)}
    requests = pack(by_scope, 4 * 1024 * 1024)
    assert [n for _, n in requests] == [5]
    assert unpack(requests) == [[("a", ["a0", "a1", "a2"]), ("b", ["b0", "b1"])]]


def test_nothing_to_send_is_no_request() -> None:
    assert pack({}, 1000) == [] and pack({"a": []}, 1000) == []


def test_requests_stay_under_the_limit_and_keep_every_record_in_order() -> None:
    by_scope = {"a": records("a", 40, size=100), "b": records("b", 25, size=100)}
    limit = 1500
    requests = pack(by_scope, limit)
    assert len(requests) > 4
    assert all(len(payload) <= limit for payload, _ in requests)
    unpacked = unpack(requests)
    assert [sum(len(bodies) for _, bodies in r) for r in unpacked] == [n for _, n in requests]
    flat = [(scope, body) for r in unpacked for scope, bodies in r for body in bodies]
    assert flat == [("a", f"a{i}") for i in range(40)] + [("b", f"b{i}") for i in range(25)]
    # A request holds a scope once, and where one scope ends the next begins in the same request.
    assert all(len({s for s, _ in r}) == len(r) for r in unpacked)
    assert any([s for s, _ in r] == ["a", "b"] for r in unpacked)


def test_a_record_larger_than_the_limit_alone_goes_in_a_request_of_its_own() -> None:
    by_scope = {"a": [*records("small", 2), *records("big", 1, size=2000), *records("tail", 1)]}
    requests = pack(by_scope, 1000)
    assert [n for _, n in requests] == [2, 1, 1]
    assert unpack(requests)[1] == [("a", ["big0"])]


def test_span_hold_bounds() -> None:
    hold = _batch.SpanHold()
    spans = {"s": [b"x"]}
    assert hold.may_hold(spans, more_queued=True, stopping=False)
    assert not hold.may_hold({}, more_queued=True, stopping=False)  # nothing to hold
    assert not hold.may_hold(spans, more_queued=False, stopping=False)  # no next batch to ride with
    assert not hold.may_hold(spans, more_queued=True, stopping=True)
    assert not hold.may_hold({"s": [b"x"] * _batch.SPAN_HOLD}, more_queued=True, stopping=False)
    hold.batches = _batch.SPAN_HOLD_BATCHES
    assert not hold.may_hold(spans, more_queued=True, stopping=False)


def test_span_hold_merges_held_spans_first_and_take_releases_them() -> None:
    hold = _batch.SpanHold()
    assert hold.merged({"a": [b"1"]}) == {"a": [b"1"]}
    hold.spans, hold.count, hold.batches = {"a": [b"0"], "b": [b"b"]}, 7, 2
    assert hold.merged({"a": [b"1"], "c": [b"c"]}) == {"a": [b"0", b"1"], "b": [b"b"], "c": [b"c"]}
    assert hold.spans == {"a": [b"0"], "b": [b"b"]}  # merging takes nothing
    assert hold.take() == ({"a": [b"0"], "b": [b"b"]}, 7)
    assert (hold.spans, hold.count, hold.batches) == ({}, 0, 0)


class RecordingTransport:
    """Answers every request at once, and remembers the signals in the order sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.lock = threading.Lock()

    def start(self, signal: str, payload: bytes, timeout: float) -> Callable[[], Outcome]:
        with self.lock:
            self.sent.append(signal)
        return lambda: Outcome(True)

    def cancel(self) -> None:
        pass

    def reconnect(self) -> None:
        pass

    def close(self) -> None:
        pass


def record(exception: ExceptionInfo | None = None) -> Pending:
    return capture_record(_settings.Settings(), 1, 20, "INFO", "t", "x", {}, [])._replace(exception=exception)


def test_held_spans_ride_with_a_later_batch_and_a_flush_releases_them() -> None:
    """A batch's exception span waits while more records are queued, is sent by the time the
    queue is empty, and flush() returns only once it is (its batch is finished with it)."""
    exc = ExceptionInfo("ValueError", "bad", "Traceback (most recent call last): ...")
    p = Pipeline(
        _settings.resolve(
            {"endpoint": "http://127.0.0.1:9", "max_export_batch_size": 4, "schedule_delay": 30}
        )
    )
    transport = RecordingTransport()
    p._transport = transport
    try:
        p._worker = threading.current_thread()  # queue three batches before the worker starts
        p.submit(record(exc))
        for _ in range(11):
            p.submit(record())
        p._worker = None
        p._start()
        assert p.flush(10)
        assert transport.sent.count("traces") == 1
        assert transport.sent.index("traces") > transport.sent.index("logs")  # held over a batch at least
        assert p.counters["spans"]["exported"] == 1 and p.counters["logs"]["exported"] == 12
        assert not p._batch.hold.spans and p._batch.hold.count == 0
    finally:
        p.shutdown(5)


def test_spans_are_not_held_when_nothing_else_is_queued() -> None:
    exc = ExceptionInfo("ValueError", "bad", "Traceback (most recent call last): ...")
    p = Pipeline(_settings.resolve({"endpoint": "http://127.0.0.1:9"}))
    transport = RecordingTransport()
    p._transport = transport
    flight, count = p._batch.export([record(exc)])
    p._sender.settle(flight, count)
    assert count == 1 and transport.sent == ["logs", "traces"] and not p._batch.hold.spans
    p._sender.complete_in_flight()
    assert p.counters["spans"]["exported"] == 1
