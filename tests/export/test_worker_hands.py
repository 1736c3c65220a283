"""What the export worker holds besides the queue: a batch it takes stays within about one
request's bytes (estimated), so large records in its hands stay near the queue's byte bound
(benchmarks/run.py, the ``bound`` variant, measures the whole process)."""

from __future__ import annotations

from highlight_logging._core.convert import capture_record
from highlight_logging._core.record import Pending
from highlight_logging._core.settings import Settings
from highlight_logging._export.pipeline import Pipeline


def _queue(pipeline: Pipeline, count: int, length: int) -> list[Pending]:
    records = []
    for i in range(count):
        record = capture_record(
            pipeline.settings, 0, 20, "INFO", "hands", f"{i:05d}" + "x" * length, {}, {}, None
        )
        pipeline._queue.append(record)
        pipeline._bytes_in += record.size
        records.append(record)
    return records


def test_a_batch_of_large_records_stays_within_about_one_request() -> None:
    pipeline = Pipeline(Settings(endpoint="http://127.0.0.1:9", max_request_bytes=100_000))
    records = _queue(pipeline, 50, 10_000)
    batch = pipeline._take(512)
    sizes = [r.size for r in batch]
    assert batch == records[: len(batch)]  # in order, none lost
    assert sum(sizes[:-1]) < 100_000 <= sum(sizes)  # stops at the first record that reaches the budget
    assert pipeline.queued_bytes == sum(r.size for r in records[len(batch) :])
    rest = (
        pipeline._take(512)
        + pipeline._take(512)
        + pipeline._take(512)
        + pipeline._take(512)
        + pipeline._take(512)
    )
    assert batch + rest == records and pipeline.queued_bytes == 0


def test_small_records_still_come_a_full_batch_at_a_time() -> None:
    pipeline = Pipeline(Settings(endpoint="http://127.0.0.1:9"))
    records = _queue(pipeline, 600, 30)
    assert pipeline._take(512) == records[:512]
    assert pipeline._take(512) == records[512:]
