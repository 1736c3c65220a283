"""The loguru front end against a real OTLP/gRPC receiver: mapping, exceptions, lifecycle."""

from __future__ import annotations

import calendar
import multiprocessing
import os
import pickle
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from loguru import logger
from opentelemetry.sdk.trace import TracerProvider
from paths import ROOT

import highlight_logging
from highlight_logging._core.convert import datetime_ns
from highlight_logging._devtools.receiver import Receiver
from highlight_logging._export import process as _process
from highlight_logging._frontends.loguru import LoguruSink

ROOT = str(ROOT)


@pytest.fixture(autouse=True)
def _no_handlers() -> Iterator[None]:
    """The global logger starts and ends every test with no handlers at all."""
    logger.remove()
    yield
    logger.remove()


@pytest.fixture
def rx(receiver: Receiver) -> Iterator[Receiver]:
    # Depends on ``receiver`` so our sinks are removed (and flushed) before it stops.
    yield receiver
    logger.remove()


def sink(rx: Receiver, **settings: Any) -> LoguruSink:
    return LoguruSink(endpoint=rx.endpoint, service_name="svc", **settings)


def sent(rx: Receiver, n: int = 1) -> list[Any]:
    assert highlight_logging.flush(5)
    assert rx.wait_for_logs(n, 5)
    return rx.log_records()


def _audit_level() -> None:
    try:
        logger.level("AUDIT")  # registered by an earlier test: loguru refuses a second no=
    except ValueError:
        logger.level("AUDIT", no=35)


@pytest.mark.parametrize(
    ("level", "number"),
    [
        ("TRACE", 1),
        ("DEBUG", 5),
        ("INFO", 9),
        ("SUCCESS", 10),
        ("WARNING", 13),
        ("AUDIT", 14),
        ("ERROR", 17),
        ("CRITICAL", 21),
    ],
)
def test_severity(rx: Receiver, level: str, number: int) -> None:
    """Every level, custom ones too, maps by number; severity text is loguru's level name."""
    _audit_level()
    logger.add(sink(rx), level=0)
    logger.log(level, "x")
    (rec,) = sent(rx)
    assert rec.record.severity_number == number
    assert rec.record.severity_text == level


def test_body_scope_time_and_code_attributes(rx: Receiver) -> None:
    """Body is the message (not the formatted line), scope the module, time exact to the µs."""
    seen: list[Any] = []
    logger.add(lambda m: seen.append(m.record), format="{time} {level} {message}")
    logger.add(sink(rx), format="IGNORED {message}")
    logger.info("hello {}", "ada")
    (rec,) = sent(rx)
    (native,) = seen
    when: datetime = native["time"]
    assert when.tzinfo is not None
    expected = calendar.timegm(when.utctimetuple()) * 10**9 + when.microsecond * 1000
    assert rec.record.time_unix_nano == expected
    assert rec.record.observed_time_unix_nano == expected  # logged at its source (logs.proto)
    assert rec.body == "hello ada"
    assert rec.scope.name == __name__
    assert rec.resource_attributes["service.name"] == "svc"
    attrs = rec.attributes
    assert attrs["code.file.path"] == __file__
    assert attrs["code.function.name"] == "test_body_scope_time_and_code_attributes"
    assert attrs["code.line.number"] == native["line"]
    assert attrs["thread.id"] == native["thread"].id
    assert attrs["thread.name"] == native["thread"].name


def test_bind_contextualize_and_patch_extras(rx: Receiver) -> None:
    """bind, contextualize and patch extras all become typed attributes."""
    logger.add(sink(rx))
    log = logger.bind(user_id=42, ratio=0.5, admin=True, tags=["a", "b"], meta={"k": 1}, raw=b"\x00\x01")
    log = log.patch(lambda r: r["extra"].update(patched="yes"))
    with logger.contextualize(request_id="r-1"):
        log.info("extras")
    (rec,) = sent(rx)
    attrs = rec.attributes
    assert attrs["user_id"] == 42
    assert attrs["ratio"] == 0.5
    assert attrs["admin"] is True
    assert attrs["tags"] == ["a", "b"]
    assert attrs["meta"] == {"k": 1}
    assert attrs["raw"] == b"\x00\x01"
    assert attrs["request_id"] == "r-1"
    assert attrs["patched"] == "yes"


def _fail() -> None:
    try:
        raise KeyError("inner")
    except KeyError as inner:
        raise ValueError("boom") from inner


def _via_exception() -> None:
    try:
        _fail()
    except ValueError:
        logger.exception("failed")


def _via_opt() -> None:
    try:
        _fail()
    except ValueError as exc:
        logger.opt(exception=exc).error("failed")


@logger.catch(message="failed")
def _via_decorator() -> None:
    _fail()


def _via_context_manager() -> None:
    with logger.catch(message="failed"):
        _fail()


