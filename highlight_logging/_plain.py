"""The worker's fast path: a plain :class:`Pending` straight to its OTLP ``LogRecord`` bytes.

Most records are plain: no exception, no request context, no attributes of the front end's own,
a handful of scalar extras under the count limit.  For those, ``_frontend.to_record`` followed by
``_encode.log_record`` comes down to copying values into the wire format, and the two calls, the
:class:`Record` tuple between them and the extras' dict cost more than the copying.  This does
both halves in one pass over the pending tuple.

:func:`plain_logs_py` here is the reference, and the fallback.  ``_speedups.c`` implements the
same function in C, built when a compiler was there at install time.  Why C: in the benchmark the
export worker cost ~10 us a record under the GIL, against ~14 us for the application's whole
``logging`` call, and this was most of it.  ``benchmarks/encode.py`` (512-record batches, best of
15): general path 3.8 us a record, the Python reference 3.2, the C twin 0.26; in the benchmark's
20,000-record run the worker's CPU went from ~11 to ~5.5 us a record.

Either returns, per record, its bytes, or ``None`` when the record is not plain (or anything about
it is unusual): that record then takes the general path (``to_record`` and ``Pipeline._encode``),
which owns every rule.  The tests check that both give byte for byte what the general path gives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# _frontend by module: it imports _export, which imports this.
from highlight_logging import _encode, _frontend, _highlight, _native
from highlight_logging._record import SITE_KEY_SET, Pending

#: level name -> (levelno, encoded severity fields); filled by :func:`learn` for the C path too.
levels: dict[Any, tuple[Any, bytes]] = {}
#: The same for the highlight shape, whose severity text is the nearest level highlight.io knows.
highlight_levels: dict[Any, tuple[Any, bytes]] = {}
#: plain_logs' ``shape`` for the highlight shape: (keys, key prefixes) that highlight.io takes out.
#: A record with one of them as an extra, a bool or empty-string extra, or a body that
#: ``_highlight.body`` would change is not plain there.
HIGHLIGHT_SHAPE = (_highlight.RESERVED, _highlight.RESERVED_PREFIXES)

_TIMES = _encode._TIMES
_SHORT_BODY = _encode._SHORT_BODY
_add_attributes = _encode.add_attributes
_PLAIN_VALUES = (str, int, float, bool)


def learn(pending: Pending) -> None:
    """Remember a record's severity encoding (its site is remembered by ``_encode``)."""
    levelno, name = pending.levelno, pending.level_name
    if type(levelno) is int and type(name) is str and (name not in levels or name not in highlight_levels):
        if len(levels) >= _encode._CACHE_MAX:
            levels.clear()
            highlight_levels.clear()
        number = _frontend.severity_number(levelno)
        levels[name] = (levelno, _encode.severity(number, name))
        highlight_levels[name] = (levelno, _encode.severity(number, _highlight.severity_text(number)))


def _plain_value(key: str, value: Any) -> bool:
    """A key and value the C path writes as they are (the others take the general path)."""
    kind = type(value)
    if kind is int:
        return bool(_encode._INT64_MIN <= value <= _encode._INT64_MAX) and _utf8(key)
    return kind in _PLAIN_VALUES and _utf8(key) and (kind is not str or _utf8(value))


def _highlight_plain(key: str, value: Any, shape: tuple[frozenset[str], tuple[str, ...]]) -> bool:
    """A pair the highlight shape sends as it is; the C twin reads the same rule from ``shape``."""
    return not _highlight.needs_shaping(key, value)


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate: _encode.text() escapes it
        return False
    return True


def plain_logs_py(
    chunk: list[Pending],
    sites: dict[Any, bytes],
    levels: dict[Any, tuple[Any, bytes]],
    room: int,
    to_ns: Callable[[Any], int],
    shape: tuple[frozenset[str], tuple[str, ...]] | None = None,
) -> list[bytes | None]:
    """Each record's ``LogRecord`` bytes, or None where it must take the general path.

    ``sites``: ``_encode._site_cache``; ``levels``: :data:`levels`; ``room``: attributes a
    record may carry (the count limit less the reserved slots); ``to_ns``: a non-int time to ns
    (``_frontend.datetime_ns``); ``shape``: None for the otel shape, :data:`HIGHLIGHT_SHAPE` for the
    highlight shape (with :data:`highlight_levels` as ``levels``).
    """
    out: list[bytes | None] = []
    append = out.append
    same_moment = _frontend._SAME_MOMENT
    for p in chunk:
        try:
            (when, observed, levelno, level_name, _, text, attrs, extras, dropped, exception, site,
             trace_id, span_id, flags, request, _, _, logged_now) = p  # fmt: skip
            if (
                attrs
                or dropped
                or exception is not None
                or request is not None
                or site is None
                or type(extras) is not tuple  # as the C twin, which reads it after running Python code
            ):
                append(None)
                continue
            head = sites.get(site)
            level = levels.get(level_name)
            if head is None or level is None or level[0] != levelno or type(levelno) is not int:
                append(None)
                continue
            if extras:
                keys = {k for k, _ in extras}
                if (
                    len(keys) != len(extras)  # a repeated key: the general path's dict decides
                    or len(extras) + len(site[0]) > room
                    or not SITE_KEY_SET.isdisjoint(keys)
                    or not all(_plain_value(k, v) for k, v in extras)
                    or (shape is not None and not all(_highlight_plain(k, v, shape) for k, v in extras))
                ):
                    append(None)
                    continue
            if shape is not None and " <" in text and not text.startswith("<"):
                append(None)  # _highlight.body() changes it
                continue
            if type(when) is not int:
                when = to_ns(when)
            if logged_now and -0x100 < observed - when < same_moment:
                observed = when  # to_record's rule, word for word
            raw = text.encode()
            n = len(raw)
            parts = [
                _TIMES.pack(0x09, when, 0x59, observed),
                level[1],
                _SHORT_BODY[n]
                if n < 126
                else b"\x2a" + _encode.varint(n + 1 + len(_encode.varint(n))) + b"\x0a" + _encode.varint(n),
                raw,
                head,
            ]
            if extras:
                _add_attributes(parts, b"\x32", dict(extras))
            if trace_id:
                parts += (
                    b"\x45" + _encode._I.pack(flags & 0xFF),
                    _encode.field(b"\x4a", trace_id),
                    _encode.field(b"\x52", span_id),
                )
            append(b"".join(parts))
        except Exception:  # anything unusual: the general path owns it
            append(None)
    return out


plain_logs: Callable[..., list[bytes | None]] = plain_logs_py
pure_python = _native.pure_python
if _native.speedups is not None:
    plain_logs = _native.speedups.plain_logs
