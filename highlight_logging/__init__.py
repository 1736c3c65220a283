"""highlight_logging: ship logs and errors from logging, structlog and loguru over OTLP.

One batched, compressed OTLP pipeline per process serves all three front ends::

    import logging, highlight_logging
    logging.getLogger().addHandler(highlight_logging.HighlightHandler(project_id="..."))
"""

from __future__ import annotations

from typing import Any

from highlight_logging._core import settings as _settings
from highlight_logging._core.context import context
from highlight_logging._export import process as _process
from highlight_logging._frontends.errors import record_exception
from highlight_logging._frontends.handler import HighlightHandler
from highlight_logging._frontends.loguru import LoguruSink
from highlight_logging._frontends.middleware import HighlightASGIMiddleware, HighlightWSGIMiddleware
from highlight_logging._frontends.structlog import StructlogProcessor
from highlight_logging._version import __version__

__all__ = [
    "HighlightASGIMiddleware",
    "HighlightHandler",
    "HighlightWSGIMiddleware",
    "LoguruSink",
    "StructlogProcessor",
    "__version__",
    "configure",
    "context",
    "flush",
    "record_exception",
    "shutdown",
    "stats",
]


def configure(**settings: Any) -> None:
    """Set process-wide default settings (below keywords, above the environment).

    Front ends created earlier pick them up on their next record.
    """
    _settings.configure(**settings)


def flush(timeout: float | None = None) -> bool:
    """Export everything queued so far; True when all of it went out.

    Call it before ``os._exit()`` (which skips the exit hook), e.g. at the end of a
    ``multiprocessing`` child that exits that way.  ``timeout`` defaults to ``shutdown_timeout``.
    """
    return _process.flush_all(timeout)


def shutdown(timeout: float | None = None) -> bool:
    """Deliver what is queued within ``timeout`` seconds, then stop every pipeline.

    Runs by itself at interpreter exit; True when nothing was lost.
    """
    return _process.shutdown_all(timeout)


def stats() -> dict[str, Any]:
    """Counters for ``logs`` and ``spans``: queued, exported, and dropped by reason."""
    return _process.stats()
