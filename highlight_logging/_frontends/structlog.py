"""``StructlogProcessor``: the structlog front end.

Like the stdlib handler it only reads its native record (the event dict) and calls
:func:`~highlight_logging._core.convert.capture_record`.  structlog itself is never imported at module level,
so ``highlight_logging`` imports fine without it.
"""

from __future__ import annotations

import contextvars
import linecache
import logging
import threading
import time
from collections.abc import Iterable, Mapping, MutableMapping
from datetime import datetime, timezone
from typing import Any

from highlight_logging._core import exceptions as _exceptions
from highlight_logging._core import native as _native
from highlight_logging._core.coerce import coerce, safe_str
from highlight_logging._core.convert import capture_record, datetime_ns
from highlight_logging._core.record import THREAD_KEYS, Attributes, ExceptionInfo, Site, logrecord_site
from highlight_logging._export import process as _process
from highlight_logging._frontends import dedupe as _dedupe
from highlight_logging._frontends import otel_duplicates as _otel_duplicates
from highlight_logging._frontends.binding import INTERNAL_LOGGERS, Binding, Sink
from highlight_logging._frontends.handler import _STANDARD, reaches_highlight_handler

__all__ = ["DEFAULT_SCOPE", "StructlogProcessor"]

EventDict = MutableMapping[str, Any]

#: Scope of events that name no logger (no ``logger`` key, not a stdlib logger).
DEFAULT_SCOPE = "structlog"

# Keys that become a record field rather than an attribute.
_CONSUMED = frozenset(
    {
        "event",
        "level",
        "timestamp",
        "logger",
        "exc_info",
        "exception",
        "positional_args",
        "stack_info",
        "pathname",
        "func_name",
        "lineno",
        "_record",  # ProcessorFormatter's copy of the LogRecord
        "_from_structlog",
    }
)
_CALLSITE = (
    ("pathname", "code.file.path"),
    ("func_name", "code.function.name"),
    ("lineno", "code.line.number"),
)
_CALLSITE_KEYS = frozenset(key for key, _ in _CALLSITE)
# Keys a plain structlog event lacks: one isdisjoint() call tells _export it need not look for
# any of them (each lookup skipped is ~0.05 us, and the common event has none).
_RARE_KEYS = frozenset(
    {"_record", "_from_structlog", "positional_args", "stack_info", "exc_info", "exception"} | _CALLSITE_KEYS
)

# Method and level names -> (stdlib level number, severity text).  Aliases take the stdlib name,
# so the same call reads the same from all three front ends.
_LEVELS: dict[str, tuple[int, str]] = {
    "notset": (logging.NOTSET, "NOTSET"),
    "trace": (5, "TRACE"),  # not stdlib, but loguru's TRACE; severity TRACE either way
    "debug": (logging.DEBUG, "DEBUG"),
    "info": (logging.INFO, "INFO"),
    "warn": (logging.WARNING, "WARNING"),
    "warning": (logging.WARNING, "WARNING"),
    "error": (logging.ERROR, "ERROR"),
    "exception": (logging.ERROR, "ERROR"),
    "critical": (logging.CRITICAL, "CRITICAL"),
    "fatal": (logging.CRITICAL, "CRITICAL"),
}
_PREFIXES = (
    ("err", "error"),
    ("exc", "error"),
    ("crit", "critical"),
    ("fatal", "critical"),
    ("warn", "warning"),
    ("debug", "debug"),
    ("info", "info"),
    ("trace", "trace"),
)
_INFO = _LEVELS["info"]
_MAX_NS = 1 << 64  # time_unix_nano is fixed64
_MAX_GROUP_DEPTH = 8


def _level(name: Any) -> tuple[int, str]:
    """(stdlib level number, severity text) for a structlog level or method name."""
    if type(name) is not str:
        if isinstance(name, int) and not isinstance(name, bool):
            return int(name), safe_str(logging.getLevelName(int(name)))
        return _INFO
    low = name.lower()
    found = _LEVELS.get(low)
    if found is not None:
        return found
    upper = name.upper()
    registered = logging.getLevelName(upper)  # an int only for levels added with addLevelName
    if isinstance(registered, int):
        return registered, upper
    for prefix, canonical in _PREFIXES:
        if low.startswith(prefix):
            return _LEVELS[canonical]
    return _INFO


def _time_ns(value: Any) -> int | None:
    """Epoch seconds (int or float) or an ISO-8601 string -> ns; None when it is neither."""
    try:
        if type(value) is float:  # TimeStamper(fmt=None), the common case
            ns = int(value * 1_000_000_000)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            ns = int(value * 1_000_000_000) if isinstance(value, float) else int(value) * 1_000_000_000
        elif isinstance(value, str):
            text = value.strip()
            if text[-1:] in ("Z", "z"):  # fromisoformat takes "Z" only from 3.11
                text = text[:-1] + "+00:00"
            parsed = datetime.fromisoformat(text)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            ns = datetime_ns(parsed)
        else:
            return None
    except Exception:  # NaN, overflow, not ISO-8601
        return None
    return ns if 0 <= ns < _MAX_NS else None


