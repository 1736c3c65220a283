"""Requests on their way: at most :data:`MAX_IN_FLIGHT` at once, answers read and batches
finished in the order sent, each answer handed to the pure :class:`~.retry.RetryPolicy`."""

from __future__ import annotations

import collections
import random
import time
from collections.abc import Callable
from typing import Protocol

from highlight_logging import _transport
from highlight_logging._core import diag as _diag
from highlight_logging._core import osthread as _osthread
from highlight_logging._core.settings import Settings
from highlight_logging._export import encode as _encode
from highlight_logging._export.counters import DROP_WARNING_EVERY
from highlight_logging._export.retry import Action, Decision, RetryPolicy
from highlight_logging._transport import Outcome, Transport

# Requests on their way at once: one at a time, delivery over a WAN is capped at one batch a
# round trip (docs/performance.md, Requests in flight).
MAX_IN_FLIGHT = 4


class Host(Protocol):
    """The pipeline, as the sender sees it: its settings, its shutdown, its counts."""

    settings: Settings

    @property
    def stopping(self) -> bool: ...
    @property
    def shutdown_deadline(self) -> float: ...
    def has_room(self) -> bool: ...
    def count_exported(self, signal: str, count: int) -> None: ...
    def count_drop(self, signal: str, reason: str, count: int) -> None: ...
    def finish(self, count: int) -> None: ...


class Send:
    """One request on its way: what :meth:`Sender.finish_send` needs to wait for or retry it."""

    __slots__ = ("count", "counter", "deadline", "outcome", "payload", "signal", "wait")

    def __init__(
        self,
        signal: str,
        counter: str,
        payload: bytes,
        count: int,
        deadline: float,
        wait: Callable[[], Outcome] | None,
    ) -> None:
        self.signal, self.counter, self.payload, self.count = signal, counter, payload, count
        self.deadline = deadline  # export_timeout from the first attempt
        self.wait = wait  # the first attempt's answer; None: not started (past the shutdown deadline)
        self.outcome: Outcome | None = None  # the answer, once read ahead of its turn


