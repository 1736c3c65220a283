"""The one exception helper: any way a front end carries an exception -> :class:`ExceptionInfo`.

Runs on the caller's thread, because a traceback's frames and the exception's ``__str__`` are
only safe to read there.  Names follow the OTel semantic conventions: ``exception.type`` is
``module.Qualname`` (bare for builtins), ``exception.message`` is ``str(exc)``, and
``exception.stacktrace`` is the full traceback with ``__cause__``/``__context__`` chains and
ExceptionGroup members, as Python itself prints it.
"""

from __future__ import annotations

import sys
import traceback
from types import TracebackType
from typing import Any

from highlight_logging._coerce import safe_str
from highlight_logging._record import ExceptionInfo

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


def _stacktrace(info: ExcInfoTuple, include_message: bool) -> str:
    etype, value, tb = info
    try:
        te = traceback.TracebackException(etype, value, tb, compact=True)
        if not include_message:
            _hide_messages(te, set())
        return "".join(te.format())
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