# --- exceptions structlog already rendered --------------------------------------------------------


def _redact_rendered(text: str) -> str:
    # Best effort for include_exception_message=False when only text is left: keep the frames
    # and the type of each "Type: message" line, drop the other unindented lines (message text).
    out = []
    for line in text.splitlines(keepends=True):
        if (
            not line.strip()
            or line[0].isspace()
            or line.startswith(("Traceback", "During handling", "The above"))
        ):
            out.append(line)
            continue
        head = line.partition(":")[0].strip()
        if head and all(part.isidentifier() for part in head.split(".")):
            out.append(f"{head}: <message omitted>\n")
    return "".join(out)


def _render_stack(stack: Mapping[str, Any], include_message: bool, depth: int, out: list[str]) -> None:
    frames = stack.get("frames") or ()
    if frames:
        out.append("Traceback (most recent call last):\n")
    for frame in frames:
        if not isinstance(frame, Mapping):
            continue
        filename, lineno, name = frame.get("filename"), frame.get("lineno"), frame.get("name")
        if not filename and lineno == -1:  # ExceptionDictTransformer's "Skipped frames: N"
            out.append(f"  [{safe_str(name)}]\n")
            continue
        out.append(f'  File "{safe_str(filename)}", line {safe_str(lineno)}, in {safe_str(name)}\n')
        if isinstance(filename, str) and isinstance(lineno, int) and lineno > 0:
            source = linecache.getline(filename, lineno).strip()
            if source:
                out.append(f"    {source}\n")
    etype = safe_str(stack.get("exc_type", "Exception"))
    syntax = stack.get("syntax_error")
    value = syntax.get("msg") if isinstance(syntax, Mapping) else stack.get("exc_value")
    if isinstance(syntax, Mapping):
        out.append(f'  File "{safe_str(syntax.get("filename"))}", line {safe_str(syntax.get("lineno"))}\n')
        out.append(f"    {safe_str(syntax.get('line')).strip()}\n")
    if not include_message:
        out.append(f"{etype}: <message omitted>\n")
    else:
        message = safe_str(value) if value is not None else ""
        out.append(f"{etype}: {message}\n" if message else f"{etype}\n")
        out.extend(f"{safe_str(note)}\n" for note in stack.get("exc_notes") or ())
    if stack.get("is_group") and depth < _MAX_GROUP_DEPTH:
        for i, member in enumerate(stack.get("exceptions") or (), 1):
            out.append(f"  +---------------- {i} ----------------\n")
            inner: list[str] = []
            _render_chain(member, include_message, depth + 1, inner)
            out.extend(f"    | {line}" for line in "".join(inner).splitlines(keepends=True))


def _render_chain(stacks: Any, include_message: bool, depth: int, out: list[str]) -> None:
    # structlog lists the logged exception first and its causes after it; Python prints the
    # root cause first, so walk backwards.  ``is_cause`` says how an entry relates to the one
    # before it in the list.
    chain = [s for s in stacks if isinstance(s, Mapping)] if isinstance(stacks, (list, tuple)) else []
    for i in range(len(chain) - 1, -1, -1):
        _render_stack(chain[i], include_message, depth, out)
        if i:
            out.append(
                "\nThe above exception was the direct cause of the following exception:\n\n"
                if chain[i].get("is_cause")
                else "\nDuring handling of the above exception, another exception occurred:\n\n"
            )


def _from_dicts(stacks: list[Any], include_message: bool) -> ExceptionInfo:
    """``dict_tracebacks`` output -> ExceptionInfo; type and message are the logged exception's.

    structlog keeps only ``__name__``, so the type is bare even for non-builtins.
    """
    first = next((s for s in stacks if isinstance(s, Mapping)), {})
    out: list[str] = []
    _render_chain(stacks, include_message, 0, out)
    return ExceptionInfo(
        safe_str(first.get("exc_type", "Exception")),
        safe_str(first.get("exc_value", "")) if include_message else None,
        "".join(out),
    )


def _rendered_exception(value: Any, include_message: bool) -> ExceptionInfo | None:
    """The ``exception`` key: format_exc_info's string or dict_tracebacks' list."""
    if value is None or (type(value) is str and not value):
        return None
    if isinstance(value, BaseException):
        return _exceptions.from_exc_info(value, include_message)
    if isinstance(value, list):
        return _from_dicts(value, include_message)
    text = value if isinstance(value, str) else safe_str(value)
    info = _exceptions.from_rendered(text, include_message)
    if not include_message:
        info.stacktrace = _redact_rendered(text)
    return info