class Sender:
    """The transport, the requests in flight and their retries, for one pipeline (the worker's
    thread only, but for fork(), which waits on ``send_idle`` until nothing is in flight)."""

    def __init__(self, host: Host, abort: _osthread.Event) -> None:
        self.host = host
        self.settings = host.settings
        self.policy = RetryPolicy(host.settings.export_timeout)
        self.abort = abort  # set at the shutdown deadline: interrupts retry sleeps
        self.transport: Transport | None = None
        # Attempts sent and not yet read; fork() waits (holding send_idle) until there are none.
        self.sending = 0
        self.send_idle = _osthread.Condition()
        self.fork_held = False
        # The last request of each of the latest batches still in flight, oldest first, with the
        # batch's record count (at most MAX_IN_FLIGHT).
        self.in_flight: collections.deque[tuple[Send, int]] = collections.deque()
        self.warned_partial = False
        self.last_error = ""  # the latest failed attempt's detail, for the summary at exit

    # --- the worker's side ------------------------------------------------------------------------

    def settle(self, flight: Send | None, count: int) -> None:
        """Batches are finished in the order taken (flush() counts them): ``count`` records are
        finished with ``flight``, or with the request in flight before, or now."""
        in_flight = self.in_flight
        if flight is not None:
            in_flight.append((flight, count))
        elif in_flight:  # nothing of its own to send (all dropped, or its spans held)
            in_flight[-1] = (in_flight[-1][0], in_flight[-1][1] + count)
        else:
            self.host.finish(count)

    def start_in_order(self, sends: list[tuple[str, str, bytes, int]]) -> Send | None:
        """Start each request, first waiting for the oldest in flight as need be to keep at most
        MAX_IN_FLIGHT on their way; all but the last enter the in-flight queue counting no
        records, and the last is returned, for the caller to attach its batch's count."""
        flight = None
        for send in sends:
            if flight is not None:  # queued before the wait below, so a retry reads it first
                self.in_flight.append((flight, 0))
            self.complete_in_flight(keep=MAX_IN_FLIGHT - 1)
            flight = self.start_send(*send)
        return flight

    def complete_in_flight(self, keep: int = 0) -> None:
        """Wait for the requests left in flight, oldest first (retrying them if need be), and
        finish their batches, until ``keep`` are left."""
        in_flight = self.in_flight
        while len(in_flight) > keep:
            send, count = in_flight.popleft()
            try:
                self.finish_send(send)
            finally:
                self.host.finish(count)

    def start_send(
        self, signal: str, counter: str, payload: bytes, count: int, deadline: float | None = None
    ) -> Send:
        """Send one attempt of a request; :meth:`finish_send` waits for it (and retries).

        ``deadline``: the request's, from its first attempt (default: ``export_timeout`` from now).
        The attempt counts in ``sending`` from here until its answer is read, so that fork() never
        closes the connection under a request in flight.
        """
        s = self.settings
        transport = self.transport
        if transport is None:
            transport = self.transport = _transport.make(s)
        now = time.monotonic()
        if deadline is None:
            deadline = now + s.export_timeout
        send = Send(signal, counter, payload, count, deadline, None)
        shutdown_deadline = self.host.shutdown_deadline
        if self.abort.is_set() or now >= shutdown_deadline:
            return send  # past the shutdown deadline: finish_send counts it
        end = min(deadline, shutdown_deadline)
        with self.send_idle:  # waits here while fork() holds it
            self.sending += 1
        try:
            send.wait = transport.start(signal, payload, min(s.request_timeout, max(end - now, 0.001)))
        except BaseException:  # transports return failures as outcomes; this is the unforeseen
            self._sent()
            raise
        return send

    def _sent(self) -> None:
        """One attempt's answer is read (or it failed): no longer in flight."""
        with self.send_idle:
            self.sending -= 1
            if not self.sending:
                self.send_idle.notify_all()

    def finish_send(self, send: Send) -> None:
        """Wait for ``send``'s answer and do what the retry policy says, until it is done with."""
        host = self.host
        signal, counter, payload, count = send.signal, send.counter, send.payload, send.count
        attempt = 0
        while True:
            if send.wait is None:
                host.count_drop(counter, "shutdown", count)
                return
            outcome = self._read(send)
            self.last_error = "" if outcome.ok else outcome.detail
            jitter = random.uniform(0.5, 1.0)
            decision = self._decide(outcome, send, attempt, jitter)
            action = decision.action
            if action is Action.DONE:
                host.count_exported(counter, decision.exported)
                if decision.rejected:
                    host.count_drop(counter, "rejected", decision.rejected)
                    if not self.warned_partial:
                        self.warned_partial = True
                        _diag.warn(
                            f"the collector rejected {outcome.rejected} {counter} (partial success): "
                            f"{outcome.detail or 'no message'}"
                        )
                if attempt:
                    _diag.warn(
                        f"export recovered after {attempt} retries", key=f"recovered:{id(host)}", every=30.0
                    )
                return
            if action is Action.SPLIT and self._send_in_halves(send, outcome.detail):
                return
            if action is Action.SPLIT or decision.reason == "too_large":
                host.count_drop(counter, "too_large", count)
                _diag.warn(
                    f"collector refused a request as too large: {outcome.detail}", key="too_large", every=60.0
                )
                return
            if decision.reason == "non_retryable":
                host.count_drop(counter, "non_retryable", count)
                _diag.warn(
                    f"export failed, not retryable: {outcome.detail}",
                    key=f"fail:{outcome.detail}",
                    every=60.0,
                )
                return
            if decision.retried:
                # Read the answers of the requests still in flight first: reconnecting, or waiting
                # out the backoff, must not cut off a request the collector may have taken already,
                # which would then be sent twice.
                for other, _ in self.in_flight:
                    if other.wait is not None and other.outcome is None:
                        other.outcome = self._read(other)
                if decision.reconnect and self.transport is not None:
                    self.transport.reconnect()
                _diag.warn(
                    f"export failing ({outcome.detail}); retrying, records are kept in the buffer",
                    key=f"retry:{id(host)}",
                    every=DROP_WARNING_EVERY,
                )
                # Those answers may have taken a while: decide again from now (the same draw).
                decision = self._decide(outcome, send, attempt, jitter)
                action = decision.action
                attempt += 1
            if action is Action.DROP:
                host.count_drop(counter, decision.reason, count)
                return
            if self.abort.wait(decision.delay):
                host.count_drop(counter, "shutdown", count)
                return
            send = self.start_send(signal, counter, payload, count, decision.deadline)

    def _decide(self, outcome: Outcome, send: Send, attempt: int, jitter: float) -> Decision:
        host = self.host
        return self.policy.decide(
            outcome,
            count=send.count,
            attempt=attempt,
            now=time.monotonic(),
            deadline=send.deadline,
            shutdown_deadline=host.shutdown_deadline,
            stopping=host.stopping,
            aborted=self.abort.is_set(),
            has_room=host.has_room(),
            jitter=jitter,
        )

    def _send_in_halves(self, send: Send, detail: str) -> bool:
        """A request refused for its size goes again as two halves (each halved again as need be,
        down to a single record, which alone is dropped as too_large).  False: nothing to split."""
        halves = _encode.split_request(send.payload)
        if halves is None:
            return False
        _diag.warn(
            f"collector refused a request of {send.count} {send.counter} as too large ({detail}); "
            "sending it again in smaller parts",
            key=f"split:{id(self.host)}",
            every=60.0,
        )
        for payload, n in halves:
            self.finish_send(self.start_send(send.signal, send.counter, payload, n, send.deadline))
        return True

    def _read(self, send: Send) -> Outcome:
        """The answer to ``send``'s attempt (waited for, or read ahead of its turn)."""
        outcome, send.outcome = send.outcome, None
        if outcome is not None:
            return outcome
        assert send.wait is not None
        try:
            return send.wait()
        finally:
            self._sent()

    # --- shutdown and fork ------------------------------------------------------------------------

    def cancel(self) -> None:
        """Interrupt the request in flight (the shutdown deadline passed)."""
        if self.transport is not None:
            self.transport.cancel()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def hold_for_fork(self, deadline: float) -> None:
        """Before fork(): once nothing is in flight (waiting until ``deadline``), keep the worker
        from starting a request, and close the connection, until :meth:`release_after_fork`.
        Without gRPC's fork support a child cannot use the gRPC its parent initialised; with no
        channel open at fork time it starts afresh, and the parent reopens lazily."""
        idle = self.send_idle
        if not idle.acquire(timeout=max(deadline - time.monotonic(), 0)):
            return
        if idle.wait_for(lambda: self.sending == 0, max(deadline - time.monotonic(), 0)):
            self.fork_held = True
            self.close()
        else:
            idle.release()

    def release_after_fork(self) -> None:
        """After fork(), in the parent: the worker may send again."""
        if self.fork_held:
            self.fork_held = False
            self.send_idle.release()
