"""The viewer's store: every log record and span the receiver accepts, in SQLite, bounded.

In process, the receiver's threads only queue requests (:meth:`Store.submit_logs`); one writer
thread turns everything queued into rows and commits it in one transaction, then drops what is past
the newest ``keep`` records. ``serve --ui`` runs the store in its own process instead
(``_process``), whose main thread hands batches of request bytes to :meth:`Store.ingest`.
One connection, one lock: readers wait at most one batch.
"""

from __future__ import annotations

from highlight_logging._devtools.viewer._reader import StoreReader
from highlight_logging._devtools.viewer._schema import LEVELS, LogQuery, json_default
from highlight_logging._devtools.viewer._writer import StoreWriter

__all__ = ["LEVELS", "LogQuery", "Store", "json_default"]


class Store(StoreWriter, StoreReader):
    """Logs, spans and error groups in SQLite (in memory, or ``path``), the newest ``keep`` records."""
