"""The one export pipeline per distinct settings: bounded queue, one worker, batches, retries.

Modelled on opentelemetry-sdk's ``_shared_internal.BatchProcessor`` (bounded deque, one worker,
fork hooks, a deadline on shutdown), with what it lacks for a logging bridge:

* the queue is bounded by records *and* bytes, and a full queue drops the *incoming* record, so the
  first records of an incident survive; every drop is counted by reason (:func:`stats`);
* logs and their exception spans travel together, each record encoded on the worker straight to
  protobuf bytes (``_encode``), with requests split under the collector's 4 MiB limit;
* retries follow the OTLP specification; while the collector is unreachable the worker keeps the
  batch in hand as long as the buffer has room, so an outage loses only what overflows the buffer;
* every wait is bounded and interruptible, so exit takes at most ``shutdown_timeout``;
* after ``fork()`` the child starts with an empty queue, a new worker and a new channel;
* the application comes first: a plain record is enqueued without a lock, the record itself is
  built here on the worker (``_convert.to_record``), and the worker steps back during a logging
  burst and otherwise hands the GIL back after ``_HOLD`` of work;
* one request is in flight while the worker encodes the next batch, so a draining worker does
  not sit idle while the collector reads each request.

Nothing here logs through ``logging``: diagnostics go to stderr through ``_diag``.
"""

from __future__ import annotations

import atexit
import collections
import importlib
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from highlight_logging import _transport
from highlight_logging._core import convert as _convert
from highlight_logging._core import diag as _diag
from highlight_logging._core import highlight as _highlight
from highlight_logging._core import osthread as _osthread
from highlight_logging._core.coerce import truncate
from highlight_logging._core.record import Attributes, ExceptionInfo, Pending, Record, Value
from highlight_logging._core.settings import Settings
from highlight_logging._export import encode as _encode
from highlight_logging._export import fastpath as _plain
from highlight_logging._export import otel_flush as _otel_flush
from highlight_logging._export import sigterm as _sigterm_rescue
from highlight_logging._version import __version__

if TYPE_CHECKING:
    from highlight_logging._core.scrub import Scrubber

REASONS = (
    "queue_full",
    "non_retryable",
    "rejected",
    "export_timeout",
    "too_large",
    "encode_error",
    "shutdown",
    "frontend_error",
)
_SIGNALS = ("logs", "spans")

#: Idents of export worker threads: records logged on them never re-enter a pipeline.
worker_threads: set[int] = set()

_BACKOFF_BASE = 0.25
_BACKOFF_CAP = 5.0
_DROP_WARNING_EVERY = 10.0
_SPAN_ATTR_PREFIXES = ("code.", "thread.", "highlight.")
_CHUNK = 32  # records converted and encoded at once (scrub-checked together; see Pipeline._export)
_HOLD = 0.0001  # s: the longest the worker works before it hands the GIL to a waiting application thread
# A burst: records arriving faster than this (per second); the worker then steps back (see
# Pipeline._step_back_during_burst), checking every slice.
_BURST_RATE = 5000.0
_BURST_MIN = 8
_BURST_SLICE = 0.005  # each look costs two GIL hand-offs: 1 ms slices cost ~0.7 us a record
# Requests on their way at once.  One at a time, a 20,000-record drain spent more than half its
# time waiting for the benchmark's receiver to answer (~3.6 ms a request), and over a WAN to the
# hosted collector (say 50 ms a round trip) one at a time caps delivery at 512 / RTT, ~10,000
# records/s.  Answers are still read, and batches finished, in the order sent.
_MAX_IN_FLIGHT = 4
_SPAN_HOLD = 256  # exception spans held for the next batch's traces request at most (see _export)
_SPAN_HOLD_BATCHES = 8  # ... and batches they are held over, so that a flush() under steady logging ends


class _Send:
    """One request on its way: what :meth:`Pipeline._finish_send` needs to wait for or retry it."""

    __slots__ = ("count", "counter", "deadline", "outcome", "payload", "signal", "wait")

    def __init__(
        self,
        signal: str,
        counter: str,
        payload: bytes,
        count: int,
        deadline: float,
        wait: Callable[[], _transport.Outcome] | None,
    ) -> None:
        self.signal, self.counter, self.payload, self.count = signal, counter, payload, count
        self.deadline = deadline  # export_timeout from the first attempt
        self.wait = wait  # the first attempt's answer; None: not started (past the shutdown deadline)
        self.outcome: _transport.Outcome | None = None  # the answer, once read ahead of its turn


def _new_counters() -> dict[str, dict[str, Any]]:
    # A Pipeline leaves ``counters["logs"]["queued"]`` at 0: stats() adds what it accepted
    # (Pipeline._accepted()), which submit() tracks without a counter of its own.
    return {s: {"queued": 0, "exported": 0, "dropped": dict.fromkeys(REASONS, 0)} for s in _SIGNALS}


def _process_name() -> str:
    name = os.path.basename(sys.executable or "") or "python"
    return name


def exception_attributes(
    exc: ExceptionInfo, settings: Settings, scrubber: Any
) -> tuple[Attributes, list[str]]:
    """The ``exception.*`` attributes of ``exc``, scrubbed and cut to the limits, and what was
    scrubbed.  Shared by the export worker and ``_providers``, so both send the same thing."""
    event_attrs: Attributes = {"exception.type": exc.type}
    scrubbed: list[str] = []
    message: str | None = exc.message
    if message is not None:
        if scrubber is not None:
            message, found = scrubber.scrub_text(message, "exception.message")
            scrubbed += found
        message = event_attrs["exception.message"] = truncate(message, settings.attribute_value_length_limit)
    if settings.backend == "highlight":
        # The error's title: never empty, or highlight.io makes no error at all.
        event_attrs["exception.message"] = _highlight.exception_title(message, exc.type)
    stack = exc.stacktrace
    if scrubber is not None:
        stack, found = scrubber.scrub_text(stack, "exception.stacktrace")
        scrubbed += found
    if settings.backend == "highlight":
        stack = _highlight.stacktrace(stack)
    event_attrs["exception.stacktrace"] = truncate(
        stack, max(settings.attribute_value_length_limit, settings.max_body_length)
    )
    return event_attrs, scrubbed


