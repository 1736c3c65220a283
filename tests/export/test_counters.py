"""counters.Ledger: one pipeline's losses, counted once each, and nothing more once shutdown() gave up."""

from __future__ import annotations

import threading

from highlight_logging._export.counters import Ledger


def test_shutdown_giving_up_counts_what_is_unsettled_once_and_then_nothing_more() -> None:
    """Records accepted and neither exported nor dropped are lost as ``shutdown`` when shutdown()
    gives up on the worker; refused records (never accepted) are not counted again, and whatever
    the worker reports later is not counted at all."""
    ledger = Ledger(threading.RLock(), owner=object())
    ledger.exported("logs", 3)
    ledger.drop("logs", "too_large", 1)
    ledger.drop("logs", "rejected", 0)  # nothing to count
    with ledger.lock:
        ledger.refuse(1, 0, "queue_full")  # never accepted
    ledger.counters["spans"]["queued"] = 2
    ledger.exported("spans", 1)
    with ledger.lock:
        ledger.give_up(accepted_logs=10)  # 10 accepted: 3 exported, 1 dropped, 6 unsettled
    logs, spans = ledger.counters["logs"], ledger.counters["spans"]
    assert logs["dropped"]["shutdown"] == 6 and spans["dropped"]["shutdown"] == 1
    assert logs["dropped"]["queue_full"] == 1 and logs["dropped"]["rejected"] == 0
    ledger.exported("logs", 5)  # the worker, past the deadline: already counted as lost
    ledger.drop("logs", "export_timeout", 2)
    assert logs["exported"] == 3 and logs["dropped"]["export_timeout"] == 0
    assert ledger.dropped_total() == 1 + 1 + 6 + 1
    assert ledger.summary("") == (
        "8 logs lost (queue_full: 1, too_large: 1, shutdown: 6); 1 spans lost (shutdown: 1)"
    )


def test_a_refused_record_with_a_span_counts_both() -> None:
    ledger = Ledger(threading.RLock(), owner=object())
    ledger.refuse(0, 1, "shutdown")  # an error report: its span only
    ledger.refuse(1, 1, "queue_full")
    assert ledger.refused == {"logs": 1, "spans": 2}
    assert ledger.counters["spans"]["dropped"]["shutdown"] == 1
    assert ledger.counters["spans"]["dropped"]["queue_full"] == 1
    assert ledger.counters["logs"]["dropped"]["queue_full"] == 1
