"""``HighlightHandler``: the stdlib ``logging`` front end."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from highlight_logging._core import native as _native
from highlight_logging._core.coerce import safe_str
from highlight_logging._core.convert import capture_record
from highlight_logging._core.record import SITE_KEYS, Attributes, Pending, logrecord_site
from highlight_logging._core.settings import Settings
from highlight_logging._export import process as _process
from highlight_logging._frontends import dedupe as _dedupe
from highlight_logging._frontends import otel_duplicates as _otel_duplicates
from highlight_logging._frontends.binding import INTERNAL_LOGGERS, Binding

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
        return _unformatted(record, exc)


def _unformatted(record: logging.LogRecord, exc: BaseException) -> str:
    # logger.info("%d", "x"): keep what the user wrote, and say why it did not format.
    args = f"; args: {safe_str(record.args)}" if record.args else ""
    return f"{safe_str(record.msg)} [formatting failed: {type(exc).__name__}: {safe_str(exc)}{args}]"


def _pending(settings: Settings, record: logging.LogRecord, body: Any) -> Pending:
    """The Pending of ``record`` with the message ``body``: the reference of ``logrecord_event``."""
    attrs: Attributes = {}
    if record.stack_info:
        attrs["code.stacktrace"] = safe_str(record.stack_info)
    return capture_record(
        settings,
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


def _unmodified(cls: type) -> bool:
    """``cls`` is logging's own LogRecord as logging defines it: its getMessage, no attribute hook,
    no descriptor over an instance attribute (a class patched before our import)."""
    get_message = cls.__dict__.get("getMessage")
    return (
        getattr(get_message, "__module__", None) == "logging"
        and getattr(get_message, "__qualname__", None) == "LogRecord.getMessage"
        and getattr(cls, "__getattribute__", None) is getattr(object, "__getattribute__", None)
        and not hasattr(cls, "__getattr__")
        and not any(hasattr(getattr(cls, name, None), "__set__") for name in _PLAIN_RECORD)
    )


#: The C reading of an exact LogRecord (``logrecord_event`` in ``_speedups.c``), or None: every
#: record then takes the Python path.  Why: with ``capture_record`` in C, emit's own Python reads
#: (the message, the extras, the site, the time) were most of its call (docs/performance.md, On the
#: caller's thread).  Used only where ``capture_record`` is the C twin too.
_logrecord_event: Callable[[Settings, logging.LogRecord], Pending | None] | None = None
if (
    _native.speedups is not None
    and capture_record is _native.speedups.capture_record
    and _unmodified(_LogRecord)
):
    _native.speedups.logrecord_setup(
        _LogRecord, _STANDARD, _N_INIT, _LAST_INIT, SITE_KEYS, _unformatted, _pending, _unmodified
    )
    _logrecord_event = _native.speedups.logrecord_event


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
            if (
                pipeline is None
                or record.name.startswith(INTERNAL_LOGGERS)
                or (_dedupe.armed and _dedupe.exported_by_structlog(record))
            ):
                return
            pending: Pending | None = None
            if self.formatter is not None:
                pending = _pending(pipeline.settings, record, self.format(record))
            elif _logrecord_event is not None:
                pending = _logrecord_event(pipeline.settings, record)
            pipeline.submit(pending or _pending(pipeline.settings, record, _message(record)))
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
