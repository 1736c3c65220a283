"""What to do with a transport's answer to one request: a pure function of the answer, the
attempt and the time left (OTLP's retry rules, with a bounded exponential backoff)."""

from __future__ import annotations

import enum
import math
from typing import NamedTuple

from highlight_logging._transport import Outcome

BACKOFF_BASE = 0.25  # s: the first retry's delay (before jitter)
BACKOFF_CAP = 5.0  # s: capped so that recovery after an outage is prompt


class Action(enum.Enum):
    DONE = "done"  # answered: ``exported`` went out (the rest were rejected)
    RETRY = "retry"  # send it again after ``delay``, by ``deadline``
    SPLIT = "split"  # refused as too large: send it again in two halves
    DROP = "drop"  # give up: count the records as dropped for ``reason``


class Decision(NamedTuple):
    action: Action
    reason: str = ""  # DROP: the loss counter's reason (counters.REASONS)
    delay: float = 0.0  # RETRY: seconds to wait first
    deadline: float = 0.0  # RETRY: the request's deadline from now on (extended while there is room)
    exported: int = 0  # DONE: records taken
    rejected: int = 0  # DONE: records the collector refused (partial success)
    # The answer was retryable (RETRY, or DROP for lack of time): the requests still in flight are
    # read before anything else, and the connection is replaced when ``reconnect``.
    retried: bool = False
    reconnect: bool = False


class RetryPolicy:
    """Decides retries for one pipeline; holds only its settings, so :meth:`decide` is pure."""

    def __init__(self, export_timeout: float, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> None:
        self.export_timeout = export_timeout
        self.base = base
        self.cap = cap

    def backoff(self, attempt: int, jitter: float) -> float:
        """Exponential backoff with full jitter (``jitter`` drawn from [0.5, 1])."""
        return jitter * min(self.cap, self.base * 2.0**attempt)

    def decide(
        self,
        outcome: Outcome,
        *,
        count: int,
        attempt: int,
        now: float,
        deadline: float,
        shutdown_deadline: float = float("inf"),
        stopping: bool = False,
        aborted: bool = False,
        has_room: bool = False,
        jitter: float = 1.0,
    ) -> Decision:
        """What to do with ``outcome``, the answer to attempt ``attempt`` (0: the first) of a
        request of ``count`` records whose deadline is ``deadline`` (monotonic seconds, as ``now``).

        ``shutdown_deadline``/``stopping``/``aborted``: shutdown() is under way, or cut the attempt
        off; ``has_room``: the buffer has room, so a request past its deadline is kept (the
        collector is away, and keeping the batch loses nothing more).
        """
        if outcome.ok:
            rejected = min(outcome.rejected, count) if outcome.rejected else 0
            return Decision(Action.DONE, exported=max(count - outcome.rejected, 0), rejected=rejected)
        if aborted:
            return Decision(Action.DROP, "shutdown")  # cut off by the shutdown deadline
        if outcome.too_large:
            return Decision(Action.SPLIT) if count > 1 else Decision(Action.DROP, "too_large")
        if not outcome.retryable:
            return Decision(Action.DROP, "non_retryable")
        delay = outcome.retry_after
        # A server's delay that is no number of seconds (NaN, inf, negative: a proxy's Retry-After)
        # would stop the worker, hold the batch for good or retry at once: the backoff instead.
        if delay is None or not 0 <= delay < math.inf:
            delay = self.backoff(attempt, jitter)
        if now + delay > deadline and not stopping and has_room:
            deadline = now + delay + self.export_timeout
        if now + delay > min(deadline, shutdown_deadline):
            reason = "shutdown" if stopping else "export_timeout"
            return Decision(Action.DROP, reason, retried=True, reconnect=outcome.reconnect)
        return Decision(
            Action.RETRY, delay=delay, deadline=deadline, retried=True, reconnect=outcome.reconnect
        )
