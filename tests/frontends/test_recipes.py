"""Smoke tests for the framework recipes in examples/ (docs/frameworks.md).

Each test runs a recipe as it is documented — a real server on a free loopback port, or a real
prefork Celery worker — in a subprocess pointed at the in-process ``receiver`` through
OTEL_EXPORTER_OTLP_ENDPOINT, drives it, stops it the graceful way, and checks what arrived.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Status
from recipes import (
    ARRIVAL_TIMEOUT,
    EXAMPLES,
    Recipe,
    _assert_no_duplicates,
    _check_web_recipe,
    _free_port,
    _get,
    _logs,
    _pid,
    send_tasks,
)

from highlight_logging._devtools.receiver import ReceivedLog, Receiver

pytestmark = pytest.mark.timeout(90)


def test_flask(receiver: Receiver, run: Callable[..., Recipe]) -> None:
    """Flask dev server: a route's info log and Flask's unhandled-exception log + span arrive."""
    pytest.importorskip("flask")
    port = _free_port()
    app = run([sys.executable, "-m", "flask", "--app", "flask_app", "run", "--port", str(port)])
    app.wait_listening(port)
    assert _get(port, "/") == 200
    assert _get(port, "/boom") == 500
    app.stop(signal.SIGINT)  # the dev server exits normally on Ctrl-C, running exit hooks
    _check_web_recipe(receiver, app, "flask-demo", "hello from flask", "flask route failed")


def test_fastapi_uvicorn(receiver: Receiver, run: Callable[..., Recipe]) -> None:
    """uvicorn: the route's info log and uvicorn.error's "Exception in ASGI application" + span arrive."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    port = _free_port()
    app = run(
        [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1", "--port", str(port)]
    )
    app.wait_listening(port)
    assert _get(port, "/") == 200
    assert _get(port, "/boom") == 500
    app.stop(signal.SIGTERM)
    _check_web_recipe(receiver, app, "fastapi-demo", "hello from fastapi", "fastapi route failed")
    (err,) = [r for r in _logs(receiver, "fastapi-demo") if "exception.type" in r.attributes]
    assert (err.scope.name, str(err.body).rstrip()) == ("uvicorn.error", "Exception in ASGI application")


def test_django_runserver(receiver: Receiver, run: Callable[..., Recipe]) -> None:
    """Django runserver with LOGGING: a view's info log and django.request's 500 log + span arrive."""
    pytest.importorskip("django")
    port = _free_port()
    cmd = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    app = run(cmd, cwd=EXAMPLES / "django_app")
    app.wait_listening(port)
    assert _get(port, "/") == 200
    assert _get(port, "/boom") == 500
    app.stop(signal.SIGINT)  # runserver exits normally on Ctrl-C, running exit hooks
    _check_web_recipe(receiver, app, "django-demo", "hello from django", "django view failed")
    (err,) = [r for r in _logs(receiver, "django-demo") if "exception.type" in r.attributes]
    assert (err.scope.name, err.body) == ("django.request", "Internal Server Error: /boom")


def test_gunicorn_preload_workers(receiver: Receiver, run: Callable[..., Recipe], tmp_path: Path) -> None:
    """gunicorn --preload -w 3: the master's import log arrives once, workers' logs from each worker."""
    pytest.importorskip("gunicorn")
    port = _free_port()
    cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-w", "3", "-b", f"127.0.0.1:{port}"]
    # XDG_RUNTIME_DIR: where gunicorn >= 25.1 puts its control socket (not in $HOME).
    server = run([*cmd, "gunicorn_app:app"], XDG_RUNTIME_DIR=str(tmp_path))
    server.wait_listening(port)
    paths = [f"/r{i}" for i in range(6)]
    for path in paths:
        assert _get(port, path) == 200
    server.stop(signal.SIGTERM)

    def by_body(prefix: str) -> list[ReceivedLog]:
        return [r for r in _logs(receiver, "gunicorn-demo") if str(r.body).startswith(prefix)]

    def arrived() -> bool:
        return len(by_body("worker booted")) >= 3 and len(by_body("request ")) >= len(paths)

    assert receiver.wait_for(arrived, ARRIVAL_TIMEOUT), server.output()
    (imported,) = by_body("app imported")
    assert _pid(imported) == server.pid
    workers = {_pid(r) for r in by_body("worker booted")}
    assert len(workers) == 3 and server.pid not in workers
    requests = by_body("request ")
    assert sorted(str(r.body) for r in requests) == [f"request {p}" for p in paths]
    assert {_pid(r) for r in requests} <= workers
    _assert_no_duplicates(_logs(receiver, "gunicorn-demo"))


def test_celery_prefork_worker(receiver: Receiver, run: Callable[..., Recipe], tmp_path: Path) -> None:
    """Celery prefork: task logs and the failure log + span arrive from pool children exiting via os._exit."""
    pytest.importorskip("celery")
    broker_dir = tmp_path / "broker"
    # --max-tasks-per-child=1: each child exits (os._exit) right after its task, so its records
    # arrive only because worker_process_shutdown flushes them.
    cmd = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--pool=prefork", "--concurrency=2"]
    options = ["--max-tasks-per-child=1", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    worker = run([*cmd, *options, "-l", "INFO"], CELERY_BROKER_DIR=str(broker_dir))
    send_tasks(
        broker_dir, [("celery_app.greet", ["ada"]), ("celery_app.greet", ["grace"]), ("celery_app.fail", [])]
    )

    def task_logs() -> list[ReceivedLog]:
        return [r for r in _logs(receiver, "celery-demo") if "from a celery task" in str(r.body)]

    def failures() -> list[ReceivedLog]:
        logs = _logs(receiver, "celery-demo")
        return [r for r in logs if r.attributes.get("exception.message") == "celery task failed"]

    assert receiver.wait_for(lambda: len(task_logs()) >= 2 and failures(), ARRIVAL_TIMEOUT), worker.output()
    worker.stop(signal.SIGTERM)  # warm shutdown
    greets = task_logs()
    assert sorted(str(r.body) for r in greets) == [
        "hello ada from a celery task",
        "hello grace from a celery task",
    ]
    (failure,) = failures()
    children = {_pid(r) for r in [*greets, failure]}
    assert len(children) == 3 and worker.pid not in children  # one task per child
    for r in [*greets, failure]:  # set by the worker_process_init hook
        assert str(r.resource_attributes["service.instance.id"]).endswith(f"/{_pid(r)}")
    assert failure.scope.name == "celery.app.trace"
    assert failure.attributes["exception.type"] == "RuntimeError"
    (span,) = [s for s in receiver.spans() if s.span.span_id == failure.record.span_id]
    assert span.span.status.code == Status.STATUS_CODE_ERROR
    ready = [r for r in _logs(receiver, "celery-demo") if str(r.body).endswith(" ready.")]
    assert [_pid(r) for r in ready] == [worker.pid]
    _assert_no_duplicates(_logs(receiver, "celery-demo"))
