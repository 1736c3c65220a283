"""Diagnostics that bypass ``logging``: a logging bridge that logs about itself can recurse or deadlock.

Every line goes straight to ``sys.stderr`` (looked up at call time, so test capture and
redirection work), prefixed with ``highlight_logging:``, and repeated lines are rate-limited.
"""

from __future__ import annotations

import io
import sys
import time

from highlight_logging._core import osthread as _osthread

_lock = _osthread.Lock()  # a real lock also under gevent: the export worker's thread takes it too
_last: dict[str, float] = {}
_once: set[str] = set()


def warn(message: str, *, key: str | None = None, every: float = 0.0) -> None:
    """Write one line to stderr; with ``key``, at most once per ``every`` seconds (0: once ever)."""
    if key is not None:
        now = time.monotonic()
        with _lock:
            if every <= 0:
                if key in _once:
                    return
                _once.add(key)
            else:
                last = _last.get(key)
                if last is not None and now - last < every:
                    return
                _last[key] = now
    try:
        stream = sys.stderr
        if not isinstance(stream, io.IOBase):  # a logging proxy (Celery redirects stderr to logging)
            stream = sys.__stderr__
        if stream is not None:
            stream.write(f"highlight_logging: {message}\n")
            stream.flush()
    except Exception:  # stderr closed or broken at exit: nothing better to do
        pass


def after_fork_in_child() -> None:
    """A forked child's own lock: the parent's may have been held by a thread that is gone."""
    global _lock
    _lock = _osthread.Lock()


def reset() -> None:
    """Forget which warnings were given (tests, and a forked child that should warn afresh)."""
    with _lock:
        _last.clear()
        _once.clear()
