"""StructlogProcessor against a real OTLP/gRPC receiver."""

from __future__ import annotations

import asyncio
import contextvars
import copy
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from structlog.contextvars import bind_contextvars, clear_contextvars, merge_contextvars
from structlog.stdlib import ProcessorFormatter
from structlog.typing import Processor

import highlight_logging
from highlight_logging._devtools.receiver import ReceivedLog, Receiver
from highlight_logging._frontends import dedupe as _dedupe
from highlight_logging._frontends.dedupe import exported_by_structlog
from highlight_logging._frontends.handler import HighlightHandler
from highlight_logging._frontends.structlog import StructlogProcessor

NOW_SLACK = 30 * 10**9  # "about now", in ns


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    """Each test starts with default structlog, no bound contextvars and an untouched root logger."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    _dedupe.state.pending = _dedupe.state.matched = None
    yield
    structlog.reset_defaults()
    clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


def received(receiver: Receiver, n: int) -> list[ReceivedLog]:
    assert highlight_logging.flush(5)
    assert receiver.wait_for_logs(n, 5)
    logs = receiver.log_records()
    assert len(logs) == n, [r.body for r in logs]
    return logs


def by_body(logs: list[ReceivedLog]) -> dict[Any, ReceivedLog]:
    out = {r.body: r for r in logs}
    assert len(out) == len(logs), "a body was exported twice"
    return out


def exc_attrs(log: ReceivedLog) -> dict[str, Any]:
    return {k: v for k, v in log.attributes.items() if k.startswith("exception.")}


def chained() -> None:
    table: dict[str, int] = {}
    try:
        table["missing"]
    except KeyError as exc:
        raise ValueError("outer failure") from exc


class Hostile:
    def __bool__(self) -> bool:
        raise RuntimeError("no bool")

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def stdlib_logger(name: str, *handlers: logging.Handler, level: int = logging.DEBUG) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = list(handlers)
    logger.setLevel(level)
    logger.propagate = False
    return logger


# --- mapping rules ---------------------------------------------------------------------------------


def test_returns_same_dict_unmutated_and_renderer_output_unchanged(receiver: Receiver) -> None:
    """The event dict comes back as the same, unmodified object and the renderer prints the same."""
    proc = StructlogProcessor(endpoint=receiver.endpoint)
    event = {"event": "e", "level": "info", "nested": {"a": [1, 2]}, "exc_info": False}
    snapshot = copy.deepcopy(event)
    assert proc(None, "info", event) is event
    assert event == snapshot

    outputs = []
    for chain_extra in ([], [proc]):
        out = io.StringIO()
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                *chain_extra,
                structlog.processors.JSONRenderer(),
            ],
            logger_factory=structlog.PrintLoggerFactory(out),
        )
        structlog.get_logger().info("rendered", user="ada", n=3)
        outputs.append(out.getvalue())
    assert outputs[0] == outputs[1] != ""
    assert json.loads(outputs[1]) == {"event": "rendered", "user": "ada", "n": 3, "level": "info"}
    assert len(received(receiver, 2)) == 2


def test_body_and_typed_attributes(receiver: Receiver) -> None:
    """event is the body; other keys become typed attributes; consumed keys are not duplicated."""
    proc = StructlogProcessor(endpoint=receiver.endpoint)
    proc(
        None,
        "info",
        {
            "event": "hello %s",
            "positional_args": ("world",),
            "level": "info",
            "logger": "app",
            "timestamp": 1700000000,
            "s": "x",
            "i": 7,
            "f": 1.5,
            "b": True,
            "none": None,
            "raw": b"\x00\x01",
            "items": [1, "two"],
            "mapping": {"k": {"deep": 1}},
            "stack_info": "Stack (most recent call last):\n  here",
        },
    )
    proc(None, "info", {"event": 12345})
    proc(None, "info", {"event": "%(who)s says hi", "positional_args": ({"who": "bob"},)})
    logs = by_body(received(receiver, 3))
    log = logs["hello world"]
    attrs = log.attributes
    assert {k: attrs[k] for k in ("s", "i", "f", "b", "raw", "items", "mapping")} == {
        "s": "x",
        "i": 7,
        "f": 1.5,
        "b": True,
        "raw": b"\x00\x01",
        "items": [1, "two"],
        "mapping": {"k": {"deep": 1}},
    }
    assert "none" in attrs
    assert attrs["code.stacktrace"] == "Stack (most recent call last):\n  here"
    consumed = {
        "event",
        "level",
        "logger",
        "timestamp",
        "positional_args",
        "stack_info",
        "exc_info",
        "exception",
    }
    assert not consumed & attrs.keys()
    assert log.scope.name == "app"
    assert "12345" in logs and "bob says hi" in logs


def test_severity_mapping(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """Method and level names map to stdlib levels, then OTLP severities, with stdlib names."""
    monkeypatch.setitem(logging._nameToLevel, "HL_NOTICE", 25)
    monkeypatch.setitem(logging._levelToName, 25, "HL_NOTICE")
    cases: list[tuple[str, Any, int, str]] = [
        ("debug", None, 5, "DEBUG"),
        ("info", None, 9, "INFO"),
        ("warn", None, 13, "WARNING"),
        ("warning", None, 13, "WARNING"),
        ("error", None, 17, "ERROR"),
        ("exception", None, 17, "ERROR"),
        ("critical", None, 21, "CRITICAL"),
        ("fatal", None, 21, "CRITICAL"),
        ("notset", None, 1, "NOTSET"),
        ("trace", None, 1, "TRACE"),
        ("info", "error", 17, "ERROR"),  # the level key wins over the method name
        ("info", "WARNING", 13, "WARNING"),
        ("info", 30, 13, "WARNING"),
        ("hl_notice", None, 10, "HL_NOTICE"),  # a registered stdlib level
        ("errorish", None, 17, "ERROR"),
        ("crit_db", None, 21, "CRITICAL"),
        ("whatever", None, 9, "INFO"),
    ]
    proc = StructlogProcessor(endpoint=receiver.endpoint)
    for i, (method, level, _, _) in enumerate(cases):
        event: dict[str, Any] = {"event": str(i)}
        if level is not None:
            event["level"] = level
        proc(None, method, event)
    logs = by_body(received(receiver, len(cases)))
    for i, (_, _, number, text) in enumerate(cases):
        record = logs[str(i)].record
        assert (record.severity_number, record.severity_text) == (number, text), cases[i]


def test_scope_fallbacks(receiver: Receiver) -> None:
    """Scope: the logger key, else the wrapped stdlib logger's name, else "structlog"."""
    proc = StructlogProcessor(endpoint=receiver.endpoint)
    proc(logging.getLogger("wrapped.std"), "info", {"event": "a", "logger": "from.key"})
    proc(logging.getLogger("wrapped.std"), "info", {"event": "b"})
    proc(structlog.PrintLogger(io.StringIO()), "info", {"event": "c"})
    proc(None, "info", {"event": "d", "logger": 42})
    logs = by_body(received(receiver, 4))
    assert {b: r.scope.name for b, r in logs.items()} == {
        "a": "from.key",
        "b": "wrapped.std",
        "c": "structlog",
        "d": "42",
    }


