"""The worker's fast path: a plain :class:`Pending` straight to its OTLP ``LogRecord`` bytes, in C.

Most records are plain: no exception, no request context, no attributes of the front end's own,
a handful of scalar extras under the count limit.  For those, ``_core.convert.to_record`` followed by
``encode.log_record`` comes down to copying values into the wire format, which ``_speedups.c``
(``plain_logs``) does in one pass over the pending tuple, where a compiler was there at install time.

The rule is written once, in Python: the general path (``to_record``, then ``prepare.RecordEncoder.encode``) is
the reference, and the tests check byte for byte that the C path gives what it gives.  The C path
returns, per record, its bytes, or ``None`` when the record is not plain (or anything about it is
unusual): that record then takes the general path, which owns every rule.  Without C there is no
fast path (:data:`plain_logs` is None): a Python copy saved too little to be worth a second copy
of the rule (figures: docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from highlight_logging._core import convert as _convert
from highlight_logging._core import highlight as _highlight
from highlight_logging._core import native as _native
from highlight_logging._core.record import Pending, Site
from highlight_logging._export import encode as _encode

#: level name -> (levelno, encoded severity fields); filled by :func:`learn` for the C path too.
levels: dict[str, tuple[int, bytes]] = {}
#: The same for the highlight shape, whose severity text is the nearest level highlight.io knows.
highlight_levels: dict[str, tuple[int, bytes]] = {}
#: plain_logs' ``shape`` for the highlight shape: (keys, key prefixes) that highlight.io takes out.
#: A record with one of them as an extra, a bool or empty-string extra, or a body that
#: ``_highlight.body`` would change is not plain there.
Shape = tuple[frozenset[str], tuple[str, ...]]
HIGHLIGHT_SHAPE: Shape = (_highlight.RESERVED, _highlight.RESERVED_PREFIXES)


def learn(pending: Pending) -> None:
    """Remember a record's severity encoding (its site is remembered by ``_encode``)."""
    levelno, name = pending.levelno, pending.level_name
    if type(levelno) is int and type(name) is str and (name not in levels or name not in highlight_levels):
        if len(levels) >= _encode.CACHE_MAX:
            levels.clear()
            highlight_levels.clear()
        number = _convert.severity_number(levelno)
        levels[name] = (levelno, _encode.severity(number, name))
        highlight_levels[name] = (levelno, _encode.severity(number, _highlight.severity_text(number)))


class PlainLogs(Protocol):
    """``_speedups.plain_logs``: each record's ``LogRecord`` bytes, or None where it must take the
    general path.

    ``sites``: ``_encode.site_cache``; ``levels``: :data:`levels` (:data:`highlight_levels` for
    the highlight shape); ``room``: attributes a record may carry (the count limit less the
    reserved slots); ``to_ns``: a non-int time to ns (``_convert.datetime_ns``); ``shape``: None
    for the otel shape, :data:`HIGHLIGHT_SHAPE` for the highlight shape.
    """

    def __call__(
        self,
        chunk: list[Pending],
        sites: dict[Site, bytes],
        levels: dict[str, tuple[int, bytes]],
        room: int,
        to_ns: Callable[[datetime], int],
        shape: Shape | None = None,
        /,
    ) -> list[bytes | None]: ...


#: The C path where it was built and is in use; None otherwise, and every record takes the general path.
plain_logs: PlainLogs | None = None
pure_python = _native.pure_python
if _native.speedups is not None:
    plain_logs = _native.speedups.plain_logs
