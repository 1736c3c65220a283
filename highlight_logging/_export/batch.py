"""A batch taken from the queue, made requests: each chunk dispatched to the fast path (plain
records straight to bytes, ``fastpath``) or the general one (``to_record``, then
:class:`~.prepare.RecordEncoder`), exception spans held over for the next batch, records packed
into requests under ``max_request_bytes``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from highlight_logging import _transport
from highlight_logging._core import convert as _convert
from highlight_logging._core.record import Pending, Record
from highlight_logging._export import encode as _encode
from highlight_logging._export import fastpath as _plain
from highlight_logging._export.prepare import RecordEncoder
from highlight_logging._export.priority import HandOff, Priority
from highlight_logging._export.sender import Send, Sender

if TYPE_CHECKING:
    from highlight_logging._export.pipeline import Pipeline

CHUNK = 32  # records converted and encoded at once (scrub-checked together)
SPAN_HOLD = 256  # exception spans held for the next batch's traces request at most
SPAN_HOLD_BATCHES = 8  # ... and batches they are held over, so that a flush() under steady logging ends
RECORD_OVERHEAD = 6  # bytes around a record in a request: its tag and length


def pack_requests(
    by_scope: dict[str, list[bytes]], resource: bytes, scope: Callable[[str], bytes], limit: int
) -> Iterator[tuple[bytes, int]]:
    """Pack encoded records, grouped by scope name, into requests of at most ``limit`` bytes
    (a record too large alone still goes in a request of its own), in order; each with its count."""
    base = len(resource) + _encode.REQUEST_OVERHEAD
    scopes = {name: scope(name) for name in by_scope}
    # The usual batch fits in one request: sized with C-level sums, not record by record.
    total = base + sum(
        len(scopes[name]) + _encode.REQUEST_OVERHEAD + sum(map(len, records)) + RECORD_OVERHEAD * len(records)
        for name, records in by_scope.items()
    )
    if total <= limit:
        count = sum(map(len, by_scope.values()))
        if count:
            yield _encode.request(resource, [(scopes[n], r) for n, r in by_scope.items()]), count
        return
    groups: list[tuple[bytes, list[bytes]]] = []
    size, count = base, 0
    for name, records in by_scope.items():
        scope_bytes = scopes[name]
        scope_cost = len(scope_bytes) + _encode.REQUEST_OVERHEAD
        current: list[bytes] | None = None
        for record in records:
            cost = len(record) + RECORD_OVERHEAD
            if count and size + cost + (scope_cost if current is None else 0) > limit:
                yield _encode.request(resource, groups), count
                groups, size, count, current = [], base, 0, None
            if current is None:
                current = []
                groups.append((scope_bytes, current))
                size += scope_cost
            current.append(record)
            size += cost
            count += 1
    if count:
        yield _encode.request(resource, groups), count


class SpanHold:
    """Exception spans of earlier batches that ride with a later batch's traces request, and the
    records of those batches, finished once the spans are sent (so flush() still waits for them).

    One traces request costs as much CPU as a logs one, and a batch has few spans: while more
    records are queued, a batch's spans wait for the next batch's, at most ``SPAN_HOLD`` spans over
    ``SPAN_HOLD_BATCHES`` batches."""

    __slots__ = ("batches", "count", "spans")

    def __init__(self) -> None:
        self.spans: dict[str, list[bytes]] = {}
        self.count = 0  # records of the batches whose spans are held
        self.batches = 0  # batches held over so far

    def merged(self, spans: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
        """The held spans first, then ``spans``, by scope (a new dict; nothing is taken)."""
        if not self.spans:
            return spans
        merged = {scope: list(items) for scope, items in self.spans.items()}
        for scope, items in spans.items():
            merged.setdefault(scope, []).extend(items)
        return merged

    def may_hold(self, spans: dict[str, list[bytes]], more_queued: bool, stopping: bool) -> bool:
        return bool(
            spans
            and more_queued
            and self.batches < SPAN_HOLD_BATCHES
            and sum(map(len, spans.values())) < SPAN_HOLD
            and not stopping
        )

    def take(self) -> tuple[dict[str, list[bytes]], int]:
        """Release what is held: (spans, records to finish with them)."""
        spans, count = self.spans, self.count
        self.spans, self.count, self.batches = {}, 0, 0
        return spans, count


class Batcher:
    """Turns the worker's batches into requests and starts them (one per pipeline, worker only)."""

    def __init__(self, p: Pipeline, encoder: RecordEncoder, sender: Sender, priority: Priority) -> None:
        self.p = p
        self.sender = sender
        self.priority = priority
        self.settings = p.settings
        self.encoder = encoder
        self.hold = SpanHold()
        # What the fast path needs, decided once.  The highlight shape: records that it would
        # change take the general path.
        self._room = p.settings.attribute_count_limit - _convert.RESERVED_SLOTS  # see to_record
        self._levels = _plain.highlight_levels if encoder.highlight else _plain.levels
        self._plain_shape = _plain.HIGHLIGHT_SHAPE if encoder.highlight else None

    def requests(self, by_scope: dict[str, list[bytes]]) -> Iterator[tuple[bytes, int]]:
        """Pack records into requests that stay under ``max_request_bytes``."""
        encoder = self.encoder
        return pack_requests(by_scope, encoder.resource, encoder.scope, self.settings.max_request_bytes)

    def export(self, pending: list[Pending]) -> tuple[Send | None, int]:
        """Convert, encode and send a batch; its last request is left in flight, and returned with
        the number of records to finish with it."""
        p = self.p
        logs: dict[str, list[bytes]] = {}
        spans: dict[str, list[bytes]] = {}
        limit = self.settings.max_request_bytes - len(self.encoder.resource) - _encode.REQUEST_OVERHEAD
        scrubber = self.encoder.scrubber
        hand_off = HandOff(self.priority)
        for start in range(0, len(pending), CHUNK):
            if start:
                hand_off.between_chunks()
            part = pending[start : start + CHUNK]
            # When nothing in the chunk can need scrubbing (checked for the chunk at once: the
            # common case), its plain records go straight to bytes (fastpath); the others, and every
            # record of a chunk that needs a closer look, take the general path.
            fast: list[bytes | None] | None = None
            if _plain.plain_logs is not None and (scrubber is None or scrubber.chunk_clean(part)):
                fast = _plain.plain_logs(
                    part,
                    _encode.site_cache,
                    self._levels,
                    self._room,
                    _convert.datetime_ns,  # an attribute at call time: tests stand in for it
                    self._plain_shape,
                )
                scopes = {r.scope for r in part}
                if len(scopes) == 1 and None not in fast and max(map(len, fast)) <= limit:  # type: ignore[arg-type]
                    group = logs.get(part[0].scope)
                    if group is None:
                        group = logs[part[0].scope] = []
                    group += fast  # type: ignore[arg-type]  # no None in it
                    continue
            if fast is None:
                chunk = self.to_records(part)
                # Scrubbing is checked for the chunk at once; when nothing in it can need
                # scrubbing, its records are encoded as they are.
                clean = scrubber is None or scrubber.batch_clean(
                    [r.body for r in chunk], [r.attributes for r in chunk]
                )
                for record in chunk:
                    self.add(record, clean, logs, spans, limit)
                continue
            for r, log in zip(part, fast, strict=True):  # some plain, some not: in order
                if log is not None:
                    if len(log) > limit:
                        p.count_drop("logs", "too_large", 1)
                    else:
                        logs.setdefault(r.scope, []).append(log)
                    continue
                _plain.learn(r)  # a new level, so that the next of its kind is plain
                for record in self.to_records([r]):
                    clean = scrubber is None or scrubber.batch_clean([record.body], [record.attributes])
                    self.add(record, clean, logs, spans, limit)
        hold = self.hold
        count = len(pending) + hold.count
        spans = hold.merged(spans)  # earlier batches' spans first, in order
        held: tuple[dict[str, list[bytes]], int, int] = ({}, 0, 0)
        if hold.may_hold(spans, p.queued > 0, p.stopping):
            # More records are queued: this batch's exception spans ride with the next batch's.
            held, spans, count = (spans, count, hold.batches + 1), {}, 0
        sends = [(_transport.LOGS, "logs", payload, n) for payload, n in self.requests(logs)]
        sends += [(_transport.TRACES, "spans", payload, n) for payload, n in self.requests(spans)]
        if not sends:
            hold.spans, hold.count, hold.batches = held
            return None, count
        # The previous batches' requests have had this batch's encoding time to come back: only
        # now wait for the oldest, if need be.  A batch's first requests (logs, when it has spans
        # too) count no records: its last one carries them, so the batch is finished once all of
        # its requests are.
        flight = self.sender.start_in_order(sends)
        # Only now: an unforeseen error above leaves them as they were.
        hold.spans, hold.count, hold.batches = held
        return flight, count

    def send_held_spans(self) -> None:
        """Send the spans held for the next batch (there is none: the worker is about to wait)."""
        spans, count = self.hold.take()
        sender = self.sender
        flight = None
        try:
            flight = sender.start_in_order(
                [(_transport.TRACES, "spans", payload, n) for payload, n in self.requests(spans)]
            )
        finally:
            if flight is not None or count:
                sender.settle(flight, count)

    def drop_held(self) -> int:
        """An unforeseen error: count the held spans as lost; returns the records to finish."""
        spans, count = self.hold.take()
        self.p.count_drop("spans", "encode_error", sum(map(len, spans.values())))
        return count

    def add(
        self,
        record: Record,
        clean: bool,
        logs: dict[str, list[bytes]],
        spans: dict[str, list[bytes]],
        limit: int,
    ) -> None:
        """Encode one record through the general path into ``logs``/``spans``, or count its drop."""
        p = self.p
        try:
            log, span = self.encoder.encode(record, clean)
        except Exception:
            p.count_drop("logs", "encode_error", p.is_log(record))
            if p.has_span(record):
                p.count_drop("spans", "encode_error", 1)
            return
        if not p.is_log(record):
            pass  # an error report (record_exception): the span only
        elif len(log) > limit:
            p.count_drop("logs", "too_large", 1)
        else:
            group = logs.get(record.scope)
            if group is None:
                group = logs[record.scope] = []
            group.append(log)
        if span is not None:
            if len(span) > limit:
                p.count_drop("spans", "too_large", 1)
            else:
                spans.setdefault(record.scope, []).append(span)

    def to_records(self, pending: list[Pending]) -> list[Record]:
        """The converter's worker half for a batch; a record it cannot convert is counted, not lost silently."""
        p = self.p
        settings = self.settings
        to_record = _convert.to_record  # read at call time, once per batch
        records = []
        for r in pending:
            try:
                records.append(to_record(r, settings))
            except Exception:  # never expected: to_record guards user values
                p.count_drop("logs", "encode_error", p.is_log(r))
                if p.has_span(r):
                    p.count_drop("spans", "encode_error", 1)
        return records