class Pipeline:
    """Queue + worker + transport for one :class:`Settings`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # What submit() reads on every call, as plain attributes.
        self._max_records = settings.max_queue_size
        self._max_bytes = settings.max_queue_bytes
        self._batch_size = settings.max_export_batch_size
        self._room = settings.attribute_count_limit - _convert._RESERVED  # see to_record
        self._scrubber = _make_scrubber(settings)
        # The highlight shape (_highlight): exceptions travel on their log records only, so every
        # record is one log and none is a span; records that it would change take the general path.
        self.highlight = settings.backend == "highlight"
        self._levels = _plain.highlight_levels if self.highlight else _plain.levels
        self._plain_shape = _plain.HIGHLIGHT_SHAPE if self.highlight else None
        self._reset()

    # --- state that a forked child must rebuild ---------------------------------------------------

    def _reset(self) -> None:
        # Counters and drops; not taken by submit() for a plain record.  Reentrant: a SIGTERM flush
        # in a forked child may interrupt submit() on the same thread.
        # Real OS-thread primitives (_osthread), also under gevent/eventlet monkey-patching.
        self._lock = _osthread.RLock()
        # The process this state belongs to: a server that forks without running Python's fork
        # hooks (uWSGI) leaves a child with it, which submit() notices (see _adopt_fork).
        self._pid = os.getpid()
        self._queue: collections.deque[Pending] = collections.deque()
        # Queued bytes = _bytes_in - _bytes_out.  Producers add to _bytes_in without a lock, so the
        # figure is exact only as long as no two of them race on it (CPython does not switch
        # threads inside that ``+=``); the worker resets it whenever it empties the queue.
        self._bytes_in = 0
        self._bytes_out = 0
        self._wake = _osthread.Event()
        # Set while a flush() or shutdown waits (under _done, with _flushers): cuts the worker's
        # burst pause short, so a drain starts at once instead of after up to _BURST_SLICE.
        self._urgent = _osthread.Event()
        self._abort = _osthread.Event()  # interrupts retry sleeps at the shutdown deadline
        # Guards _in_hand and _finished: records accepted ever = _finished + _in_hand + queued.
        self._done = _osthread.Condition()
        self._in_hand = 0  # records the worker has taken and not finished
        self._finished = 0  # records the worker is done with, exported or dropped
        self._reports = 0  # accepted error reports (span only, no log)
        self._flushers = 0
        self._drops_seen = 0  # total drops when the last flush() returned
        self._worker: _osthread.Worker | None = None
        self._inline = False  # no worker thread: flush() and shutdown() export (see _drain_here)
        # In a uWSGI master (see _threads_stalled): how many of its records the workers it forks
        # have claimed, in memory shared with them (see _claim_handoff), and the number of the
        # record first in the queue.
        self._handoff: Any = None
        self._handoff_base = 0
        self._stopping = False
        self._stopped = False
        self._deadline = float("inf")  # the shutdown deadline, once shutdown() starts
        self._transport: Any = None
        # Attempts sent and not yet read; fork() waits (holding the lock) until there are none.
        self._sending = 0
        self._send_idle = _osthread.Condition()
        # The last request of each of the latest batches still in flight, oldest first, with the
        # batch's record count (at most _MAX_IN_FLIGHT).
        self._in_flight: collections.deque[tuple[_Send, int]] = collections.deque()
        # Exception spans of earlier batches that ride with the next batch's (see _export), and
        # the records of those batches, finished once the spans are sent.
        self._held_spans: dict[str, list[bytes]] = {}
        self._held_count = 0
        self._held_batches = 0
        self._fork_held = False
        self._warned_partial = False
        self._last_error = ""  # the latest failed attempt's detail, for the summary at exit
        self.counters = _new_counters()
        self.scrubbed = 0  # values scrubbed (written by the worker only; read by stats())
        # Drops of records refused at the door (never accepted, so never queued): see _give_up.
        self._refused = {"logs": 0, "spans": 0}
        self._gave_up = False  # shutdown() counted what the worker held as lost: it counts no more
        self._resource = _encode.resource(self._resource_attributes())

    def _after_fork_in_child(self) -> None:
        # The parent's queued records are the parent's to send: never duplicate them here; but
        # a uWSGI master never sends its own, and hands them to the first child that claims them.
        handed = self._claim_handoff()
        self._reset()
        if handed:
            for record in handed:
                self.submit(record)
            self._wake.set()

    def _claim_handoff(self) -> list[Pending]:
        """In a child of a uWSGI master: the master's queued records no other child has claimed."""
        claimed = self._handoff
        if claimed is None or not self._queue:
            return []
        records = list(self._queue)
        lock = claimed.get_lock()
        if not lock.acquire(timeout=1.0):  # held at the fork by a thread the child lacks
            return []
        try:
            first = claimed.value
            end = self._handoff_base + len(records)
            if end <= first:
                return []
            claimed.value = end
        finally:
            lock.release()
        return records[max(first - self._handoff_base, 0) :]

    def _skip_claimed(self) -> None:
        """In a uWSGI master about to send its queue: drop what its workers claimed (and sent),
        and claim the rest, so that each record goes out once."""
        claimed = self._handoff
        with claimed.get_lock(), self._done:
            first = claimed.value
            skip = min(max(first - self._handoff_base, 0), len(self._queue))
            gone = [self._queue.popleft() for _ in range(skip)]
            self._bytes_out += sum(r.size for r in gone)
            self._finished += skip  # accepted, and done with (sent by a worker)
            end = self._handoff_base + skip + len(self._queue)
            claimed.value = max(first, end)
            self._handoff_base = end

    def _resource_attributes(self) -> Attributes:
        s = self.settings
        attrs: Attributes = {
            "telemetry.sdk.name": "highlight_logging",
            "telemetry.sdk.language": "python",
            "telemetry.sdk.version": __version__,
            "process.pid": os.getpid(),
        }
        attrs.update(dict(s.resource_attributes))
        if s.service_name:
            attrs["service.name"] = s.service_name
        attrs.setdefault("service.name", f"unknown_service:{_process_name()}")
        if s.service_version:
            attrs["service.version"] = s.service_version
        if self.highlight:
            # highlight.io reads deployment.environment (semconv 1.25) or environment, not .name.
            name = attrs.pop("deployment.environment.name", None)
            if s.environment or name is not None:
                attrs.setdefault("deployment.environment", s.environment or name)
        elif s.environment:
            attrs["deployment.environment.name"] = s.environment
        if s.project_id:
            attrs["highlight.project_id"] = s.project_id
        return attrs

    # --- the caller's side ------------------------------------------------------------------------

    def submit(self, record: Pending) -> None:
        """Enqueue; never blocks, never raises.

        No lock for a plain record: ``deque.append`` is atomic.  With a lock here, four threads
        logging at once spent ~40 us a call waiting on each other (measured: 4 x 5,000 calls, 26 us
        a call without the lock, 66 us with it), since a thread preempted while holding it makes the
        others sleep on it.  The bounds may be overshot by one record per racing thread.
        """
        if self._pid != os.getpid():  # forked without fork hooks (uWSGI)
            _adopt_fork(self)
        if self._worker is None:
            self._start()
        queue = self._queue
        size = record.size
        if record.exception is not None:
            accepted = self._submit_counted(record)
        elif (  # _has_space(), inline: this is every logging call
            len(queue) < self._max_records
            and self._bytes_in - self._bytes_out + size <= self._max_bytes
            and not self._stopped
        ):
            queue.append(record)
            self._bytes_in += size
            if self._stopped:
                self._withdraw(record)
            accepted = True
        else:
            accepted = False
        if not accepted:
            self._refuse(record)
        elif len(queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()

    def _is_log(self, record: Pending | Record) -> int:
        """1 when ``record`` is sent as a log record (all of them in the highlight shape)."""
        return 1 if self.highlight or not record.span_only else 0

    def _has_span(self, record: Pending | Record) -> int:
        """1 when ``record`` is sent with an exception span (never in the highlight shape)."""
        return 1 if record.exception is not None and not self.highlight else 0

    def _has_space(self, size: int) -> bool:
        return (
            len(self._queue) < self._max_records
            and self._bytes_in - self._bytes_out + size <= self._max_bytes
            and not self._stopped
        )

    def _submit_counted(self, record: Pending) -> bool:
        """submit() for a record with an exception (rare): under the lock, so that its span is
        counted as queued before the worker can count it as exported.  False: no room."""
        with self._lock:
            if not self._has_space(record.size):
                return False
            self._queue.append(record)
            self._bytes_in += record.size
            if not self.highlight:
                self.counters["spans"]["queued"] += 1
                self._reports += record.span_only  # error reports (always an exception): no log
        return True

    def _refuse(self, record: Pending) -> None:
        with self._lock:
            reason = "shutdown" if self._stopped else "queue_full"
            self.counters["logs"]["dropped"][reason] += self._is_log(record)
            self._refused["logs"] += self._is_log(record)
            if self._has_span(record):
                self.counters["spans"]["dropped"][reason] += 1
                self._refused["spans"] += 1
        if reason == "queue_full":
            _diag.warn(
                "export queue full, dropping new log records; see highlight_logging.stats()",
                key=f"queue_full:{id(self)}",
                every=_DROP_WARNING_EVERY,
            )

    def _withdraw(self, record: Pending) -> None:
        """A plain record appended while shutdown() ran: if shutdown() did not take it (and count
        it as lost), take it back and count it here; never lost silently, never counted twice."""
        with self._lock, self._done:
            try:
                self._queue.remove(record)
            except ValueError:
                return  # shutdown() took it: it was accepted, and counted as lost there
            self.counters["logs"]["dropped"]["shutdown"] += 1
            self._refused["logs"] += 1

    def _accepted(self) -> int:
        """Records accepted into the queue, ever (the logs' "queued" counter, see stats())."""
        with self._done:
            return self._finished + self._in_hand + len(self._queue)

    def _queued_bytes(self) -> int:
        return self._bytes_in - self._bytes_out

    def _start(self) -> None:
        why = _threads_stalled()
        inline = why is not None
        with self._lock:
            if self._worker is not None:
                return
            worker = _osthread.new_thread(self._run, "highlight_logging-export")
            self._worker = worker
            self._inline = inline
            if why == "master":
                import multiprocessing

                self._handoff = multiprocessing.Value("q", 0)
        if not inline:  # else never started: flush() and exit deliver (see _drain_here)
            _sigterm_rescue.start_blocked(worker)  # born with SIGTERM blocked, not only from _run on
        _ensure_exit_hook()

    # --- the worker -------------------------------------------------------------------------------

    def _run(self) -> None:
        # Both idents: the front ends read threading.get_ident(), which gevent makes a greenlet's.
        idents = {threading.get_ident(), _osthread.get_ident()}
        worker_threads.update(idents)
        if not _osthread.on_main_thread():  # never, but under patching a mistake here stops SIGTERM
            _block_signals()
        try:
            self._loop()
        except BaseException as exc:  # never let the worker die silently
            _diag.warn(f"export worker stopped by {type(exc).__name__}: {exc}", key="worker-crash")
        finally:
            worker_threads.difference_update(idents)
            with self._done:
                self._done.notify_all()

    def _loop(self) -> None:
        while True:
            if not self._stopping:
                self._wake.wait(self.settings.schedule_delay)
            self._wake.clear()
            self._drain()
            if self._stopping and not self._queue:
                return

    def _drain(self) -> None:
        """Export batches while there is a full one (everything, when someone flushes or stops)."""
        batch_size = self.settings.max_export_batch_size
        try:
            while True:
                self._step_back_during_burst()
                batch = self._take(batch_size)
                if not batch:
                    break
                try:
                    flight, count = self._export(batch)
                except BaseException:  # unforeseen: finish what is in hand, then let it show
                    count, self._held_count = len(batch) + self._held_count, 0
                    lost, self._held_spans, self._held_batches = self._held_spans, {}, 0
                    self._count_drop("spans", "encode_error", sum(map(len, lost.values())))
                    self._settle(None, count)
                    raise
                self._settle(flight, count)
                if len(self._queue) < batch_size and not self._flushers and not self._stopping:
                    break
        finally:
            try:
                self._send_held_spans()
            finally:
                self._complete_in_flight()  # before sleeping, or returning: nothing left waiting

    def _drain_here(self) -> None:
        """Export what is queued on the calling thread: no thread of ours may run here (see
        _threads_stalled), so flush() and exit deliver from the thread that calls them."""
        with self._done:
            self._flushers += 1
        try:
            if self._handoff is not None:
                self._skip_claimed()
            self._drain()
        except Exception as exc:  # never into the application
            _diag.warn(f"export failed: {type(exc).__name__}: {exc}", key="inline-crash")
        finally:
            with self._done:
                self._flushers -= 1

    def _settle(self, flight: _Send | None, count: int) -> None:
        """Batches are finished in the order taken (flush() counts them): ``count`` records are
        finished with ``flight``, or with the request in flight before, or now."""
        in_flight = self._in_flight
        if flight is not None:
            in_flight.append((flight, count))
        elif in_flight:  # nothing of its own to send (all dropped, or its spans held)
            in_flight[-1] = (in_flight[-1][0], in_flight[-1][1] + count)
        else:
            self._finish(count)

    def _send_held_spans(self) -> None:
        """Send the spans held for the next batch (there is none: the worker is about to wait)."""
        spans, count = self._held_spans, self._held_count
        self._held_spans, self._held_count, self._held_batches = {}, 0, 0
        flight = None
        try:
            flight = self._start_in_order(
                [(_transport.TRACES, "spans", payload, n) for payload, n in self._requests(spans)]
            )
        finally:
            if flight is not None or count:
                self._settle(flight, count)

    def _start_in_order(self, sends: list[tuple[str, str, bytes, int]]) -> _Send | None:
        """Start each request, first waiting for the oldest in flight as need be to keep at most
        _MAX_IN_FLIGHT on their way; all but the last enter the in-flight queue counting no
        records, and the last is returned, for the caller to attach its batch's count."""
        flight = None
        for send in sends:
            if flight is not None:  # queued before the wait below, so a retry reads it first
                self._in_flight.append((flight, 0))
            self._complete_in_flight(keep=_MAX_IN_FLIGHT - 1)
            flight = self._start_send(*send)
        return flight

    def _finish(self, count: int) -> None:
        """``count`` records taken by the worker are done with: exported, or counted as dropped."""
        with self._done:
            self._finished += count
            self._in_hand -= count
            self._done.notify_all()

    def _complete_in_flight(self, keep: int = 0) -> None:
        """Wait for the requests left in flight, oldest first (retrying them if need be), and
        finish their batches, until ``keep`` are left."""
        in_flight = self._in_flight
        while len(in_flight) > keep:
            send, count = in_flight.popleft()
            try:
                self._finish_send(send)
            finally:
                self._finish(count)

    def _step_back_during_burst(self) -> None:
        """While the application logs in a burst, leave it the GIL and export afterwards.

        Encoding and exporting need the GIL for ~4 us a record; taken in the middle of a burst, it
        is time the application's own threads wait.  So while records keep arriving faster than
        ``_BURST_RATE``, the worker sleeps in slices of ``_BURST_SLICE`` and catches up when the
        burst ends.  Bounded three ways: never once the oldest queued record is ``schedule_delay``
        old (so in a burst that never ends records still leave about a second after they were
        logged), never with a quarter of the buffer in use, never while someone waits on flush()
        or shutdown().  A steady trickle (a request's few lines) never counts as a burst.
        """
        s = self.settings
        queue = self._queue
        seen = len(queue)  # nothing leaves the queue meanwhile: its growth is the arrivals
        while not (self._flushers or self._stopping):
            if len(queue) >= s.max_queue_size // 4 or self._queued_bytes() >= s.max_queue_bytes // 4:
                return
            try:
                oldest = queue[0].observed_ns
            except IndexError:
                return  # nothing queued: nothing to hold back
            age = time.time_ns() - oldest
            if not 0 <= age < s.schedule_delay * 1e9:  # due, or the wall clock stepped back
                return
            if self._in_flight:
                # Not left waiting while the worker sleeps; that wait may be long, so look again.
                self._complete_in_flight()
                seen = len(queue)
                continue
            start = time.monotonic()
            self._pause(_BURST_SLICE)
            now = len(queue)
            # Measured over the real interval: a sleeping worker waits for the GIL to wake.
            if now - seen < max(_BURST_MIN, _BURST_RATE * (time.monotonic() - start)):
                return
            seen = now

    def _pause(self, seconds: float) -> None:
        """Sleep during a burst; flush() and shutdown() cut it short."""
        self._urgent.wait(seconds)

    def _take(self, n: int) -> list[Pending]:
        queue = self._queue
        batch: list[Pending] = []
        # A batch in hand stays within about one request's bytes (estimated), besides n records:
        # what the worker holds is outside the queue's byte bound (docs/performance.md, Memory).
        budget = self.settings.max_request_bytes
        taken = 0
        with self._done:  # so that _accepted() never sees a record in neither place
            for _ in range(min(n, len(queue))):
                try:
                    record = queue.popleft()
                except IndexError:  # shutdown() emptied it meanwhile (its deadline had passed)
                    break
                batch.append(record)
                taken += record.size
                if taken >= budget:
                    break
            self._in_hand += len(batch)
        self._bytes_out += taken
        if not queue:
            self._bytes_out = self._bytes_in  # empty: whatever a race left in the figure is gone
        return batch

    def _export(self, pending: list[Pending]) -> tuple[_Send | None, int]:
        """Convert, encode and send a batch; its last request is left in flight, and returned with
        the number of records to finish with it."""
        logs: dict[str, list[bytes]] = {}
        spans: dict[str, list[bytes]] = {}
        limit = self.settings.max_request_bytes - len(self._resource) - _encode.REQUEST_OVERHEAD
        scrubber = self._scrubber
        # Background priority while the worker keeps up: after _HOLD of converting and encoding,
        # the worker sleeps 50 us, which hands the GIL to a waiting application thread (sleep(0)
        # would not: the worker takes it straight back).  Measured at 2,000 calls/s with the
        # pure-Python path: yielding every 64 records (~0.3 ms) gave p99 310-320 us, every 16
        # (~0.1 ms) 110-190 us.  With the C path (_plain) 16 records are ~0.02 ms, and yielding
        # after each made a 20,000-record drain spend half its time asleep with no one waiting:
        # so the hand-off comes after ~0.1 ms of work, not after a count.  With half the queue in
        # use, or someone waiting on flush/shutdown, it works flat out.
        s = self.settings
        working_since = time.perf_counter()
        for start in range(0, len(pending), _CHUNK):
            if (
                start
                and time.perf_counter() - working_since >= _HOLD
                and not (self._flushers or self._stopping)
                and len(self._queue) < s.max_queue_size // 2
                and self._queued_bytes() < s.max_queue_bytes // 2
            ):
                _osthread.sleep(50e-6)
                working_since = time.perf_counter()
            part = pending[start : start + _CHUNK]
            # When nothing in the chunk can need scrubbing (checked for the chunk at once: the
            # common case), its plain records go straight to bytes (_plain, ~0.2 us each in C);
            # the others, and every record of a chunk that needs a closer look, take the general
            # path: to_record, then _encode.
            fast: list[bytes | None] | None = None
            if _plain.plain_logs is not None and (scrubber is None or scrubber.chunk_clean(part)):
                fast = _plain.plain_logs(
                    part,
                    _encode._site_cache,
                    self._levels,
                    self._room,
                    _convert.datetime_ns,
                    self._plain_shape,
                )
                scopes = {p.scope for p in part}
                if len(scopes) == 1 and None not in fast and max(map(len, fast)) <= limit:  # type: ignore[arg-type]
                    group = logs.get(part[0].scope)
                    if group is None:
                        group = logs[part[0].scope] = []
                    group += fast  # type: ignore[arg-type]  # no None in it
                    continue
            if fast is None:
                chunk = self._to_records(part)
                # Scrubbing is checked for the chunk at once; when nothing in it can need
                # scrubbing, its records are encoded as they are.
                clean = scrubber is None or scrubber.batch_clean(
                    [r.body for r in chunk], [r.attributes for r in chunk]
                )
                for record in chunk:
                    self._add(record, clean, logs, spans, limit)
                continue
            for p, log in zip(part, fast, strict=True):  # some plain, some not: in order
                if log is not None:
                    if len(log) > limit:
                        self._count_drop("logs", "too_large", 1)
                    else:
                        logs.setdefault(p.scope, []).append(log)
                    continue
                _plain.learn(p)  # a new level, so that the next of its kind is plain
                for record in self._to_records([p]):
                    clean = scrubber is None or scrubber.batch_clean([record.body], [record.attributes])
                    self._add(record, clean, logs, spans, limit)
        count = len(pending) + self._held_count
        if self._held_spans:  # earlier batches' spans first, in order
            merged = {scope: list(items) for scope, items in self._held_spans.items()}
            for scope, items in spans.items():
                merged.setdefault(scope, []).extend(items)
            spans = merged
        held: tuple[dict[str, list[bytes]], int, int] = ({}, 0, 0)
        if (
            spans
            and self._queue
            and self._held_batches < _SPAN_HOLD_BATCHES
            and sum(map(len, spans.values())) < _SPAN_HOLD
            and not self._stopping
        ):
            # More records are queued: this batch's exception spans ride with the next batch's.
            # One traces request costs as much CPU as the logs one (~0.5-1 ms, HTTP/2 and gzip),
            # and at 1 exception in 100 a 512-record batch has ~5 spans.  Its records are
            # finished once the spans are sent, so flush() still waits for them.
            held, spans, count = (spans, count, self._held_batches + 1), {}, 0
        sends = [(_transport.LOGS, "logs", payload, n) for payload, n in self._requests(logs)]
        sends += [(_transport.TRACES, "spans", payload, n) for payload, n in self._requests(spans)]
        if not sends:
            self._held_spans, self._held_count, self._held_batches = held
            return None, count
        # The previous batches' requests have had this batch's encoding time to come back: only
        # now wait for the oldest, if need be.  A batch's first requests (logs, when it has spans
        # too) count no records: its last one carries them, so the batch is finished once all of
        # its requests are.
        flight = self._start_in_order(sends)
        # Only now: an unforeseen error above leaves them as they were.
        self._held_spans, self._held_count, self._held_batches = held
        return flight, count

    def _add(
        self,
        record: Record,
        clean: bool,
        logs: dict[str, list[bytes]],
        spans: dict[str, list[bytes]],
        limit: int,
    ) -> None:
        """Encode one record through the general path into ``logs``/``spans``, or count its drop."""
        try:
            log, span = self._encode(record, clean)
        except Exception:
            self._count_drop("logs", "encode_error", self._is_log(record))
            if self._has_span(record):
                self._count_drop("spans", "encode_error", 1)
            return
        if not self._is_log(record):
            pass  # an error report (record_exception): the span only
        elif len(log) > limit:
            self._count_drop("logs", "too_large", 1)
        else:
            group = logs.get(record.scope)
            if group is None:
                group = logs[record.scope] = []
            group.append(log)
        if span is not None:
            if len(span) > limit:
                self._count_drop("spans", "too_large", 1)
            else:
                spans.setdefault(record.scope, []).append(span)

    def _to_records(self, pending: list[Pending]) -> list[Record]:
        """The converter's worker half for a batch; a record it cannot convert is counted, not lost silently."""
        settings = self.settings
        to_record = _convert.to_record  # an attribute at call time: _frontend imports this module
        records = []
        for p in pending:
            try:
                records.append(to_record(p, settings))
            except Exception:  # never expected: to_record guards user values
                self._count_drop("logs", "encode_error", self._is_log(p))
                if self._has_span(p):
                    self._count_drop("spans", "encode_error", 1)
        return records

    def _requests(self, by_scope: dict[str, list[bytes]]) -> Iterator[tuple[bytes, int]]:
        """Pack records into requests that stay under ``max_request_bytes``."""
        limit = self.settings.max_request_bytes
        base = len(self._resource) + _encode.REQUEST_OVERHEAD
        scopes = {name: self._scope(name) for name in by_scope}
        # The usual batch fits in one request: sized with C-level sums, not record by record.
        total = base + sum(
            len(scopes[name]) + _encode.REQUEST_OVERHEAD + sum(map(len, records)) + 6 * len(records)
            for name, records in by_scope.items()
        )
        if total <= limit:
            count = sum(map(len, by_scope.values()))
            if count:
                yield _encode.request(self._resource, [(scopes[n], r) for n, r in by_scope.items()]), count
            return
        groups: list[tuple[bytes, list[bytes]]] = []
        size, count = base, 0
        for name, records in by_scope.items():
            scope = scopes[name]
            scope_cost = len(scope) + _encode.REQUEST_OVERHEAD
            current: list[bytes] | None = None
            for record in records:
                cost = len(record) + 6  # its tag and length
                if count and size + cost + (scope_cost if current is None else 0) > limit:
                    yield _encode.request(self._resource, groups), count
                    groups, size, count, current = [], base, 0, None
                if current is None:
                    current = []
                    groups.append((scope, current))
                    size += scope_cost
                current.append(record)
                size += cost
                count += 1
        if count:
            yield _encode.request(self._resource, groups), count

    def _scope(self, name: str) -> bytes:
        """An InstrumentationScope; in the highlight shape its name is also an attribute, ``logger``
        (highlight.io reads scope attributes, never the name), written once per request."""
        if self.highlight:
            return _encode.scope(name, attrs={"logger": name})
        return _encode.scope(name)

    def _encode(self, record: Record, clean: bool = False) -> tuple[bytes, bytes | None]:
        """One record -> (LogRecord bytes, exception Span bytes or None).

        ``clean``: the record's body and attributes are known to need no scrubbing (the batch was
        checked at once, see :meth:`_export`); its exception's texts are scrubbed here regardless.
        """
        exc = record.exception
        attrs = record.attributes
        body = record.body
        event_attrs: Attributes = {}
        if not clean or exc is not None:  # else (the common case) the record is encoded as it is
            scrubbed: list[str] = []
            scrubber = self._scrubber
            if scrubber is not None and not clean:
                attrs, scrubbed = scrubber.scrub_attributes(attrs)
                body, found = scrubber.scrub_text(body, "body")
                if found:
                    scrubbed = scrubbed + found
            if exc is not None:
                event_attrs, found = exception_attributes(exc, self.settings, scrubber)
                scrubbed = scrubbed + found
                attrs = {**attrs, **event_attrs}
            if scrubbed:
                attrs = {**attrs, "highlight.scrubbed": list[Value](scrubbed)}
                self.scrubbed += len(scrubbed)
        severity_text = record.severity_text
        if self.highlight:
            severity_text = _highlight.severity_text(record.severity_number)
            body = _highlight.body(body)
        log = _encode.log_record(
            record.time_ns,
            record.observed_ns,
            record.severity_number,
            severity_text,
            body,
            attrs,
            record.dropped_attributes,
            record.trace_id,
            record.span_id,
            record.flags,
            record.site,
        )
        if exc is None or self.highlight:  # highlight: the log's exception.* make the one error
            return log, None
        if record.span_only:  # an error report: the span is all there is, so it carries every attribute
            span_attrs = {k: v for k, v in attrs.items() if not k.startswith("exception.")}
        else:
            span_attrs = {k: v for k, v in attrs.items() if k.startswith(_SPAN_ATTR_PREFIXES)}
        if record.site is not None:
            span_attrs = {**_encode.site_dict(record.site), **span_attrs}
        span = _encode.exception_span(
            record.trace_id,
            record.span_id,
            record.parent_span_id,
            record.flags,
            exc.type,
            record.time_ns,
            span_attrs,
            event_attrs,
            str(event_attrs.get("exception.message", exc.type)),
        )
        return log, span

    def _start_send(
        self, signal: str, counter: str, payload: bytes, count: int, deadline: float | None = None
    ) -> _Send:
        """Send one attempt of a request; :meth:`_finish_send` waits for it (and retries).

        ``deadline``: the request's, from its first attempt (default: ``export_timeout`` from now).
        The attempt counts in ``_sending`` from here until its answer is read, so that fork() never
        closes the connection under a request in flight.
        """
        s = self.settings
        transport = self._transport
        if transport is None:
            transport = self._transport = _transport.make(s)
        now = time.monotonic()
        if deadline is None:
            deadline = now + s.export_timeout
        send = _Send(signal, counter, payload, count, deadline, None)
        if self._abort.is_set() or now >= self._deadline:
            return send  # past the shutdown deadline: _finish_send counts it
        end = min(deadline, self._deadline)
        with self._send_idle:  # waits here while fork() holds it
            self._sending += 1
        try:
            send.wait = transport.start(signal, payload, min(s.request_timeout, max(end - now, 0.001)))
        except BaseException:  # transports return failures as outcomes; this is the unforeseen
            self._sent()
            raise
        return send

    def _sent(self) -> None:
        """One attempt's answer is read (or it failed): no longer in flight."""
        with self._send_idle:
            self._sending -= 1
            if not self._sending:
                self._send_idle.notify_all()

    def _finish_send(self, send: _Send) -> None:
        s = self.settings
        signal, counter, payload, count = send.signal, send.counter, send.payload, send.count
        attempt = 0
        while True:
            if send.wait is None:
                self._count_drop(counter, "shutdown", count)
                return
            outcome = self._read(send)
            self._last_error = "" if outcome.ok else outcome.detail
            if not outcome.ok and self._abort.is_set():
                self._count_drop(counter, "shutdown", count)  # cut off by the shutdown deadline
                return
            if outcome.ok:
                exported = max(count - outcome.rejected, 0)
                with self._lock:
                    if not self._gave_up:  # else shutdown() counted it as lost already
                        self.counters[counter]["exported"] += exported
                if outcome.rejected:
                    self._count_drop(counter, "rejected", min(outcome.rejected, count))
                    if not self._warned_partial:
                        self._warned_partial = True
                        _diag.warn(
                            f"the collector rejected {outcome.rejected} {counter} (partial success): "
                            f"{outcome.detail or 'no message'}"
                        )
                if attempt:
                    _diag.warn(
                        f"export recovered after {attempt} retries", key=f"recovered:{id(self)}", every=30.0
                    )
                return
            if outcome.too_large and self._send_in_halves(send, outcome.detail):
                return
            if outcome.too_large:
                self._count_drop(counter, "too_large", count)
                _diag.warn(
                    f"collector refused a request as too large: {outcome.detail}", key="too_large", every=60.0
                )
                return
            if not outcome.retryable:
                self._count_drop(counter, "non_retryable", count)
                _diag.warn(
                    f"export failed, not retryable: {outcome.detail}",
                    key=f"fail:{outcome.detail}",
                    every=60.0,
                )
                return
            # Read the answers of the requests still in flight first: reconnecting, or waiting
            # out the backoff, must not cut off a request the collector may have taken already,
            # which would then be sent twice.
            for other, _ in self._in_flight:
                if other.wait is not None and other.outcome is None:
                    other.outcome = self._read(other)
            if outcome.reconnect:
                self._transport.reconnect()
            delay = outcome.retry_after
            if delay is None:
                # Exponential backoff with full jitter, capped so that recovery after an outage is prompt.
                delay = random.uniform(0.5, 1.0) * min(_BACKOFF_CAP, _BACKOFF_BASE * (2**attempt))
            attempt += 1
            _diag.warn(
                f"export failing ({outcome.detail}); retrying, records are kept in the buffer",
                key=f"retry:{id(self)}",
                every=_DROP_WARNING_EVERY,
            )
            now = time.monotonic()
            deadline = send.deadline
            if now + delay > deadline and not self._stopping and self._has_room():
                # The collector is away but the buffer has room: keep this batch rather than lose it.
                deadline = now + delay + s.export_timeout
            if now + delay > min(deadline, self._deadline):
                reason = "shutdown" if self._stopping else "export_timeout"
                self._count_drop(counter, reason, count)
                return
            if self._abort.wait(delay):
                self._count_drop(counter, "shutdown", count)
                return
            send = self._start_send(signal, counter, payload, count, deadline)

    def _send_in_halves(self, send: _Send, detail: str) -> bool:
        """A request refused for its size goes again as two halves (each halved again as need be,
        down to a single record, which alone is dropped as too_large).  False: nothing to split."""
        halves = _encode.split_request(send.payload)
        if halves is None:
            return False
        _diag.warn(
            f"collector refused a request of {send.count} {send.counter} as too large ({detail}); "
            "sending it again in smaller parts",
            key=f"split:{id(self)}",
            every=60.0,
        )
        for payload, n in halves:
            self._finish_send(self._start_send(send.signal, send.counter, payload, n, send.deadline))
        return True

    def _read(self, send: _Send) -> _transport.Outcome:
        """The answer to ``send``'s attempt (waited for, or read ahead of its turn)."""
        outcome, send.outcome = send.outcome, None
        if outcome is not None:
            return outcome
        assert send.wait is not None
        try:
            return send.wait()
        finally:
            self._sent()

    def _has_room(self) -> bool:
        # Queued plus in the worker's hands (the batch being retried and any encoded after it).
        return len(self._queue) + self._in_hand <= self.settings.max_queue_size

    def _count_drop(self, signal: str, reason: str, count: int) -> None:
        if count <= 0:
            return
        with self._lock:
            if self._gave_up:  # shutdown() counted it as lost already
                return
            self.counters[signal]["dropped"][reason] += count
        if reason != "shutdown":
            _diag.warn(
                f"dropped {signal} ({reason}); see highlight_logging.stats()",
                key=f"drop:{id(self)}:{reason}",
                every=_DROP_WARNING_EVERY,
            )

    # --- flush and shutdown ----------------------------------------------------------------------

    def dropped_total(self) -> int:
        with self._lock:
            return sum(sum(c["dropped"].values()) for c in self.counters.values())

    def flush(self, timeout: float | None = None) -> bool:
        """Export everything accepted so far; True when it all went out within ``timeout``."""
        if self._pid != os.getpid():
            _adopt_fork(self)
        if timeout is None:
            timeout = self.settings.shutdown_timeout
        if self._inline and not self._stopped:
            self._drain_here()
        target = self._accepted()
        if self._worker is None or self._stopped:
            ok = self._finished >= target
        else:
            with self._done:
                self._flushers += 1
                self._urgent.set()
            self._wake.set()
            try:
                with self._done:
                    ok = self._done.wait_for(
                        lambda: self._finished >= target or not self._worker_alive(), timeout=max(timeout, 0)
                    )
                    ok = ok and self._finished >= target
            finally:
                with self._done:
                    self._flushers -= 1
                    if not self._flushers and not self._stopping:
                        self._urgent.clear()
        dropped = self.dropped_total()
        clean = dropped == self._drops_seen
        self._drops_seen = dropped
        return ok and clean

    def _worker_alive(self) -> bool:
        worker = self._worker
        return worker is not None and worker.is_alive()

    def shutdown(self, timeout: float | None = None) -> bool:
        """Deliver what is queued within ``timeout`` (default ``shutdown_timeout``), then stop."""
        if self._pid != os.getpid():
            _adopt_fork(self)
        if self._stopped:
            return True
        if timeout is None:
            timeout = self.settings.shutdown_timeout
        self._deadline = time.monotonic() + max(timeout, 0)
        self._stopping = True
        with self._done:
            self._urgent.set()
        self._wake.set()
        worker = self._worker
        if self._inline:
            self._drain_here()
        elif worker is not None and worker.ident != _osthread.get_ident():
            worker.join(max(self._deadline - time.monotonic(), 0))
            if worker.is_alive():
                # Deadline reached: interrupt the retry sleep and the request in flight.
                self._abort.set()
                if self._transport is not None:
                    self._transport.cancel()
                worker.join(0.5)
        # Both locks (always in this order): _done keeps a worker still running past the deadline
        # out of the queue meanwhile, and _accepted() from seeing the leftovers in neither place.
        with self._lock, self._done:
            self._stopped = True
            queue = self._queue
            leftover = []
            while True:  # popleft, not clear(): a record a racing submit() appends is taken
                try:  # here or found by it still queued (see _withdraw), never dropped unseen
                    leftover.append(queue.popleft())
                except IndexError:
                    break
            self._bytes_out += sum(r.size for r in leftover)
            self.counters["logs"]["dropped"]["shutdown"] += sum(map(self._is_log, leftover))
            self.counters["spans"]["dropped"]["shutdown"] += sum(map(self._has_span, leftover))
            self._finished += len(leftover)  # accepted, and done with: lost
            if worker is not None and worker.is_alive():
                self._give_up()
            self._done.notify_all()
        if self._transport is not None and not (worker is not None and worker.is_alive()):
            self._transport.close()
        return not leftover and self.dropped_total() == 0

    def _give_up(self) -> None:
        """The worker outlived the shutdown deadline (blocked in a transport call, say): the records
        it took from the queue and has neither exported nor counted are lost.  Counted here, once,
        as ``shutdown``, and the worker counts nothing from now on, so that no record is counted
        twice (one it still delivers later counts as lost).  Called under both locks."""
        self._gave_up = True
        accepted = {
            "logs": self._finished + self._in_hand + len(self._queue) - self._reports,
            "spans": self.counters["spans"]["queued"],
        }
        for signal, c in self.counters.items():
            settled = c["exported"] + sum(c["dropped"].values()) - self._refused[signal]
            c["dropped"]["shutdown"] += max(accepted[signal] - settled, 0)

    def summary(self) -> str | None:
        """One line naming every loss, or None when nothing was lost."""
        parts = []
        with self._lock:
            for signal, c in self.counters.items():
                lost = {r: n for r, n in c["dropped"].items() if n}
                if lost:
                    detail = ", ".join(f"{r}: {n}" for r, n in lost.items())
                    parts.append(f"{sum(lost.values())} {signal} lost ({detail})")
        if parts and self._last_error:  # e.g. the proxy that never answered, named
            parts.append(f"last export error: {self._last_error}")
        return "; ".join(parts) if parts else None


def _make_scrubber(settings: Settings) -> Scrubber | None:
    # Imported here: compiling its rules is paid by the first pipeline, not by every import.
    from highlight_logging._core import scrub as _scrub

    return _scrub.from_settings(settings)


# --- the registry: one pipeline per distinct settings ----------------------------------------------

_registry: dict[Settings, Pipeline] = {}
_registry_lock = _osthread.Lock()
_exit_hook_installed = False


def get(settings: Settings) -> Pipeline:
    pipeline = _registry.get(settings)
    if pipeline is None:
        with _registry_lock:
            pipeline = _registry.get(settings)
            if pipeline is None:
                pipeline = _registry[settings] = Pipeline(settings)
                _ensure_exit_hook()
                _hook_sigterm()
    return pipeline


def pipelines() -> list[Pipeline]:
    if _pid != os.getpid():
        _adopt_fork(None)
    with _registry_lock:
        return list(_registry.values())


def flush_all(timeout: float | None = None) -> bool:
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for pipeline in pipelines():
        left = None if deadline is None else max(deadline - time.monotonic(), 0)
        ok = pipeline.flush(left) and ok
    return ok


_shutting_down = False  # shutdown_all() is running (a SIGTERM then waits for it, see _on_sigterm)
_sigterm_deferred = False


def shutdown_all(timeout: float | None = None) -> bool:
    """Stop every pipeline within one shared deadline, flushing the app's OpenTelemetry providers
    (``_otel_flush``) in the same time; print a line if anything was lost."""
    global _shutting_down
    ps = pipelines()
    if timeout is None:
        timeout = _otel_flush.budget(p.settings for p in ps)
    deadline = time.monotonic() + timeout
    ok = True
    was, _shutting_down = _shutting_down, True
    try:
        app_flushed = _otel_flush.begin(deadline)  # the app's own OpenTelemetry providers, alongside
        for pipeline in ps:
            ok = pipeline.shutdown(max(deadline - time.monotonic(), 0)) and ok
        app_flushed()
        for pipeline in ps:
            line = pipeline.summary()
            if line:
                _diag.warn(f"at exit: {line}", key=f"summary:{id(pipeline)}")
    finally:
        _shutting_down = was
    if _sigterm_deferred and not was:
        _die_by_sigterm()
    return ok


def reset_for_tests() -> None:
    """Shut everything down quickly and forget it (test isolation)."""
    shutdown_all(timeout=1.0)
    with _registry_lock:
        _registry.clear()
    global _frontend_losses
    _frontend_losses = 0
    _diag.reset()


# Records a front end lost to an error of its own (a bug or a hostile object no guard foresaw),
# before any pipeline accepted them: counted here, since the failure may precede the pipeline.
_frontend_losses = 0
_frontend_losses_lock = threading.Lock()


def count_frontend_loss(front_end: str, exc: BaseException) -> None:
    """Count a record that ``front_end`` lost to ``exc`` and say so on stderr (once a minute)."""
    global _frontend_losses
    with _frontend_losses_lock:
        _frontend_losses += 1
    _diag.warn(
        f"{front_end} lost a record: {type(exc).__name__}; see highlight_logging.stats()",
        key=f"frontend:{front_end}",
        every=_DROP_WARNING_EVERY,
    )


def stats() -> dict[str, Any]:
    """Counters summed over every pipeline of this process."""
    total = _new_counters()
    total["logs"]["dropped"]["frontend_error"] = _frontend_losses
    total["logs"]["scrubbed"] = 0  # values scrubbed, in records and their exception spans alike
    for pipeline in pipelines():
        accepted = pipeline._accepted()
        with pipeline._lock:
            for signal, c in pipeline.counters.items():
                t = total[signal]
                t["queued"] += c["queued"]
                t["exported"] += c["exported"]
                for reason, n in c["dropped"].items():
                    t["dropped"][reason] += n
            total["logs"]["queued"] += accepted - pipeline._reports
        total["logs"]["scrubbed"] += pipeline.scrubbed
    for t in total.values():
        t["dropped_total"] = sum(t["dropped"].values())
    return total


def _ensure_exit_hook() -> None:
    global _exit_hook_installed
    if not _exit_hook_installed:
        _exit_hook_installed = True
        # Registered after logging's own hook, so it runs first: records reach the collector
        # before logging.shutdown() closes handlers.
        atexit.register(shutdown_all)
        try:
            import multiprocessing.util

            multiprocessing.util.register_after_fork(_mp_token, _mp_after_fork)
        except Exception:
            pass


_pid = os.getpid()  # the process the registry's state belongs to (see _adopt_fork)
_fork_lock = _osthread.Lock()  # taken only in a child that finds itself forked without fork hooks


def _adopt_fork(pipeline: Pipeline | None) -> None:
    """This process was forked without Python's fork hooks (uWSGI forks its workers in C):
    do what the hooks would have done, once, and leave the parent's queued records to the parent."""
    with _fork_lock:
        if _pid != os.getpid():
            _after_fork_in_child()
        if pipeline is not None and pipeline._pid != os.getpid():  # not in the registry
            pipeline._after_fork_in_child()


_not_uwsgi = False  # looked for the uwsgi module and found none


def _threads_stalled() -> str | None:
    """Why no export thread of ours may run in this process (None: it may), inside uWSGI:

    * in the master process when uWSGI forks its workers without Python's fork hooks (the
      default, unless --lazy-apps or --py-call-uwsgi-fork-hooks): a worker forked while our
      thread held the GIL would hang for good taking it (seen: a worker stuck from birth, and
      its master stuck on SIGTERM).  uWSGI runs no exit hook in its master either, so what the
      master logs (while importing the app) is handed to its workers: the first to log sends
      it (see Pipeline._claim_handoff).  "master";
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


def _after_fork_in_child() -> None:
    global _registry_lock, _pid
    try:
        _pid = os.getpid()
        _registry_lock = _osthread.Lock()
        _diag._lock = _osthread.Lock()
        worker_threads.clear()
        _transport.forked_child = True
        for pipeline in list(_registry.values()):
            pipeline._after_fork_in_child()
        _sigterm_rescue.after_fork_in_child(_on_sigterm, _rescue_sigterm)  # its own pipe and watcher
        if _registry:
            _hook_sigterm()
    finally:
        _restore_signals()  # the block _before_fork put on the thread that forked (if it ran)


def _child_exit(*_: object) -> None:
    shutdown_all()


def _hook_sigterm() -> None:
    """Deliver records on SIGTERM, which skips ``atexit``.

    While SIGTERM still has its default action (nobody else handles it), we flush for at most
    ``shutdown_timeout`` first and then die by the same signal, so exit codes and supervisors see no
    difference.  This covers ``Pool.terminate()`` (``with Pool() as p``) in forked children and
    servers such as uvicorn that restore the previous handler and re-raise SIGTERM on exit.
    ``multiprocessing`` children that end normally are covered by :func:`_mp_after_fork`.
    Only the main thread can set a handler; elsewhere this does nothing.
    """
    try:
        import signal

        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
            if _threads_stalled() is None:  # a thread of its own: not in a uWSGI master
                _sigterm_rescue.arm(_on_sigterm, _rescue_sigterm)
    except (ValueError, OSError, AttributeError):  # not the main thread, or no SIGTERM here
        pass


class _MultiprocessingHook:
    """multiprocessing clears its finalizers in a new child, then runs its after-fork hooks:
    from there we register a finalizer, which it runs before its children's ``os._exit()``."""


_mp_token = _MultiprocessingHook()


def _mp_after_fork(_: object) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(None, _child_exit, exitpriority=100)


def _on_sigterm(signum: int, frame: object) -> None:
    global _sigterm_deferred
    _sigterm_rescue.started = True  # the watcher stands down
    if _shutting_down:
        # The main thread was already delivering (e.g. a multiprocessing child exiting normally
        # when Pool.terminate() signalled it): let it finish, then die by SIGTERM.
        _sigterm_deferred = True
        return
    # A signal handler runs on the main thread between two bytecodes, maybe while that thread
    # holds one of our locks: flush from a fresh thread and wait a bounded time, so the handler
    # can never deadlock on what it interrupted.
    try:
        _flush_for_sigterm()
    finally:
        _die_by_sigterm()


def _flush_for_sigterm() -> None:
    budget = _otel_flush.budget(p.settings for p in list(_registry.values()))
    # A real OS thread (_osthread) also under gevent: a greenlet could not run from here.
    flusher = _osthread.new_thread(lambda: shutdown_all(budget), "highlight_logging-sigterm")
    _sigterm_rescue.start_blocked(flusher)
    flusher.join(budget + 0.5)
    if flusher.is_alive():
        queued = sum(len(p._queue) for p in list(_registry.values()))
        _diag.warn(f"at exit: SIGTERM: gave up delivering after {budget:g} s; {queued} log records lost")


def _rescue_sigterm() -> None:
    """On the rescue's watcher thread: a SIGTERM came and ``_on_sigterm`` did not start (the main
    thread asleep in C, see ``_sigterm_rescue``): deliver as ``_on_sigterm`` would; the watcher then
    dies by SIGTERM.  A main thread already in shutdown_all() (a pool worker exiting normally) is
    given its time first."""
    if _shutting_down:
        budget = _otel_flush.budget(p.settings for p in list(_registry.values()))
        end = time.monotonic() + budget + 0.5
        while _shutting_down and time.monotonic() < end:
            _osthread.sleep(0.01)
        return
    _flush_for_sigterm()


def _block_signals() -> Any:
    """Keep SIGTERM and SIGINT off the calling (export worker) thread; returns the mask before
    (None where there is no pthread_sigmask).

    Python runs its signal handlers on the main thread, but the kernel may hand a process's signal
    to any thread that does not block it.  Handed to this thread, a SIGTERM would leave a main
    thread blocked in C (a multiprocessing pool worker waiting on its queue lock, which
    ``Pool.terminate()`` keeps held) sleeping, the handler never run and the process alive.
    """
    try:
        import signal

        return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    except (AttributeError, ValueError, OSError):  # no pthread_sigmask (Windows)
        return None


_fork_mask: Any = None  # the forking thread's signal mask, while a fork() is under way


def _set_signal_mask(mask: Any) -> None:
    """Put back a mask that _block_signals() returned (None: nothing to put back)."""
    if mask is not None:
        import signal

        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _restore_signals() -> None:
    """Undo the block that _before_fork put on the forking thread."""
    global _fork_mask
    mask, _fork_mask = _fork_mask, None
    _set_signal_mask(mask)


def _die_by_sigterm() -> None:
    import signal

    if not _osthread.on_main_thread():  # shutdown_all() ending a deferred SIGTERM on a flusher thread
        _sigterm_rescue.die()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


_FORK_WAIT = 1.0  # longest a fork() waits for the exports in flight


def _before_fork() -> None:
    global _fork_mask
    # Threads that C libraries start in the child from their own fork handlers (grpcio's timer
    # thread, with its fork support on) inherit the forking thread's mask: blocked for the
    # fork, they never take a SIGTERM meant for the child's main thread (seen: a pool worker
    # that Pool.terminate() signalled, asleep for good on its queue lock).
    _fork_mask = _block_signals()
    # Without gRPC's fork support a child cannot use gRPC that its parent had initialised; with
    # no channel open at fork time the child starts gRPC afresh. The parent reopens lazily.
    # Holding each pipeline's _send_idle (once nothing is in flight) keeps its worker from
    # starting a request, and reopening a channel, mid-fork.
    deadline = time.monotonic() + _FORK_WAIT
    for pipeline in list(_registry.values()):
        idle = pipeline._send_idle
        if not idle.acquire(timeout=max(deadline - time.monotonic(), 0)):
            continue
        if idle.wait_for(lambda p=pipeline: p._sending == 0, max(deadline - time.monotonic(), 0)):  # type: ignore[misc]
            pipeline._fork_held = True
            transport = pipeline._transport
            if transport is not None:
                transport.close()
        else:
            idle.release()


def _after_fork_in_parent() -> None:
    _restore_signals()
    for pipeline in list(_registry.values()):
        if pipeline._fork_held:
            pipeline._fork_held = False
            pipeline._send_idle.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
    )