def test_timestamp_forms(receiver: Receiver) -> None:
    """timestamp: epoch seconds or ISO-8601 in any offset (naive = UTC); anything else is now."""
    base = 1700000000 * 10**9
    cases: dict[str, tuple[Any, int | None]] = {
        "int": (1700000000, base),
        "float": (1700000000.5, base + 500_000_000),
        "z": ("2023-11-14T22:13:20Z", base),
        "offset": ("2023-11-15T00:13:20.000001+02:00", base + 1000),
        "naive": ("2023-11-14T22:13:20.250000", base + 250_000_000),
        "garbage": ("yesterday", None),
        "bool": (True, None),
        "nan": (float("nan"), None),
    }
    proc = StructlogProcessor(endpoint=receiver.endpoint)
    for name, (value, _) in cases.items():
        proc(None, "info", {"event": name, "timestamp": value})
    now = time.time_ns()
    structlog.configure(
        processors=[structlog.processors.TimeStamper(fmt="iso"), proc, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(io.StringIO()),
    )
    structlog.get_logger().info("stamper")
    logs = by_body(received(receiver, len(cases) + 1))
    for name, (_, expected) in cases.items():
        got = logs[name].record.time_unix_nano
        if expected is None:
            assert abs(got - now) < NOW_SLACK, name
        else:
            assert got == expected, name
    assert abs(logs["stamper"].record.time_unix_nano - now) < NOW_SLACK


def test_callsite_and_thread_attributes(receiver: Receiver) -> None:
    """CallsiteParameterAdder keys become code.*; thread.* is the calling thread."""
    CP = structlog.processors.CallsiteParameter
    structlog.configure(
        processors=[
            structlog.processors.CallsiteParameterAdder({CP.PATHNAME, CP.FUNC_NAME, CP.LINENO, CP.MODULE}),
            StructlogProcessor(endpoint=receiver.endpoint),
        ],
        logger_factory=structlog.ReturnLoggerFactory(),
    )
    line = sys._getframe().f_lineno + 1
    structlog.get_logger().info("here")
    attrs = received(receiver, 1)[0].attributes
    assert attrs["code.file.path"] == __file__
    assert attrs["code.function.name"] == "test_callsite_and_thread_attributes"
    assert attrs["code.line.number"] == line
    assert attrs["module"] == "test_structlog"
    assert not {"pathname", "func_name", "lineno"} & attrs.keys()
    assert attrs["thread.id"] == threading.get_ident()
    assert attrs["thread.name"] == threading.current_thread().name


# --- exceptions ------------------------------------------------------------------------------------


def test_exception_forms_match_stdlib_handler(receiver: Receiver) -> None:
    """exc_info=True, an instance, a tuple and format_exc_info text give the stdlib handler's exception."""
    stdlib = stdlib_logger("t.exc.std", HighlightHandler(endpoint=receiver.endpoint))
    proc = StructlogProcessor(endpoint=receiver.endpoint)
    try:
        chained()
    except ValueError as exc:
        stdlib.error("stdlib", exc_info=True)
        proc(None, "exception", {"event": "true", "exc_info": True})
        proc(None, "error", {"event": "instance", "exc_info": exc})
        proc(None, "error", {"event": "tuple", "exc_info": (type(exc), exc, exc.__traceback__)})
        rendered = structlog.processors.format_exc_info(None, "error", {"exc_info": True})["exception"]
        proc(None, "error", {"event": "rendered", "exception": rendered})
    logs = by_body(received(receiver, 5))
    expected = exc_attrs(logs["stdlib"])
    assert expected["exception.type"] == "ValueError"
    assert expected["exception.message"] == "outer failure"
    assert "KeyError: 'missing'" in expected["exception.stacktrace"]
    assert "direct cause of the following exception" in expected["exception.stacktrace"]
    for name in ("true", "instance", "tuple"):
        assert exc_attrs(logs[name]) == expected, name
    got = exc_attrs(logs["rendered"])
    assert got["exception.type"] == expected["exception.type"]
    assert got["exception.message"] == expected["exception.message"]
    assert got["exception.stacktrace"].strip() == expected["exception.stacktrace"].strip()
    assert "exc_info" not in logs["true"].attributes and "exception" not in logs["rendered"].attributes

    spans = {s.span.span_id: s for s in receiver.spans()}
    assert len(spans) == 5
    for log in logs.values():
        span = spans[log.record.span_id]
        assert span.span.name == "ValueError"
        assert span.span.status.code == 2  # ERROR
        event_attrs = {kv.key: kv.value.string_value for kv in span.span.events[0].attributes}
        assert event_attrs == exc_attrs(log)


def test_dict_tracebacks_rendered_back_to_text(receiver: Receiver) -> None:
    """dict_tracebacks' list becomes a Python-style traceback, with the logged exception's type."""
    proc = StructlogProcessor(endpoint=receiver.endpoint)
    try:
        chained()
    except ValueError:
        python_text = traceback.format_exc()
        event = structlog.processors.dict_tracebacks(None, "error", {"event": "dicts", "exc_info": True})
        proc(None, "error", event)
    attrs = exc_attrs(received(receiver, 1)[0])
    assert attrs["exception.type"] == "ValueError"
    assert attrs["exception.message"] == "outer failure"
    text = attrs["exception.stacktrace"]

    def skeleton(t: str) -> list[str]:
        # Frame headers and unindented lines; Python adds caret lines that the dicts cannot carry.
        return [ln for ln in t.splitlines() if ln.startswith("  File") or (ln and not ln[0].isspace())]

    assert skeleton(text) == skeleton(python_text)
    assert 'table["missing"]' in text  # source lines come back through linecache


def test_exception_message_omitted_in_every_form(receiver: Receiver) -> None:
    """include_exception_message=False keeps messages out of raw, rendered and dict forms."""
    proc = StructlogProcessor(endpoint=receiver.endpoint, include_exception_message=False)
    secret = "-".join(("secret", "token"))  # not in the source lines the traceback shows
    try:
        raise ValueError(secret)
    except ValueError:
        proc(None, "error", {"event": "raw", "exc_info": True})
        proc(
            None,
            "error",
            structlog.processors.format_exc_info(None, "error", {"event": "text", "exc_info": True}),
        )
        proc(
            None,
            "error",
            structlog.processors.dict_tracebacks(None, "error", {"event": "dicts", "exc_info": True}),
        )
    for log in received(receiver, 3):
        attrs = exc_attrs(log)
        assert attrs["exception.type"] == "ValueError", log.body
        assert "exception.message" not in attrs
        assert "secret-token" not in attrs["exception.stacktrace"], log.body


def test_exception_span_joins_active_trace(receiver: Receiver) -> None:
    """A log carries the active span's ids; its exception span is a child of that span."""
    provider = TracerProvider()  # a local provider: the global one is never set
    proc = StructlogProcessor(endpoint=receiver.endpoint)
    with provider.get_tracer("test").start_as_current_span("request") as span:
        ctx = span.get_span_context()
        proc(None, "info", {"event": "plain"})
        try:
            chained()
        except ValueError:
            proc(None, "exception", {"event": "failed", "exc_info": True})
    provider.shutdown()
    logs = by_body(received(receiver, 2))
    trace_id, span_id = ctx.trace_id.to_bytes(16, "big"), ctx.span_id.to_bytes(8, "big")
    assert (logs["plain"].record.trace_id, logs["plain"].record.span_id) == (trace_id, span_id)
    failed = logs["failed"].record
    assert failed.trace_id == trace_id and failed.span_id != span_id
    assert receiver.wait_for_spans(1, 5)
    (exc_span,) = receiver.spans()
    assert exc_span.span.trace_id == trace_id
    assert exc_span.span.span_id == failed.span_id
    assert exc_span.span.parent_span_id == span_id


def test_rendered_multiline_message(receiver: Receiver) -> None:
    """format_exc_info text of an exception with a multi-line message keeps its type and message."""
    proc = StructlogProcessor(endpoint=receiver.endpoint)
    try:
        raise ValueError("first\nsecond")
    except ValueError:
        proc(
            None,
            "error",
            structlog.processors.format_exc_info(None, "error", {"event": "m", "exc_info": True}),
        )
    attrs = exc_attrs(received(receiver, 1)[0])
    assert (attrs["exception.type"], attrs["exception.message"]) == ("ValueError", "first\nsecond")


# --- robustness ------------------------------------------------------------------------------------


def test_bad_values_never_raise(receiver: Receiver) -> None:
    """Hostile objects, cycles, bytes and odd keys or fields are exported, never raised."""
    cyclic: dict[str, Any] = {"name": "loop"}
    cyclic["self"] = cyclic
    proc = StructlogProcessor(endpoint=receiver.endpoint)
    events: list[Any] = [
        {"event": Hostile(), "obj": Hostile()},
        {"event": "cyclic", "cyclic": cyclic, "blob": b"\xff" * 10},
        {"event": "odd keys", 1: "int key", Hostile(): "hostile key"},
        {"event": "odd fields", "level": Hostile(), "timestamp": Hostile(), "logger": Hostile()},
        {"event": "bad args %d", "positional_args": ("x",)},
        {"event": "bad exc", "exc_info": Hostile(), "exception": Hostile()},
        {"event": "bad dicts", "exception": [{"frames": [Hostile(), {"lineno": Hostile()}]}, 3]},
    ]
    for event in events:
        assert proc(Hostile(), "info", event) is event
    not_a_dict: Any = "not a dict"
    assert proc(None, "info", not_a_dict) is not_a_dict
    logs = received(receiver, len(events))
    bodies = {r.body for r in logs}
    assert "<unprintable Hostile object>" in bodies and "bad args %d" in bodies
    cyc = next(r for r in logs if r.body == "cyclic").attributes
    assert cyc["cyclic"] == {"name": "loop", "self": "<cycle>"}
    assert cyc["blob"] == b"\xff" * 10


def test_drop_ends_chain_after_export(receiver: Receiver) -> None:
    """drop=True exports, then raises DropEvent so nothing is rendered."""
    out = io.StringIO()
    proc = StructlogProcessor(endpoint=receiver.endpoint, drop=True)
    with pytest.raises(structlog.DropEvent):
        proc(None, "info", {"event": "direct"})
    structlog.configure(
        processors=[proc, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(out),
    )
    structlog.get_logger().info("chained")
    assert out.getvalue() == ""
    assert {r.body for r in received(receiver, 2)} == {"direct", "chained"}


def test_imports_without_structlog() -> None:
    """highlight_logging and StructlogProcessor import and run with structlog unavailable."""
    code = (
        "import sys; sys.modules['structlog'] = None\n"
        "import highlight_logging\n"
        "from highlight_logging._frontends.structlog import StructlogProcessor\n"
        "p = StructlogProcessor(disabled=True)\n"
        "e = {'event': 'x'}\n"
        "assert p(None, 'info', e) is e\n"
        "try:\n    StructlogProcessor(disabled=True, drop=True)\nexcept ImportError:\n    print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "HIGHLIGHT_"))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --- structlog setups ------------------------------------------------------------------------------


def test_native_filtering_logger(receiver: Receiver) -> None:
    """get_logger with make_filtering_bound_logger and PrintLoggerFactory: filtered events are not exported."""
    out = io.StringIO()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            StructlogProcessor(endpoint=receiver.endpoint),
            structlog.processors.KeyValueRenderer(key_order=["event"]),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(out),
    )
    log = structlog.get_logger().bind(user="ada")
    log.debug("hidden")
    log.warning("shown", n=1)
    (record,) = received(receiver, 1)
    assert record.body == "shown" and record.record.severity_text == "WARNING"
    assert record.attributes["user"] == "ada" and record.attributes["n"] == 1
    assert out.getvalue().strip() == "event='shown' user='ada' n=1 level='warning'"


def test_stdlib_integration(receiver: Receiver) -> None:
    """LoggerFactory, stdlib BoundLogger, filter_by_level, add_logger_name and positional args."""
    out = io.StringIO()
    stdlib_logger("t.stdlib.app", logging.StreamHandler(out), level=logging.INFO)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            StructlogProcessor(endpoint=receiver.endpoint),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    log = structlog.stdlib.get_logger("t.stdlib.app")
    log.debug("filtered")
    log.info("hello %s", "world", user="ada")
    (record,) = received(receiver, 1)
    assert record.body == "hello world" and record.scope.name == "t.stdlib.app"
    assert record.attributes["user"] == "ada"
    assert json.loads(out.getvalue())["event"] == "hello world"


def test_async_methods(receiver: Receiver) -> None:
    """ainfo/aexception export from the executor with the caller's thread and exception."""
    structlog.configure(
        processors=[structlog.processors.add_log_level, StructlogProcessor(endpoint=receiver.endpoint)],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.ReturnLoggerFactory(),
    )

    async def main() -> None:
        log = structlog.get_logger()
        await log.ainfo("async info", k=1)
        try:
            chained()
        except ValueError:
            await log.aexception("async failure")

    asyncio.run(main())
    logs = by_body(received(receiver, 2))
    assert logs["async info"].attributes["thread.id"] == threading.get_ident()
    assert exc_attrs(logs["async failure"])["exception.type"] == "ValueError"
    assert logs["async failure"].record.severity_text == "ERROR"


def test_capture_logs(receiver: Receiver) -> None:
    """capture_logs(processors=[...]) still captures the entry the processor exported."""
    with structlog.testing.capture_logs(processors=[StructlogProcessor(endpoint=receiver.endpoint)]) as cap:
        structlog.get_logger().info("captured", a=1)
    assert cap == [{"event": "captured", "a": 1, "log_level": "info"}]
    assert received(receiver, 1)[0].attributes["a"] == 1


def test_contextvars_across_threads_and_tasks(receiver: Receiver) -> None:
    """merge_contextvars values follow copied contexts into threads and stay per asyncio task."""
    structlog.configure(
        processors=[merge_contextvars, StructlogProcessor(endpoint=receiver.endpoint)],
        logger_factory=structlog.ReturnLoggerFactory(),
    )
    log = structlog.get_logger()
    bind_contextvars(request="main")

    def work(name: str) -> None:
        bind_contextvars(worker=name)
        log.info(name)

    plain = threading.Thread(target=work, args=("plain thread",))
    ctx = contextvars.copy_context()
    copied = threading.Thread(target=ctx.run, args=(work, "copied thread"))
    for t in (plain, copied):
        t.start()
        t.join()

    async def task(name: str) -> None:
        bind_contextvars(task=name)
        await asyncio.sleep(0)
        log.info(name)

    async def main() -> None:
        await asyncio.gather(task("task a"), task("task b"))

    asyncio.run(main())
    log.info("after")
    logs = by_body(received(receiver, 5))

    def ctx_of(body: str) -> dict[str, Any]:
        attrs = logs[body].attributes
        return {k: attrs[k] for k in ("request", "worker", "task") if k in attrs}

    assert ctx_of("plain thread") == {"worker": "plain thread"}
    assert ctx_of("copied thread") == {"request": "main", "worker": "copied thread"}
    assert ctx_of("task a") == {"request": "main", "task": "task a"}
    assert ctx_of("task b") == {"request": "main", "task": "task b"}
    assert ctx_of("after") == {"request": "main"}
    assert logs["plain thread"].attributes["thread.id"] != threading.get_ident()


def test_foreign_pre_chain_exports_plain_logging(receiver: Receiver) -> None:
    """Without a HighlightHandler, StructlogProcessor in foreign_pre_chain exports stdlib records."""
    out = io.StringIO()
    stream = logging.StreamHandler(out)
    stream.setFormatter(
        ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                StructlogProcessor(endpoint=receiver.endpoint),
            ],
            processors=[ProcessorFormatter.remove_processors_meta, structlog.processors.JSONRenderer()],
        )
    )
    logger = stdlib_logger("t.foreign", stream)
    line = sys._getframe().f_lineno + 1
    logger.warning("plain %s", "record", extra={"order": 7})
    try:
        chained()
    except ValueError:
        logger.exception("plain failure")
    logs = by_body(received(receiver, 2))
    plain = logs["plain record"]
    assert plain.scope.name == "t.foreign" and plain.record.severity_text == "WARNING"
    assert plain.attributes["order"] == 7
    assert plain.attributes["code.line.number"] == line
    assert exc_attrs(logs["plain failure"])["exception.type"] == "ValueError"
    assert [json.loads(x)["event"] for x in out.getvalue().splitlines() if x.startswith("{")] == [
        "plain record",
        "plain failure",
    ]