def _calling_thread_var() -> contextvars.ContextVar[tuple[int, str]] | None:
    # structlog's async methods run the chain on an executor thread; this private ContextVar holds
    # the caller's thread.  Optional: absent in older structlog versions.
    try:
        from structlog import contextvars as sc
    except Exception:
        return None
    var = getattr(sc, "_ASYNC_CALLING_THREAD", None)
    return var if isinstance(var, contextvars.ContextVar) else None


class StructlogProcessor:
    """A structlog processor that exports each event as an OTLP log record (exceptions also as
    spans) and returns the event dict untouched, so the renderer after it still runs.

    Takes the settings :class:`HighlightHandler` takes.  ``drop=True`` ends the chain after export
    (raises ``structlog.DropEvent``) for apps that want OTLP output only.  Place it after filtering
    processors (``filter_by_level``) and before the renderer.

    Mapping:

    * body: ``event`` (``positional_args`` are applied as PositionalArgumentsFormatter would);
    * severity: the ``level`` key, else the method name.  Aliases take the stdlib name, as the
      other front ends do: ``warn`` -> WARNING, ``exception`` -> ERROR, ``fatal`` -> CRITICAL; a
      custom name is a registered stdlib level name, else the level it starts like (``err*``,
      ``crit*``...), else INFO;
    * scope: ``logger``, else the wrapped stdlib logger's name, else ``"structlog"``;
    * time: ``timestamp`` as epoch seconds or ISO-8601 (no offset means UTC), else now;
    * ``pathname``/``func_name``/``lineno`` (CallsiteParameterAdder) -> ``code.*``; a string
      ``stack_info`` -> ``code.stacktrace``; ``thread.*`` is the calling thread;
    * the exception from ``exc_info`` (True, an exception, a tuple) or, after format_exc_info or
      dict_tracebacks, from ``exception`` (dict_tracebacks keeps bare type names);
    * every other key -> an attribute, coerced as the stdlib handler coerces ``extra``.
    """

    __slots__ = ("_binding", "_calling_thread", "_check_otel", "_drop")

    def __init__(self, *, drop: bool = False, **settings: Any) -> None:
        self._binding = Binding(settings)
        self._drop: type[BaseException] | None = None
        if drop:
            from structlog import DropEvent

            self._drop = DropEvent
        self._calling_thread = _calling_thread_var()
        self._check_otel = not drop and not self._binding.settings.disabled  # drop: never reaches logging

    def __repr__(self) -> str:
        return (
            f"<StructlogProcessor endpoint={self._binding.settings.endpoint!r} drop={self._drop is not None}>"
        )

    def __call__(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        if self._check_otel:
            # Rendered into stdlib logging, events reach OpenTelemetry's handler too: say so once.
            self._check_otel = False
            _otel_duplicates.check_wrapped(self._binding.settings, logger)
        try:
            pipeline = self._binding.get()
            if pipeline is None:
                pass
            elif _plain_event is not None and type(event_dict) is dict and _not_stdlib(logger):
                # A native event, read in C (see structlog_event in _speedups.c); None: not the
                # common case, and _export's Python, the reference, takes it.
                thread_site = self._thread_site()
                pending = _plain_event(pipeline.settings, event_dict, thread_site)
                if pending is not None:
                    pipeline.submit(pending)
                else:
                    self._export(pipeline, logger, method_name, event_dict, thread_site)
            else:
                self._export(pipeline, logger, method_name, event_dict, None)
        except Exception as exc:  # structlog does not shield the caller: never raise into it
            _process.count_frontend_loss("StructlogProcessor", exc)
        if self._drop is not None:
            raise self._drop
        return event_dict

    def _thread_site(self) -> Site:
        caller = self._calling_thread.get(None) if self._calling_thread is not None else None
        if caller is not None:
            return (THREAD_KEYS, *caller)
        return (THREAD_KEYS, threading.get_ident(), threading.current_thread().name)

    def _export(
        self, pipeline: Sink, logger: Any, method_name: str, event_dict: EventDict, thread_site: Site | None
    ) -> None:
        """The reference reading of an event (``thread_site``: read already, when the C reading
        declined it)."""
        # type() first: the ABC isinstance() check costs more than the rest of this line
        if type(event_dict) is not dict and not isinstance(event_dict, Mapping):
            return
        settings = pipeline.settings
        get = event_dict.get
        rare = not _RARE_KEYS.isdisjoint(event_dict)
        record = get("_record") if rare else None
        if record is None:
            pass  # a native structlog event, the common case
        elif not isinstance(record, logging.LogRecord):
            record = None
        elif get("_from_structlog"):
            # A structlog event again, in ProcessorFormatter.processors: once is enough.
            if id(record.msg) == _dedupe.state.exported:
                return
        elif reaches_highlight_handler(record):
            return  # a plain-logging record: the HighlightHandler on its path exports it

        level = get("level")
        found = _LEVELS.get(level) if type(level) is str else None  # add_log_level's lower-case name
        levelno, level_name = found or _level(method_name if level is None else level)
        scope = get("logger")
        if scope is None:
            if record is not None:
                scope = record.name
            elif isinstance(logger, logging.Logger):
                scope = logger.name
            else:
                scope = DEFAULT_SCOPE
        elif type(scope) is not str:
            scope = safe_str(scope)
        if scope.startswith(INTERNAL_LOGGERS):
            return

        stamp = get("timestamp")
        if type(stamp) is float and 0 <= stamp < 1.8e10:  # TimeStamper(fmt=None): read at once
            ns: int | None = int(stamp * 1_000_000_000)
        else:
            ns = _time_ns(stamp)
        # TimeStamper(fmt=None) reads a float at full precision as the event is logged; a string
        # may be cut to the second (a custom fmt) or carried in from elsewhere.
        logged_now = type(stamp) is float
        if ns is None:
            ns = int(record.created * 1e9) if record is not None else time.time_ns()
            logged_now = True

        body = get("event", "")
        args = get("positional_args") if rare else None
        if type(args) is tuple and args and type(body) is str and (record is None or get("_from_structlog")):
            if len(args) == 1 and isinstance(args[0], dict) and args[0]:
                args = args[0]
            try:
                body = body % args
            except Exception:
                pass  # keep the template, as the renderer would show it

        limit = settings.attribute_value_length_limit
        attrs: Attributes = {}
        site: Site = logrecord_site(record) if record is not None else (thread_site or self._thread_site())
        if rare:
            if not _CALLSITE_KEYS.isdisjoint(event_dict):  # CallsiteParameterAdder is optional
                for key, name in _CALLSITE:
                    if key in event_dict:
                        attrs[name] = coerce(event_dict[key], limit)
            stack = get("stack_info")
            if isinstance(stack, str):
                attrs["code.stacktrace"] = stack

        extras: Iterable[tuple[str, Any]]
        if record is not None and not get("_from_structlog"):
            extras = [
                (k, v) for k, v in record.__dict__.items() if k not in _STANDARD and k not in event_dict
            ] + [(k, v) for k, v in list(event_dict.items()) if k not in _CONSUMED]
            skip: frozenset[str] = frozenset()
        else:
            # The whole event; capture_record() snapshots its items at once, passing over our own fields.
            extras = event_dict.items()
            skip = _CONSUMED

        exc_info = get("exc_info") if rare else None
        exception = None
        try:
            has_exc_info = exc_info is not None and bool(exc_info)
        except Exception:  # a hostile __bool__
            has_exc_info = False
        if not has_exc_info:
            exc_info = None
            rendered = get("exception") if rare else None
            if rendered is not None:
                exception = _rendered_exception(rendered, settings.include_exception_message)

        pipeline.submit(
            capture_record(
                settings,
                ns,
                levelno,
                level_name,
                scope,
                body,
                attrs,
                extras,
                exc_info,
                exception,
                site,
                skip,
                logged_now=logged_now,
            )
        )

        # Tell HighlightHandler which LogRecord will carry this event (see exported_by_structlog).
        if record is not None:
            if get("_from_structlog"):
                _dedupe.state.pending, _dedupe.state.matched = (record.name, record.levelno), None
                _dedupe.armed = True
        elif isinstance(logger, logging.Logger) and self._drop is None:
            _dedupe.state.exported = id(event_dict)
            stdlib_level = _level(method_name)[0]
            if logger.isEnabledFor(stdlib_level):  # else no LogRecord follows
                _dedupe.state.pending, _dedupe.state.matched = (logger.name, stdlib_level), None
                _dedupe.armed = True


def _not_stdlib(logger: Any) -> bool:
    """Not a stdlib logger (whose events need the Python path's bookkeeping); an odd logger whose
    ``__class__`` raises also goes to the Python path, which meets it where it always did."""
    try:
        return not isinstance(logger, logging.Logger)
    except Exception:
        return False


#: The C reading of a native event (``structlog_event`` in ``_speedups.c``), or None: every event
#: then takes ``_export``'s Python path.  Why: with ``capture_record`` in C, the processor's own
#: Python reads of a plain event were about half of its call (docs/performance.md, On the caller's
#: thread).  It is used only where ``capture_record`` is the C twin too.  It reads the
#: constants passed to it once, here (``DEFAULT_SCOPE`` included).
_plain_event: Any = None
if _native.speedups is not None and capture_record is _native.speedups.capture_record:
    _native.speedups.structlog_setup(
        tuple(_RARE_KEYS), _LEVELS, DEFAULT_SCOPE, tuple(INTERNAL_LOGGERS), _CONSUMED
    )
    _plain_event = _native.speedups.structlog_event
