"""One benchmark measurement, in a fresh process; prints one JSON line on stdout.

    python benchmarks/_case.py --workload stdlib --side ours --variant base --n 50000 \\
        --proxy-port P --control-port C

Workloads and sides (``run.py`` runs them all, interleaved):

* ``stdlib``:    ``logger.info("user %s did %s", i, action, extra={"k": i})``
  ``floor`` (a handler whose emit is one ``deque.append``), ``otel`` (opentelemetry-sdk
  ``LoggingHandler``), ``ours`` (``HighlightHandler``).
* ``structlog``: ``log.info("user action", user=i, action=action, k=i)`` through
  add_log_level, TimeStamper, <side>, format_exc_info, KeyValueRenderer -> ReturnLogger.
  ``otel``: opentelemetry-instrumentation-structlog's ``StructlogProcessor`` (an equivalent
  emulation when that package is not installed); ``ours``: ``highlight_logging.StructlogProcessor``;
  ``floor``: the same chain without an exporting processor.
* ``loguru``:    ``logger.info("user {} did {}", i, action, k=i)``; ``otel``: the SDK
  ``LoggingHandler`` as a sink; ``ours``: ``highlight_logging.LoguruSink``; ``floor``: a function
  sink that does nothing; all ``format="{message}"``.

The floors show what the library costs before any exporter; paced, they show the tail of a call
on this machine when nothing is exported at all (a cold call after each sleep, the scheduler).
With exceptions, that includes its own exception formatting, which loguru does for every handler
(~1 ms each with its default ``diagnose``/``backtrace``).  With 4 threads, loguru's handler lock,
taken around every sink call, multiplies its cost by 1.8-4.3 (a sink that does nothing: ~17-30 us a
call alone, ~52-76 us with 4 threads; with a 50 ms switch interval instead of 5 ms the gap closes, so it is the
GIL preempting a thread inside that lock).

OTel side: ``LoggerProvider`` + ``BatchLogRecordProcessor`` (default batch size and schedule delay,
``max_queue_size`` raised to hold every record) + ``OTLPLogExporter`` (gRPC, insecure, gzip).
Both sides export to the same receiver, through the receiver process's byte-counting proxy.

Variants: ``base``; ``exc`` (1 record in 100 with ``exc_info`` of a caught ValueError raised from a
KeyError; loguru's handlers on both sides with ``diagnose=False, backtrace=False``, since loguru's own
exception text is neither side's work); ``excdefault`` (loguru only: the same with loguru's defaults);
``threads`` (4 threads, N/4 each); ``paced`` (2,000 records/s for 3 s, per-call latency);
``grpcjs`` (``base`` delivered to the @grpc/grpc-js receiver, ``grpcjs_receiver.js``, instead of ours);
``outage`` (1,000 records/s for 10 s, the proxy refusing the collector from 2 s to 7 s; OpenTelemetry
with its default queue of 2,048, so it drops what overflows; peak RSS); ``bound`` (ours only: 1 MiB
records, each a distinct string, into a collector that refuses every connection, until the queue is
full many times over; the peak RSS growth against the documented bound); ``highlight`` (ours only:
``base`` in the highlight.io output shape, ``HIGHLIGHT_BACKEND=highlight``; the other variants use the
shape a local endpoint gets by default, ``otel``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import socket
import sys
import threading
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any

ACTIONS = ("login", "logout", "view", "purchase")
EXC_EVERY = 100
THREADS = 4
PACED_RATE = 2000.0
PACED_SECONDS = 3.0
WARMUP = 200
OUTAGE_RATE = 1000.0
OUTAGE_SECONDS = 10.0
OUTAGE_FROM, OUTAGE_TO = 2.0, 7.0  # seconds into the run: a 5 s outage
BOUND_RECORD = 1 << 20  # characters in each record of the ``bound`` variant
BOUND_RECORDS = 2048  # 2 GiB logged; bodies are cut at 64 KiB on the calling thread, so ~1,000 fill 64 MiB


VARIANTS = ("base", "exc", "excdefault", "threads", "paced", "grpcjs", "outage", "bound", "highlight")


class Unavailable(Exception):
    """This side cannot run here (e.g. a front end not written yet): reported as n/a."""


class Control:
    """Line-oriented client for the receiver process's control port."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port))
        self._file = self._sock.makefile("rwb")

    def call(self, line: str) -> dict[str, Any]:
        self._file.write((line + "\n").encode())
        self._file.flush()
        answer: dict[str, Any] = json.loads(self._file.readline())
        return answer


