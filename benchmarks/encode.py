"""Per-record cost of encoding an OTLP LogRecord three ways (backs the claim in ``_export/encode.py``).

    .venv/bin/python benchmarks/encode.py [--records 512] [--repeat 7]

1. the generated protobuf classes (upb): build a ``LogRecord`` message, then serialize it;
2. ``highlight_logging._export.encode.log_record(...)``, the package's hand encoder (bytes straight away), as the
   export worker calls it: code.*/thread.* as a call-site tuple (encoded once per site), ``k`` as an attribute;
3. the OTel SDK exporter's ``encode_logs()`` on SDK records, then ``SerializeToString()``;
4. the export worker's two paths from the queued ``Pending`` tuple: the general one (``to_record``, then
   ``RecordEncoder.encode``) and, where the C speedups are built, the plain-record fast path (``_export.fastpath``).

Every path encodes the same record: the one ``HighlightHandler`` sends for
``logger.info("user %s did %s", i, action, extra={"k": i})`` (body, severity, two timestamps, code.*,
thread.* and ``k`` attributes).  Each figure is the best of ``--repeat`` interleaved timings of a batch of
``--records`` records, in microseconds per record; the hand encoder's output is checked to decode,
through the generated classes, to the same message the upb path builds.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from highlight_logging._core.record import SITE_KEYS
from highlight_logging._export import encode as _encode

ACTIONS = ("login", "logout", "view", "purchase")
Row = tuple[int, int, int, str, str, dict[str, Any], tuple[Any, ...]]


def rows(n: int) -> list[Row]:
    """Plain inputs, as the export worker has them before encoding."""
    now = time.time_ns()
    thread = threading.current_thread()
    return [
        (
            now + i * 1000,
            now + i * 1000 + 500,
            9,
            "INFO",
            f"user {i} did {ACTIONS[i & 3]}",
            {"k": i},
            (SITE_KEYS, __file__, "handle_request", 42, thread.ident or 0, thread.name),
        )
        for i in range(n)
    ]


def _any(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def upb_build(row: Row) -> LogRecord:
    t, observed, sev, sev_text, body, extra, site = row
    attrs = {**dict(zip(site[0], site[1:], strict=True)), **extra}
    return LogRecord(
        time_unix_nano=t,
        observed_time_unix_nano=observed,
        severity_number=sev,  # type: ignore[arg-type]
        severity_text=sev_text,
        body=AnyValue(string_value=body),
        attributes=[KeyValue(key=k, value=_any(v)) for k, v in attrs.items()],
    )


def hand_encode(row: Row) -> bytes:
    t, observed, sev, sev_text, body, attrs, site = row
    return _encode.log_record(t, observed, sev, sev_text, body, attrs, 0, b"", b"", 0, site)


def hand_encode_dict(row: Row) -> bytes:
    """Every attribute in the dict (no call-site tuple): what a record without a site costs."""
    t, observed, sev, sev_text, body, extra, site = row
    attrs = {**dict(zip(site[0], site[1:], strict=True)), **extra}
    return _encode.log_record(t, observed, sev, sev_text, body, attrs, 0, b"", b"", 0)


def otel_sdk_records(n: int) -> list[Any]:
    """ReadableLogRecords as the SDK's LoggingHandler makes them from the same stdlib call."""
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(logger_provider=provider)
    logger = logging.getLogger("bench.encode")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    for i in range(n):
        logger.info("user %s did %s", i, ACTIONS[i & 3], extra={"k": i})
    logger.removeHandler(handler)
    return list(exporter.get_finished_logs())


def best(cases: list[tuple[str, Callable[[], object]]], n: int, repeat: int) -> list[tuple[str, float]]:
    """Best wall time of ``repeat`` interleaved rounds over all cases, in microseconds per record."""
    times: dict[str, float] = {label: float("inf") for label, _ in cases}
    for _ in range(repeat):
        for label, fn in cases:
            t = time.perf_counter()
            fn()
            times[label] = min(times[label], time.perf_counter() - t)
    return [(label, times[label] / n * 1e6) for label, _ in cases]


