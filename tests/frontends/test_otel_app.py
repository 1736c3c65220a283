"""Next to the app's own OpenTelemetry setup: the app's providers flushed at exit and on SIGTERM
(``_export.otel_flush``), and OpenTelemetry's logging handler detected (``_frontends.otel_duplicates``).

tests/test_otel_instrument.py runs both under ``opentelemetry-instrument``; here are the SDK set
up by hand, no SDK at all, and the edges (a flush that hangs or raises, loggers that don't propagate).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from paths import ROOT

from highlight_logging import HighlightHandler
from highlight_logging._core import diag as _diag
from highlight_logging._core.settings import Settings
from highlight_logging._devtools.receiver import Receiver
from highlight_logging._export import otel_flush as _otel_flush
from highlight_logging._export import process as _process
from highlight_logging._frontends import otel_duplicates as _otel_duplicates

ROOT = str(ROOT)


def _child(code: str, receiver: Receiver, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "HIGHLIGHT_"))}
    environ.update(PYTHONPATH=ROOT, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{receiver.endpoint}", **env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=environ, capture_output=True, text=True, timeout=60
    )


# --- the SDK set up by hand, and no SDK ------------------------------------------------------------

SDK_BY_HAND = """
    import logging, os, signal
    from opentelemetry import _logs, trace
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    import highlight_logging

    # Batches held for a minute: only a flush on the way out delivers them.
    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(insecure=True), schedule_delay_millis=60000))
    trace.set_tracer_provider(tp)
    lp = LoggerProvider()
    lp.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(insecure=True), schedule_delay_millis=60000))
    _logs.set_logger_provider(lp)
    log = logging.getLogger("app")
    log.setLevel(logging.INFO)
    log.addHandler(highlight_logging.HighlightHandler(use_otel_providers={providers}))
    with trace.get_tracer("app").start_as_current_span("request"):
        log.info("inside the request")
    {end}
"""


@pytest.mark.parametrize("providers", [False, True])
@pytest.mark.parametrize("end", ["sigterm", "exit"])
def test_sdk_set_up_by_hand_is_flushed(receiver: Receiver, providers: bool, end: str) -> None:
    """The app's own providers, batching for a minute: SIGTERM (default action) or a normal exit
    delivers the span our record points to, and in providers mode the record itself."""
    how = "os.kill(os.getpid(), signal.SIGTERM)" if end == "sigterm" else "pass"
    proc = _child(SDK_BY_HAND.format(providers=providers, end=how), receiver)
    assert proc.returncode == (-signal.SIGTERM if end == "sigterm" else 0), proc.stderr
    (record,) = [r for r in receiver.log_records() if r.body == "inside the request"]
    (span,) = [s for s in receiver.spans() if s.span.name == "request"]
    assert record.record.span_id == span.span.span_id and record.record.trace_id == span.span.trace_id
    assert "highlight_logging" not in proc.stderr, proc.stderr


def test_no_sdk_is_imported_without_one(receiver: Receiver) -> None:
    """Our exporter and no OpenTelemetry SDK in the app: shutting down imports none."""
    code = """
        import logging, sys
        import highlight_logging
        logging.getLogger().addHandler(highlight_logging.HighlightHandler())
        logging.warning("no sdk here")
        highlight_logging.shutdown()
        loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk"))
        print(loaded)
    """
    proc = _child(code, receiver)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert [r.body for r in receiver.log_records()] == ["no sdk here"]


# --- otel_flush's edges, in process ------------------------------------------------------------------


class _Provider:
    def __init__(self, flush: Any) -> None:
        self._flush = flush
        self.timeouts: list[int] = []

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.timeouts.append(timeout_millis)
        result: bool = self._flush()
        return result


@pytest.fixture
def providers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    found: list[Any] = []
    monkeypatch.setattr(_otel_flush, "app_providers", lambda: list(found))
    yield found
    found.clear()


def test_flush_gets_the_remaining_budget(providers: list[Any]) -> None:
    quick = _Provider(lambda: True)
    providers.append(quick)
    assert _process.shutdown_all(timeout=2.0)
    (timeout,) = quick.timeouts
    assert 1000 < timeout <= 2000


def test_a_hanging_flush_is_left_at_the_deadline(
    providers: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The SDK's force_flush ignores its timeout (#4568): exit still ends at the deadline, with one line."""
    release = threading.Event()
    providers.append(_Provider(lambda: release.wait(30)))
    providers.append(_Provider(lambda: 1 / 0))  # raises: never into the app
    start = time.monotonic()
    _process.shutdown_all(timeout=0.3)
    took = time.monotonic() - start
    release.set()
    assert 0.25 < took < 2.0
    err = capsys.readouterr().err
    assert err.count("was still flushing when shutdown_timeout ran out") == 1, err