# --- the exception every 100th record carries ------------------------------------------------------


def _lookup(i: int) -> int:
    return {"a": 1}[f"user-{i}"]


def _fail(i: int) -> None:
    try:
        _lookup(i)
    except KeyError as exc:
        raise ValueError(f"no such user: {i}") from exc


# --- the logging loops (one per workload, kept tight and identical for every side) -----------------


def loop(workload: str, log: Any, start: int, stop: int, exc_every: int) -> None:
    if workload == "stdlib":
        for i in range(start, stop):
            if exc_every and i % exc_every == 0:
                try:
                    _fail(i)
                except ValueError as e:
                    log.info("user %s did %s", i, ACTIONS[i & 3], extra={"k": i}, exc_info=e)
            else:
                log.info("user %s did %s", i, ACTIONS[i & 3], extra={"k": i})
    elif workload == "structlog":
        for i in range(start, stop):
            if exc_every and i % exc_every == 0:
                try:
                    _fail(i)
                except ValueError as e:
                    log.info("user action", user=i, action=ACTIONS[i & 3], k=i, exc_info=e)
            else:
                log.info("user action", user=i, action=ACTIONS[i & 3], k=i)
    else:
        for i in range(start, stop):
            if exc_every and i % exc_every == 0:
                try:
                    _fail(i)
                except ValueError as e:
                    log.opt(exception=e).info("user {} did {}", i, ACTIONS[i & 3], k=i)
            else:
                log.info("user {} did {}", i, ACTIONS[i & 3], k=i)


def paced(
    workload: str, log: Any, n: int, rate: float, at: dict[int, Callable[[], object]] | None = None
) -> list[int]:
    """Log n records at ``rate`` per second; per-call latencies in ns.  ``at``: what to do just
    before record i (the outage's start and end)."""
    lat = [0] * n
    clock = time.perf_counter
    ns = time.perf_counter_ns
    at = at or {}
    t0 = clock()
    for i in range(n):
        delay = t0 + i / rate - clock()
        if delay > 0:
            time.sleep(delay)
        if i in at:
            at[i]()
        if workload == "stdlib":
            a = ns()
            log.info("user %s did %s", i, ACTIONS[i & 3], extra={"k": i})
            lat[i] = ns() - a
        elif workload == "structlog":
            a = ns()
            log.info("user action", user=i, action=ACTIONS[i & 3], k=i)
            lat[i] = ns() - a
        else:
            a = ns()
            log.info("user {} did {}", i, ACTIONS[i & 3], k=i)
            lat[i] = ns() - a
    return lat


# --- sides ---------------------------------------------------------------------------------------


class Side:
    """What a workload logs through, and how to flush it at the end of the run."""

    def __init__(self, log: Any, flush: Callable[[float], object], dropped: Callable[[], int | None]) -> None:
        self.log = log
        self.flush = flush
        self.dropped = dropped
        self.note = ""


def otel_provider(port: int, records: int) -> Any:
    from grpc import Compression
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    provider = LoggerProvider(shutdown_on_exit=False)
    exporter = OTLPLogExporter(endpoint=f"127.0.0.1:{port}", insecure=True, compression=Compression.Gzip)
    # Defaults (batch 512, schedule delay 1 s, export timeout 30 s) except a queue that never drops.
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, max_queue_size=max(2048, records)))
    return provider


def otel_logging_handler(provider: Any) -> logging.Handler:
    from opentelemetry.sdk._logs import LoggingHandler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK handler is deprecated but current
        handler: logging.Handler = LoggingHandler(logger_provider=provider)
    return handler


def _otel_flush(provider: Any) -> Callable[[float], object]:
    return lambda timeout: provider.force_flush(int(timeout * 1000))


def _our_flush(timeout: float) -> object:
    import highlight_logging

    return highlight_logging.flush(timeout)


def _our_dropped() -> int:
    import highlight_logging

    s = highlight_logging.stats()
    return int(s["logs"]["dropped_total"]) + int(s["spans"]["dropped_total"])


def _none() -> None:
    return None


def _discard(message: object) -> None:
    return None


