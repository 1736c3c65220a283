"""The export worker's background priority: it steps back during a logging burst, within bounds."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from otlp_receiver import FaultyReceiver, handler_logger

import highlight_logging
from highlight_logging import _transport
from highlight_logging._core import settings as _settings
from highlight_logging._core.convert import capture_record
from highlight_logging._core.record import ExceptionInfo, Pending
from highlight_logging._export import batch as _batch
from highlight_logging._export import priority as _priority
from highlight_logging._export import process as _process
from highlight_logging._export import sender as _sender
from highlight_logging._export.pipeline import Pipeline


class FakeClock:
    """Stands in for the ``time`` module inside _export.priority: each sleep advances the clock and lets
    ``rate`` records per second arrive, so a burst is simulated without racing a real thread."""

    def __init__(self, pipeline: Pipeline, rate: float) -> None:
        self.now = 100.0
        self.pipeline = pipeline
        self.rate = rate
        self.sleeps = 0
        pipeline._priority.pause = self.sleep  # the worker's burst pause, too

    def monotonic(self) -> float:
        return self.now

    def time_ns(self) -> int:
        return int(self.now * 1e9)

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds
        self.pipeline._queue.extend(record(self.now) for _ in range(round(self.rate * seconds)))


def pipeline(**keywords: Any) -> Pipeline:
    return Pipeline(_settings.resolve({"endpoint": "http://127.0.0.1:9", **keywords}))


def record(observed_s: float = 100.0) -> Pending:
    return capture_record(_settings.Settings(), 1, 20, "INFO", "t", "x", {}, [])._replace(
        observed_ns=int(observed_s * 1e9)
    )


def test_steps_back_while_records_arrive_faster_than_the_burst_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 20,000 records/s the worker waits until the oldest queued record is schedule_delay old."""
    p = pipeline(schedule_delay=0.5)
    clock = FakeClock(p, 20_000)
    monkeypatch.setattr(_priority, "time", clock)
    p._queue.append(record(observed_s=99.8))  # logged 0.2 s ago
    p._priority.step_back_during_burst()
    assert 0.3 <= clock.now - 100.0 <= 0.3 + 2 * _priority.BURST_SLICE
    assert clock.sleeps >= 0.3 / _priority.BURST_SLICE - 1
    clock.sleeps = 0
    p._priority.step_back_during_burst()  # the same record is now due: no second wait
    assert clock.sleeps == 0