def worker_cases(data: list[Row]) -> list[tuple[str, Callable[[], object]]]:
    """The worker's paths from the queued record, as the stdlib handler leaves it."""
    from highlight_logging._core import convert as _convert
    from highlight_logging._core.settings import Settings
    from highlight_logging._export import fastpath as _plain
    from highlight_logging._export.prepare import RecordEncoder

    settings = Settings()
    encoder = RecordEncoder(settings)
    room = settings.attribute_count_limit - _convert.RESERVED_SLOTS

    def queued() -> list[Any]:
        return [
            _convert.capture_record(
                settings, r[0], 20, r[3], "bench", r[4], {}, list(r[5].items()), site=r[6]
            )
            for r in data
        ]

    general, plain = queued(), queued()  # to_record adds to a record's attributes: one list each
    _plain.learn(plain[0])
    _encode.site_attributes(plain[0].site)
    out: list[tuple[str, Callable[[], object]]] = [
        (
            "worker, general path: to_record + _encode",
            lambda: [encoder.encode(_convert.to_record(p, settings), True) for p in general],
        ),
    ]
    c_path = _plain.plain_logs
    if c_path is not None:  # the C speedups built and in use (else every record takes the general path)
        out.append(
            (
                "worker, plain path: C (_speedups)",
                lambda: c_path(plain, _encode.site_cache, _plain.levels, room, _convert.datetime_ns),
            )
        )
        assert None not in c_path(plain, _encode.site_cache, _plain.levels, room, _convert.datetime_ns)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=512, help="records per timed batch (default 512)")
    parser.add_argument(
        "--repeat", type=int, default=15, help="interleaved timings per figure; the best is kept"
    )
    args = parser.parse_args()
    n, repeat = args.records, args.repeat
    data = rows(n)

    # Same message both ways?
    for row in data[:8]:
        decoded = LogRecord.FromString(hand_encode(row))
        if decoded != upb_build(row) or LogRecord.FromString(hand_encode_dict(row)) != decoded:
            raise SystemExit(f"hand encoder and upb disagree:\n{decoded}\nvs\n{upb_build(row)}")

    built = [upb_build(r) for r in data]
    encoded = [hand_encode(r) for r in data]
    resource = _encode.resource({"service.name": "bench", "telemetry.sdk.language": "python"})
    scope = _encode.scope("bench")
    request_bytes = _encode.request(resource, [(scope, encoded)])
    cases: list[tuple[str, Callable[[], object]]] = [
        ("upb: build LogRecord message", lambda: [upb_build(r) for r in data]),
        ("upb: SerializeToString (one record)", lambda: [m.SerializeToString() for m in built]),
        ("upb: build + serialize", lambda: [upb_build(r).SerializeToString() for r in data]),
        ("hand encoder: _encode.log_record", lambda: [hand_encode(r) for r in data]),
        ("hand encoder: all attributes in the dict", lambda: [hand_encode_dict(r) for r in data]),
        (
            "hand encoder: + request framing",
            lambda: _encode.request(resource, [(scope, [hand_encode(r) for r in data])]),
        ),
        ("gzip (level 6) of the request", lambda: gzip.compress(request_bytes, 6)),
    ]
    sdk_size = float("nan")
    try:
        from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

        sdk = otel_sdk_records(n)
        sdk_size = len(encode_logs(sdk).SerializeToString()) / n
        cases.append(("OTel SDK encode_logs()", lambda: encode_logs(sdk)))
        cases.append(
            ("OTel SDK encode_logs() + SerializeToString", lambda: encode_logs(sdk).SerializeToString())
        )
    except ImportError as exc:  # exporter not installed: skip those lines
        print(f"OTel SDK encode_logs() unavailable: {exc}")
    cases += worker_cases(data)
    results = best(cases, n, repeat)

    request = ExportLogsServiceRequest.FromString(request_bytes)  # the framing decodes, too
    assert sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs) == n
    print(f"{n} records per batch, best of {repeat}; us per record")
    for label, us in results:
        print(f"  {label:<45} {us:8.2f}")
    print(
        f"  bytes/record: hand {len(request_bytes) / n:.0f} (gzip {len(gzip.compress(request_bytes, 6)) / n:.1f}), "
        f"OTel SDK {sdk_size:.0f}"
    )


if __name__ == "__main__":
    main()
