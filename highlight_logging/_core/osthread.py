"""Real OS threads, locks and sleeps for the export pipeline, also under gevent or eventlet.

``gevent.monkey.patch_all()`` and ``eventlet.monkey_patch()`` turn ``threading.Thread`` into a
greenlet on the calling OS thread and ``threading``'s locks, events and ``time.sleep`` into waits
that switch greenlets.  An export worker built from them exports nothing while the application's
greenlets compute, and blocking signals "for its thread" blocks them for the main thread (and
every thread created after it), so SIGTERM and Ctrl-C stop working.  The pipeline therefore takes
its threads and everything it shares with them from here: the interpreter's original ``_thread``
primitives, whether the patching came before or after ``import highlight_logging``.  Waiting on
them blocks the OS thread that waits, so the application's side only ever holds them briefly.
"""

from __future__ import annotations

import _thread
import collections
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = [
    "Condition",
    "Event",
    "Lock",
    "RLock",
    "Worker",
    "get_ident",
    "new_thread",
    "on_main_thread",
    "original",
    "patched",
    "sleep",
]


def original(module: str, name: str) -> Any:
    """``module.name`` as it was before gevent or eventlet patched it (as it is, if unpatched)."""
    gevent_monkey = sys.modules.get("gevent.monkey")
    if gevent_monkey is not None:
        return gevent_monkey.get_original(module, name)
    current = getattr(sys.modules[module], name)
    patcher = sys.modules.get("eventlet.patcher")
    # eventlet's original() is a fresh copy of the module, patched or not: taken only for a green name.
    if patcher is not None and str(getattr(current, "__module__", "")).startswith("eventlet"):
        return getattr(patcher.original(module), name)
    return current


def patched() -> bool:
    """True when gevent or eventlet has monkey-patched ``threading``."""
    gevent_monkey = sys.modules.get("gevent.monkey")
    if gevent_monkey is not None and gevent_monkey.is_module_patched("threading"):
        return True
    patcher = sys.modules.get("eventlet.patcher")
    return bool(patcher is not None and patcher.is_monkey_patched("thread"))


# Resolved once: functions taken before any patching are the originals already.
_allocate_lock: Callable[[], Any] = original("_thread", "allocate_lock")
_start_new_thread: Callable[..., int] = original("_thread", "start_new_thread")
get_ident: Callable[[], int] = original("_thread", "get_ident")
_rlock: Callable[[], Any] = original("_thread", "RLock")
_sleep: Callable[[float], None] = original("time", "sleep")
_main_ident = get_ident() if threading.current_thread() is threading.main_thread() else 0


class OsLock(Protocol):
    """What :func:`Lock` and :func:`RLock` return: ``_thread``'s own locks."""

    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...
    def release(self) -> None: ...
    def __enter__(self) -> bool: ...
    def __exit__(self, *exc: object) -> None: ...


def Lock() -> OsLock:
    lock: OsLock = _allocate_lock()
    return lock


def RLock() -> OsLock:
    lock: OsLock = _rlock()
    return lock


def sleep(seconds: float) -> None:
    _sleep(seconds)


class _Lock(Protocol):
    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...
    def release(self) -> None: ...


class Condition:
    """``threading.Condition`` over a plain (non-reentrant) lock, waiting on real locks."""

    def __init__(self, lock: _Lock | None = None) -> None:
        self._lock: _Lock = lock if lock is not None else _allocate_lock()
        self.acquire = self._lock.acquire
        self.release = self._lock.release
        self._waiters: collections.deque[Any] = collections.deque()

    def __enter__(self) -> bool:
        return bool(self._lock.acquire())

    def __exit__(self, *_: object) -> None:
        self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait for a notify (or ``timeout``), take the lock again."""
        waiter = _allocate_lock()
        waiter.acquire()
        self._waiters.append(waiter)
        self._lock.release()
        got = False
        try:
            got = bool(waiter.acquire(True, -1 if timeout is None else max(timeout, 0)))
            return got
        finally:
            self._lock.acquire()
            if not got:
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        end = None if timeout is None else time.monotonic() + timeout
        result = predicate()
        while not result:
            if end is None:
                self.wait()
            else:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self.wait(left)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        waiters = self._waiters
        while waiters and n > 0:
            waiters.popleft().release()
            n -= 1

    def notify_all(self) -> None:
        self.notify(len(self._waiters))


class Event:
    """``threading.Event`` on real locks."""

    def __init__(self) -> None:
        self._cond = Condition()
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        with self._cond:
            self._flag = True
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        with self._cond:
            if not self._flag:
                self._cond.wait(timeout)
            return self._flag


class Worker:
    """A real OS thread with the part of ``threading.Thread``'s interface the pipeline uses.
    ``threading.enumerate()`` does not list it: ``highlight_logging._export.process.pipelines()`` does."""

    daemon = True

    def __init__(self, target: Callable[[], object], name: str) -> None:
        self.name = name
        self._target = target
        self._ended = Event()
        self._started = False
        self.ident: int | None = None
        self.native_id: int | None = None

    def start(self) -> None:
        self._started = True
        _start_new_thread(self._bootstrap, ())

    def _bootstrap(self) -> None:
        self.ident = get_ident()
        self.native_id = _thread.get_native_id()
        try:
            self._target()
        finally:
            self._ended.set()

    def is_alive(self) -> bool:
        return self._started and not self._ended.is_set()

    def join(self, timeout: float | None = None) -> None:
        if self._started:
            self._ended.wait(timeout)


def new_thread(target: Callable[[], object], name: str) -> Worker:
    """A daemon thread (not started) that runs ``target`` on a new OS thread, even under
    monkey-patching, where ``threading.Thread`` would make it a greenlet.  Not a
    ``threading.Thread`` even when unpatched: one patched while it runs would make its end raise
    ``KeyError`` in ``threading._delete`` (the greenlet's ident is not the one it registered)."""
    return Worker(target, name)


def on_main_thread() -> bool:
    """True on the process's main OS thread (where Python runs its signal handlers).  Read from
    the OS, since gevent gives the main thread a greenlet's ident."""
    if sys.platform == "linux":
        return _thread.get_native_id() == os.getpid()  # the main thread's TID is the PID
    return get_ident() == _main_ident
