"""The one exception helper: any way a front end carries an exception -> :class:`ExceptionInfo`.

Runs on the caller's thread, because a traceback's frames and the exception's ``__str__`` are
only safe to read there.  Names follow the OTel semantic conventions: ``exception.type`` is
``module.Qualname`` (bare for builtins), ``exception.message`` is ``str(exc)``, and
``exception.stacktrace`` is the full traceback with ``__cause__``/``__context__`` chains and
ExceptionGroup members, as Python itself prints it.
"""

from __future__ import annotations

import builtins
import linecache
import sys
import traceback
from types import TracebackType
from typing import Any

from highlight_logging._core.coerce import safe_str
from highlight_logging._core.record import ExceptionInfo

ExcInfoTuple = tuple[type[BaseException], BaseException, TracebackType | None]


def normalize(exc_info: Any) -> ExcInfoTuple | None:
    """Accept ``True``, an exception instance or a ``(type, value, tb)`` tuple; None if there is none."""
    try:
        if exc_info is None or exc_info is False:
            return None
        if isinstance(exc_info, BaseException):
            return type(exc_info), exc_info, exc_info.__traceback__
        if exc_info is True or (isinstance(exc_info, int) and exc_info):
            exc_info = sys.exc_info()
        if isinstance(exc_info, tuple) and len(exc_info) == 3:
            etype, value, tb = exc_info
            if value is None and etype is None:
                return None
            if value is None and isinstance(etype, type) and issubclass(etype, BaseException):
                value = etype()
            if isinstance(value, BaseException):
                return type(value), value, tb if isinstance(tb, TracebackType) else value.__traceback__
    except Exception:
        pass
    return None


def type_name(etype: type) -> str:
    """``module.Qualname``, bare for builtins."""
    try:
        qualname = getattr(etype, "__qualname__", None) or getattr(etype, "__name__", "Exception")
        module = getattr(etype, "__module__", None)
        if not module or module in ("builtins", "__builtin__", "exceptions"):
            return str(qualname)
        return f"{module}.{qualname}"
    except Exception:
        return "Exception"


def _message(value: BaseException) -> str:
    try:
        text = str(value)
        if type(text) is str:
            return text
    except Exception:
        pass
    return f"<exception str() failed: {safe_str(type(value).__qualname__)}>"


def _stock_tree(
    etype: type[BaseException], value: BaseException, tb: TracebackType | None
) -> traceback.TracebackException:
    return traceback.TracebackException(etype, value, tb, compact=True)


def _hide_messages(te: traceback.TracebackException, seen: set[int]) -> None:
    # TracebackException keeps each message in ``_str`` (3.10 to 3.13); blank them all, chains too.
    stack = [te]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        item._str = "<message omitted>"  # type: ignore[attr-defined]
        for nxt in (item.__cause__, item.__context__):
            if nxt is not None:
                stack.append(nxt)
        stack.extend(getattr(item, "exceptions", None) or ())


# --- a TracebackException built without linecache.checkcache ---------------------------------------
#
# ``traceback.TracebackException`` calls ``linecache.checkcache`` for every file of every traceback:
# one ``os.stat`` each, which releases the GIL, so a logging call that formats an exception waits
# for the export worker (or any busy thread) to hand the GIL back, once per file.  And on 3.11+ it
# parses every frame's source line with ``ast`` to draw the ``~~~^^^`` markers (~30 us a frame).
# :func:`_exception_tree` builds the same object tree from the traceback itself, reading source
# lines with ``linecache.getline`` (cached, no stat); the frames of a traceback seen before, and
# their formatted text, come from a cache keyed by (code object, instruction) per frame, and
# :class:`_Stack` formats each distinct frame once.  The text is what Python prints; a source file
# edited while the process runs may show its old line, as in any cached traceback.  Any failure
# falls back to the stock ``TracebackException``.

_WALK = getattr(traceback, "_walk_tb_with_full_positions", None)  # 3.11+: frames with column ranges
_GROUP: Any = getattr(builtins, "BaseExceptionGroup", None)  # 3.11+
_CAUSE = getattr(traceback, "_cause_message", None)  # the stock separators between chained tracebacks
_CONTEXT = getattr(traceback, "_context_message", None)
_CACHE_MAX = 512
_frame_cache: dict[tuple[Any, ...], Any] = {}
# (id(code), tb_lasti, ...) of a traceback -> [its code objects (held, so the ids stay theirs),
# its FrameSummary list, its formatted lines or None]
_stacks: dict[tuple[int, ...], list[Any]] = {}


