"""The one neutral record every front end produces and the pipeline consumes.

Front ends are thin: each turns its native record (a ``logging.LogRecord``, a structlog event
dict, a loguru message) into a :class:`Pending` on the caller's thread and enqueues it; the worker
makes it a :class:`Record`.  Everything else (limits, scrubbing, protobuf encoding, batching,
export) happens once, on the worker.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple, Union

#: A snapshot of a user value, safe to hand to another thread: only these types, recursively.
#: Produced by :func:`highlight_logging._core.coerce.coerce`; encoded by ``_export.encode`` into an OTLP AnyValue.
Value = Union[str, bool, int, float, bytes, None, list["Value"], dict[str, "Value"]]  # noqa: UP007 (runtime alias on 3.10)
Attributes = dict[str, Value]
#: OTLP's AnyValue int is an int64: an int beyond these bounds is sent as its decimal text.
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

#: Where a record was logged: ``(names, value, value, ...)``, ``names`` being one of the constant
#: tuples below and the values plain (str, int or None).  Kept raw so that the worker encodes each
#: distinct site once (``_export.encode.site_attributes``) instead of five attributes per record.
Site = tuple[Any, ...]
SITE_KEYS = ("code.file.path", "code.function.name", "code.line.number", "thread.id", "thread.name")
THREAD_KEYS = ("thread.id", "thread.name")
SITE_KEY_SET = frozenset(SITE_KEYS)  # every name a site may carry (THREAD_KEYS are among them)
#: The log's attributes that its exception span carries too (code.*, thread.*, and highlight.*:
#: session and request ids, what was scrubbed); the others stay on the log.
SPAN_ATTR_PREFIXES = ("code.", "thread.", "highlight.")


def logrecord_site(record: Any) -> Site:
    """The call site of a ``logging.LogRecord``, in :data:`SITE_KEYS` order."""
    return (SITE_KEYS, record.pathname, record.funcName, record.lineno, record.thread, record.threadName)


class ExceptionInfo:
    """An exception already turned into strings on the caller's thread (OTel semconv names)."""

    __slots__ = ("message", "stacktrace", "type")

    def __init__(self, type: str, message: str | None, stacktrace: str) -> None:
        self.type = type  # ``module.Qualname``; bare for builtins
        self.message = message  # ``str(exc)``, guarded; None when the user opted out
        self.stacktrace = stacktrace  # full traceback with causes, contexts and groups


class Pending(NamedTuple):
    """A record as the caller's thread leaves it in the queue: what must be read there, nothing more.

    Built by :func:`highlight_logging._core.convert.capture_record` (one plain tuple, no further objects), it
    becomes a :class:`Record` on the worker (:func:`~highlight_logging._core.convert.to_record`), which also applies the
    limits: a tuple left on the caller's thread costs it much less than building the Record there
    (figures: docs/performance.md).  Its fields are declared here only: ``_speedups.c`` checks its
    own indices against :attr:`_fields` when it loads.
    """

    when: int | datetime  # int ns since the epoch, or a datetime (loguru's), converted on the worker
    observed_ns: int
    levelno: int
    level_name: str
    scope: str
    body: str
    attributes: Attributes  # the front end's own (code.*, ...), plain
    extras: tuple[tuple[str, Value], ...]  # the user's values, snapshotted (plain, or coerced)
    dropped: int  # user values past attribute_count_limit, not even snapshotted
    exception: ExceptionInfo | None
    site: Site | None
    trace_id: bytes
    span_id: bytes
    flags: int
    request: tuple[str, str] | None  # highlight.io's (session id, request id)
    size: int  # an over-estimate of the encoded size, for the queue's byte bound
    span_only: bool
    logged_now: bool  # ``when`` was read as the record was logged (see capture_record)


class Record(NamedTuple):
    """One log record, plus optionally the exception span that goes with it.

    ``span_id`` is the log's span: the active span's, or the exception span's own id when
    ``exception`` is set (then ``parent_span_id`` is the active span's, or ``b""``).
    ``span_only`` (``record_exception``): send the exception span, with every attribute, and no log.
    A tuple, built by ``_core.convert.to_record`` in one C call: the worker makes one per record, and a
    class with ``__slots__`` and an ``__init__`` cost measurably more each (docs/performance.md).
    """

    time_ns: int
    observed_ns: int
    severity_number: int
    severity_text: str
    scope: str
    body: str
    attributes: Attributes
    trace_id: bytes
    span_id: bytes
    flags: int
    exception: ExceptionInfo | None = None
    parent_span_id: bytes = b""
    dropped_attributes: int = 0  # over the attribute count limit
    site: Site | None = None  # code.*/thread.*, encoded before ``attributes``; never scrubbed
    span_only: bool = False
