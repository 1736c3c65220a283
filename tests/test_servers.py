"""Smoke tests with the servers that fork or patch on their own (docs/frameworks.md).

uWSGI (forks its workers in C, without Python's fork hooks), gunicorn's gevent and eventlet
workers (monkey-patched), Celery with a gevent pool, uvicorn with and without uvloop.  Each runs
the real server against the in-process receiver, checks every record arrives exactly once (the
first ones while the server runs, the last ones logged right before SIGTERM), times the SIGTERM,
and reads the server's output for anything but its own lines: no traceback, no "Exception
ignored", and no diagnostic of ours unless the test expects it.

uWSGI compiles from source: ``make servers`` installs it; without it those tests skip.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from recipes import (
    ARRIVAL_TIMEOUT,
    EXAMPLES,
    Recipe,
    _free_port,
    _get,
    _logs,
    _pid,
    send_tasks,
)

from highlight_logging._devtools.receiver import ReceivedLog, Receiver

pytestmark = pytest.mark.timeout(120)

ROOT = str(Path(__file__).resolve().parent.parent)
SHUTDOWN_TIMEOUT = 3.0  # highlight_logging's default
# What the server itself takes to stop, on top: gunicorn's master reaps its workers, the gevent
# worker waits for its server to close; measured at 1.0-1.3 s without highlight_logging.
SERVER_STOP = 2.0
UWSGI = shutil.which("uwsgi", path=os.path.dirname(sys.executable))
_FOREIGN = ("Traceback", "Exception ignored", "KeyError", "highlight_logging:")


def gunicorn_version() -> str:
    import gunicorn

    return str(gunicorn.__version__)


def _clean(output: str, allowed: tuple[str, ...] = (), tracebacks: int = 0) -> None:
    """Nothing but the server's own lines: no diagnostic of ours (unless allowed), no "Exception
    ignored", and no traceback but the ``tracebacks`` the app's own failures print."""
    assert output.count("Traceback (most recent call last)") == tracebacks, output
    bad = [
        line
        for line in output.splitlines()
        if any(word in line for word in _FOREIGN[1:]) and not any(a in line for a in allowed)
    ]
    assert bad == [], output


def _bodies(receiver: Receiver, service: str, prefix: str) -> list[ReceivedLog]:
    return [r for r in _logs(receiver, service) if str(r.body).startswith(prefix)]


def _stop(server: Recipe, sig: signal.Signals = signal.SIGTERM) -> float:
    start = time.monotonic()
    server.stop(sig)
    return time.monotonic() - start


def _serve_and_stop(
    receiver: Receiver, server: Recipe, port: int, service: str, settled: Callable[[str], bool] | None = None
) -> tuple[list[str], float]:
    """20 requests whose records must arrive while the server runs, then 5 logged right before
    SIGTERM, which must arrive through the shutdown; every one exactly once.  Returns the
    bodies of the requests' records and the time SIGTERM took."""
    server.wait_listening(port)
    early = [f"/early{i}" for i in range(20)]
    for path in early:
        assert _get(port, path) == 200

    def arrived(paths: list[str]) -> bool:
        got = {str(r.body) for r in _bodies(receiver, service, "request ")}
        return {f"request {p}" for p in paths} <= got

    assert receiver.wait_for(lambda: arrived(early), ARRIVAL_TIMEOUT), server.output()
    late = [f"/late{i}" for i in range(5)]
    for path in late:
        assert _get(port, path) == 200
    if settled is not None:  # the server is done with the requests (its output says so)
        deadline = time.monotonic() + ARRIVAL_TIMEOUT
        while not settled(server.output()) and time.monotonic() < deadline:
            time.sleep(0.01)
    took = _stop(server)
    assert receiver.wait_for(lambda: arrived(early + late), ARRIVAL_TIMEOUT), server.output()
    bodies = [str(r.body) for r in _bodies(receiver, service, "request ")]
    assert Counter(bodies) == Counter(f"request {p}" for p in early + late), server.output()
    return bodies, took


# --- uWSGI ----------------------------------------------------------------------------------------