def our_class(name: str, module: str) -> tuple[Any, str]:
    """``highlight_logging.<name>``; while that is not exported yet, from its private module (noted)."""
    import importlib

    import highlight_logging

    cls = getattr(highlight_logging, name, None)
    if cls is not None:
        return cls, ""
    try:
        return getattr(importlib.import_module(f"highlight_logging.{module}"), name), (
            f"{name} from highlight_logging.{module} (not exported yet)"
        )
    except (ImportError, AttributeError) as exc:
        raise Unavailable(f"highlight_logging.{name}: {exc}") from exc


def make_side(
    workload: str, side: str, port: int, records: int, loguru_opts: dict[str, Any] | None = None
) -> Side:
    endpoint = f"http://127.0.0.1:{port}"
    if workload == "stdlib":
        logger = logging.getLogger("bench")
        logger.setLevel(logging.INFO)
        logger.propagate = False
        handler: logging.Handler
        if side == "floor":
            handler = logging.Handler()
            handler.emit = deque().append  # type: ignore[method-assign,assignment]
            s = Side(logger, lambda timeout: True, _none)
        elif side == "otel":
            provider = otel_provider(port, records)
            handler = otel_logging_handler(provider)
            s = Side(logger, _otel_flush(provider), _none)
        else:
            from highlight_logging import HighlightHandler

            handler = HighlightHandler(endpoint=endpoint)
            s = Side(logger, _our_flush, _our_dropped)
        logger.addHandler(handler)
        return s

    if workload == "structlog":
        import structlog

        processor: Any
        otel_cls: Any
        dropped: Callable[[], int | None]
        note = ""
        if side == "floor":
            processor = None  # the chain as the others run it, minus the exporting processor
            flush, dropped = (lambda timeout: True), _none
        elif side == "otel":
            provider = otel_provider(port, records)
            try:
                from opentelemetry.instrumentation.structlog import StructlogProcessor as otel_cls

                note = "opentelemetry-instrumentation-structlog StructlogProcessor"
            except ImportError:
                otel_cls = EmulatedOTelStructlogProcessor
                note = "emulated OTel structlog processor (LogRecord -> Logger.emit)"
            processor = otel_cls(logger_provider=provider)
            flush = _otel_flush(provider)
            dropped = _none
        elif side == "ours":
            StructlogProcessor, note = our_class("StructlogProcessor", "_structlog")
            processor = StructlogProcessor(endpoint=endpoint)
            flush, dropped = _our_flush, _our_dropped
        else:
            raise Unavailable(f"no {side} side for structlog")
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(),
                *([] if processor is None else [processor]),
                structlog.processors.format_exc_info,
                structlog.processors.KeyValueRenderer(),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            # ReturnLogger: the renderer runs, but no write() per event, which would release the GIL
            # and make the caller wait behind the export worker (the same on both sides, but noisy).
            logger_factory=structlog.ReturnLoggerFactory(),
            cache_logger_on_first_use=True,
        )
        s = Side(structlog.get_logger("bench"), flush, dropped)
        s.note = note
        return s

    if workload == "loguru":
        from loguru import logger as loguru_logger

        loguru_logger.remove()
        opts: dict[str, Any] = {"format": "{message}", **(loguru_opts or {})}
        if side == "floor":
            loguru_logger.add(_discard, **opts)  # what loguru costs with a sink that does nothing
            return Side(loguru_logger, lambda timeout: True, _none)
        if side == "otel":
            provider = otel_provider(port, records)
            loguru_logger.add(otel_logging_handler(provider), **opts)
            return Side(loguru_logger, _otel_flush(provider), _none)
        if side == "ours":
            LoguruSink, note = our_class("LoguruSink", "_loguru")
            # format="{message}" on both sides: loguru formats every message before any sink sees it.
            loguru_logger.add(LoguruSink(endpoint=endpoint), **opts)
            s = Side(loguru_logger, _our_flush, _our_dropped)
            s.note = note
            return s
        raise Unavailable(f"no {side} side for loguru")
    raise ValueError(f"unknown workload {workload!r}")


