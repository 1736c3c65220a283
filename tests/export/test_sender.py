"""The sender with a scripted transport: answers read in order, the retry policy obeyed, a request
refused as too large sent again in halves."""

from __future__ import annotations

from collections.abc import Callable

from highlight_logging import _transport
from highlight_logging._core import osthread as _osthread
from highlight_logging._core.settings import Settings
from highlight_logging._export import encode as _encode
from highlight_logging._export.sender import MAX_IN_FLIGHT, Sender
from highlight_logging._transport import Outcome


class Host:
    """The pipeline's side, recorded."""

    def __init__(self) -> None:
        self.settings = Settings(endpoint="http://127.0.0.1:9", export_timeout=5.0)
        self.stopping = False
        self.shutdown_deadline = float("inf")
        self.exported: dict[str, int] = {}
        self.dropped: list[tuple[str, str, int]] = []
        self.finished: list[int] = []

    def has_room(self) -> bool:
        return True

    def count_exported(self, signal: str, count: int) -> None:
        self.exported[signal] = self.exported.get(signal, 0) + count

    def count_drop(self, signal: str, reason: str, count: int) -> None:
        self.dropped.append((signal, reason, count))

    def finish(self, count: int) -> None:
        self.finished.append(count)


class Scripted:
    """Answers each attempt with the next outcome of ``script`` (then OK), and logs the attempts."""

    def __init__(self, *script: Outcome) -> None:
        self.script = list(script)
        self.attempts: list[bytes] = []
        self.reconnects = 0

    def start(self, signal: str, payload: bytes, timeout: float) -> Callable[[], Outcome]:
        self.attempts.append(payload)
        outcome = self.script.pop(0) if self.script else Outcome(True)
        return lambda: outcome

    def cancel(self) -> None:
        pass

    def reconnect(self) -> None:
        self.reconnects += 1

    def close(self) -> None:
        pass


def sender(transport: Scripted) -> tuple[Sender, Host]:
    host = Host()
    s = Sender(host, _osthread.Event())
    s.transport = transport
    return s, host


def request(n: int) -> bytes:
    logs = [_encode.log_record(1, 1, 9, "INFO", f"r{i}", {}, 0, b"", b"", 0) for i in range(n)]
    return _encode.request(_encode.resource({}), [(_encode.scope("s"), logs)])


def test_batches_are_finished_in_the_order_sent_with_at_most_max_in_flight() -> None:
    s, host = sender(Scripted())
    for i in range(MAX_IN_FLIGHT + 2):
        s.settle(s.start_in_order([(_transport.LOGS, "logs", request(1), 1)]), 10 + i)
        assert len(s.in_flight) <= MAX_IN_FLIGHT
    s.complete_in_flight()
    assert host.finished == [10 + i for i in range(MAX_IN_FLIGHT + 2)]
    assert host.exported == {"logs": MAX_IN_FLIGHT + 2} and not host.dropped and s.sending == 0


def test_a_retryable_failure_is_retried_with_a_reconnect_when_asked() -> None:
    transport = Scripted(Outcome(False, retryable=True, retry_after=0.0, reconnect=True, detail="x"))
    s, host = sender(transport)
    s.finish_send(s.start_send(_transport.LOGS, "logs", request(3), 3))
    assert len(transport.attempts) == 2 and transport.reconnects == 1
    assert host.exported == {"logs": 3} and not host.dropped


def test_a_non_retryable_failure_is_dropped_once() -> None:
    s, host = sender(Scripted(Outcome(False, detail="INVALID_ARGUMENT")))
    s.finish_send(s.start_send(_transport.LOGS, "logs", request(3), 3))
    assert host.dropped == [("logs", "non_retryable", 3)] and not host.exported
    assert s.last_error == "INVALID_ARGUMENT"


def test_too_large_goes_again_in_halves_and_a_single_record_alone_is_dropped() -> None:
    too_large = Outcome(False, too_large=True, detail="larger than max")
    # 4 records: refused; halves of 2 and 2: the first refused again, halved to 1 and 1: the
    # first of those refused (dropped alone), everything else taken.
    transport = Scripted(too_large, too_large, too_large)
    s, host = sender(transport)
    s.finish_send(s.start_send(_transport.LOGS, "logs", request(4), 4))
    assert host.dropped == [("logs", "too_large", 1)]
    assert host.exported == {"logs": 3}
    assert len(transport.attempts) == 5


def test_past_the_shutdown_deadline_nothing_is_sent_and_the_records_count_as_shutdown() -> None:
    transport = Scripted()
    s, host = sender(transport)
    host.shutdown_deadline = 0.0
    s.finish_send(s.start_send(_transport.LOGS, "logs", request(2), 2))
    assert not transport.attempts and host.dropped == [("logs", "shutdown", 2)]


def test_a_partial_success_counts_the_rejected_as_dropped_and_the_rest_as_exported() -> None:
    transport = Scripted(Outcome(True, rejected=2, detail="2 rejected"))
    s, host = sender(transport)
    s.finish_send(s.start_send(_transport.LOGS, "logs", request(5), 5))
    assert host.dropped == [("logs", "rejected", 2)] and host.exported == {"logs": 3}
    assert len(transport.attempts) == 1  # never retried


def test_a_delay_from_the_server_that_is_not_a_number_does_not_stop_the_sender() -> None:
    """A proxy's ``Retry-After: nan`` (which urllib's float() reads) made the backoff wait raise."""
    transport = Scripted(Outcome(False, retryable=True, retry_after=float("nan"), detail="HTTP 503"))
    s, host = sender(transport)
    s.policy.base = 0.001  # the backoff stands in for the server's delay: keep it short here
    s.finish_send(s.start_send(_transport.LOGS, "logs", request(2), 2))
    assert len(transport.attempts) == 2 and host.exported == {"logs": 2} and not host.dropped