# --- exactly once next to a HighlightHandler --------------------------------------------------------


@pytest.mark.parametrize("highlight_first", [True, False])
def test_processor_formatter_and_handler_export_once(receiver: Receiver, highlight_first: bool) -> None:
    """Shared processors + ProcessorFormatter + HighlightHandler: every event out once, none lost."""
    proc = StructlogProcessor(endpoint=receiver.endpoint)
    shared: list[Processor] = [structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name, proc]
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    out = io.StringIO()
    stream = logging.StreamHandler(out)
    stream.setFormatter(
        ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[ProcessorFormatter.remove_processors_meta, structlog.processors.JSONRenderer()],
        )
    )
    highlight = HighlightHandler(endpoint=receiver.endpoint)
    stdlib_logger("t.once", *((highlight, stream) if highlight_first else (stream, highlight)))
    slog = structlog.stdlib.get_logger("t.once")
    plain = logging.getLogger("t.once")

    slog.info("structlog event", user="ada")
    plain.info("plain record", extra={"order": 1})
    try:
        chained()
    except ValueError:
        slog.exception("structlog failure")
        plain.exception("plain failure")
    slog.info("structlog again")
    plain.info("plain again")

    logs = by_body(received(receiver, 6))
    assert logs["structlog event"].attributes["user"] == "ada"  # the processor's export, not the dict repr
    assert logs["plain record"].attributes["order"] == 1
    for body in ("structlog failure", "plain failure"):
        assert exc_attrs(logs[body])["exception.type"] == "ValueError"
    assert highlight_logging.flush(5) and receiver.wait_for_spans(2, 5)
    assert len(receiver.spans()) == 2
    rendered = [json.loads(line)["event"] for line in out.getvalue().splitlines() if line.startswith("{")]
    assert sorted(rendered) == sorted(logs)


