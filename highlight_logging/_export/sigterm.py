"""A SIGTERM the Python handler missed still ends the process (with the C speedups built).

Python runs a signal handler only when the main thread next checks for signals.  A SIGTERM that
lands after that thread's last check but before it blocks in C (a ``multiprocessing`` pool worker
taking its queue lock, which ``Pool.terminate()`` keeps held) is never acted on: the process sleeps
for good.  ``_speedups.sigterm_arm()`` puts a C handler over Python's that writes a byte to a pipe
and then chains to Python's; a watcher on a real OS thread reads the pipe and, when the Python
handler has not started within ``GRACE``, calls ``take_over`` (deliver, then die by SIGTERM).
Without the C extension nothing changes: the Python handler alone, as before.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Protocol

from highlight_logging._core import native as _native
from highlight_logging._core import osthread as _osthread

GRACE = 0.15  # how long the main thread has to start its handler before the watcher takes over


class Rescue(Protocol):
    """The C module's SIGTERM rescue (see ``_speedups.pyi``; absent on Windows)."""

    def sigterm_arm(self) -> int | None: ...
    def sigterm_wait(self, fd: int, /) -> bool: ...
    def sigterm_ours(self) -> bool: ...
    def sigterm_disarm(self) -> None: ...
    def sigterm_die(self) -> None: ...


def _rescue() -> Rescue | None:
    """The C speedups where they are in use and have the rescue, else None."""
    speedups = _native.speedups
    return speedups if speedups is not None and hasattr(speedups, "sigterm_arm") else None


#: The Python SIGTERM handler has started (set first thing by it): the watcher stands down.
started = False
_armed = False
_generation = 0  # the current pipe's: a watcher of an older one (the fd number reused) stands down


def handler_started() -> None:
    """Called first thing by the Python SIGTERM handler: the watcher stands down."""
    global started
    started = True


def start_blocked(worker: _osthread.Worker) -> None:
    """Start ``worker`` with SIGTERM and SIGINT blocked from its first instruction: blocked on the
    creating thread around ``start()`` (a thread inherits its creator's mask), so the kernel never
    hands it a signal meant for the main thread."""
    try:
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    except (AttributeError, ValueError, OSError):  # no pthread_sigmask (Windows)
        worker.start()
        return
    try:
        worker.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def arm(handler: Callable[[int, object], None], take_over: Callable[[], None]) -> None:
    """Rescue ``handler`` (just installed for SIGTERM on the main thread) with a fresh pipe and
    watcher; in a forked child, replaces the parent's (whose watcher the child lacks)."""
    global started, _armed, _generation
    speedups = _rescue()
    if speedups is None:
        return
    started = False
    try:
        fd = speedups.sigterm_arm()
        if fd is None:
            _armed = False
            return
        _armed = True
        _generation += 1
        generation = _generation
        watcher = _osthread.new_thread(
            lambda: _watch(speedups, fd, generation, handler, take_over), "highlight_logging-sigterm-watch"
        )
        start_blocked(watcher)
    except Exception:  # never into the application: the Python handler alone, as before
        disarm()


def disarm() -> None:
    """Close the rescue's pipe (its watcher ends) and put back the handler it chained to."""
    global _armed
    if _armed:
        _armed = False
        speedups = _rescue()  # there: it armed
        try:
            if speedups is not None:
                speedups.sigterm_disarm()
        except Exception:
            pass


def after_fork_in_child(handler: Callable[[int, object], None], take_over: Callable[[], None]) -> None:
    """The child inherits the parent's pipe but not its watcher: its own pipe and watcher while
    SIGTERM is still ``handler``; else the inherited pipe closed (no fd kept per fork)."""
    if not _armed:
        return
    try:
        ours = signal.getsignal(signal.SIGTERM) is handler
    except Exception:
        ours = False
    if ours:
        arm(handler, take_over)
    else:
        disarm()


def _watch(
    speedups: Rescue,
    fd: int,
    generation: int,
    handler: Callable[[int, object], None],
    take_over: Callable[[], None],
) -> None:
    try:
        while speedups.sigterm_wait(fd) and generation == _generation:  # False once closed or replaced
            deadline = time.monotonic() + GRACE
            while not started and time.monotonic() < deadline:
                _osthread.sleep(0.01)
            # Only while SIGTERM is still ours: an app that installed its own handler meanwhile decides.
            if started or not speedups.sigterm_ours() or signal.getsignal(signal.SIGTERM) is not handler:
                continue
            take_over()
            speedups.sigterm_die()
    except BaseException:  # a watcher that fails leaves the Python handler, as before
        pass


def die() -> None:
    """Die by SIGTERM from any thread (``signal.signal`` works on the main thread only)."""
    speedups = _rescue()
    if speedups is not None:
        speedups.sigterm_die()
