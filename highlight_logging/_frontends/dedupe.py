"""One export per event when structlog and HighlightHandler both see it (the ledger both consult)."""

from __future__ import annotations

import logging
import threading
import weakref

# Structlog events belong to StructlogProcessor; records that start in stdlib ``logging`` belong to
# HighlightHandler.  Both halves are decided on the logging thread, synchronously:
#
# * After exporting an event whose wrapped logger is a ``logging.Logger`` (so a LogRecord for the
#   same event follows on this thread, unless something drops it), the processor leaves
#   (logger name, level number) in a thread-local.  The next record that reaches a HighlightHandler
#   on this thread consumes it: if name and level match, that record is the event's and is skipped
#   (by every HighlightHandler it reaches, through a weak reference).  Whatever the outcome, the
#   note is gone after one record, so a stale note can cost at most one check.
# * Inside ProcessorFormatter (``_record`` in the event dict) a record that came from plain logging
#   is skipped when a HighlightHandler that takes its level sits on its logger's path.


class _State(threading.local):
    exported: int = 0  # id() of the last event dict exported from a structlog chain on this thread
    pending: tuple[str, int] | None = None  # (logger name, levelno) of the LogRecord to come
    matched: weakref.ReferenceType[logging.LogRecord] | None = None


state = _State()
#: Set once StructlogProcessor first leaves a note: until then no record needs the check (a thread-local
#: read per record spared where structlog does not feed stdlib logging).
armed = False


def exported_by_structlog(record: logging.LogRecord) -> bool:
    """True when ``record`` carries an event StructlogProcessor already exported.

    HighlightHandler.emit calls this; for ordinary records it is two thread-local reads.
    """
    pending = state.pending
    if pending is None:
        matched = state.matched
        return matched is not None and matched() is record
    state.pending = None
    try:
        hit = record.name == pending[0] and record.levelno == pending[1]
        state.matched = weakref.ref(record) if hit else None
    except Exception:
        return False
    return hit
