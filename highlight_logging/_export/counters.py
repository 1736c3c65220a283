"""Losses counted by reason, and the warnings that name them on stderr (``_core.diag``, rate-limited).

Every record a pipeline accepts ends exported or dropped under one of :data:`REASONS`;
``highlight_logging.stats()`` sums the counters of every pipeline (see ``process.stats``).
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import TypedDict

from highlight_logging._core import diag as _diag

REASONS = (
    "queue_full",
    "non_retryable",
    "rejected",
    "export_timeout",
    "too_large",
    "encode_error",
    "shutdown",
    "frontend_error",
)
SIGNALS = ("logs", "spans")
#: The shortest interval between two warnings of one kind (s).
DROP_WARNING_EVERY = 10.0


class _Counts(TypedDict):
    queued: int
    exported: int
    dropped: dict[str, int]  # by reason, every one of REASONS


class SignalCounts(_Counts, total=False):
    """One signal's counters; ``stats()`` adds the last two (``scrubbed``: logs only)."""

    scrubbed: int
    dropped_total: int


#: ``{"logs" | "spans": SignalCounts}``: the shape of ``highlight_logging.stats()``.
Counters = dict[str, SignalCounts]


def new_counters() -> Counters:
    # A Pipeline leaves ``counters["logs"]["queued"]`` at 0: stats() adds what it accepted
    # (Pipeline.accepted()), which submit() tracks without a counter of its own.
    return {s: {"queued": 0, "exported": 0, "dropped": dict.fromkeys(REASONS, 0)} for s in SIGNALS}


def dropped_total(counters: Counters) -> int:
    return sum(sum(c["dropped"].values()) for c in counters.values())


def count_unsettled(counters: Counters, accepted_logs: int, refused: dict[str, int], reason: str) -> None:
    """Count as dropped for ``reason`` every accepted record neither exported nor dropped yet
    (``accepted_logs``: the logs accepted; spans accepted are the spans' "queued"; ``refused``: the
    drops of records never accepted, by signal)."""
    accepted = {"logs": accepted_logs, "spans": counters["spans"]["queued"]}
    for signal, c in counters.items():
        settled = c["exported"] + sum(c["dropped"].values()) - refused[signal]
        c["dropped"][reason] += max(accepted[signal] - settled, 0)


def add_into(total: Counters, counters: Counters) -> None:
    """Add ``counters`` to ``total``, signal by signal and reason by reason."""
    for signal, c in counters.items():
        t = total[signal]
        t["queued"] += c["queued"]
        t["exported"] += c["exported"]
        for reason, n in c["dropped"].items():
            t["dropped"][reason] += n


def warn_drop(owner: object, signal: str, reason: str) -> None:
    """Say that ``owner`` dropped records of ``signal`` for ``reason`` (not for ``shutdown``)."""
    if reason != "shutdown":
        _diag.warn(
            f"dropped {signal} ({reason}); see highlight_logging.stats()",
            key=f"drop:{id(owner)}:{reason}",
            every=DROP_WARNING_EVERY,
        )


def warn_queue_full(owner: object) -> None:
    _diag.warn(
        "export queue full, dropping new log records; see highlight_logging.stats()",
        key=f"queue_full:{id(owner)}",
        every=DROP_WARNING_EVERY,
    )


def summary(counters: Counters, last_error: str) -> str | None:
    """One line naming every loss, or None when nothing was lost."""
    parts = []
    for signal, c in counters.items():
        lost = {r: n for r, n in c["dropped"].items() if n}
        if lost:
            detail = ", ".join(f"{r}: {n}" for r, n in lost.items())
            parts.append(f"{sum(lost.values())} {signal} lost ({detail})")
    if parts and last_error:  # e.g. the proxy that never answered, named
        parts.append(f"last export error: {last_error}")
    return "; ".join(parts) if parts else None


class Ledger:
    """One pipeline's losses, counted under its lock (shared with its queue): its counters, the
    drops of records it refused at the door (never accepted), and whether shutdown() gave up on
    its worker, after which the worker counts nothing more."""

    __slots__ = ("counters", "gave_up", "lock", "owner", "refused")

    def __init__(self, lock: AbstractContextManager[object], owner: object) -> None:
        self.lock = lock
        self.owner = owner  # the warnings' rate-limit key
        self.counters = new_counters()
        self.refused = dict.fromkeys(SIGNALS, 0)
        self.gave_up = False

    def exported(self, signal: str, count: int) -> None:
        with self.lock:
            if not self.gave_up:  # else shutdown() counted it as lost already
                self.counters[signal]["exported"] += count

    def drop(self, signal: str, reason: str, count: int) -> None:
        if count <= 0:
            return
        with self.lock:
            if self.gave_up:  # shutdown() counted it as lost already
                return
            self.counters[signal]["dropped"][reason] += count
        warn_drop(self.owner, signal, reason)

    def refuse(self, logs: int, spans: int, reason: str) -> None:
        """Count the drop of a record never accepted (the caller holds the lock)."""
        self.counters["logs"]["dropped"][reason] += logs
        self.refused["logs"] += logs
        if spans:
            self.counters["spans"]["dropped"][reason] += spans
            self.refused["spans"] += spans

    def give_up(self, accepted_logs: int) -> None:
        """The worker outlived the shutdown deadline (blocked in a transport call, say): the records
        it took from the queue and has neither exported nor counted are lost.  Counted here, once,
        as ``shutdown``, and the worker counts nothing from now on, so that no record is counted
        twice (one it still delivers later counts as lost).  The caller holds the lock."""
        self.gave_up = True
        count_unsettled(self.counters, accepted_logs, self.refused, "shutdown")

    def dropped_total(self) -> int:
        with self.lock:
            return dropped_total(self.counters)

    def summary(self, last_error: str) -> str | None:
        """One line naming every loss, or None when nothing was lost."""
        with self.lock:
            return summary(self.counters, last_error)


class FrontendLosses:
    """Records a front end lost to an error of its own (a bug or a hostile object no guard
    foresaw), before any pipeline accepted them: counted per process, since the failure may
    precede the pipeline."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def add(self, front_end: str, exc: BaseException) -> None:
        """Count a record that ``front_end`` lost to ``exc`` and say so on stderr (rate-limited)."""
        with self._lock:
            self.count += 1
        _diag.warn(
            f"{front_end} lost a record: {type(exc).__name__}; see highlight_logging.stats()",
            key=f"frontend:{front_end}",
            every=DROP_WARNING_EVERY,
        )

    def reset(self) -> None:
        with self._lock:
            self.count = 0
