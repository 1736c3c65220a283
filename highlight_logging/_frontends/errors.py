"""``record_exception``: report an error without writing a log line.

A report is the exception span every front end already sends for a logged exception (status
ERROR, one ``exception`` event with ``exception.type``/``message``/``stacktrace``, a child of the
active span), built by the same converter, scrubbed and limited by the same worker.  The only
difference is that the record is flagged ``span_only``, so the worker sends the span and no log
record, and that the span carries every attribute of the report (the caller's ``attributes``,
``highlight.session_id``/``highlight.trace_id``, ``code.*``, ``thread.*``), not just ours.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from highlight_logging._core import diag as _diag
from highlight_logging._core import exceptions as _exceptions
from highlight_logging._core import settings as _settings
from highlight_logging._core.convert import capture_record
from highlight_logging._core.record import Attributes
from highlight_logging._frontends.binding import Binding

__all__ = ["record_exception"]

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

_ERROR = 40  # logging.ERROR, without importing logging

_bindings: dict[tuple[tuple[str, Any], ...], Binding] = {}
_bindings_lock = threading.Lock()
_MAX_BINDINGS = 64


def _binding(settings: Mapping[str, Any]) -> Binding:
    """One cached :class:`Binding` per distinct keyword settings; it re-resolves after configure()."""
    key = tuple(sorted(_settings.check_keywords(settings).items())) if settings else ()
    binding = _bindings.get(key)
    if binding is None:
        with _bindings_lock:
            binding = _bindings.get(key)
            if binding is None:
                if len(_bindings) >= _MAX_BINDINGS:
                    _bindings.clear()
                binding = _bindings[key] = Binding(dict(key))
    return binding


def record_exception(
    exc: BaseException | ExcInfo | None = None,
    *,
    attributes: Mapping[str, Any] | None = None,
    scope: str | None = None,
    **settings: Any,
) -> bool:
    """Report an exception as an exception span, without a log line; never raises.

    ``exc``: an exception or an ``exc_info`` tuple; None means the exception being handled
    (``sys.exc_info()``), and without one this does nothing and returns False.  ``attributes``
    are your custom data, typed like ``extra``.  ``scope`` is the instrumentation scope (default:
    the caller's module name).  ``settings`` are the front ends' keyword settings (default: the
    process defaults from ``configure()`` and the environment).  True when the report was queued.
    """
    try:
        info = _exceptions.normalize(sys.exc_info() if exc is None else exc)
        if info is None:
            return False
        pipeline = _binding(settings).get()
        if pipeline is None:  # disabled, or called on an export worker thread
            return False
        s = pipeline.settings
        exception = _exceptions.from_exc_info(info, s.include_exception_message)
        if exception is None:
            return False
        frame = sys._getframe(1)
        code = frame.f_code
        thread = threading.current_thread()
        attrs: Attributes = {
            "code.file.path": code.co_filename,
            "code.function.name": code.co_name,
            "code.line.number": frame.f_lineno,
            "thread.id": threading.get_ident(),
            "thread.name": thread.name,
        }
        if scope is None:
            scope = str(frame.f_globals.get("__name__") or "__main__")
        body = f"{exception.type}: {exception.message}" if exception.message else exception.type
        extras = list(attributes.items()) if attributes else ()
        pipeline.submit(
            capture_record(
                s,
                time.time_ns(),
                _ERROR,
                "ERROR",
                scope,
                body,
                attrs,
                extras,
                exception=exception,
                span_only=True,
            )
        )
        return True
    except Exception as error:
        _diag.warn(
            f"record_exception failed: {type(error).__name__}: {error}",
            key=f"record_exception:{type(error).__name__}",
            every=60.0,
        )
        return False