@pytest.mark.parametrize("source", [_via_exception, _via_opt, _via_decorator, _via_context_manager])
def test_exception_sources(rx: Receiver, source: Any) -> None:
    """Each way loguru captures an exception gives exception.* attributes and an ERROR span."""
    logger.add(sink(rx))
    source()
    (rec,) = sent(rx)
    assert rx.wait_for_spans(1, 5)
    attrs = rec.attributes
    assert rec.body == "failed"
    assert rec.record.severity_text == "ERROR"
    assert attrs["exception.type"] == "ValueError"
    assert attrs["exception.message"] == "boom"
    stack = attrs["exception.stacktrace"]
    assert isinstance(stack, str)
    assert "KeyError: 'inner'" in stack and "direct cause" in stack and "_fail" in stack
    (span,) = rx.spans()
    assert span.span.status.code == 2
    assert span.span.trace_id == rec.record.trace_id and len(rec.record.trace_id) == 16
    assert span.span.span_id == rec.record.span_id
    assert span.span.parent_span_id == b""


def _divide(password: str) -> None:
    try:
        len(password) / 0  # loguru's diagnose prints the value of `password` under this line
    except ZeroDivisionError:
        logger.exception("failed")


def test_diagnose_and_backtrace_do_not_change_what_is_exported(rx: Receiver) -> None:
    """loguru's diagnose/backtrace shape only its own text: the exported exception is the same,
    and carries no variable values."""
    exported: list[dict[str, Any]] = []
    loguru_text: list[str] = []
    for detailed in (True, False):  # loguru's defaults, then both off
        ours = logger.add(sink(rx), diagnose=detailed, backtrace=detailed)
        text = logger.add(loguru_text.append, format="{message}", diagnose=detailed, backtrace=detailed)
        _divide("hunter2")
        logger.remove(ours)
        logger.remove(text)
        (rec,) = sent(rx)
        exported.append({k: v for k, v in rec.attributes.items() if k.startswith("exception.")})
        rx.clear()
    assert "hunter2" in loguru_text[0] and "hunter2" not in loguru_text[1]  # diagnose at work
    assert exported[0] == exported[1]
    assert exported[0]["exception.type"] == "ZeroDivisionError"
    assert "hunter2" not in str(exported[0])


def test_trace_correlation_with_users_tracer_provider(rx: Receiver) -> None:
    """Inside a user's span the log carries its ids, and the exception span is its child."""
    logger.add(sink(rx))
    tracer = TracerProvider().get_tracer("tests.loguru")
    with tracer.start_as_current_span("request") as span:
        ctx = span.get_span_context()
        logger.info("plain")
        _via_exception()
    plain, failed = sent(rx, 2)
    assert rx.wait_for_spans(1, 5)
    trace_id = ctx.trace_id.to_bytes(16, "big")
    assert plain.record.trace_id == failed.record.trace_id == trace_id
    assert plain.record.span_id == ctx.span_id.to_bytes(8, "big")
    (exc_span,) = rx.spans()
    assert exc_span.span.trace_id == trace_id
    assert exc_span.span.parent_span_id == plain.record.span_id
    assert failed.record.span_id == exc_span.span.span_id


def test_enqueue_and_complete(rx: Receiver) -> None:
    """With enqueue=True, a plain logger.complete() (no warning) hands records over; flush delivers."""
    logger.add(sink(rx, schedule_delay=30), enqueue=True)
    for i in range(3):
        logger.bind(i=i).info("queued {}", i)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "coroutine ... was never awaited"
        logger.complete()
    assert highlight_logging.stats()["logs"]["queued"] == 3
    recs = sent(rx, 3)
    assert sorted(r.body for r in recs) == ["queued 0", "queued 1", "queued 2"]
    assert sorted(r.attributes["i"] for r in recs) == [0, 1, 2]


def test_no_per_message_flush(rx: Receiver) -> None:
    """The sink has no flush (loguru would call it per message): records wait for the batch."""
    s = sink(rx, schedule_delay=30)
    assert not hasattr(s, "flush") and not hasattr(s, "complete")
    logger.add(s)
    for _ in range(3):
        logger.info("batched")
    assert highlight_logging.stats()["logs"]["exported"] == 0
    assert len(sent(rx, 3)) == 3
    assert len(rx.requests_logs) == 1


@pytest.mark.parametrize("enqueue", [False, True])
def test_remove_delivers_what_it_owes(rx: Receiver, enqueue: bool) -> None:
    """logger.remove() returns only after this sink's records reached the collector."""
    handler_id = logger.add(sink(rx, schedule_delay=30), enqueue=enqueue)
    for i in range(5):
        logger.info("owed {}", i)
    logger.remove(handler_id)
    assert len(rx.log_records()) == 5  # no flush(), no waiting


class _Hostile:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class _HostileError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