class _Stack(traceback.StackSummary):
    """A ``StackSummary`` whose text is cached with its frames, and that formats each distinct
    frame once (``format_frame_summary`` is the documented override point, 3.11+)."""

    entry: list[Any] | None = None  # its _stacks entry

    def format(self, **kwargs: Any) -> list[str]:
        entry = self.entry
        if entry is None or kwargs.get("colorize"):
            return super().format(**kwargs)
        if entry[2] is None:
            entry[2] = super().format(**kwargs)
        return list(entry[2])

    def format_frame_summary(self, frame_summary: traceback.FrameSummary, **kwargs: Any) -> Any:
        f = frame_summary
        if f.locals is not None:
            return super().format_frame_summary(f, **kwargs)  # type: ignore[misc,unused-ignore]
        key = (
            f.filename,
            f.lineno,
            f.name,
            f.line,
            getattr(f, "end_lineno", None),
            getattr(f, "colno", None),
            getattr(f, "end_colno", None),
            *kwargs.items(),
        )
        text = _frame_cache.get(key)
        if text is None:
            text = super().format_frame_summary(f, **kwargs)  # type: ignore[misc,unused-ignore]
            if len(_frame_cache) >= _CACHE_MAX:
                _frame_cache.clear()
            _frame_cache[key] = text
        return text


def _stack(tb: TracebackType | None) -> traceback.StackSummary:
    """``StackSummary.extract`` of ``tb``, minus the ``checkcache`` calls; cached per code path."""
    codes = []
    key: list[int] = []
    t = tb
    while t is not None:
        code = t.tb_frame.f_code
        codes.append(code)
        key += (id(code), t.tb_lasti)
        t = t.tb_next
    entry = _stacks.get(tuple(key))
    if entry is None:
        entry = [codes, _frames(tb), None]
        if len(_stacks) >= _CACHE_MAX:
            _stacks.clear()
        _stacks[tuple(key)] = entry
    stack = _Stack(entry[1])
    stack.entry = entry
    return stack


def _frames(tb: TracebackType | None) -> list[traceback.FrameSummary]:
    frames = []
    if _WALK is not None:
        for frame, (lineno, end_lineno, colno, end_colno) in _WALK(tb):
            code = frame.f_code
            linecache.lazycache(code.co_filename, frame.f_globals)
            frames.append(
                traceback.FrameSummary(
                    code.co_filename,
                    lineno,
                    code.co_name,
                    lookup_line=False,
                    end_lineno=end_lineno,  # type: ignore[call-arg,unused-ignore]
                    colno=colno,  # type: ignore[call-arg,unused-ignore]
                    end_colno=end_colno,  # type: ignore[call-arg,unused-ignore]
                )
            )
    else:
        for frame, lineno in traceback.walk_tb(tb):
            code = frame.f_code
            linecache.lazycache(code.co_filename, frame.f_globals)
            frames.append(traceback.FrameSummary(code.co_filename, lineno, code.co_name, lookup_line=False))
    for frame_summary in frames:
        frame_summary.line  # noqa: B018 (load the source line now, on the caller's thread)
    return frames


def _format(te: traceback.TracebackException) -> str:
    """``"".join(te.format())``; a chain without exception groups is joined here directly, as
    ``TracebackException.format`` would (its per-line indenting machinery only matters in groups)."""
    chain: list[tuple[str | None, traceback.TracebackException]] = []
    exc: traceback.TracebackException | None = te
    while exc is not None:
        if getattr(exc, "exceptions", None) is not None or _CAUSE is None or _CONTEXT is None:
            return "".join(te.format())
        if exc.__cause__ is not None:
            chain.append((_CAUSE, exc))
            exc = exc.__cause__
        elif exc.__context__ is not None and not exc.__suppress_context__:
            chain.append((_CONTEXT, exc))
            exc = exc.__context__
        else:
            chain.append((None, exc))
            exc = None
    out: list[str] = []
    for message, exc in reversed(chain):  # root cause first; each with the line that leads to it
        if message is not None:
            out.append(message)
        if exc.stack:
            out.append("Traceback (most recent call last):\n")
            out += exc.stack.format()
        out += exc.format_exception_only()
    return "".join(out)