def test_nothing_to_flush_without_an_sdk_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """No provider set: the API hands out its proxies, which have no force_flush; nothing to do."""
    from opentelemetry import trace
    from opentelemetry._logs import _internal as logs_internal

    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(logs_internal, "_LOGGER_PROVIDER", None)
    assert _otel_flush.app_providers() == []
    assert _otel_flush.begin(time.monotonic())() is True


# --- otel_duplicates, in process -----------------------------------------------------------------


class _OtelLikeHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        pass


_OtelLikeHandler.__module__ = "opentelemetry.instrumentation.logging.handler"
_OtelLikeHandler.__name__ = _OtelLikeHandler.__qualname__ = "LoggingHandler"


@pytest.fixture
def their_handler() -> Iterator[logging.Handler]:
    handler = _OtelLikeHandler()
    logging.root.addHandler(handler)
    _diag.reset()
    yield handler
    logging.root.removeHandler(handler)


def test_said_once_when_made_next_to_theirs(
    their_handler: logging.Handler, capsys: pytest.CaptureFixture[str]
) -> None:
    HighlightHandler(endpoint="127.0.0.1:9")
    HighlightHandler(endpoint="127.0.0.1:9", service_name="another")
    err = capsys.readouterr().err
    assert err.count("every record is sent twice") == 1, err
    assert "set OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION=false" in err
    assert "OTEL_LOGS_EXPORTER=none" in err


def test_said_at_the_first_record_when_theirs_came_later(capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("tests.otel_app.later")
    logger.propagate = False
    ours = HighlightHandler(endpoint="127.0.0.1:9")
    theirs = _OtelLikeHandler()
    logger.addHandler(ours)
    logger.addHandler(theirs)
    try:
        assert "sent twice" not in capsys.readouterr().err
        logger.warning("one")
        logger.warning("two")
        err = capsys.readouterr().err
        assert err.count("every record is sent twice") == 1, err
        assert "on logger 'tests.otel_app.later'" in err
    finally:
        logger.removeHandler(ours)
        logger.removeHandler(theirs)


def test_not_said_where_records_do_not_reach_theirs(their_handler: logging.Handler) -> None:
    logger = logging.getLogger("tests.otel_app.private")
    logger.propagate = False
    assert _otel_duplicates.otel_handler("tests.otel_app.private") is None
    assert _otel_duplicates.otel_handler("tests.otel_app") == (their_handler, "root")


def test_their_export_off(
    their_handler: logging.Handler, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """OTEL_LOGS_EXPORTER=none: nothing twice with our exporter; with use_otel_providers=True both
    handlers still emit on the same provider, so it is still said, with the providers' remedy."""
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "none")
    _otel_duplicates.check(Settings())
    assert capsys.readouterr().err == ""
    _otel_duplicates.check(Settings(use_otel_providers=True))
    err = capsys.readouterr().err
    assert "HighlightHandler(use_otel_providers=True)" in err and "keep OTEL_LOGS_EXPORTER" in err


def test_the_sdk_handler_gets_its_own_remedy() -> None:
    class SdkHandler(logging.Handler):
        pass

    SdkHandler.__module__ = "opentelemetry.sdk._logs._internal"
    line = _otel_duplicates.message(SdkHandler(), "root", providers=False)
    assert "unset OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED" in line


def test_structlog_rendered_into_logging_is_said_too(
    their_handler: logging.Handler, capsys: pytest.CaptureFixture[str]
) -> None:
    """structlog on stdlib loggers: their handler gets every event as a record, so it is said once;
    a structlog logger of its own (PrintLogger), or drop=True, never reaches it: nothing said."""
    from highlight_logging import StructlogProcessor

    StructlogProcessor(endpoint="127.0.0.1:9")(object(), "info", {"event": "own logger"})
    from structlog import DropEvent

    with pytest.raises(DropEvent):
        StructlogProcessor(endpoint="127.0.0.1:9", drop=True)(logging.getLogger("x"), "info", {"event": "e"})
    assert "sent twice" not in capsys.readouterr().err
    processor = StructlogProcessor(endpoint="127.0.0.1:9", service_name="stdlib")
    processor(logging.getLogger("tests.otel_app.structlog"), "info", {"event": "one"})
    processor(logging.getLogger("tests.otel_app.structlog"), "info", {"event": "two"})
    err = capsys.readouterr().err
    assert err.count("every record is sent twice") == 1, err
    assert "next to StructlogProcessor and" in err
