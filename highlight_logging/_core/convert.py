"""The one converter, in two halves: :func:`capture_record` on the caller's thread (a snapshot into
a :class:`Pending` tuple, nothing else) and :func:`to_record` on the export worker; with the
severity mapping and the trace ids they share.  A fix here fixes all three front ends.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from opentelemetry import context as _otel_context
from opentelemetry import trace as _trace

from highlight_logging._core import context as _context
from highlight_logging._core import exceptions as _exceptions
from highlight_logging._core import highlight as _highlight
from highlight_logging._core import native as _native
from highlight_logging._core.coerce import coerce, coerce_attributes, safe_str, truncate
from highlight_logging._core.record import (
    SITE_KEY_SET,
    Attributes,
    ExceptionInfo,
    Pending,
    Record,
    Site,
    Value,
)
from highlight_logging._core.settings import Settings

RESERVED_SLOTS = 6  # attribute slots kept for exception.*, highlight.scrubbed and the like


# --- severity ------------------------------------------------------------------------------------
# stdlib level numbers -> OTLP SeverityNumber.  Each stdlib level starts a band of ten numbers;
# a custom level inside a band takes the band's 2nd to 4th severity (SUCCESS 25 -> INFO2, 10).
_BAND_OFFSET = (0, 1, 1, 1, 1, 1, 2, 2, 2, 3)
_BELOW_DEBUG = (1, 1, 1, 1, 1, 1, 2, 2, 3, 4)  # 0..9: TRACE (loguru's 5 is TRACE, 1)


def severity_number(levelno: int) -> int:
    try:
        return _severity_numbers[levelno]  # one dict lookup for the few levels an app uses
    except (KeyError, TypeError):
        pass
    number = _severity_number(levelno)
    if type(levelno) is int and len(_severity_numbers) < 256:
        _severity_numbers[levelno] = number
    return number


_severity_numbers: dict[int, int] = {}


def _severity_number(levelno: int) -> int:
    try:
        levelno = int(levelno)
    except Exception:
        return 9
    if levelno < 10:
        return _BELOW_DEBUG[max(levelno, 0)]
    if levelno >= 50:
        return min(21 + (levelno - 50 + 4) // 5, 24) if levelno > 50 else 21
    band, within = divmod(levelno - 10, 10)
    return 5 + 4 * band + _BAND_OFFSET[within]


# --- trace context -------------------------------------------------------------------------------


# Where ``trace.get_current_span()`` looks in the context.  Read directly, the common case (no
# active span) costs one context lookup instead of the API's calls and an INVALID_SPAN check.
_SPAN_KEY: str | None = getattr(getattr(_trace, "propagation", None), "_SPAN_KEY", None)
_NO_SPAN = (b"", b"", 0)


# The default runtime context keeps the current Context in one ContextVar: read it directly (one C
# call instead of two Python frames, a measurable share of a logging call); any other runtime
# (OTEL_PYTHON_CONTEXT) goes through the API.
_runtime = getattr(_otel_context, "_RUNTIME_CONTEXT", None)
_CONTEXT_VAR: Any = getattr(_runtime, "_current_context", None)
if type(_CONTEXT_VAR) is not ContextVar or type(_runtime).__name__ != "ContextVarsRuntimeContext":
    _CONTEXT_VAR = None


def current_span() -> tuple[bytes, bytes, int]:
    """(trace_id, span_id, flags) of the active span, from any OpenTelemetry setup; empty if none."""
    try:
        span: Any
        if _SPAN_KEY is not None:
            context = _CONTEXT_VAR.get() if _CONTEXT_VAR is not None else _otel_context.get_current()
            span = context.get(_SPAN_KEY)
            if span is None:
                return _NO_SPAN
        else:  # an API version without the key: the public call
            span = _trace.get_current_span()
        ctx = span.get_span_context()
        if ctx.is_valid:
            return ctx.trace_id.to_bytes(16, "big"), ctx.span_id.to_bytes(8, "big"), int(ctx.trace_flags)
    except Exception:
        pass
    return _NO_SPAN


def _new_id(bits: int) -> bytes:
    value = 0
    while not value:  # all-zero ids are invalid
        value = random.getrandbits(bits)
    return value.to_bytes(bits // 8, "big")


# --- the converter -------------------------------------------------------------------------------
# One converter in two halves: capture_record() runs on the caller's thread and does only what
# must happen there; to_record() finishes the job on the export worker (or, for the sinks without
# a worker, in their submit()).

_new_tuple = tuple.__new__  # Pending(...)/Record(...) without NamedTuple's Python-level __new__: one C call
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SAME_MOMENT = 1_000_000_000  # ns: a record's time this recent (when logged_now) was read as it was logged
_MICROSECOND = timedelta(microseconds=1)


def capture_record_py(
    settings: Settings,
    when: Any,
    levelno: int,
    level_name: str,
    scope: str,
    body: Any,
    base_attributes: Attributes,
    extras: Iterable[tuple[Any, Any]],
    exc: Any = None,
    exception: ExceptionInfo | None = None,
    site: Site | None = None,
    skip: frozenset[str] = frozenset(),
    span_only: bool = False,
    logged_now: bool = True,
) -> Pending:
    """The caller's half of the one converter: a front end's pieces -> :class:`Pending`.

    This is the reference; front ends call :data:`capture_record`, its C twin where that was built.

    Only what must happen on the caller's thread happens here (as ``QueueHandler.prepare``): the
    message text, a snapshot of the user's values (plain values by reference, anything else
    coerced now, while it cannot change and its ``__str__`` runs where the user called us), the
    trace and request context, the exception's strings.  Never raises on bad values.

    ``when`` is int ns since the epoch or an aware/naive datetime; ``base_attributes`` are our own
    (code.*, thread.*, ...), already plain and owned by this record; ``site`` the code.* and
    thread.* values as a :data:`~highlight_logging._core.record.Site` tuple, which the worker encodes
    once per distinct site.  ``extras`` are the user's, except keys in ``skip`` (the front end's
    own fields, when ``extras`` is its whole event).  ``exc`` is anything
    :func:`_exceptions.normalize` takes; ``exception`` an already-built :class:`ExceptionInfo`
    (structlog's rendered tracebacks).  ``span_only``: an error report (``record_exception``).
    ``logged_now``: ``when`` was read from the clock, at full precision, as the record was logged
    (stdlib's ``created``, loguru's time); then, if within a second before our own clock reading,
    :func:`to_record` makes it the observed time too.
    """
    text = body if type(body) is str else safe_str(body)
    if len(text) > settings.max_body_length:  # cut here: the queue's memory bound counts it
        base_attributes["highlight.body_truncated"] = len(text)
        text = truncate(text, settings.max_body_length)
    snapshot: list[tuple[str, Value]] = []
    dropped = 0
    if extras:  # a generator is always true; empty lists and dict views skip the loop
        limit = settings.attribute_value_length_limit
        room = settings.attribute_count_limit  # the worker keeps fewer: none past this can stay
        append = snapshot.append
        for pair in extras:
            key, value = pair
            if skip and key in skip:
                continue
            if len(snapshot) >= room:
                dropped += 1  # not converted: its __str__ does not run, its memory is not held
                continue
            kind = type(value)
            if type(key) is str and (
                kind is int or (kind is str and len(value) <= limit) or kind is float or kind is bool
            ):
                # Immutable: a reference is a snapshot, and so is the (key, value) tuple itself.
                append(pair if type(pair) is tuple else (key, value))
            else:
                append((key if type(key) is str else safe_str(key), coerce(value, limit)))
    if exception is None and exc is not None:
        exception = _exceptions.from_exc_info(exc, settings.include_exception_message)
    trace_id, span_id, flags = current_span()
    size = 256 + len(text) + 48 * (len(base_attributes) + len(snapshot))
    if exception is not None:
        size += len(exception.stacktrace)
    return _new_tuple(
        Pending,
        (
            when,
            # To 256 ns, the precision of a float LogRecord.created: no reader needs more from a
            # handler's clock, and a constant low byte compresses ~1 B/record smaller.
            time.time_ns() & ~0xFF,
            levelno,
            level_name,
            scope,
            text,
            base_attributes,
            # A tuple, not the list: a queued Pending of plain values then holds nothing the garbage
            # collector must track (it untracks such tuples at its next young pass), so a long
            # queue does not make every full collection longer, nor trigger more of them.
            tuple(snapshot),
            dropped,
            exception,
            site,
            trace_id,
            span_id,
            flags,
            _context.current.get(),
            size,
            span_only,
            logged_now,
        ),
    )


class CaptureSetup(Protocol):
    """The C twin's setup, ``_speedups.capture_setup`` (see ``_speedups.pyi``): what it reads from here."""

    def capture_setup(
        self,
        fallback: Callable[..., Pending],
        pending: type[Pending],
        coerce: Callable[[object, int], Value],
        safe_str: Callable[[object], str],
        current_span: Callable[[], tuple[bytes, bytes, int]],
        no_span: tuple[bytes, bytes, int],
        context_var: ContextVar[Any] | None,
        span_key: str | None,
        context_type: type,
        request_var: ContextVar[tuple[str, str] | None],
        /,
    ) -> None: ...


def _setup_c_twin(
    speedups: CaptureSetup,
    read_span: Callable[[], tuple[bytes, bytes, int]] = current_span,
    context_var: ContextVar[Any] | None = _CONTEXT_VAR if _SPAN_KEY is not None else None,
) -> None:
    """Hand the C twin what it reads from here (``read_span`` and ``context_var``: for tests)."""
    speedups.capture_setup(
        capture_record_py,
        Pending,
        coerce,
        safe_str,
        read_span,
        _NO_SPAN,
        context_var,
        _SPAN_KEY,
        _otel_context.Context,
        _context.current,
    )


#: What front ends call: :func:`capture_record_py`, or its C twin in ``_speedups.c`` (same arguments,
#: same Pending; records with an exception, and anything unusual, it hands to the reference).  Why:
#: on the application's thread this call was ~3.6 us of a ~7.7 us structlog processor call (queue
#: stubbed out), the C twin ~0.6-0.9.
capture_record = capture_record_py
if _native.speedups is not None:
    _setup_c_twin(_native.speedups)
    capture_record = _native.speedups.capture_record


def datetime_ns(when: datetime) -> int:
    """ns since the epoch, exactly (``timestamp()`` is a float and loses microseconds)."""
    if when.tzinfo is None:
        when = when.astimezone()  # naive means local time, as datetime.timestamp() reads it
    return (when - _EPOCH) // _MICROSECOND * 1000


def to_record(pending: Pending, settings: Settings) -> Record:
    """The worker's half of the one converter: :class:`Pending` -> :class:`Record`, with the
    attribute limits applied and the exception span's ids drawn.  Never raises on bad values."""
    (when, observed, levelno, level_name, scope, text, attrs, extras, dropped, exception, site, trace_id,
     span_id, flags, request, _, span_only, logged_now) = pending  # fmt: skip
    if type(when) is not int:
        try:
            when = datetime_ns(when)  # type: ignore[arg-type]  # or an int subclass: it fails
        except Exception:
            when = observed
    if logged_now and -0x100 < observed - when < _SAME_MOMENT:
        # The record's own time, read as it was logged, is also its observed time: logs.proto wants
        # the two equal for records from their source, and 8 repeated bytes compress to almost
        # nothing (~1 B/record, which let _transport.GZIP_LEVEL drop to 2).  A time carried in from
        # elsewhere, over a second old, or from the future (a clock step) keeps our reading.
        observed = when
    if request is not None:
        attrs["highlight.session_id"] = request[0]
        if request[1]:
            attrs["highlight.trace_id"] = request[1]
    highlight = settings.backend == "highlight"
    if extras and highlight:
        # Every value visible, no key highlight.io would take out (see _highlight).
        extras = tuple(_highlight.shape_extras(extras, attrs, settings.attribute_value_length_limit))
    if extras and len(extras) + len(attrs) + (0 if site is None else len(site[0])) <= (
        settings.attribute_count_limit - RESERVED_SLOTS
    ):
        # The common case: capture_record() left every value within the length limit (strings
        # cut, containers coerced) and nothing can go over the count limit: no per-value pass.
        attrs.update(extras)
    elif extras:
        dropped += coerce_attributes(
            extras,
            settings.attribute_value_length_limit,
            settings.attribute_count_limit - RESERVED_SLOTS,  # below 0 drops all, as 0 would
            attrs,
            () if site is None else site[0],
        )
    if site is not None and attrs and not SITE_KEY_SET.isdisjoint(attrs):
        # A code.*/thread.* attribute set by the user (or the front end) replaces the site's, in
        # its place; for a site without that name, merging changes nothing.
        attrs = {**dict(zip(site[0], site[1:], strict=False)), **attrs}
        site = None
    parent = b""
    if exception is not None and not highlight:
        # The exception span: a child of the active span, or the root of a new trace.
        parent = span_id
        span_id = _new_id(64)
        if not trace_id:
            trace_id, flags = _new_id(128), 1
    return _new_tuple(
        Record,
        (
            when,
            observed,
            severity_number(levelno),
            level_name,
            scope,
            text,
            attrs,
            trace_id,
            span_id,
            flags,
            exception,
            parent,
            dropped,
            site,
            span_only,
        ),
    )