def _exception_tree(
    etype: type[BaseException], value: BaseException, tb: TracebackType | None
) -> traceback.TracebackException:
    """What ``TracebackException(etype, value, tb, compact=True)`` builds, without the stat calls.

    Each node is a stock TracebackException made without a traceback (so it extracts no frames)
    and with ``_seen`` (so it does not walk the chain); its stack and links are filled in here, as
    its own constructor would.
    """
    if getattr(sys, "tracebacklimit", None) is not None:
        raise ValueError("sys.tracebacklimit is set: leave it to TracebackException")
    seen: set[int] = set()

    def node(e: BaseException, e_tb: TracebackType | None) -> traceback.TracebackException:
        te = traceback.TracebackException(type(e), e, None, _seen=seen)
        te.stack = _stack(e_tb)
        return te

    top = node(value, tb)  # etype is type(value): normalize() made it so
    queue: list[tuple[traceback.TracebackException, BaseException]] = [(top, value)]
    while queue:
        te, e = queue.pop()
        cause = None
        if e.__cause__ is not None and id(e.__cause__) not in seen:
            cause = node(e.__cause__, e.__cause__.__traceback__)
        context = None
        if (
            cause is None  # compact=True: the context only when there is no cause to show
            and not e.__suppress_context__
            and e.__context__ is not None
            and id(e.__context__) not in seen
        ):
            context = node(e.__context__, e.__context__.__traceback__)
        members = None
        inner: list[BaseException] = []
        if _GROUP is not None and isinstance(e, _GROUP):
            inner = list(e.exceptions)
            members = [node(x, x.__traceback__) for x in inner]
        te.__cause__ = cause
        te.__context__ = context
        te.exceptions = members  # type: ignore[attr-defined,unused-ignore]
        if cause is not None:
            queue.append((cause, e.__cause__))  # type: ignore[arg-type]
        if context is not None:
            queue.append((context, e.__context__))  # type: ignore[arg-type]
        if members:
            queue.extend(zip(members, inner, strict=True))
    return top


def _stacktrace(info: ExcInfoTuple, include_message: bool) -> str:
    etype, value, tb = info
    for build in (_exception_tree, _stock_tree):
        try:
            te = build(etype, value, tb)
            if not include_message:
                _hide_messages(te, set())
            return _format(te)
        except Exception:
            pass
    # A hostile exception (its __str__, a broken frame, a pathological chain): keep what we can.
    try:
        lines = traceback.format_list(traceback.extract_tb(tb)) if tb is not None else []
    except Exception:
        lines = []
    tail = f"{type_name(etype)}: {_message(value)}" if include_message else type_name(etype)
    return "Traceback (most recent call last):\n" + "".join(lines) + tail + "\n"


def from_exc_info(exc_info: Any, include_message: bool = True) -> ExceptionInfo | None:
    """The strings of an exception, or None when ``exc_info`` carries none. Never raises."""
    info = normalize(exc_info)
    if info is None:
        return None
    try:
        return ExceptionInfo(
            type_name(info[0]),
            _message(info[1]) if include_message else None,
            _stacktrace(info, include_message),
        )
    except Exception:
        return ExceptionInfo("Exception", None, "<traceback unavailable>")


_GROUP_PREFIXES = ("  | ", "  + ", "  +-", "    | ")


def from_rendered(text: str, include_message: bool = True) -> ExceptionInfo:
    """Recover type and message from a traceback already rendered to text (structlog).

    The logged exception is the last top-level block (after any ``The above exception ...``
    separators).  After its indented frame lines comes ``module.Type: message``, and the message
    runs to the end of the block, so multi-line messages and ``__notes__`` are kept whole.
    """
    lines = text.rstrip("\n").splitlines()
    headers = ("Traceback (most recent call last):", "  + Exception Group Traceback")
    tops = [i for i, line in enumerate(lines) if line.startswith(headers)]
    start = tops[-1] if tops else -1
    etype, message = "Exception", ""
    for j in range(start + 1, len(lines)):
        line = lines[j]
        body = line[4:] if line.startswith(_GROUP_PREFIXES) else line
        if body and not body[0].isspace() and not body.startswith(("Traceback", "+-", "+---")):
            head, sep, rest = body.partition(": ")
            if head and " " not in head.strip():
                etype = head.strip()
                tail = [rest] if sep else []
                tail += [ln[4:] if ln.startswith(_GROUP_PREFIXES) else ln for ln in lines[j + 1 :]]
                message = "\n".join(tail).strip() if sep else ""
                # "ExceptionGroup: msg (2 sub-exceptions)" is followed by the members: keep line one
                if etype.endswith("Group") and message:
                    message = message.splitlines()[0]
                break
    return ExceptionInfo(etype, message if include_message else None, text)
