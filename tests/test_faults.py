"""Faults: retries per the OTLP specification, outages, bursts, unreachable collectors, loss accounting."""

from __future__ import annotations

import logging
import logging.config
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from otlp_receiver import Blackhole, FaultyReceiver, free_port, handler_logger

import highlight_logging
from highlight_logging import HighlightHandler, _transport
from highlight_logging._export import process as _process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True, params=["h2", "grpcio"])
def grpc_client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every fault test runs with both gRPC clients (the default h2 one and grpcio), subprocesses included."""
    monkeypatch.setenv("HIGHLIGHT_GRPC_CLIENT", request.param)
    return str(request.param)


def dropped(signal: str = "logs") -> dict[str, int]:
    return dict(highlight_logging.stats()[signal]["dropped"])


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    ],
)
def test_retryable_codes_are_retried(faulty: FaultyReceiver, code: grpc.StatusCode) -> None:
    """Each retryable status is retried, and the batch arrives once."""
    faulty.fail_next(2, code, signal="logs")
    log = handler_logger("faults.retry", endpoint=faulty.endpoint)
    log.info("hello")
    assert highlight_logging.flush(10)
    assert [r.body for r in faulty.log_records()] == ["hello"]
    assert len(faulty.injected) == 2
    assert sum(dropped().values()) == 0


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ],
)
def test_other_codes_are_not_retried(
    faulty: FaultyReceiver, code: grpc.StatusCode, capfd: pytest.CaptureFixture[str]
) -> None:
    """Non-retryable statuses (and RESOURCE_EXHAUSTED without RetryInfo) drop the batch at once, counted."""
    faulty.fail_next(1, code, signal="logs")
    log = handler_logger("faults.fatal", endpoint=faulty.endpoint)
    log.info("lost")
    assert not highlight_logging.flush(10)
    assert len(faulty.injected) == 1
    assert dropped()["non_retryable"] == 1
    log.info("next one arrives")
    assert highlight_logging.flush(10)
    assert [r.body for r in faulty.log_records()] == ["next one arrives"]
    err = capfd.readouterr().err
    assert "not retryable" in err and err.count("\n") <= 3


def test_resource_exhausted_with_retry_info_honours_the_delay(faulty: FaultyReceiver) -> None:
    """RESOURCE_EXHAUSTED with RetryInfo is retried after retry_delay."""
    faulty.fail_next(1, grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=0.6, signal="logs")
    log = handler_logger("faults.exhausted", endpoint=faulty.endpoint)
    start = time.monotonic()
    log.info("later")
    assert highlight_logging.flush(10)
    assert time.monotonic() - start >= 0.6
    assert [r.body for r in faulty.log_records()] == ["later"]


def test_partial_success_is_not_retried_and_reported_once(
    faulty: FaultyReceiver, capfd: pytest.CaptureFixture[str]
) -> None:
    """A partial_success is never retried; its rejected count is counted and said once."""
    faulty.partial_success(2, "two were bad", n=2, signal="logs")
    log = handler_logger("faults.partial", endpoint=faulty.endpoint)
    for i in range(5):
        log.info("r%d", i)
    highlight_logging.flush(10)
    for i in range(5):
        log.info("s%d", i)
    highlight_logging.flush(10)
    assert len(faulty.requests) == 2  # no retry
    assert dropped()["rejected"] == 4
    assert highlight_logging.stats()["logs"]["exported"] == 6
    err = capfd.readouterr().err
    assert err.count("two were bad") == 1


def test_outage_of_four_seconds_at_1000_per_second_loses_nothing(faulty: FaultyReceiver) -> None:
    """With defaults, a 4 s outage at 1,000 records/s loses nothing."""
    log = handler_logger("faults.outage", endpoint=faulty.endpoint)
    n = 5000
    faulty.go_down()
    start = time.monotonic()
    for i in range(n):
        if i == 4000:
            faulty.come_up()
        # pace at 1,000/s
        delay = start + i / 1000 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        log.info("r%d", i)
    assert highlight_logging.flush(30)
    bodies = [r.body for r in faulty.log_records()]
    assert len(bodies) == n and len(set(bodies)) == n
    assert sum(dropped().values()) == 0


def test_longer_outage_loses_only_the_overflow_and_counts_it_exactly(faulty: FaultyReceiver) -> None:
    """Past the buffer, only the overflow is lost, and stats() counts exactly what was lost."""
    log = handler_logger(
        "faults.overflow", endpoint=faulty.endpoint, max_queue_size=1000, max_export_batch_size=100
    )
    faulty.go_down()
    sent = 3000
    for i in range(sent):
        log.info("r%d", i)
    faulty.come_up()
    highlight_logging.flush(30)
    received = len(faulty.log_records())
    d = dropped()
    assert d["queue_full"] > 0
    assert received + sum(d.values()) == sent
    assert received >= 1000  # the buffer's worth survived


def test_burst_of_20000_with_defaults_loses_nothing(faulty: FaultyReceiver) -> None:
    """20,000 records logged as fast as a loop can go all arrive, with defaults."""
    log = handler_logger("faults.burst", endpoint=faulty.endpoint)
    for i in range(20_000):
        log.info("burst %d", i)
    assert highlight_logging.flush(60)
    assert faulty.wait_for_logs(20_000, 10)
    assert len({r.body for r in faulty.log_records()}) == 20_000
    assert sum(dropped().values()) == 0


def test_byte_bound_drops_new_records_and_warns(
    faulty: FaultyReceiver, capfd: pytest.CaptureFixture[str]
) -> None:
    """The queue is bounded by bytes too; when full, new records are dropped and counted, with one warning."""
    log = handler_logger("faults.bytes", endpoint=faulty.endpoint, max_queue_bytes=200_000)
    faulty.go_down()
    for _ in range(100):
        log.info("x" * 10_000)
    d = dropped()
    assert d["queue_full"] > 0
    faulty.come_up()
    highlight_logging.flush(30)
    assert len(faulty.log_records()) + sum(dropped().values()) == 100
    err = capfd.readouterr().err
    assert err.count("queue full") == 1


def test_eight_threads_deliver_every_record_exactly_once(faulty: FaultyReceiver) -> None:
    """8 threads x 2,000 records: all 16,000 arrive, exactly once."""
    log = handler_logger("faults.threads", endpoint=faulty.endpoint)

    def work(t: int) -> None:
        for i in range(2000):
            log.info("t%d-%d", t, i)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert highlight_logging.flush(60)
    bodies = [r.body for r in faulty.log_records()]
    assert len(bodies) == 16_000 and len(set(bodies)) == 16_000


def test_requests_are_split_under_the_collector_limit(faulty: FaultyReceiver) -> None:
    """Big records are packed into several requests under 4 MiB; an oversized one is dropped alone."""
    log = handler_logger("faults.split", endpoint=faulty.endpoint, max_body_length=5_000_000)
    for i in range(12):
        log.info(f"{i:02d}" + "y" * 1_000_000)
    log.info("z" * 4_500_000)  # over the request limit by itself
    log.info("small neighbour")
    highlight_logging.flush(30)
    bodies = [str(r.body) for r in faulty.log_records()]
    assert len(bodies) == 13 and "small neighbour" in bodies
    assert all(info.size < 4 * 1024 * 1024 for info in faulty.requests)
    assert dropped()["too_large"] == 1


def test_no_feedback_loop_with_root_handler_at_debug_and_collector_down() -> None:
    """Records logged while exporting (grpc, ourselves) never re-enter the pipeline."""
    root = logging.getLogger()
    old_level, old_handlers = root.level, root.handlers[:]
    handler = HighlightHandler(endpoint=f"127.0.0.1:{free_port()}", shutdown_timeout=0.5)
    root.handlers = [handler]
    root.setLevel(logging.DEBUG)
    try:
        for i in range(10):
            logging.getLogger("app").info("r%d", i)
        highlight_logging.flush(1.0)
        logging.getLogger("highlight_logging").warning("internal")
        logging.getLogger("grpc._channel").debug("internal")
        assert highlight_logging.stats()["logs"]["queued"] == 10
    finally:
        root.handlers = old_handlers
        root.setLevel(old_level)


def test_dictconfig_again_during_a_slow_export_returns_promptly(faulty: FaultyReceiver) -> None:
    """Reconfiguring logging while a slow collector holds an export does not wait for it."""
    faulty.set_delay(5.0)
    config: dict[str, Any] = {
        "version": 1,
        "handlers": {"hl": {"class": "highlight_logging.HighlightHandler", "endpoint": faulty.endpoint}},
        "loggers": {"faults.slow": {"handlers": ["hl"], "level": "INFO", "propagate": False}},
    }
    logging.config.dictConfig(config)
    logging.getLogger("faults.slow").info("slow")
    highlight_logging.flush(0)  # wake the worker
    assert faulty.wait_for(lambda: len(faulty.requests) >= 1, 5)  # the export is now in flight
    start = time.monotonic()
    logging.config.dictConfig(config)
    assert time.monotonic() - start < 2.0
    faulty.set_delay(0)
    logging.getLogger("faults.slow").handlers.clear()


def _child(code: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    environ = {**os.environ, "PYTHONPATH": ROOT, **env}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=environ, capture_output=True, text=True, timeout=60
    )
    return proc, time.monotonic() - start


_STARTUP = "import time, logging, highlight_logging\n"


def _baseline() -> float:
    _, took = _child(_STARTUP)
    return took


@pytest.mark.parametrize("kind", ["refused", "blackhole"])
def test_exit_within_the_shutdown_deadline_when_collector_is_unreachable(kind: str) -> None:
    """Collector refused or blackholed: exit takes at most the 3 s deadline, with a few clear stderr lines."""
    with Blackhole() as hole:
        endpoint = hole.endpoint if kind == "blackhole" else f"127.0.0.1:{free_port()}"
        code = f"""
            import logging, highlight_logging
            log = logging.getLogger("down")
            log.addHandler(highlight_logging.HighlightHandler(endpoint="{endpoint}"))
            log.setLevel(logging.INFO)
            for i in range(1000):
                log.info("r%d", i)
            """
        baseline = _baseline()
        proc, took = _child(code)
    assert proc.returncode == 0
    assert took - baseline < 3.5, (took, baseline)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert 1 <= len(lines) <= 4, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "1000 logs lost" in proc.stderr  # the exit summary names the loss


def test_shutdown_deadline_is_configurable() -> None:
    """shutdown_timeout bounds the exit."""
    with Blackhole() as hole:
        code = f"""
            import logging, highlight_logging
            log = logging.getLogger("down")
            log.addHandler(highlight_logging.HighlightHandler(endpoint="{hole.endpoint}", shutdown_timeout=0.5))
            log.warning("x")
            """
        baseline = _baseline()
        proc, took = _child(code)
    assert proc.returncode == 0
    assert took - baseline < 1.5


def test_headers_never_appear_in_repr_or_diagnostics(capfd: pytest.CaptureFixture[str]) -> None:
    """API keys in headers stay out of repr() and of every warning."""
    handler = HighlightHandler(
        endpoint=f"127.0.0.1:{free_port()}", headers={"x-api-key": "SUPERSECRET"}, shutdown_timeout=0.3
    )
    assert "SUPERSECRET" not in repr(handler)
    assert "SUPERSECRET" not in repr(handler._binding.settings)
    log = logging.getLogger("faults.headers")
    log.propagate = False
    log.addHandler(handler)
    log.error("x")
    highlight_logging.shutdown(0.5)
    assert "SUPERSECRET" not in capfd.readouterr().err
    log.removeHandler(handler)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads the thread's signal mask from /proc")
def test_the_export_worker_never_takes_sigterm_or_sigint(faulty: FaultyReceiver) -> None:
    """The export worker thread blocks SIGTERM and SIGINT, so the kernel hands them to a thread
    whose receiving them wakes the main thread: taken by the worker, a SIGTERM would leave a main
    thread blocked in C (a pool worker on its queue lock) asleep, and its handler never run."""
    import signal

    log = handler_logger("faults.signals", endpoint=faulty.endpoint)
    log.info("start the worker")
    assert highlight_logging.flush(10)
    (pipeline,) = _process.pipelines()
    assert pipeline._worker is not None and pipeline._worker.native_id is not None
    with open(f"/proc/self/task/{pipeline._worker.native_id}/status") as f:
        line = next(line for line in f if line.startswith("SigBlk:"))
    blocked = int(line.split()[1], 16)
    assert blocked & (1 << (signal.SIGTERM - 1)) and blocked & (1 << (signal.SIGINT - 1))


def test_sigterm_delivers_queued_records_then_dies_by_sigterm(faulty: FaultyReceiver) -> None:
    """A process killed by SIGTERM (default action) flushes first; its exit status is unchanged."""
    code = f"""
        import logging, os, signal, time, highlight_logging
        log = logging.getLogger("term")
        log.setLevel(logging.INFO)
        log.addHandler(highlight_logging.HighlightHandler(endpoint="{faulty.endpoint}", schedule_delay=30))
        for i in range(50):
            log.info("r%d", i)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
        """
    proc, took = _child(code)
    assert proc.returncode == -15
    assert faulty.wait_for_logs(50, 5)
    assert took < 8


def test_records_logged_just_before_exit_arrive(faulty: FaultyReceiver) -> None:
    """What is still queued at exit is delivered by the atexit drain, with either client.  On
    CPython 3.12 grpcio could start no thread there for its call: the records were lost, uncounted,
    and exit waited out the deadline."""
    code = f"""
        import logging, highlight_logging
        log = logging.getLogger("exit")
        log.setLevel(logging.INFO)
        log.addHandler(highlight_logging.HighlightHandler(endpoint="{faulty.endpoint}"))
        for i in range(5):
            log.info("last %d", i)
        """
    proc, _ = _child(code)
    assert proc.returncode == 0, proc.stderr
    assert "lost" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert faulty.wait_for_logs(5, 10)
    assert sorted(str(r.body) for r in faulty.log_records()) == [f"last {i}" for i in range(5)]


def test_grpcio_with_no_thread_for_its_calls_delivers_and_never_hangs(
    faulty: FaultyReceiver, grpc_client: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """grpcio's call.future() starts the thread that completes its calls after registering the
    call; refused (CPython 3.12 refuses new threads in atexit handlers), the call is left with no
    thread, and Channel.close() waited for it for ever.  Emulated here on every version: the
    transport sends with blocking calls from then on and never closes that channel; the request
    it could not follow is never sent again (it reaches the collector regardless) and is counted
    as lost, since nobody could read its answer."""
    if grpc_client != "grpcio":
        pytest.skip("grpcio's own threads")
    import grpc._channel

    def refuse(state: object) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(grpc._channel, "_run_channel_spin_thread", refuse)
    log = handler_logger("faults.nothread", endpoint=faulty.endpoint)
    for i in range(5):
        log.info("r%d", i)
    assert not highlight_logging.flush(10)  # done with, but counted as lost
    log.info("r5")
    assert highlight_logging.flush(10)
    assert not _process.shutdown_all(timeout=5)  # not a clean run, but nothing waits on the old channel
    bodies = [str(r.body) for r in faulty.log_records()]
    assert len(bodies) == len(set(bodies)) and "r5" in bodies  # once each; blocking calls work
    stats = highlight_logging.stats()["logs"]
    assert stats["dropped"] == {**dict.fromkeys(stats["dropped"], 0), "non_retryable": 5}
    assert stats["exported"] == 1


class _StuckTransport:
    """The real transport, except that each request after the first blocks in start() until the
    test lets it go (as grpcio's close() once blocked the worker), and then fails or goes out."""

    def __init__(self, inner: Any, deliver: bool) -> None:
        self.inner, self.deliver, self.first = inner, deliver, True
        self.stuck, self.release = threading.Event(), threading.Event()

    def start(self, signal: str, payload: bytes, timeout: float) -> Callable[[], _transport.Outcome]:
        if self.first:
            self.first = False
            return self.inner.start(signal, payload, timeout)  # type: ignore[no-any-return]
        self.stuck.set()
        self.release.wait(30)
        if self.deliver:
            return self.inner.start(signal, payload, 10.0)  # type: ignore[no-any-return]
        outcome = _transport.Outcome(False, retryable=True, detail="released")
        return lambda: outcome

    def cancel(self) -> None:
        self.inner.cancel()  # does not reach the blocked start()

    def reconnect(self) -> None:
        self.inner.reconnect()

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("afterwards", ["fails", "delivered"])
def test_records_held_by_a_worker_stuck_past_the_deadline_are_counted_once_as_lost(
    faulty: FaultyReceiver,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    afterwards: str,
) -> None:
    """At the shutdown deadline the worker is blocked in a transport call: the records it took from
    the queue are counted as lost (shutdown) and named in the exit summary, and nothing the worker
    does once the call returns counts them again."""
    made: list[_StuckTransport] = []
    real = _transport.make

    def make(settings: Any) -> _StuckTransport:
        made.append(_StuckTransport(real(settings), deliver=afterwards == "delivered"))
        return made[-1]

    monkeypatch.setattr(_transport, "make", make)
    log = handler_logger("faults.stuck", endpoint=faulty.endpoint)
    for i in range(3):
        log.info("sent %d", i)
    assert highlight_logging.flush(10)
    for i in range(4):
        log.info("held %d", i)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("held 4")
    highlight_logging.flush(0.01)  # wakes the worker, which takes the five and blocks
    assert made[0].stuck.wait(10)
    assert not _process.shutdown_all(timeout=0.2)
    stats = highlight_logging.stats()
    assert (stats["logs"]["queued"], stats["logs"]["exported"]) == (8, 3)
    assert stats["logs"]["dropped"]["shutdown"] == stats["logs"]["dropped_total"] == 5
    assert stats["spans"]["dropped"]["shutdown"] == stats["spans"]["dropped_total"] == 1
    assert "at exit: 5 logs lost (shutdown: 5); 1 spans lost (shutdown: 1)" in capfd.readouterr().err
    made[0].release.set()
    worker = _process.pipelines()[0]._worker
    assert worker is not None
    worker.join(15)
    assert not worker.is_alive()
    assert highlight_logging.stats() == stats  # never counted twice
