"""``HighlightHandler``: the stdlib ``logging`` front end."""

from __future__ import annotations

import logging
import sys
from typing import Any

from highlight_logging._core.coerce import safe_str
from highlight_logging._core.convert import capture_record
from highlight_logging._core.record import Attributes, logrecord_site
from highlight_logging._export import process as _process
from highlight_logging._frontends import otel_duplicates as _otel_duplicates
from highlight_logging._frontends.binding import INTERNAL_LOGGERS, Binding
from highlight_logging._frontends.dedupe import exported_by_structlog

# Attributes every LogRecord has (plus what formatters and OTel's record factory add): the rest
# of ``record.__dict__`` is what the user passed as ``extra``.
_PLAIN_RECORD = vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()
_STANDARD = frozenset(
    _PLAIN_RECORD
    | {"message", "asctime", "taskName", "color_message"}
    | {"otelSpanID", "otelTraceID", "otelTraceSampled", "otelServiceName"}
)
_N_INIT = len(_PLAIN_RECORD)  # LogRecord.__init__ sets a fixed set of attributes, always all of them
_LAST_INIT = list(_PLAIN_RECORD)[-1]  # ... the last of them at index _N_INIT - 1, unless one was deleted
_LogRecord = logging.LogRecord


def _extras(record: logging.LogRecord) -> list[tuple[str, Any]]:
    """What the user passed as ``extra`` (or a filter added), in the order given."""
    fields = record.__dict__
    if type(record) is _LogRecord:
        # makeRecord adds ``extra`` after __init__ has set its attributes, and filters and
        # formatters add theirs later still: in the dict's insertion order, everything past the
        # first _N_INIT keys.  Measured in the benchmark loop, this skips the set difference below,
        # which took a fifth of emit().  A filter that deleted (and maybe re-set) one of those
        # attributes moved the boundary: then the set difference it is.
        n = len(fields)
        if n == _N_INIT and next(reversed(fields)) == _LAST_INIT:
            return []
        if n > _N_INIT:
            keys = list(fields)  # one C call; cheaper than islice() over the dict, and reused
            if keys[_N_INIT - 1] == _LAST_INIT:
                if n == _N_INIT + 1:  # the usual single extra key, without a comprehension
                    key = keys[_N_INIT]
                    return [] if key in _STANDARD else [(key, fields[key])]
                return [(k, fields[k]) for k in keys[_N_INIT:] if k not in _STANDARD]
    names = fields.keys() - _STANDARD  # a subclass may set attributes in any order
    if not names:
        return []
    return [(k, v) for k, v in fields.items() if k in names]


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception as exc:
        # logger.info("%d", "x"): keep what the user wrote, and say why it did not format.
        args = f"; args: {safe_str(record.args)}" if record.args else ""
        return f"{safe_str(record.msg)} [formatting failed: {type(exc).__name__}: {safe_str(exc)}{args}]"


class HighlightHandler(logging.Handler):
    """A ``logging.Handler`` that exports records as OTLP log records (exceptions also as spans).

    Works from ``dictConfig`` (``"class": "highlight_logging.HighlightHandler"`` plus settings as
    keys), ``fileConfig`` (``kwargs=``) and ``addHandler``.  Handlers with equal settings share one
    pipeline; closing one does not stop it for the others.
    """

    def __init__(self, level: int | str = logging.NOTSET, **settings: Any) -> None:
        super().__init__(level)
        self._binding = Binding(settings)
        # Another exporting handler on the way (opentelemetry-instrument): say so now, and again at
        # the first record, which sees its logger's path (and a handler added after this one).
        self._check_otel = not self._binding.settings.disabled
        if self._check_otel:
            _otel_duplicates.check(self._binding.settings)
        if "celery" in sys.modules:  # a Celery worker may remove us: see _frontends/celery.py
            from highlight_logging._frontends import celery as _celery

            _celery.watch(self)

    def __repr__(self) -> str:
        return f"<HighlightHandler {logging.getLevelName(self.level)} endpoint={self._binding.settings.endpoint!r}>"

    def handle(self, record: logging.LogRecord) -> Any:
        # Like Handler.handle but without the per-record handler lock: emit() is thread-safe.
        rv = self.filter(record) if self.filters else True
        if isinstance(rv, logging.LogRecord):  # 3.12+: a filter may return a replacement
            record = rv
        if rv:
            self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        if self._check_otel:
            self._check_otel = False
            _otel_duplicates.check(self._binding.settings, record.name)
        try:
            pipeline = self._binding.get()
            if pipeline is None or record.name.startswith(INTERNAL_LOGGERS) or exported_by_structlog(record):
                return
            body = self.format(record) if self.formatter is not None else _message(record)
            attrs: Attributes = {}
            if record.stack_info:
                attrs["code.stacktrace"] = safe_str(record.stack_info)
            pipeline.submit(
                capture_record(
                    pipeline.settings,
                    int(record.created * 1e9),
                    record.levelno,
                    record.levelname,
                    record.name,
                    body,
                    attrs,
                    _extras(record),
                    record.exc_info,
                    site=logrecord_site(record),
                )
            )
        except RecursionError:
            raise
        except Exception as exc:
            _process.count_frontend_loss("HighlightHandler", exc)
            self.handleError(record)

    def flush(self) -> None:
        """Export what is queued. Bounded by ``shutdown_timeout``; inside ``dictConfig`` (which
        holds logging's module lock while it flushes old handlers) it only wakes the worker, so
        reconfiguring never waits on a slow collector."""
        pipeline = self._binding.pipeline
        if pipeline is None:
            return
        lock = getattr(logging, "_lock", None)
        is_owned = getattr(lock, "_is_owned", None)
        if is_owned is not None and is_owned():
            pipeline.flush(0)
            return
        pipeline.flush()


def reaches_highlight_handler(record: logging.LogRecord) -> bool:
    logger: Any = logging.root
    if record.name and record.name != "root":
        found = logging.Logger.manager.loggerDict.get(record.name)
        if isinstance(found, logging.Logger):
            logger = found
    while logger is not None:
        for handler in logger.handlers:
            if isinstance(handler, HighlightHandler) and record.levelno >= handler.level:
                return True
        if not logger.propagate:
            break
        logger = logger.parent
    return False
