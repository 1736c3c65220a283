"""highlight_logging under ``opentelemetry-instrument``, for real (docs/opentelemetry.md).

Each test runs tests/otel_instrument_app.py (Flask, ``HighlightHandler`` on the root logger) under
``opentelemetry-instrument`` with opentelemetry-distro, the Flask and logging instrumentations and
their OTLP exporters at their defaults, all aimed at our receiver on a free port; it makes requests,
stops the app (SIGTERM with its default action, or a normal exit) and counts what arrived.  Once
the app's process has ended, everything it sent has been received.

The facts these tests hold:
* with the defaults every record is sent twice, in both our modes, and we say so once on stderr,
  naming the remedy for the mode;
* with that remedy each record arrives once, and nothing is said;
* on SIGTERM the spans our records point to arrive (the request's server span, the parent of our
  exception span), and in ``use_otel_providers=True`` mode so do the records themselves.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from otlp_receiver import free_port

from highlight_logging._devtools.receiver import ReceivedLog, Receiver

pytest.importorskip("opentelemetry.distro")
pytest.importorskip("opentelemetry.instrumentation.flask")
pytest.importorskip("opentelemetry.instrumentation.logging")
pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc")

pytestmark = pytest.mark.timeout(120)

APP = Path(__file__).resolve().parent / "otel_instrument_app.py"
INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"  # the venv's, beside its python
if not INSTRUMENT.exists():
    pytest.skip("no opentelemetry-instrument beside this python", allow_module_level=True)
SERVICE = "otel-instrument-app"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
ARRIVAL_TIMEOUT = 20.0
WARNING = "every record is sent twice"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

REMEDY = {"OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION": "false"}  # what the line names, in both modes


class App:
    """The app under ``opentelemetry-instrument`` in its own process group."""

    def __init__(self, endpoint: str, tmp_path: Path, mode: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.out = tmp_path / f"app-{mode}.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "HIGHLIGHT_"))}
        environ.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{endpoint}",
            OTEL_SERVICE_NAME=SERVICE,
            HL_MODE=mode,
            PYTHONUNBUFFERED="1",
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
            **env,
        )
        cmd = [str(INSTRUMENT), sys.executable, str(APP), str(self.port)]
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"the app exited with {self.proc.returncode}:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the app is not listening after {START_TIMEOUT}s:\n{self.output()}")
                time.sleep(0.05)

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def get(self, path: str) -> int:
        try:
            with _NO_PROXY.open(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code

    def traffic(self) -> None:
        for n in range(3):
            assert self.get(f"/log/{n}") == 200
        assert self.get("/boom") == 500

    def wait(self) -> int:
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the app still runs {STOP_TIMEOUT}s after being stopped:\n{self.output()}")

    def sigterm(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.wait() == -signal.SIGTERM, self.output()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., tuple[App, Receiver]]]:
    started: list[App] = []
    with contextlib.ExitStack() as stack:

        def run(mode: str, **env: str) -> tuple[App, Receiver]:
            receiver = stack.enter_context(Receiver())
            app = App(receiver.endpoint, tmp_path, mode, env)
            started.append(app)
            return app, receiver

        try:
            yield run
        finally:
            for app in started:
                app.kill()


def _records(receiver: Receiver) -> list[ReceivedLog]:
    """The app's own records: its route's and Flask's error log (not werkzeug's access lines)."""
    return [r for r in receiver.log_records() if str(r.body).startswith(("record ", "Exception on /boom"))]


def _counts(receiver: Receiver) -> Counter[str]:
    return Counter(str(r.body) for r in _records(receiver))


def _warnings(app: App) -> list[str]:
    return [line for line in app.output().splitlines() if WARNING in line]


def _check_links(receiver: Receiver, mode: str) -> None:
    """Every span our records point to arrived: the server span of each request (the records'
    own span, or our exception span's parent), and our exception span."""
    spans = {s.span.span_id: s.span for s in receiver.spans()}
    server = {sid for sid, s in spans.items() if s.name in ("GET /log/<int:n>", "GET /boom")}
    assert len(server) == 4, sorted(s.name for s in spans.values())
    ours = [r for r in _records(receiver) if r.scope.name in ("otel_app", "otel_instrument_app")]
    for record in ours:
        if "exception.type" in record.attributes and record.record.span_id not in server:
            exception_span = spans[record.record.span_id]  # our exception span arrived ...
            assert exception_span.name == "RuntimeError"
            assert exception_span.parent_span_id in server  # ... and so did its parent
            assert exception_span.trace_id == record.record.trace_id
        else:
            assert record.record.span_id in server, (mode, record.body)
    assert any(s.name == "RuntimeError" for s in spans.values()), mode


@pytest.mark.parametrize("mode", ["exporter", "providers"])
def test_defaults_duplicate_and_say_so_once(start: Callable[..., tuple[App, Receiver]], mode: str) -> None:
    """Plain ``opentelemetry-instrument``: their handler exports every record too; one line says
    so at start, with the remedy for this mode; SIGTERM still delivers every span and record."""
    app, receiver = start(mode)
    app.traffic()
    app.sigterm()
    warnings = _warnings(app)
    assert len(warnings) == 1, app.output()
    (line,) = warnings
    assert line.startswith("highlight_logging: OpenTelemetry's LoggingHandler")
    assert "OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION=false" in line
    if mode == "providers":
        assert "use_otel_providers=True" in line and "keep OTEL_LOGS_EXPORTER" in line
    else:
        assert "OTEL_LOGS_EXPORTER=none" in line
    assert app.output().index(WARNING) < app.output().index("Serving Flask app"), "said at start"
    # What the line says is true: each record twice.
    assert _counts(receiver) == {"record 0": 2, "record 1": 2, "record 2": 2, "Exception on /boom [GET]": 2}
    _check_links(receiver, mode)


@pytest.mark.parametrize("mode", ["exporter", "providers"])
def test_remedy_each_record_once_and_sigterm_delivers_their_spans(
    start: Callable[..., tuple[App, Receiver]], mode: str
) -> None:
    """With the remedy the line names, each record arrives once and nothing is said; SIGTERM
    right after the last request delivers the server spans (held by the app's BatchSpanProcessor
    for 5 s) and, in providers mode, the records held by the app's LoggerProvider."""
    app, receiver = start(mode, **REMEDY)
    app.traffic()
    app.sigterm()
    assert _warnings(app) == [], app.output()
    assert _counts(receiver) == {"record 0": 1, "record 1": 1, "record 2": 1, "Exception on /boom [GET]": 1}
    (error,) = [r for r in _records(receiver) if "exception.type" in r.attributes]
    assert error.attributes["exception.type"] == "RuntimeError"
    assert error.resource_attributes["service.name"] == SERVICE
    _check_links(receiver, mode)


def test_logs_exporter_none_is_the_other_remedy(start: Callable[..., tuple[App, Receiver]]) -> None:
    """Our exporter, ``OTEL_LOGS_EXPORTER=none``: their handler stays but exports nothing, so each
    record arrives once and nothing is said (its cost is in docs/opentelemetry.md)."""
    app, receiver = start("exporter", OTEL_LOGS_EXPORTER="none")
    app.traffic()
    app.sigterm()
    assert _warnings(app) == [], app.output()
    assert _counts(receiver) == {"record 0": 1, "record 1": 1, "record 2": 1, "Exception on /boom [GET]": 1}
    _check_links(receiver, "exporter")


def test_dictconfig_is_seen_at_the_first_record(start: Callable[..., tuple[App, Receiver]]) -> None:
    """Set up through dictConfig, which the instrumentation runs with its handler taken off the
    root: the line comes with the first record instead, still once."""
    app, receiver = start("providers", HL_DICTCONFIG="1")
    app.traffic()
    app.sigterm()
    assert len(_warnings(app)) == 1, app.output()
    assert _counts(receiver)["record 0"] == 2


@pytest.mark.parametrize("mode", ["exporter", "providers"])
def test_normal_exit_delivers_the_same(start: Callable[..., tuple[App, Receiver]], mode: str) -> None:
    """A normal exit (Ctrl-C on the dev server, atexit runs) delivers the same as SIGTERM."""
    app, receiver = start(mode, **REMEDY)
    app.traffic()
    assert app.get("/exit") == 200
    assert app.wait() == 0, app.output()
    assert receiver.wait_for(lambda: len(_records(receiver)) >= 4, ARRIVAL_TIMEOUT)
    assert _counts(receiver) == {"record 0": 1, "record 1": 1, "record 2": 1, "Exception on /boom [GET]": 1}
    _check_links(receiver, mode)


@pytest.mark.parametrize("mode", ["exporter", "providers"])
def test_sigterm_with_the_collector_down_ends_within_shutdown_timeout(tmp_path: Path, mode: str) -> None:
    """Collector refused: the app's exporters retry for 10 s, but SIGTERM still ends the process
    within shutdown_timeout (1 s here; the SDK's force_flush ignores its timeout, so we stop
    waiting at the deadline), and says so.  Measured ~1.02-1.2 s under shared load."""
    app = App(f"127.0.0.1:{free_port()}", tmp_path, mode, {**REMEDY, "HL_SHUTDOWN_TIMEOUT": "1"})
    try:
        app.traffic()
        start = time.monotonic()
        app.sigterm()
        took = time.monotonic() - start
        assert 0.9 < took < 2.5, app.output()  # the default budget (3 s) would be past this
        assert "TracerProvider was still flushing when shutdown_timeout ran out" in app.output()
    finally:
        app.kill()
