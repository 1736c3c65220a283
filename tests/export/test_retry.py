"""RetryPolicy.decide(): what a transport's answer comes to, as a table (no transport, no clock)."""

from __future__ import annotations

import pytest

from highlight_logging._export.retry import BACKOFF_CAP, Action, Decision, RetryPolicy
from highlight_logging._transport import Outcome

NOW = 1000.0
POLICY = RetryPolicy(export_timeout=10.0)


def decide(outcome: Outcome, **keywords: object) -> Decision:
    args: dict[str, object] = {"count": 10, "attempt": 0, "now": NOW, "deadline": NOW + 10.0, **keywords}
    return POLICY.decide(outcome, **args)  # type: ignore[arg-type]


def retryable(**keywords: object) -> Outcome:
    return Outcome(False, retryable=True, detail="UNAVAILABLE", **keywords)  # type: ignore[arg-type]


def test_an_answer_that_is_ok_is_done_with_every_record_exported() -> None:
    assert decide(Outcome(True)) == Decision(Action.DONE, exported=10)


@pytest.mark.parametrize(("rejected", "exported", "counted"), [(3, 7, 3), (10, 0, 10), (25, 0, 10)])
def test_a_partial_success_counts_what_the_collector_rejected(
    rejected: int, exported: int, counted: int
) -> None:
    """Never retried, never counted beyond the request's own records."""
    assert decide(Outcome(True, rejected=rejected)) == Decision(
        Action.DONE, exported=exported, rejected=counted
    )


def test_a_success_after_the_abort_still_counts_as_exported() -> None:
    assert decide(Outcome(True), aborted=True).action is Action.DONE


def test_a_failure_cut_off_by_the_shutdown_deadline_is_a_shutdown_loss() -> None:
    for outcome in (retryable(), Outcome(False, too_large=True), Outcome(False)):
        assert decide(outcome, aborted=True) == Decision(Action.DROP, "shutdown")


def test_too_large_splits_in_halves_down_to_one_record_which_alone_is_dropped() -> None:
    assert decide(Outcome(False, too_large=True)) == Decision(Action.SPLIT)
    assert decide(Outcome(False, too_large=True), count=2) == Decision(Action.SPLIT)
    assert decide(Outcome(False, too_large=True), count=1) == Decision(Action.DROP, "too_large")


def test_too_large_wins_over_retryable() -> None:
    """RESOURCE_EXHAUSTED for size is retryable in gRPC's table, but the same request would fail again."""
    assert decide(retryable(too_large=True)).action is Action.SPLIT


def test_not_retryable_is_dropped_at_once() -> None:
    assert decide(Outcome(False, detail="INVALID_ARGUMENT")) == Decision(Action.DROP, "non_retryable")


def test_retry_after_from_the_server_is_the_delay() -> None:
    d = decide(retryable(retry_after=2.5), attempt=7)
    assert d == Decision(Action.RETRY, delay=2.5, deadline=NOW + 10.0, retried=True)


@pytest.mark.parametrize("retry_after", [float("nan"), float("inf"), -5.0])
def test_a_delay_from_the_server_that_is_no_number_of_seconds_is_replaced_by_the_backoff(
    retry_after: float,
) -> None:
    """A proxy's ``Retry-After: nan`` would make the worker's wait raise, ``inf`` hold the batch
    for good, a negative one retry at once."""
    for has_room in (False, True):
        d = decide(retryable(retry_after=retry_after), attempt=2, has_room=has_room)
        assert d == Decision(Action.RETRY, delay=1.0, deadline=NOW + 10.0, retried=True)


def test_a_delay_from_the_server_of_zero_is_honoured() -> None:
    assert decide(retryable(retry_after=0.0), attempt=3).delay == 0.0


def test_a_delay_from_the_server_past_the_deadline_is_a_drop_unless_there_is_room() -> None:
    assert decide(retryable(retry_after=10.5)) == Decision(Action.DROP, "export_timeout", retried=True)
    assert decide(retryable(retry_after=9.5)).action is Action.RETRY
    kept = decide(retryable(retry_after=3600.0), has_room=True)
    assert kept == Decision(Action.RETRY, delay=3600.0, deadline=NOW + 3610.0, retried=True)


def test_a_partial_success_of_a_single_record() -> None:
    assert decide(Outcome(True, rejected=1), count=1) == Decision(Action.DONE, exported=0, rejected=1)
    assert decide(Outcome(True, rejected=0), count=1) == Decision(Action.DONE, exported=1)


@pytest.mark.parametrize(
    ("attempt", "jitter", "delay"),
    [
        (0, 1.0, 0.25),
        (1, 1.0, 0.5),
        (3, 1.0, 2.0),
        (4, 1.0, 4.0),
        (5, 1.0, BACKOFF_CAP),
        (30, 1.0, BACKOFF_CAP),
        (0, 0.5, 0.125),
        (30, 0.5, BACKOFF_CAP / 2),
    ],
)
def test_backoff_is_exponential_with_jitter_and_capped(attempt: int, jitter: float, delay: float) -> None:
    d = decide(retryable(), attempt=attempt, jitter=jitter, deadline=NOW + 100.0)
    assert d.action is Action.RETRY and d.delay == pytest.approx(delay)


def test_reconnect_is_passed_on_with_the_retry_and_with_a_drop_for_lack_of_time() -> None:
    assert decide(retryable(reconnect=True)).reconnect
    d = decide(retryable(reconnect=True, retry_after=30.0))
    assert d.action is Action.DROP and d.retried and d.reconnect
    assert not decide(retryable()).reconnect


def test_past_its_deadline_with_a_full_buffer_the_request_is_dropped_as_export_timeout() -> None:
    d = decide(retryable(retry_after=11.0), has_room=False)
    assert d == Decision(Action.DROP, "export_timeout", retried=True)


def test_past_its_deadline_with_room_in_the_buffer_the_request_is_kept() -> None:
    """The collector is away: keeping the batch in hand loses nothing more, so its deadline moves."""
    d = decide(retryable(retry_after=11.0), has_room=True)
    assert d == Decision(Action.RETRY, delay=11.0, deadline=NOW + 11.0 + 10.0, retried=True)


def test_during_shutdown_the_deadline_is_never_extended_and_a_loss_is_a_shutdown_loss() -> None:
    d = decide(retryable(retry_after=11.0), has_room=True, stopping=True)
    assert d == Decision(Action.DROP, "shutdown", retried=True)


def test_the_shutdown_deadline_bounds_every_retry() -> None:
    d = decide(retryable(retry_after=1.0), shutdown_deadline=NOW + 0.5, stopping=True)
    assert d == Decision(Action.DROP, "shutdown", retried=True)
    d = decide(retryable(retry_after=1.0), shutdown_deadline=NOW + 2.0, stopping=True)
    assert d.action is Action.RETRY and d.deadline == NOW + 10.0


def test_decide_is_pure() -> None:
    outcome = retryable(retry_after=1.0)
    first = decide(outcome, has_room=True)
    assert all(decide(outcome, has_room=True) == first for _ in range(3))
    assert outcome.retry_after == 1.0 and not outcome.ok
