"""``LoguruSink``: the loguru front end.

loguru is optional: this module imports without it (the sink only receives loguru's objects).

Lifecycle, as loguru drives a sink object that has ``write``:

* no ``flush`` attribute: loguru would call it after every message, defeating batching;
* ``stop()`` (called by ``logger.remove()``) flushes the shared pipeline, bounded by
  ``shutdown_timeout``; the pipeline keeps running for other front ends;
* no ``complete`` attribute: loguru only accepts a coroutine method there and creates the
  coroutine even when ``logger.complete()`` is called without ``await``, which would warn
  "never awaited" in every synchronous caller.  ``logger.complete()`` still drains an
  ``enqueue=True`` queue into the pipeline; ``highlight_logging.flush()``, ``logger.remove()``
  or interpreter exit then delivers it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from highlight_logging._core.convert import capture_record
from highlight_logging._core.record import SITE_KEYS, Attributes
from highlight_logging._export import process as _process
from highlight_logging._export import threads as _threads
from highlight_logging._frontends.binding import INTERNAL_LOGGERS, Binding

if TYPE_CHECKING:
    from loguru import Message


class LoguruSink:
    """A loguru sink that exports records as OTLP log records (exceptions also as spans).

    ``logger.add(LoguruSink(project_id="..."), level="INFO")``.  Takes the same settings as
    ``HighlightHandler`` and shares its pipeline when they are equal.  Reads ``message.record``
    (never the formatted line), so ``format=`` does not change what is sent.
    """

    __slots__ = ("_binding",)

    def __init__(self, **settings: Any) -> None:
        self._binding = Binding(settings)

    def __repr__(self) -> str:
        return f"<LoguruSink endpoint={self._binding.settings.endpoint!r}>"

    # Pickled only when a logger with a non-enqueued sink goes to a spawned process (enqueued
    # handlers drop their sink); a pipeline does not cross processes, the settings do.
    def __getstate__(self) -> dict[str, Any]:
        return dict(self._binding.keywords)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._binding = Binding(state)

    def write(self, message: Message) -> None:
        """Convert one loguru message and hand it to the pipeline; never raises."""
        try:
            pipeline = self._binding.get()
            if pipeline is None:
                return
            record = message.record
            scope = record["name"] or ""
            if scope.startswith(INTERNAL_LOGGERS):
                return
            level = record["level"]
            thread = record["thread"]
            exc = record["exception"]
            attrs: Attributes = {}
            pipeline.submit(
                capture_record(
                    pipeline.settings,
                    record["time"],  # an immutable datetime: converted on the worker (~1 us)
                    level.no,
                    level.name,
                    scope,
                    record["message"],
                    attrs,
                    record["extra"].items(),
                    (exc.type, exc.value, exc.traceback) if exc else None,
                    site=(
                        SITE_KEYS,
                        record["file"].path,
                        record["function"],
                        record["line"],
                        thread.id,
                        thread.name,
                    ),
                )
            )
        except Exception as exc:
            # A raise here would make loguru print "Logging error in Loguru Handler"; the
            # converter already guards user values, so this only catches the unforeseen.
            _process.count_frontend_loss("LoguruSink", exc)

    def stop(self) -> None:
        """Called by ``logger.remove()``: deliver what was handed over, within ``shutdown_timeout``."""
        try:
            pipeline = self._binding.pipeline
            # On an export worker a flush would wait for itself until the timeout.
            if pipeline is not None and threading.get_ident() not in _threads.worker_threads:
                pipeline.flush()
        except Exception:
            pass