def test_a_flush_cuts_the_burst_pause_short(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush() starting while the worker pauses in a burst wakes it at once, not after the slice."""
    monkeypatch.setattr(_priority, "BURST_SLICE", 30.0)
    p = pipeline()
    p._queue.append(record(time.time()))
    paused = threading.Thread(target=p._priority.step_back_during_burst, daemon=True)
    paused.start()
    with p._done:  # what flush() does before it waits
        p._flushers += 1
        p._urgent.set()
    paused.join(timeout=10.0)
    assert not paused.is_alive()


def test_nothing_queued_nothing_held_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty queue returns at once."""
    p = pipeline()
    clock = FakeClock(p, 20_000)
    monkeypatch.setattr(_priority, "time", clock)
    p._priority.step_back_during_burst()
    assert clock.sleeps == 0


def test_a_steady_trickle_is_not_a_burst(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 2,000 records/s (a busy service's usual pace) the worker goes on after one look."""
    p = pipeline(schedule_delay=0.5)
    clock = FakeClock(p, 2_000)
    monkeypatch.setattr(_priority, "time", clock)
    p._queue.append(record())
    p._priority.step_back_during_burst()
    assert clock.sleeps == 1


def test_never_steps_back_while_someone_waits_on_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pending flush() (or shutdown) makes the worker export at once."""
    p = pipeline()
    clock = FakeClock(p, 20_000)
    monkeypatch.setattr(_priority, "time", clock)
    p._queue.append(record())
    p._flushers = 1
    p._priority.step_back_during_burst()
    p._flushers, p._stopping = 0, True
    p._priority.step_back_during_burst()
    assert clock.sleeps == 0


def test_never_steps_back_with_a_quarter_of_the_buffer_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory stays bounded: with a quarter of the records or bytes queued, the worker exports."""
    p = pipeline(max_queue_size=40, max_export_batch_size=8)
    clock = FakeClock(p, 20_000)
    monkeypatch.setattr(_priority, "time", clock)
    p._queue.extend(record() for _ in range(10))
    p._priority.step_back_during_burst()
    assert clock.sleeps == 0
    q = pipeline(max_queue_bytes=4096)
    clock = FakeClock(q, 20_000)
    monkeypatch.setattr(_priority, "time", clock)
    q._queue.append(record())
    q._bytes_in = 1024
    q._priority.step_back_during_burst()
    assert clock.sleeps == 0


def test_flush_during_a_burst_delivers_promptly(faulty: FaultyReceiver) -> None:
    """A thread logging flat out does not hold back another thread's flush()."""
    log = handler_logger("priority.burst", endpoint=faulty.endpoint, schedule_delay=30)
    started, stop = threading.Event(), threading.Event()
    sent = [0]

    def burst() -> None:
        while not stop.is_set():
            log.info("burst %d", sent[0])
            sent[0] += 1
            if sent[0] == 1000:
                started.set()

    producer = threading.Thread(target=burst)
    producer.start()
    try:
        assert started.wait(30)
        # schedule_delay is 30 s: without the flush overriding the step-back this would time out.
        assert highlight_logging.flush(10)
        assert len(faulty.log_records()) >= 1000
    finally:
        stop.set()
        producer.join()
    assert highlight_logging.flush(10)
    assert faulty.wait_for_logs(sent[0], 10)
    assert highlight_logging.stats()["logs"]["dropped_total"] == 0


def test_a_burst_that_never_ends_still_delivers_as_it_goes(faulty: FaultyReceiver) -> None:
    """Records leave while a flat-out burst is still running, not only when it stops."""
    log = handler_logger("priority.endless", endpoint=faulty.endpoint, schedule_delay=0.2)
    stop = threading.Event()
    sent = [0]

    def burst() -> None:
        while not stop.is_set():
            log.info("endless %d", sent[0])
            sent[0] += 1

    producer = threading.Thread(target=burst)
    producer.start()
    try:
        assert faulty.wait_for_logs(1, 20), "nothing exported while the burst lasted"
        assert producer.is_alive()
    finally:
        stop.set()
        producer.join()
    assert highlight_logging.flush(10)
    assert faulty.wait_for_logs(sent[0], 10)


def test_plain_records_never_wait_on_the_pipeline_lock(faulty: FaultyReceiver) -> None:
    """submit() takes no lock for a record without an exception: a held lock blocks no logging call."""
    log = handler_logger("priority.lockfree", endpoint=faulty.endpoint)
    log.info("start")  # creates the pipeline
    (p,) = _process.pipelines()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with p._lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        caller = threading.Thread(target=lambda: [log.info("while held %d", i) for i in range(100)])
        caller.start()
        caller.join(10)
        assert not caller.is_alive(), "a plain logging call waited on the pipeline lock"
    finally:
        release.set()
        holder.join()
    assert highlight_logging.flush(10)
    assert faulty.wait_for_logs(101, 10)
    assert highlight_logging.stats()["logs"]["queued"] == 101


def test_a_record_that_meets_a_shutdown_is_counted_once() -> None:
    """A submit() racing with shutdown(): its record is either taken and counted by shutdown, or
    withdrawn and counted by submit itself; never lost silently, never counted twice."""
    p = pipeline()
    raced = record()
    p._stopped = True
    p._queue.append(raced)  # appended after shutdown() emptied the queue: withdrawn
    p._withdraw(raced)
    assert not p._queue and p.counters["logs"]["dropped"]["shutdown"] == 1
    p._withdraw(raced)  # not in the queue any more: shutdown() took and counted it
    assert p.counters["logs"]["dropped"]["shutdown"] == 1


def test_shutdown_counts_what_it_leaves_and_keeps_the_accepted_count() -> None:
    """Records still queued at shutdown are counted as lost, and stay counted as accepted."""
    p = pipeline()
    exc = ExceptionInfo("ValueError", "x", "trace")
    p._worker = threading.current_thread()  # as if started: submit() must not start a worker
    p.submit(record())
    p.submit(record()._replace(exception=exc))
    assert p._accepted() == 2 and p.counters["spans"]["queued"] == 1
    p._stopping = True
    p.shutdown(0)
    assert p._accepted() == 2 and not p._queue
    assert p.counters["logs"]["dropped"]["shutdown"] == 2 and p.counters["spans"]["dropped"]["shutdown"] == 1


class GatedReceiver(FaultyReceiver):
    """Holds every request until ``gate`` opens, and records how many were ever held at once."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()
        self._count_lock = threading.Lock()
        self.held = self.most_held = 0

    def intercept(self, info: Any) -> Any:
        with self._count_lock:
            self.held += 1
            self.most_held = max(self.most_held, self.held)
        self.entered.set()
        try:
            self.gate.wait(30)
            return super().intercept(info)
        finally:
            with self._count_lock:
                self.held -= 1


def _until(condition: Any, timeout: float = 10.0) -> bool:
    """Poll ``condition`` until true or ``timeout``: the outcome, not the timing, is asserted."""
    end = threading.Event()
    for _ in range(int(timeout / 0.005)):
        if condition():
            return True
        end.wait(0.005)
    return bool(condition())


def _flush_behind_the_gate(rx: GatedReceiver, client: str, batches: int, name: str) -> list[bool]:
    """Log ``batches`` batches of 8 and flush while ``rx`` holds every request; once every batch is
    in the worker's hands (the last encoded and waiting for room), open the gate and return what
    flush() returned."""
    log = handler_logger(
        name, endpoint=rx.endpoint, grpc_client=client, max_export_batch_size=8, schedule_delay=30
    )
    for i in range(8 * batches):
        log.info("r%d", i)
    (p,) = _process.pipelines()
    flushed: list[bool] = []
    flusher = threading.Thread(target=lambda: flushed.append(highlight_logging.flush(30)))
    flusher.start()
    try:
        assert rx.entered.wait(10), "the first request never arrived"
        limit = _sender.MAX_IN_FLIGHT
        assert _until(lambda: rx.held == limit and p._in_hand == 8 * batches and not p._queue)
        assert rx.log_records() == [] and not flushed
    finally:
        rx.gate.set()
        flusher.join(30)
    return flushed


@pytest.mark.parametrize("client", ["h2", "grpcio"])
def test_requests_stay_in_flight_while_the_next_batches_are_encoded(client: str) -> None:
    """While the collector reads requests the worker goes on taking and encoding batches, with at
    most sender.MAX_IN_FLIGHT requests on their way; each request keeps its batch's order, and flush()
    returns once every one is answered."""
    limit = _sender.MAX_IN_FLIGHT
    batches = limit + 1
    with GatedReceiver() as rx:
        flushed = _flush_behind_the_gate(rx, client, batches, "priority.inflight")
        assert flushed == [True]
        assert rx.most_held == limit and len(rx.requests) == batches
        bodies = [
            [r.body.string_value for sl in req.resource_logs[0].scope_logs for r in sl.log_records]
            for req in rx.requests_logs
        ]
        assert sorted(bodies, key=lambda b: int(b[0][1:])) == [
            [f"r{i}" for i in range(8 * k, 8 * k + 8)] for k in range(batches)
        ]
        assert highlight_logging.stats()["logs"]["exported"] == 8 * batches
        _process.reset_for_tests()


@pytest.mark.parametrize("client", ["h2", "grpcio"])
def test_a_retry_never_cuts_off_the_other_requests_in_flight(client: str) -> None:
    """When one of the requests in flight fails and is retried (reconnecting first), the others'
    answers are read before: none is cut off and sent twice, none is lost."""
    batches = _sender.MAX_IN_FLIGHT + 1
    with GatedReceiver() as rx:
        rx.fail_next(1, retry_delay=0.01)  # UNAVAILABLE: retried after a reconnect
        assert _flush_behind_the_gate(rx, client, batches, "priority.retry") == [True]
        assert sorted(r.body for r in rx.log_records()) == sorted(f"r{i}" for i in range(8 * batches))
        stats = highlight_logging.stats()["logs"]
        assert stats["exported"] == 8 * batches and stats["dropped_total"] == 0
        _process.reset_for_tests()


class GatedTransport:
    """Answers every request OK once ``gate`` opens; ``on_start`` runs as the first request starts."""

    def __init__(self, on_start: Any) -> None:
        self.gate = threading.Event()
        self.on_start = on_start
        self.payloads: list[bytes] = []

    def start(self, signal: str, payload: bytes, timeout: float) -> Any:
        self.payloads.append(payload)
        if len(self.payloads) == 1:
            self.on_start()

        def wait() -> _transport.Outcome:
            self.gate.wait(30)
            return _transport.Outcome(True)

        return wait

    def export(self, signal: str, payload: bytes, timeout: float) -> _transport.Outcome:
        return self.start(signal, payload, timeout)()

    def cancel(self) -> None:
        self.gate.set()

    def reconnect(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_flush_waits_for_the_request_in_flight_behind_a_dropped_batch() -> None:
    """A batch that sends nothing (its record too large) while the batch before it is in flight
    is finished after that one: flush() does not return while the first record is unanswered."""
    p = pipeline(max_export_batch_size=1, max_request_bytes=4096, schedule_delay=30)
    big = capture_record(p.settings, 1, 20, "INFO", "t", "x" * 10_000, {}, [])

    def arrives() -> None:  # the oversized record, as the first record's request goes out
        assert _until(lambda: p._flushers == 1)  # once flush() has chosen what it waits for
        p.submit(big)

    transport = p._transport = GatedTransport(arrives)
    p.submit(record())
    result: list[bool] = []
    flusher = threading.Thread(target=lambda: result.append(p.flush(30)))  # waits for 1 record
    try:
        flusher.start()
        assert _until(lambda: p.counters["logs"]["dropped"]["too_large"] == 1)
        assert flusher.is_alive() and result == []  # the first record is still unanswered
    finally:
        transport.gate.set()
        flusher.join(30)
    assert result == [False]  # delivered, and one record dropped
    assert p.counters["logs"]["exported"] == 1
    p.shutdown(5)


def test_exception_spans_of_queued_batches_share_one_traces_request() -> None:
    """While more records are queued, a batch's exception spans ride with the next batch's traces
    request, and its records are finished only then: flush() returns with every span there."""
    exc = ExceptionInfo("ValueError", "bad", "Traceback (most recent call last): ...")
    with FaultyReceiver() as rx:
        p = pipeline(endpoint=rx.endpoint, max_export_batch_size=8, schedule_delay=30)
        p._worker = threading.current_thread()  # queue five batches before the worker starts
        for i in range(40):
            p.submit(
                capture_record(
                    p.settings, 1, 20, "INFO", "t", f"r{i}", {}, [], exception=exc if i % 4 == 0 else None
                )
            )
        p._worker = None
        p._start()
        try:
            assert p.flush(30)
            spans = [
                s
                for req in rx.requests_spans
                for rs in req.resource_spans
                for ss in rs.scope_spans
                for s in ss.spans
            ]
            assert len(spans) == 10 and len(rx.log_records()) == 40
            assert [r.signal for r in rx.requests].count("traces") == 1
            assert p.counters["spans"]["exported"] == 10 and p.counters["logs"]["exported"] == 40
        finally:
            p.shutdown(5)


def test_held_spans_leave_before_the_worker_waits() -> None:
    """Spans held for a next batch that is not due yet leave before the worker goes back to wait."""
    exc = ExceptionInfo("ValueError", "bad", "Traceback (most recent call last): ...")
    with FaultyReceiver() as rx:
        p = pipeline(endpoint=rx.endpoint, max_export_batch_size=8, schedule_delay=30)
        p._worker = threading.current_thread()
        for i in range(11):  # a full batch, then 3 records that wait for schedule_delay
            p.submit(
                capture_record(
                    p.settings, 1, 20, "INFO", "t", f"r{i}", {}, [], exception=exc if i == 0 else None
                )
            )
        p._worker = None
        p._start()
        try:
            # The batch is finished (its spans sent) while the other 3 records still wait.
            assert _until(lambda: len(rx.requests_spans) == 1 and p._finished == 8)
            assert len(rx.log_records()) == 8 and len(p._queue) == 3
        finally:
            p.shutdown(5)


def test_spans_are_held_over_a_bounded_number_of_batches() -> None:
    """With the queue never empty (steady logging), a batch's span waits for at most
    _SPAN_HOLD_BATCHES later batches, so a flush() waiting for its record ends."""
    exc = ExceptionInfo("ValueError", "bad", "Traceback (most recent call last): ...")
    p = pipeline(max_export_batch_size=4, schedule_delay=30)
    transport = p._transport = GatedTransport(lambda: None)
    transport.gate.set()
    p._queue.append(record())  # never taken here: "another batch follows" stays true
    flight, count = p._batch.export([record()._replace(exception=exc)])
    p._sender.settle(flight, count)
    assert count == 0 and p._batch.hold.count == 1 and p._batch.hold.batches == 1
    batches = 1
    while p._batch.hold.spans and batches < 100:
        flight, count = p._batch.export([record()])
        p._sender.settle(flight, count)
        batches += 1
    assert batches == _batch.SPAN_HOLD_BATCHES + 1
    assert count == batches  # every held batch is finished with the request that carried the span
    p._sender.complete_in_flight()
    assert p.counters["spans"]["exported"] == 1 and p._finished == batches