class EmulatedOTelStructlogProcessor:
    """What opentelemetry-instrumentation-structlog does, for machines without it: translate the
    event dict into an API ``LogRecord`` and ``Logger.emit`` it through the SDK provider."""

    _RESERVED = frozenset(
        {"event", "level", "timestamp", "exc_info", "exception", "_record", "_logger", "_name"}
    )

    def __init__(self, logger_provider: Any) -> None:
        from opentelemetry._logs import get_logger

        self._logger = get_logger("bench", logger_provider=logger_provider)

    def __call__(self, logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        from opentelemetry._logs import LogRecord, SeverityNumber
        from opentelemetry.context import get_current

        attributes = {k: v for k, v in event_dict.items() if k not in self._RESERVED}
        exc = event_dict.get("exc_info")
        if isinstance(exc, BaseException):
            attributes["exception.type"] = type(exc).__name__
            if exc.args:
                attributes["exception.message"] = str(exc.args[0])
            attributes["exception.stacktrace"] = "".join(traceback.format_exception(exc))
        ts = event_dict.get("timestamp")
        self._logger.emit(
            LogRecord(
                timestamp=int(ts * 1e9) if isinstance(ts, float) else None,
                observed_timestamp=time.time_ns(),
                context=get_current(),
                severity_text=str(event_dict.get("level", method_name)).upper(),
                severity_number=SeverityNumber.INFO,
                body=event_dict.get("event"),
                attributes=attributes,
            )
        )
        return event_dict


# --- the measurement ----------------------------------------------------------------------------


def current_rss_mb() -> float:
    """The resident set now (``ru_maxrss`` is the peak so far)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_bound(args: argparse.Namespace) -> dict[str, Any]:
    """1 MiB records into a collector that refuses every connection: what the queue's byte bound
    holds, measured as the process's peak RSS growth over the loop."""
    if args.workload != "stdlib" or args.side != "ours":
        raise Unavailable("the bound is the pipeline's: measured once, stdlib and ours")
    import highlight_logging
    from highlight_logging import HighlightHandler

    with socket.socket() as sock:  # a port nobody listens on: refused for the whole run
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    logger = logging.getLogger("bench")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = HighlightHandler(endpoint=f"http://127.0.0.1:{port}")
    logger.addHandler(handler)
    from highlight_logging._export import process as _process
    from highlight_logging._transport import LOGS, make

    # The client's modules (ssl, hpack, gzip: ~6 MB) load with its first attempt: a fixed cost, not
    # what records hold, so loaded before the baseline by an attempt of our own.
    make(handler._binding.settings).export(LOGS, b"", 1.0)
    logger.info("warm-up")  # starts the worker, which starts failing
    filler = "x" * (BOUND_RECORD - 9)
    pipeline = _process.pipelines()[0]
    bound, request = pipeline.settings.max_queue_bytes, pipeline.settings.max_request_bytes
    rss0, peak0 = current_rss_mb(), peak_rss_mb()
    queued = 0
    t0 = time.perf_counter()
    for i in range(BOUND_RECORDS):
        logger.info("%08d %s", i, filler)  # a distinct 1 MiB message each time
        if i % 16 == 0:
            queued = max(queued, pipeline.queued_bytes)
    t1 = time.perf_counter()
    time.sleep(1.0)  # the worker's retries go on with what it holds
    s = highlight_logging.stats()
    peak = peak_rss_mb()
    return {
        "n": BOUND_RECORDS,
        "app_us": (t1 - t0) / BOUND_RECORDS * 1e6,
        "rss_mb": peak,
        "rss_before_mb": rss0,
        "peak_before_mb": peak0,
        "growth_mb": peak - rss0,
        "bound_mb": bound / 2**20,
        "request_mb": request / 2**20,
        "queued_est_mb": queued / 2**20,  # the queue's own estimate, sampled every 16 records
        "queue_full": int(s["logs"]["dropped"].get("queue_full", 0)),
        "status": "ok",
        "note": "",
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    variant = args.variant
    if variant == "bound":
        return measure_bound(args)
    control = Control(args.control_port)
    n = {
        "paced": int(PACED_RATE * PACED_SECONDS),
        "outage": int(OUTAGE_RATE * OUTAGE_SECONDS),
    }.get(variant, args.n)
    exc_every = EXC_EVERY if variant in ("exc", "excdefault") else 0
    warm = min(WARMUP, n)
    delivers = args.side != "floor"
    # OpenTelemetry's queue holds every record, except in the outage: its default (2,048) there.
    queue = 0 if variant == "outage" else n + warm
    loguru_opts = {"diagnose": False, "backtrace": False} if variant == "exc" else None
    if variant == "highlight":
        os.environ["HIGHLIGHT_BACKEND"] = "highlight"
    side = make_side(args.workload, args.side, args.proxy_port, queue, loguru_opts)
    out: dict[str, Any] = {"n": n, "note": side.note}

    # Warm-up (imports, first connection, worker start), delivered and then forgotten.
    loop(args.workload, side.log, 0, warm, exc_every)
    if delivers:
        side.flush(args.timeout)
        if not control.call(f"wait {warm} {args.timeout}")["ok"]:
            raise RuntimeError("warm-up records never reached the receiver")
        time.sleep(0.05)  # let the last response and HTTP/2 acks settle before zeroing the counters
    control.call("reset")
    out["rss_before_mb"] = current_rss_mb()

    cpu0 = time.process_time()
    main0 = time.thread_time()
    t0 = time.perf_counter()
    if variant == "threads":
        barrier = threading.Barrier(THREADS + 1)
        per = n // THREADS

        def work(k: int) -> None:
            barrier.wait()
            loop(args.workload, side.log, k * per, n if k == THREADS - 1 else (k + 1) * per, exc_every)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
    elif variant in ("paced", "outage"):
        rate = PACED_RATE if variant == "paced" else OUTAGE_RATE
        at: dict[int, Callable[[], object]] = {}
        if variant == "outage":
            at = {
                int(OUTAGE_FROM * rate): lambda: control.call("down"),
                int(OUTAGE_TO * rate): lambda: control.call("up"),
            }
        lat = sorted(paced(args.workload, side.log, n, rate, at))
        out["p50_us"] = lat[len(lat) // 2] / 1e3
        out["p99_us"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e3
        out["max_us"] = lat[-1] / 1e3
        out["mean_us"] = sum(lat) / len(lat) / 1e3
    else:
        loop(args.workload, side.log, 0, n, exc_every)
    t1 = time.perf_counter()
    if variant != "threads":  # CPU of the calling thread over the loop: app_us without GIL waits
        out["app_cpu_us"] = (time.thread_time() - main0) / n * 1e6
    if variant in ("paced", "outage"):
        out["app_us"] = out["mean_us"]
    else:
        out["app_us"] = (t1 - t0) / n * 1e6

    status = "ok"
    if delivers:
        flushed = side.flush(args.timeout)  # the natural end of a run, both sides alike
        # OpenTelemetry loses records in the outage: after its flush, whatever it still has is sent.
        lossy = variant == "outage" and args.side == "otel"
        got = control.call(f"wait {n} {3.0 if lossy else args.timeout}")
        t2 = time.perf_counter()
        cpu2 = time.process_time()
        main2 = time.thread_time()
        time.sleep(0.2)  # anything beyond N (duplicates) shows up in a second count
        final = control.call("count")
        out.update(
            flushed=bool(flushed),
            received=final["logs"],
            received_spans=final["spans"],
            requests=final["requests"],
            cpu_us=(cpu2 - cpu0) / n * 1e6,
            # CPU off the calling thread (export worker, gRPC threads); not meaningful for "threads".
            bg_cpu_us=(cpu2 - cpu0 - (main2 - main0)) / n * 1e6,
            e2e_rps=n / (t2 - t0),
            deliver_s=t2 - t1,
            bytes_per_rec=None if got["bytes"] is None else got["bytes"] / n,
            dropped=side.dropped(),
        )
        if lossy:
            out["lost"] = n - final["logs"]  # its behaviour, reported; not a failed run
            out["received"] = out["n"] = n  # a complete run for the no-drop count
        elif not got["ok"]:
            status = "failed"
            out["error"] = f"timeout: {got['logs']} of {n} records at the receiver after {args.timeout}s"
        elif final["logs"] != n:
            status = "failed"
            out["error"] = f"receiver got {final['logs']} records, expected {n}"
        elif out["dropped"]:
            status = "failed"
            out["error"] = f"stats() dropped_total = {out['dropped']}"
    else:
        out["cpu_us"] = (time.process_time() - cpu0) / n * 1e6
    out["rss_mb"] = peak_rss_mb()
    out["status"] = status
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", choices=("stdlib", "structlog", "loguru"), required=True)
    parser.add_argument("--side", choices=("floor", "otel", "ours"), required=True)
    parser.add_argument("--variant", choices=VARIANTS, default="base")
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--proxy-port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for delivery")
    args = parser.parse_args()
    result: dict[str, Any] = {"workload": args.workload, "side": args.side, "variant": args.variant}
    try:
        result.update(measure(args))
    except Unavailable as exc:
        result.update(status="n/a", error=str(exc))
    except Exception as exc:
        result.update(status="error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # Every record is delivered (or the case is marked failed): skip the exporters' exit hooks.
    os._exit(0)


if __name__ == "__main__":
    main()
