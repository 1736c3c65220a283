"""The one export pipeline per distinct settings: bounded queue, one worker, batches, retries.

Modelled on opentelemetry-sdk's ``_shared_internal.BatchProcessor`` (bounded deque, one worker,
fork hooks, a deadline on shutdown), with what it lacks for a logging bridge:

* the queue is bounded by records *and* bytes, and a full queue drops the *incoming* record, so the
  first records of an incident survive; every drop is counted by reason (``counters``);
* logs and their exception spans travel together, each record encoded on the worker straight to
  protobuf bytes (``batch``, ``prepare``), with requests split under the collector's 4 MiB limit;
* retries follow the OTLP specification (``retry``); while the collector is unreachable the worker
  keeps the batch in hand as long as the buffer has room, so an outage loses only what overflows it;
* every wait is bounded and interruptible, so exit takes at most ``shutdown_timeout``;
* after ``fork()`` the child starts with an empty queue, a new worker and a new channel;
* the application comes first: a plain record is enqueued without a lock, the record itself is
  built on the worker (``_core.convert.to_record``), and the worker steps back during a logging
  burst and otherwise hands the GIL back (``priority``);
* requests stay in flight while the worker encodes the next batch (``sender``).

Nothing here logs through ``logging``: diagnostics go to stderr through ``_core.diag``.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable

from highlight_logging._core import diag as _diag
from highlight_logging._core import native as _native
from highlight_logging._core import osthread as _osthread
from highlight_logging._core.record import Pending, Record
from highlight_logging._core.settings import Settings
from highlight_logging._export import counters as _counters
from highlight_logging._export import sigterm as _sigterm_rescue
from highlight_logging._export import threads
from highlight_logging._export.batch import Batcher
from highlight_logging._export.prepare import RecordEncoder
from highlight_logging._export.priority import Priority
from highlight_logging._export.sender import Sender
from highlight_logging._transport import Transport

#: What a forked child reads differently from its parent, checked on every record: the C module's
#: count of forks (pthread_atfork counts uWSGI's C forks too), else the pid, a system call each
#: time (docs/performance.md, "The structlog regression, bisected").
fork_mark: Callable[[], int] = getattr(_native.speedups, "forks", None) or os.getpid


class Pipeline:
    """Queue + worker + transport for one :class:`Settings`.

    ``on_fork``: called by a pipeline that finds itself in a process forked without Python's fork
    hooks (uWSGI), to do what the hooks would have (the registry passes ``process.adopt_fork``);
    by default the pipeline adopts the fork alone.
    """

    def __init__(self, settings: Settings, on_fork: Callable[[Pipeline], None] | None = None) -> None:
        self.settings = settings
        self._on_fork = on_fork
        # What submit() reads on every call, as plain attributes.
        self._max_records = settings.max_queue_size
        self._max_bytes = settings.max_queue_bytes
        self._batch_size = settings.max_export_batch_size
        # The highlight shape (_core.highlight): exceptions travel on their log records only, so every
        # record is one log and none is a span.
        self.highlight = settings.backend == "highlight"
        self._encoder = RecordEncoder(settings)  # its scrubber is built once, kept across a fork
        self._reset()

    # --- state that a forked child must rebuild ---------------------------------------------------

    def _reset(self) -> None:
        # Counters and drops; not taken by submit() for a plain record.  Reentrant: a SIGTERM flush
        # in a forked child may interrupt submit() on the same thread.
        # Real OS-thread primitives (_osthread), also under gevent/eventlet monkey-patching.
        self._lock = _osthread.RLock()
        # The process this state belongs to: a server that forks without running Python's fork
        # hooks (uWSGI) leaves a child with it, which submit() notices (see adopt_fork).
        self._pid = os.getpid()
        self._fork_mark = fork_mark()
        self._queue: collections.deque[Pending] = collections.deque()
        # Queued bytes = _bytes_in - _bytes_out.  Producers add to _bytes_in without a lock, so the
        # figure is exact only as long as no two of them race on it (CPython does not switch
        # threads inside that ``+=``); the worker resets it whenever it empties the queue.
        self._bytes_in = 0
        self._bytes_out = 0
        self._wake = _osthread.Event()
        # Set while a flush() or shutdown waits (under _done, with _flushers): cuts the worker's
        # burst pause short, so a drain starts at once instead of after up to a burst slice.
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
        self._handoff: threads.Handoff | None = None  # in a uWSGI master (see threads.threads_stalled)
        self._stopping = False
        self._stopped = False
        self._deadline = float("inf")  # the shutdown deadline, once shutdown() starts
        self._ledger = _counters.Ledger(self._lock, self)
        self.counters = self._ledger.counters
        self._encoder.renew()  # a new resource: process.pid changed
        self._sender = Sender(self, self._abort)
        self._priority = Priority(self, self._queue, self._sender, self._urgent.wait)
        self._batch = Batcher(self, self._encoder, self._sender, self._priority)

    def adopt_fork(self) -> None:
        """This pipeline's process was forked without Python's fork hooks (uWSGI): what
        :meth:`after_fork_in_child` does, once, through the registry's hook when there is one."""
        if self._pid == os.getpid():  # the mark moved, not the process: nothing to adopt
            self._fork_mark = fork_mark()
        elif self._on_fork is not None:
            self._on_fork(self)
        else:
            self.after_fork_in_child()

    def before_fork(self, deadline: float) -> None:
        """os.fork() is about to run: hold the sender idle (waiting until ``deadline`` for the
        requests in flight) and close the connection, so the child starts its own afresh."""
        self._sender.hold_for_fork(deadline)

    def after_fork_in_parent(self) -> None:
        self._sender.release_after_fork()

    def after_fork_in_child(self) -> None:
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
        return [] if self._handoff is None else self._handoff.claim(list(self._queue))

    def _skip_claimed(self, handoff: threads.Handoff) -> None:
        """In a uWSGI master about to send its queue: what its workers claimed was sent by them."""
        with handoff.lock(), self._done:
            gone = handoff.skip_claimed(self._queue)
            self._bytes_out += sum(r.size for r in gone)
            self._finished += len(gone)  # accepted, and done with (sent by a worker)

    # --- what the sender, the batcher and the priority read (sender.Host, priority.Host) -----------

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def hurried(self) -> bool:
        """Someone waits on flush() or shutdown(): the worker works flat out."""
        return self._flushers > 0 or self._stopping

    @property
    def queued(self) -> int:
        """Records waiting in the queue (not those the worker holds)."""
        return len(self._queue)

    @property
    def shutdown_deadline(self) -> float:
        return self._deadline

    @property
    def scrubbed(self) -> int:
        """Values scrubbed, in records and their exception spans alike."""
        return self._encoder.scrubbed

    @property
    def _transport(self) -> Transport | None:
        return self._sender.transport

    @_transport.setter
    def _transport(self, transport: Transport | None) -> None:
        self._sender.transport = transport

    # --- the caller's side ------------------------------------------------------------------------

    def submit(self, record: Pending) -> None:
        """Enqueue; never blocks, never raises.

        No lock for a plain record: ``deque.append`` is atomic, and with a lock here threads
        logging at once wait on each other (a thread preempted while holding it makes the others
        sleep on it; docs/performance.md).  The bounds may be overshot by one record per racing thread.
        """
        if self._fork_mark != fork_mark():  # forked without fork hooks (uWSGI)
            self.adopt_fork()
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

    def is_log(self, record: Pending | Record) -> int:
        """1 when ``record`` is sent as a log record (all of them in the highlight shape)."""
        return 1 if self.highlight or not record.span_only else 0

    def has_span(self, record: Pending | Record) -> int:
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
            self._ledger.refuse(self.is_log(record), self.has_span(record), reason)
        if reason == "queue_full":
            _counters.warn_queue_full(self)

    def _withdraw(self, record: Pending) -> None:
        """A plain record appended while shutdown() ran: if shutdown() did not take it (and count
        it as lost), take it back and count it here; never lost silently, never counted twice."""
        with self._lock, self._done:
            try:
                self._queue.remove(record)
            except ValueError:
                return  # shutdown() took it: it was accepted, and counted as lost there
            self._ledger.refuse(1, 0, "shutdown")

    def _accepted(self) -> int:
        """Records accepted into the queue, ever (the logs' "queued" counter, see stats())."""
        with self._done:
            return self._finished + self._in_hand + len(self._queue)

    @property
    def queued_bytes(self) -> int:
        return self._bytes_in - self._bytes_out

    def _start(self) -> None:
        why = threads.threads_stalled()
        inline = why is not None
        with self._lock:
            if self._worker is not None:
                return
            worker = _osthread.new_thread(self._run, "highlight_logging-export")
            self._worker = worker
            self._inline = inline
            if why == "master":
                self._handoff = threads.Handoff()
        if not inline:  # else never started: flush() and exit deliver (see _drain_here)
            _sigterm_rescue.start_blocked(worker)  # born with SIGTERM blocked, not only from _run on

    # --- the worker -------------------------------------------------------------------------------

    def _run(self) -> None:
        # Both idents: the front ends read threading.get_ident(), which gevent makes a greenlet's.
        idents = {threading.get_ident(), _osthread.get_ident()}
        threads.worker_threads.update(idents)
        if not _osthread.on_main_thread():  # never, but under patching a mistake here stops SIGTERM
            threads.block_signals()
        try:
            self._loop()
        except BaseException as exc:  # never let the worker die silently
            _diag.warn(f"export worker stopped by {type(exc).__name__}: {exc}", key="worker-crash")
        finally:
            threads.worker_threads.difference_update(idents)
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
        batcher, sender = self._batch, self._sender
        try:
            while True:
                self._priority.step_back_during_burst()
                batch = self._take(batch_size)
                if not batch:
                    break
                try:
                    flight, count = batcher.export(batch)
                except BaseException:  # unforeseen: finish what is in hand, then let it show
                    sender.settle(None, len(batch) + batcher.drop_held())
                    raise
                sender.settle(flight, count)
                if len(self._queue) < batch_size and not self._flushers and not self._stopping:
                    break
        finally:
            try:
                batcher.send_held_spans()
            finally:
                sender.complete_in_flight()  # before sleeping, or returning: nothing left waiting

    def _drain_here(self) -> None:
        """Export what is queued on the calling thread: no thread of ours may run here (see
        threads.threads_stalled), so flush() and exit deliver from the thread that calls them."""
        with self._done:
            self._flushers += 1
        try:
            if self._handoff is not None:
                self._skip_claimed(self._handoff)
            self._drain()
        except Exception as exc:  # never into the application
            _diag.warn(f"export failed: {type(exc).__name__}: {exc}", key="inline-crash")
        finally:
            with self._done:
                self._flushers -= 1

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

    def finish(self, count: int) -> None:
        """``count`` records taken by the worker are done with: exported, or counted as dropped."""
        with self._done:
            self._finished += count
            self._in_hand -= count
            self._done.notify_all()

    def has_room(self) -> bool:
        # Queued plus in the worker's hands (the batch being retried and any encoded after it).
        return len(self._queue) + self._in_hand <= self.settings.max_queue_size

    def count_exported(self, signal: str, count: int) -> None:
        self._ledger.exported(signal, count)

    def count_drop(self, signal: str, reason: str, count: int) -> None:
        self._ledger.drop(signal, reason, count)

    # --- flush and shutdown ----------------------------------------------------------------------

    def dropped_total(self) -> int:
        return self._ledger.dropped_total()

    def flush(self, timeout: float | None = None) -> bool:
        """Export everything accepted so far; True when it all went out within ``timeout``."""
        if self._pid != os.getpid():
            self.adopt_fork()
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
            self.adopt_fork()
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
                self._sender.cancel()
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
            self.counters["logs"]["dropped"]["shutdown"] += sum(map(self.is_log, leftover))
            self.counters["spans"]["dropped"]["shutdown"] += sum(map(self.has_span, leftover))
            self._finished += len(leftover)  # accepted, and done with: lost
            if worker is not None and worker.is_alive():  # what it holds is lost, counted once
                self._ledger.give_up(self._finished + self._in_hand + len(self._queue) - self._reports)
            self._done.notify_all()
        if not (worker is not None and worker.is_alive()):
            self._sender.close()
        return not leftover and self.dropped_total() == 0

    def add_counts(self, total: _counters.Counters) -> None:
        """Add this pipeline's counters to ``total`` (see ``process.stats``)."""
        accepted = self._accepted()
        with self._lock:
            _counters.add_into(total, self.counters)
            total["logs"]["queued"] += accepted - self._reports
        total["logs"]["scrubbed"] += self.scrubbed

    def summary(self) -> str | None:
        """One line naming every loss, or None when nothing was lost."""
        return self._ledger.summary(self._sender.last_error)
