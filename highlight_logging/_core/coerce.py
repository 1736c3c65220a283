"""Snapshot user values on the caller's thread into plain, immutable-by-convention :data:`Value`.

The snapshot must happen on the caller's thread: the user may mutate a dict right after logging
it, and an arbitrary object's ``__str__`` is only safe to call where the user called us.  It must
never raise, whatever the object does, and must terminate on cycles.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from highlight_logging._core.record import Value

_MAX_DEPTH = 16
_PLAIN = (int, float)  # bool is an int subclass; handled by the type() fast path first


def safe_str(obj: object) -> str:
    """``str(obj)``, falling back to ``repr`` and then to a fixed description; never raises."""
    try:
        text = str(obj)
        if type(text) is str:
            return text
    except Exception:
        pass
    try:
        text = repr(obj)
        if type(text) is str:
            return text
    except Exception:
        pass
    try:
        name = type(obj).__qualname__
    except Exception:
        name = "object"
    return f"<unprintable {name} object>"


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + "...[truncated]"


def coerce(value: object, limit: int, depth: int = 0, seen: frozenset[int] = frozenset()) -> Value:
    """Turn any object into a :data:`Value`; strings and bytes are cut at ``limit``."""
    if type(value) is str:
        return value if len(value) <= limit else truncate(value, limit)
    if type(value) is int or type(value) is float or type(value) is bool or value is None:
        return value  # type: ignore[return-value,unused-ignore]
    try:
        if isinstance(value, Mapping):
            if depth >= _MAX_DEPTH or id(value) in seen:
                return "<cycle>" if id(value) in seen else "<too deep>"
            inner = seen | {id(value)}
            return {
                (k if type(k) is str else safe_str(k)): coerce(v, limit, depth + 1, inner)
                for k, v in list(value.items())
            }
        if isinstance(value, (list, tuple, set, frozenset)):
            if depth >= _MAX_DEPTH or id(value) in seen:
                return "<cycle>" if id(value) in seen else "<too deep>"
            inner = seen | {id(value)}
            return [coerce(v, limit, depth + 1, inner) for v in list(value)]
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            return data if len(data) <= limit else data[:limit]
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, _PLAIN):
            # int/float subclasses (IntEnum, numpy scalars): keep the number, drop the class.
            return int(value) if isinstance(value, int) else float(value)
        if isinstance(value, str):
            return truncate(str.__str__(value), limit)
    except Exception:
        pass  # a hostile __iter__/__len__/items(): fall back to its text
    return truncate(safe_str(value), limit)


def coerce_attributes(
    items: Any,
    limit: int,
    count_limit: int,
    out: dict[str, Value],
    implicit: tuple[str, ...] = (),
    skip: frozenset[str] = frozenset(),
) -> int:
    """Add ``items`` (key, value pairs) to ``out`` until ``count_limit``; return how many were dropped.

    ``implicit`` names attributes the record carries besides ``out`` (its call site): they count
    towards ``count_limit`` too, except those that ``out`` already overrides.  Keys in ``skip`` are
    not attributes at all (a front end's own fields, e.g. structlog's ``event``) and are passed over.
    """
    dropped = 0
    room = count_limit - len(implicit)
    for key, value in items:
        if key in skip:
            continue
        if len(out) >= room and len(out) + sum(1 for k in implicit if k not in out) >= count_limit:
            dropped += 1
            continue
        kind = type(value)
        if type(key) is str and (kind is int or (kind is str and len(value) <= limit)):
            out[key] = value  # the common cases, without a call
            continue
        out[key if type(key) is str else safe_str(key)] = coerce(value, limit)
    return dropped