def test_bad_values_never_raise_or_print(rx: Receiver, capfd: pytest.CaptureFixture[str]) -> None:
    """Hostile extras, cycles, bytes and lone surrogates are sent, and loguru prints no error."""
    s = sink(rx)
    s.write("not a loguru message")  # type: ignore[arg-type]
    logger.add(s)
    cyclic: dict[str, Any] = {"a": 1}
    cyclic["self"] = cyclic
    logger.bind(obj=_Hostile(), cyclic=cyclic, data=b"\xff\xfe").info("bad values")
    logger.info("lone \ud800 surrogate")
    logger.opt(exception=_HostileError()).error("hostile exception")
    recs = sent(rx, 3)
    assert "Logging error in Loguru Handler" not in capfd.readouterr().err
    by_body = {r.body: r for r in recs}
    attrs = by_body["bad values"].attributes
    assert attrs["data"] == b"\xff\xfe"
    assert attrs["cyclic"] == {"a": 1, "self": "<cycle>"}
    assert isinstance(attrs["obj"], str)
    assert "lone \\ud800 surrogate" in by_body
    assert by_body["hostile exception"].attributes["exception.type"] == f"{__name__}._HostileError"


def test_beside_another_sink_with_filter_and_level(rx: Receiver) -> None:
    """Each sink gets what its own filter and level let through."""
    console: list[str] = []
    logger.add(console.append, format="{message}", level="DEBUG")
    logger.add(sink(rx), level="INFO", filter=lambda r: r["extra"].get("ship", False))
    logger.debug("debug, shipped flag ignored by level", ship=True)
    logger.info("console only")
    logger.bind(ship=True).warning("both")
    (rec,) = sent(rx)
    assert rec.body == "both"
    assert [m.strip() for m in console] == ["debug, shipped flag ignored by level", "console only", "both"]


def _child(n: int) -> None:
    for i in range(n):
        logger.info("from child {}", i)
    logger.complete()  # loguru's advice for enqueued handlers in children


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")  # 3.12+
def test_fork_child_logs_through_parents_enqueued_sink(rx: Receiver) -> None:
    """A fork child logging to an enqueued sink is exported by the parent's pipeline."""
    logger.add(sink(rx), enqueue=True)
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(3,))
    proc.start()
    proc.join(10)
    assert proc.exitcode == 0
    logger.complete()
    recs = sent(rx, 3)
    assert sorted(r.body for r in recs) == [f"from child {i}" for i in range(3)]
    assert recs[0].resource_attributes["process.pid"] == os.getpid()


def _spawned_child(log: Any) -> None:
    log.info("from spawned child")


def test_spawn_child_gets_a_pickled_sink(rx: Receiver) -> None:
    """A logger passed to a spawned child carries the sink's settings; the child exports at exit."""
    logger.add(sink(rx))
    proc = multiprocessing.get_context("spawn").Process(target=_spawned_child, args=(logger,))
    proc.start()
    proc.join(20)
    assert proc.exitcode == 0
    assert rx.wait_for_logs(1, 5)
    (rec,) = rx.log_records()
    assert rec.body == "from spawned child"
    assert rec.resource_attributes["process.pid"] == proc.pid


def test_pickle_keeps_settings_and_shares_the_pipeline(rx: Receiver) -> None:
    """A pickled sink (a logger sent to a spawned child) rebinds to equal settings."""
    original = sink(rx, scrub_extra_keys=["pin"], headers={"x-key": "v"})
    copy = pickle.loads(pickle.dumps(original))
    assert isinstance(copy, LoguruSink)
    assert copy._binding.settings == original._binding.settings
    assert copy._binding.pipeline is original._binding.pipeline
    logger.add(copy)
    logger.info("through the copy")
    (rec,) = sent(rx)
    assert rec.body == "through the copy"


def _rename_internal(record: Any) -> None:
    record["name"] = "highlight_logging._pipeline"


def test_internal_scope_and_disabled_are_skipped(rx: Receiver) -> None:
    """Records named after our own modules never loop back; disabled=True sends nothing."""
    logger.add(sink(rx))
    logger.add(LoguruSink(endpoint=rx.endpoint, disabled=True))
    logger.patch(_rename_internal).info("internal")
    logger.info("kept")
    (rec,) = sent(rx)
    assert rec.body == "kept"
    assert len(_process.pipelines()) == 1


def test_imports_without_loguru() -> None:
    """The module imports (and the sink constructs) when loguru is not installed."""
    code = "import sys; sys.modules['loguru'] = None\nfrom highlight_logging._frontends.loguru import LoguruSink\nprint(LoguruSink(disabled=True))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "LoguruSink" in out.stdout


def test_a_patched_in_time_is_kept_or_falls_back_never_lost(rx: Receiver) -> None:
    """A naive time set by ``logger.patch`` is local time, exact; one that is not a time at all
    falls back to when the sink saw the record; either way the record arrives."""
    naive = datetime(2024, 3, 10, 12, 30, 0, 123456)
    logger.add(sink(rx), format="{message}")
    logger.patch(lambda r: r.update(time=naive)).info("naive")
    before = time.time_ns()
    logger.patch(lambda r: r.update(time="not a time")).info("garbage")
    after = time.time_ns()
    logs = {r.body: r.record for r in sent(rx, 2)}
    assert logs["naive"].time_unix_nano == datetime_ns(naive)
    assert before - 256 <= logs["garbage"].time_unix_nano <= after
