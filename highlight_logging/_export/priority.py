"""The application comes first: the worker steps back during a logging burst, and otherwise
hands the GIL back after :data:`HOLD` of work (figures: docs/performance.md, Worker priority)."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Protocol

from highlight_logging._core import osthread as _osthread
from highlight_logging._core.record import Pending
from highlight_logging._core.settings import Settings
from highlight_logging._export.sender import Sender

HOLD = 0.0001  # s: the longest the worker works before it hands the GIL to a waiting application thread
HAND_OFF_SLEEP = (
    50e-6  # s: a sleep hands the GIL over; sleep(0) would not (the worker takes it straight back)
)
# A burst: records arriving faster than this (per second); the worker then steps back, looking
# again every slice.
BURST_RATE = 5000.0
BURST_MIN = 8
BURST_SLICE = 0.005  # each look costs two GIL hand-offs


class Host(Protocol):
    """The pipeline, as its worker's priority sees it (read once a batch or a chunk, never per record)."""

    settings: Settings

    @property
    def hurried(self) -> bool:
        """Someone waits on flush() or shutdown(): the worker works flat out."""
        ...

    @property
    def queued_bytes(self) -> int: ...


class Priority:
    """The worker's priority for one pipeline, built with its queue (so rebuilt after a fork), its
    sender and ``pause``: a sleep during a burst that flush() and shutdown() cut short."""

    __slots__ = ("host", "pause", "queue", "sender", "settings")

    def __init__(
        self,
        host: Host,
        queue: collections.deque[Pending],
        sender: Sender,
        pause: Callable[[float], object],
    ) -> None:
        self.host = host
        self.settings = host.settings
        self.queue = queue
        self.sender = sender
        self.pause = pause

    def step_back_during_burst(self) -> None:
        """While the application logs in a burst, leave it the GIL and export afterwards.

        Encoding and exporting need the GIL; taken in the middle of a burst, it is time the
        application's own threads wait.  So while records keep arriving faster than ``BURST_RATE``,
        the worker sleeps in slices of ``BURST_SLICE`` (``pause``) and catches up when the burst
        ends.  Bounded three ways: never once the oldest queued record is ``schedule_delay`` old (so
        in a burst that never ends records still leave about a second after they were logged),
        never with a quarter of the buffer in use, never while someone waits on flush() or
        shutdown().  A steady trickle (a request's few lines) never counts as a burst.
        """
        host, s, queue, sender = self.host, self.settings, self.queue, self.sender
        seen = len(queue)  # nothing leaves the queue meanwhile: its growth is the arrivals
        while not host.hurried:
            if len(queue) >= s.max_queue_size // 4 or host.queued_bytes >= s.max_queue_bytes // 4:
                return
            try:
                oldest = queue[0].observed_ns
            except IndexError:
                return  # nothing queued: nothing to hold back
            age = time.time_ns() - oldest
            if not 0 <= age < s.schedule_delay * 1e9:  # due, or the wall clock stepped back
                return
            if sender.in_flight:
                # Not left waiting while the worker sleeps; that wait may be long, so look again.
                sender.complete_in_flight()
                seen = len(queue)
                continue
            start = time.monotonic()
            self.pause(BURST_SLICE)
            now = len(queue)
            # Measured over the real interval: a sleeping worker waits for the GIL to wake.
            if now - seen < max(BURST_MIN, BURST_RATE * (time.monotonic() - start)):
                return
            seen = now


class HandOff:
    """Background priority while the worker keeps up: after ``HOLD`` of converting and encoding
    (a time, not a count: the C path does 16 records in a fifth of what Python takes), the worker
    sleeps briefly, which hands the GIL to a waiting application thread.  With half the buffer
    in use, or someone waiting on flush/shutdown, it works flat out.  One per batch."""

    __slots__ = ("priority", "since")

    def __init__(self, priority: Priority) -> None:
        self.priority = priority
        self.since = time.perf_counter()

    def between_chunks(self) -> None:
        priority = self.priority
        host, s = priority.host, priority.settings
        if (
            time.perf_counter() - self.since >= HOLD
            and not host.hurried
            and len(priority.queue) < s.max_queue_size // 2
            and host.queued_bytes < s.max_queue_bytes // 2
        ):
            _osthread.sleep(HAND_OFF_SLEEP)
            self.since = time.perf_counter()
