"""What the recipe smoke tests share (tests/frontends/test_recipes.py, test_servers.py, test_green.py):
running a recipe as documented, on a free port, and reading what it sent."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Status
from paths import ROOT

from highlight_logging._devtools.receiver import ReceivedLog, Receiver

EXAMPLES = ROOT / "examples"
START_TIMEOUT = 30.0  # imports of grpc + a framework on a slow CI machine
STOP_TIMEOUT = 20.0
ARRIVAL_TIMEOUT = 20.0
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def _sigint_not_ignored() -> Iterator[None]:
    """A child inherits an ignored SIGINT (e.g. pytest started in the background) and would then
    never stop on SIGINT: let it start with the default disposition instead."""
    old = signal.getsignal(signal.SIGINT)
    if old is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if old is signal.SIG_IGN:
            signal.signal(signal.SIGINT, old)


class Recipe:
    """A recipe running in its own process group; ``stop()`` is the graceful path, and whatever
    is left is killed at the end of the test."""

    def __init__(self, cmd: list[str], cwd: Path, receiver: Receiver, tmp_path: Path, **env: str) -> None:
        self.cmd = cmd
        self.log_path = tmp_path / "recipe-output.log"
        environ = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{receiver.endpoint}",
            "PYTHONUNBUFFERED": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            **env,
        }
        with open(self.log_path, "wb") as out, _sigint_not_ignored():
            self.proc = subprocess.Popen(
                cmd, cwd=cwd, env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def wait_listening(self, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.cmd} exited with {self.proc.returncode}:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"{self.cmd} not listening on {port} after {START_TIMEOUT}s:\n{self.output()}"
                    )
                time.sleep(0.05)

    def stop(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.cmd} still running {STOP_TIMEOUT}s after {sig.name}:\n{self.output()}")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)


@pytest.fixture
def run(receiver: Receiver, tmp_path: Path) -> Iterator[Callable[..., Recipe]]:
    started: list[Recipe] = []

    def start(cmd: list[str], cwd: Path = EXAMPLES, **env: str) -> Recipe:
        recipe = Recipe(cmd, cwd, receiver, tmp_path, **env)
        started.append(recipe)
        return recipe

    yield start
    for recipe in started:
        recipe.kill()


def _get(port: int, path: str) -> int:
    try:
        with _NO_PROXY.open(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def _logs(receiver: Receiver, service: str) -> list[ReceivedLog]:
    return [r for r in receiver.log_records() if r.resource_attributes.get("service.name") == service]


def _pid(record: ReceivedLog) -> object:
    return record.resource_attributes["process.pid"]


def _assert_no_duplicates(logs: list[ReceivedLog]) -> None:
    seen = Counter((_pid(r), r.record.time_unix_nano, repr(r.body)) for r in logs)
    assert [k for k, n in seen.items() if n > 1] == []


def _check_web_recipe(receiver: Receiver, recipe: Recipe, service: str, hello: str, failure: str) -> None:
    """The info log and the exception log (with its span) arrived once each, from the server."""

    def info() -> list[ReceivedLog]:
        return [r for r in _logs(receiver, service) if r.body == hello]

    def errors() -> list[ReceivedLog]:
        return [r for r in _logs(receiver, service) if r.attributes.get("exception.message") == failure]

    assert receiver.wait_for(lambda: bool(info() and errors()), ARRIVAL_TIMEOUT), recipe.output()
    (log,) = info()
    assert log.record.severity_text == "INFO"
    assert log.attributes["user_id"] == 42
    assert _pid(log) == recipe.pid
    (err,) = errors()
    assert err.record.severity_text == "ERROR"
    assert err.attributes["exception.type"] == "RuntimeError"
    stack = str(err.attributes["exception.stacktrace"])
    assert "in boom" in stack and f"RuntimeError: {failure}" in stack
    (span,) = [s for s in receiver.spans() if s.span.span_id == err.record.span_id]
    assert span.resource_attributes["service.name"] == service
    assert span.span.status.code == Status.STATUS_CODE_ERROR
    assert span.span.events[0].name == "exception"
    _assert_no_duplicates(_logs(receiver, service))


def send_tasks(broker_dir: Path, tasks: list[tuple[str, list[str]]]) -> None:
    """Send ``(name, args)`` tasks through the recipe's filesystem broker under ``broker_dir``."""
    import celery

    producer = celery.Celery(broker="filesystem://localhost/")
    producer.conf.broker_transport_options = {
        "data_folder_in": str(broker_dir / "queue"),
        "data_folder_out": str(broker_dir / "queue"),
        "control_folder": str(broker_dir / "control"),
    }
    for folder in ("queue", "control"):
        (broker_dir / folder).mkdir(parents=True, exist_ok=True)
    try:
        for name, args in tasks:
            producer.send_task(name, args=args)
    finally:
        producer.close()