@pytest.mark.skipif(UWSGI is None, reason="uWSGI is not installed (make servers)")
@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["--enable-threads"],
        ["--lazy-apps"],
        ["--enable-threads", "--py-call-uwsgi-fork-hooks"],
    ],
    ids=["defaults", "enable-threads", "lazy-apps", "fork-hooks"],
)
def test_uwsgi(receiver: Receiver, run: Callable[..., Recipe], flags: list[str]) -> None:
    """uWSGI, 2 workers under --master, the app loaded in the master unless --lazy-apps: records
    arrive while it runs and through SIGTERM (--die-on-term), each once, the master's included."""
    assert UWSGI is not None
    port = _free_port()
    venv = os.path.dirname(os.path.dirname(sys.executable))
    cmd = [UWSGI, "--master", "--processes", "2", "--die-on-term", "--need-app", "--home", venv]
    cmd += ["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "uwsgi_app.py", *flags]
    server = run(cmd, PYTHONPATH=ROOT)

    def logged(output: str) -> bool:
        # uWSGI skips a worker's exit hooks when the signal finds it busy (still closing a
        # request), so SIGTERM waits until each request is logged as done.
        return all(f"GET /late{i} " in output for i in range(5))

    _, took = _serve_and_stop(receiver, server, port, "uwsgi-demo", settled=logged)
    assert took < SHUTDOWN_TIMEOUT, server.output()
    expected = 2 if "--lazy-apps" in flags else 1
    assert receiver.wait_for(lambda: len(_bodies(receiver, "uwsgi-demo", "app imported")) >= expected, 5)
    imported = _bodies(receiver, "uwsgi-demo", "app imported")
    workers = {_pid(r) for r in _bodies(receiver, "uwsgi-demo", "request ")}
    assert server.pid not in workers
    if "--lazy-apps" in flags:  # each worker loads the app
        assert len({_pid(r) for r in imported}) == 2 and server.pid not in {_pid(r) for r in imported}
    elif "--py-call-uwsgi-fork-hooks" in flags:  # once, in the master, which sends it
        assert [_pid(r) for r in imported] == [server.pid]
    else:  # once, in the master, which hands it to the first worker that logs (no exit hook runs there)
        assert len(imported) == 1 and _pid(imported[0]) in workers
    _clean(server.output())


def test_no_thread_fallback_warns_once_and_delivers_at_exit(receiver: Receiver, tmp_path: Path) -> None:
    """A uWSGI that runs no Python threads (``uwsgi.has_threads`` false: older releases without
    --enable-threads; uWSGI 2.0.31 always runs them, so a stand-in module plays it): one warning
    naming the flag, no worker thread, and the records delivered by flush() and at exit from the
    exiting thread."""
    import subprocess

    script = tmp_path / "app.py"
    script.write_text(
        "import logging, sys, threading, types\n"
        "sys.modules['uwsgi'] = types.SimpleNamespace(has_threads=0)\n"
        "import highlight_logging\n"
        "log = logging.getLogger('nothreads'); log.setLevel(logging.INFO)\n"
        "log.addHandler(highlight_logging.HighlightHandler(service_name='nothreads'))\n"
        "for i in range(10): log.info('first %d', i)\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "assert highlight_logging.flush(10)\n"
        "print('flushed', flush=True)\n"
        "for i in range(10): log.info('at exit %d', i)\n"
    )
    env = {**os.environ, "PYTHONPATH": ROOT, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{receiver.endpoint}"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "flushed\n"
    (warning,) = done.stderr.strip().splitlines()
    assert "uWSGI runs without Python threads" in warning and "--enable-threads" in warning
    assert receiver.wait_for(lambda: len(_logs(receiver, "nothreads")) >= 20, ARRIVAL_TIMEOUT)
    bodies = Counter(str(r.body) for r in _logs(receiver, "nothreads"))
    assert bodies == Counter([*(f"first {i}" for i in range(10)), *(f"at exit {i}" for i in range(10))])


# --- gunicorn -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("worker", "preload"),
    [("gevent", True), ("gevent", False), ("eventlet", True), ("eventlet", False), ("sync", False)],
)
def test_gunicorn(
    receiver: Receiver,
    run: Callable[..., Recipe],
    tmp_path: Path,
    worker: str,
    preload: bool,
) -> None:
    """gunicorn -k gevent / eventlet / sync, 2 workers, with and without --preload, the recipe's
    post_fork and worker_exit hooks: every record once, SIGTERM as prompt as without us."""
    if worker != "sync":
        pytest.importorskip(worker)
    if worker == "eventlet" and importlib.util.find_spec("gunicorn.workers.geventlet") is None:
        pytest.skip(f"gunicorn {gunicorn_version()} has no eventlet worker; test_green covers eventlet")
    port = _free_port()
    conf = tmp_path / "gunicorn_conf.py"  # the recipe's hooks; preload_app as the test asks
    conf.write_text(
        f"exec(open({str(EXAMPLES / 'gunicorn.conf.py')!r}).read())\n"
        f"preload_app = {preload}\nworkers = 2\nworker_class = {worker!r}\n"
        # gunicorn loses a SIGTERM that reaches a worker still booting (before its own handlers;
        # seen without highlight_logging too: a 30 s stop), so SIGTERM waits for both to be up.
        "def post_worker_init(worker):\n"
        "    import os, sys\n"
        "    print(f'test: worker up {os.getpid()}', file=sys.stderr, flush=True)\n"
    )
    cmd = [sys.executable, "-m", "gunicorn", "-c", str(conf), "-b", f"127.0.0.1:{port}", "gunicorn_app:app"]
    server = run(cmd, XDG_RUNTIME_DIR=str(tmp_path), PYTHONWARNINGS="ignore")
    _, took = _serve_and_stop(
        receiver, server, port, "gunicorn-demo", settled=lambda out: out.count("test: worker up") >= 2
    )
    assert took < SHUTDOWN_TIMEOUT + SERVER_STOP, server.output()
    workers = {_pid(r) for r in _bodies(receiver, "gunicorn-demo", "request ")}
    assert server.pid not in workers
    assert receiver.wait_for(
        lambda: len(_bodies(receiver, "gunicorn-demo", "app imported")) >= 1 + (not preload), 5
    )
    imported = _bodies(receiver, "gunicorn-demo", "app imported")
    booted = _bodies(receiver, "gunicorn-demo", "worker booted")
    if preload:  # once, in the master; post_fork logs in each worker
        assert [_pid(r) for r in imported] == [server.pid]
        assert len(booted) == 2 and workers <= {_pid(r) for r in booted}
    else:  # in each worker (post_fork runs before the app, and its logging, are loaded)
        assert len(imported) == 2 and workers <= {_pid(r) for r in imported}
        assert booted == []
    # eventlet prints its own notice when it patches after modules made their locks.
    _clean(server.output(), allowed=("RLock(s) were not greened",))


# --- Celery ---------------------------------------------------------------------------------------


_CELERY = [
    sys.executable,
    "-m",
    "celery",
    "-A",
    "celery_app",
    "worker",
    "--without-gossip",
    "--without-mingle",
]


def test_celery_gevent_pool(receiver: Receiver, run: Callable[..., Recipe], tmp_path: Path) -> None:
    """celery -P gevent with the recipe: task logs and the failure arrive once; SIGTERM is prompt."""
    pytest.importorskip("celery")
    pytest.importorskip("gevent")
    broker_dir = tmp_path / "broker"
    cmd = [*_CELERY, "--pool=gevent", "--concurrency=4", "--without-heartbeat", "-l", "INFO"]
    worker = run(cmd, CELERY_BROKER_DIR=str(broker_dir), PYTHONWARNINGS="ignore")
    names = [f"n{i}" for i in range(8)]
    send_tasks(broker_dir, [("celery_app.greet", [n]) for n in names] + [("celery_app.fail", [])])

    def task_logs() -> list[ReceivedLog]:
        return [r for r in _logs(receiver, "celery-demo") if "from a celery task" in str(r.body)]

    def failures() -> list[ReceivedLog]:
        logs = _logs(receiver, "celery-demo")
        return [r for r in logs if r.attributes.get("exception.message") == "celery task failed"]

    assert receiver.wait_for(lambda: len(task_logs()) >= len(names) and bool(failures()), ARRIVAL_TIMEOUT), (
        worker.output()
    )
    took = _stop(worker)
    assert took < SHUTDOWN_TIMEOUT + SERVER_STOP, worker.output()
    assert sorted(str(r.body) for r in task_logs()) == sorted(f"hello {n} from a celery task" for n in names)
    assert len(failures()) == 1
    assert {_pid(r) for r in task_logs()} == {worker.pid}  # one process: the pool is greenlets
    ready = [r for r in _logs(receiver, "celery-demo") if str(r.body).endswith(" ready.")]
    assert len(ready) == 1
    _clean(worker.output(), tracebacks=1)  # Celery prints the failed task's


_HIJACKED_APP = """
import logging.config, os
from celery import Celery
from celery.utils.log import get_task_logger

logging.config.dictConfig({{
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {{"highlight": {{"class": "highlight_logging.HighlightHandler", "service_name": "hijacked"}}}},
    "root": {{"level": "INFO", "handlers": ["highlight"]}},
}})
broker_dir = os.environ["CELERY_BROKER_DIR"]
for folder in ("queue", "control"):
    os.makedirs(os.path.join(broker_dir, folder), exist_ok=True)
app = Celery("hijacked_app", broker="filesystem://localhost/")
app.conf.broker_transport_options = {{
    "data_folder_in": os.path.join(broker_dir, "queue"),
    "data_folder_out": os.path.join(broker_dir, "queue"),
    "control_folder": os.path.join(broker_dir, "control"),
    "polling_interval": 0.1,
}}
app.conf.worker_hijack_root_logger = {hijack}
"""


@pytest.mark.parametrize("hijack", [True, False])
def test_celery_root_logger_hijack_is_named(
    receiver: Receiver,
    run: Callable[..., Recipe],
    tmp_path: Path,
    hijack: bool,
) -> None:
    """The handler set up at import, without the recipe's signals: Celery removes it from the
    root logger (or, with worker_hijack_root_logger=False, task logs never reach it); one
    warning says so and names the recipe, instead of silence."""
    pytest.importorskip("celery")
    (tmp_path / "hijacked_app.py").write_text(_HIJACKED_APP.format(hijack=hijack))
    broker_dir = tmp_path / "broker"
    cmd = [*_CELERY[:3], "-A", "hijacked_app", *_CELERY[5:], "--pool=solo", "--without-heartbeat"]
    worker = run(cmd, cwd=tmp_path, CELERY_BROKER_DIR=str(broker_dir), PYTHONPATH=ROOT)
    deadline = time.monotonic() + 30

    def warned() -> bool:
        return "highlight_logging:" in worker.output()

    while not warned() and time.monotonic() < deadline and worker.proc.poll() is None:
        time.sleep(0.05)
    _stop(worker)
    lines = [line for line in worker.output().splitlines() if "highlight_logging:" in line]
    assert len(lines) == 1, worker.output()
    assert "after_setup_logger" in lines[0] and "docs/frameworks.md" in lines[0]
    assert ("root logger (worker_hijack_root_logger)" in lines[0]) == hijack
    assert ("task loggers" in lines[0]) != hijack


# --- uvicorn --------------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_uvicorn_logging_never_waits_on_a_collector_that_does_not_answer(
    run: Callable[..., Recipe],
    loop: str,
) -> None:
    """uvicorn (asyncio and uvloop) with a collector that accepts connections and never answers:
    requests are served at once (a logging call never waits on the network) and SIGTERM ends
    the server within shutdown_timeout."""
    pytest.importorskip("fastapi")
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    import socket

    with socket.socket() as blackhole:  # listens, never reads or answers
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(16)
        port = _free_port()
        cmd = [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1", "--port", str(port)]
        server = run(
            [*cmd, "--loop", loop],
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{blackhole.getsockname()[1]}",
        )
        server.wait_listening(port)
        start = time.monotonic()
        for _ in range(20):
            assert _get(port, "/") == 200
        served = time.monotonic() - start
        took = _stop(server)
    assert served < 5.0, f"20 requests took {served:.2f} s"  # each logs; none waits on the collector
    assert took < SHUTDOWN_TIMEOUT + SERVER_STOP, server.output()
