"""Where an export thread of ours may run, and what it must not receive: the worker threads'
idents, their signal mask, and uWSGI's cases where no thread of ours may run at all."""

from __future__ import annotations

import collections
import importlib
import signal
import sys
from contextlib import AbstractContextManager
from typing import Any

from highlight_logging._core import diag as _diag
from highlight_logging._core.record import Pending

#: Idents of export worker threads: records logged on them never re-enter a pipeline.
worker_threads: set[int] = set()

_not_uwsgi = False  # looked for the uwsgi module and found none


#: A thread's signal mask, as ``signal.pthread_sigmask`` returns it.
SignalMask = set[signal.Signals | int]


def block_signals() -> SignalMask | None:
    """Keep SIGTERM and SIGINT off the calling (export worker) thread; returns the mask before
    (None where there is no pthread_sigmask).

    Python runs its signal handlers on the main thread, but the kernel may hand a process's signal
    to any thread that does not block it.  Handed to this thread, a SIGTERM would leave a main
    thread blocked in C (a multiprocessing pool worker waiting on its queue lock, which
    ``Pool.terminate()`` keeps held) sleeping, the handler never run and the process alive.
    """
    try:
        return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    except (AttributeError, ValueError, OSError):  # no pthread_sigmask (Windows)
        return None


def set_signal_mask(mask: SignalMask | None) -> None:
    """Put back a mask that block_signals() returned (None: nothing to put back)."""
    if mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def threads_stalled() -> str | None:
    """Why no export thread of ours may run in this process (None: it may), inside uWSGI:

    * in the master process when uWSGI forks its workers without Python's fork hooks (the
      default, unless --lazy-apps or --py-call-uwsgi-fork-hooks): a worker forked while our
      thread held the GIL would hang for good taking it (seen: a worker stuck from birth, and
      its master stuck on SIGTERM).  uWSGI runs no exit hook in its master either, so what the
      master logs (while importing the app) is handed to its workers: the first to log sends
      it (see :class:`Handoff`).  "master";
    * anywhere when uWSGI runs no Python threads (``uwsgi.has_threads`` false: older releases
      without --enable-threads; uWSGI 2.0.31 turns threads on for every app), where a thread
      would hold records until the process exits.  Said once, naming the flag.  "no-threads".
    """
    global _not_uwsgi
    uwsgi: Any = sys.modules.get("uwsgi")
    if uwsgi is None:
        if _not_uwsgi:
            return None
        try:
            uwsgi = importlib.import_module("uwsgi")  # there only inside a uWSGI process
        except ImportError:
            _not_uwsgi = True  # and not in a process it forks either
            return None
    if not getattr(uwsgi, "has_threads", True):
        _diag.warn(
            "uWSGI runs without Python threads: log records are sent only by flush() and at "
            "worker exit; start uWSGI with --enable-threads (or --threads N) to send them as they come",
            key="uwsgi-threads",
        )
        return "no-threads"
    try:
        opt = uwsgi.opt
        in_master = uwsgi.worker_id() == 0 and opt.get("master")
        hooked = any(opt.get(k) for k in ("lazy-apps", "lazy", "py-call-uwsgi-fork-hooks"))
    except Exception:  # an unusual uWSGI: assume threads are safe, as before
        return None
    return "master" if in_master and not hooked else None


class Handoff:
    """In a uWSGI master (:func:`threads_stalled` says "master"), which never sends its own
    records: how many of its queued records the workers it forks have claimed, in memory shared
    with them, and the number of the record first in its queue, so each record goes out once."""

    def __init__(self) -> None:
        import multiprocessing

        self.claimed: Any = multiprocessing.Value("q", 0)
        self.base = 0

    def claim(self, queued: list[Pending]) -> list[Pending]:
        """In a worker forked from the master: the master's records no other worker has claimed."""
        if not queued:
            return []
        lock = self.claimed.get_lock()
        if not lock.acquire(timeout=1.0):  # held at the fork by a thread the child lacks
            return []
        try:
            first = self.claimed.value
            end = self.base + len(queued)
            if end <= first:
                return []
            self.claimed.value = end
        finally:
            lock.release()
        return queued[max(first - self.base, 0) :]

    def lock(self) -> AbstractContextManager[bool]:
        """The shared counter's lock (a process-shared lock): taken around :meth:`skip_claimed`."""
        lock: AbstractContextManager[bool] = self.claimed.get_lock()
        return lock

    def skip_claimed(self, queue: collections.deque[Pending]) -> list[Pending]:
        """In the master about to send its queue (holding :meth:`lock`): take out what its workers
        claimed (and sent), and claim the rest; returns what was taken out."""
        first = self.claimed.value
        skip = min(max(first - self.base, 0), len(queue))
        gone = [queue.popleft() for _ in range(skip)]
        end = self.base + skip + len(queue)
        self.claimed.value = max(first, end)
        self.base = end
        return gone