def test_rendered_stdlib_and_handler_export_once(receiver: Receiver) -> None:
    """JSONRenderer into stdlib plus HighlightHandler: structlog events once, plain records once."""
    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            StructlogProcessor(endpoint=receiver.endpoint),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    handler = HighlightHandler(endpoint=receiver.endpoint)
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("t.rendered").propagate = True
    slog = structlog.stdlib.get_logger("t.rendered")
    plain = logging.getLogger("t.rendered")
    slog.info("structlog event", user="ada")
    plain.info("plain record")
    slog.debug("below the stdlib level")  # exported by the processor; no LogRecord follows
    plain.info("plain after a filtered event")
    logs = by_body(received(receiver, 4))
    assert logs["structlog event"].attributes["user"] == "ada"
    assert "code.line.number" in logs["plain after a filtered event"].attributes


def test_drop_next_to_handler_loses_nothing(receiver: Receiver) -> None:
    """drop=True on a stdlib logger leaves no claim: the next plain record is still exported."""
    structlog.configure(
        processors=[StructlogProcessor(endpoint=receiver.endpoint, drop=True)],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    stdlib_logger("t.drop", HighlightHandler(endpoint=receiver.endpoint))
    structlog.stdlib.get_logger("t.drop").info("structlog event")
    logging.getLogger("t.drop").info("plain record")
    assert {r.body for r in received(receiver, 2)} == {"structlog event", "plain record"}


def test_exported_by_structlog_ordinary_records() -> None:
    """The hook says no to ordinary records and yes only to the claimed one, for every handler."""
    record = logging.LogRecord("t.hook", logging.INFO, __file__, 1, "msg", None, None)
    assert not exported_by_structlog(record)
    _dedupe.state.pending = ("t.hook", logging.INFO)
    assert exported_by_structlog(record) and exported_by_structlog(record)  # two HighlightHandlers
    other = logging.LogRecord("t.hook", logging.INFO, __file__, 2, "msg", None, None)
    assert not exported_by_structlog(other)
    _dedupe.state.pending = ("t.hook", logging.WARNING)
    assert not exported_by_structlog(other) and not exported_by_structlog(other)


def test_observed_time_repeats_only_a_float_stamp_read_now(receiver: Receiver) -> None:
    """TimeStamper's float (read as the event is logged) is also the observed time; an ISO string,
    which may be cut to the second, or an old stamp is observed at the processor's clock."""
    proc = StructlogProcessor(endpoint=receiver.endpoint)
    now = time.time()
    before = time.time_ns()
    proc(None, "info", {"event": "float", "timestamp": now})
    proc(None, "info", {"event": "iso", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})
    proc(None, "info", {"event": "old", "timestamp": now - 3600.0})
    after = time.time_ns()
    logs = by_body(received(receiver, 3))
    rec = logs["float"].record
    assert rec.observed_time_unix_nano == rec.time_unix_nano
    for name in ("iso", "old"):
        observed = logs[name].record.observed_time_unix_nano
        assert before - 256 <= observed <= after, name
