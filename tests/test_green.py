"""gevent and eventlet monkey-patching, before or after ``import highlight_logging``.

Each case runs a real patched process against the in-process receiver: the export worker must be
a real OS thread (delivering while the app's greenlets compute without yielding), SIGTERM and
Ctrl-C must still stop the process, promptly, delivering its last record, and stderr must hold
nothing from us but our own diagnostics.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from recipes import _sigint_not_ignored

from highlight_logging._devtools.receiver import Receiver

pytestmark = pytest.mark.timeout(60)

ROOT = str(Path(__file__).resolve().parent.parent)
RECORDS = 1000
SHUTDOWN_TIMEOUT = 3.0  # the default

HUB_CLASS = {
    "gevent": "__import__('gevent.hub').hub.Hub",
    "eventlet": "__import__('eventlet.hubs.hub').hubs.hub.BaseHub",
}

# Hubs the app has by the time it prints them: eventlet's monkey_patch() builds the main thread's.
APP_HUBS = {"gevent": 0, "eventlet": 1}

PATCH = {
    "gevent": "import gevent.monkey; gevent.monkey.patch_all()",
    "eventlet": "import eventlet; eventlet.monkey_patch()",
}

SCRIPT = """
import logging, os, sys, time
{before}
import highlight_logging
logging.getLogger().addHandler(highlight_logging.HighlightHandler(service_name="green"))
logging.getLogger().setLevel(logging.INFO)
logging.info("set up")
{after}
flag = sys.argv[1]
for i in range({records}):
    logging.info("record %d", i)
print("busy", flush=True)
# Compute without ever yielding to the hub, until the parent has seen every record arrive.
deadline = time.monotonic() + 20
while not os.path.exists(flag) and time.monotonic() < deadline:
    sum(range(2000))
logging.info("last")
# The app's own hubs only: the export thread blocks without one.
import gc
hub_class = {hub_class}
print("hubs", sum(isinstance(o, hub_class) for o in gc.get_objects()), flush=True)
print("ready", flush=True)
time.sleep(60)  # a patched sleep: the hub waits, as a server's does
"""

# eventlet prints this itself when it patches after logging made its locks, with or without us.
_EVENTLET_OWN = "RLock(s) were not greened, to fix this error make sure you run eventlet.monkey_patch()"


def _sleeping_in_the_hub(pid: int) -> bool:
    """The main thread is blocked in the hub's wait (poll, epoll, select or a plain sleep), read
    from /proc (True where there is none).  A signal that lands while the hub runs Python code
    instead may be lost to the library's own handlers, with or without us (seen with eventlet: a
    Ctrl-C sent the moment the app printed "ready" left it asleep in the hub)."""
    try:
        with open(f"/proc/{pid}/wchan", encoding="ascii") as f:
            wchan = f.read()
    except OSError:
        return True
    return any(word in wchan for word in ("poll", "select", "nanosleep"))


def _run(receiver: Receiver, tmp_path: Path, library: str, when: str, sig: signal.Signals) -> None:
    pytest.importorskip(library)
    script = tmp_path / "app.py"
    patch = PATCH[library]
    script.write_text(
        SCRIPT.format(
            before=patch if when == "before" else "",
            after=patch if when == "after" else "",
            records=RECORDS,
            hub_class=HUB_CLASS[library],
        )
    )
    flag = tmp_path / "flag"
    env = {
        **os.environ,
        "PYTHONPATH": ROOT,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{receiver.endpoint}",
        "PYTHONWARNINGS": "ignore",  # eventlet's own deprecation notice
        "PYTHONFAULTHANDLER": "1",  # a process that hangs is made to say where (SIGABRT below)
    }
    with _sigint_not_ignored():  # a child of a background run would inherit an ignored SIGINT
        proc = subprocess.Popen(
            [sys.executable, str(script), str(flag)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "busy"

        def bodies() -> list[str]:
            return [str(r.body) for r in receiver.log_records()]

        # Delivered while the main greenlet computes: only a real OS thread can do that.
        arrived = receiver.wait_for(lambda: len(bodies()) >= RECORDS + 1, 15)
        flag.touch()
        assert arrived, f"{len(bodies())} of {RECORDS + 1} arrived while the app computed"
        # A hub on the export thread (green sockets there) shared green objects across threads.
        assert proc.stdout.readline().strip() == f"hubs {APP_HUBS[library]}"
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 10
        while not _sleeping_in_the_hub(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.monotonic()
        proc.send_signal(sig)
        try:
            proc.wait(SHUTDOWN_TIMEOUT + 5)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"still running {SHUTDOWN_TIMEOUT + 5} s after {sig.name}:\n{err}")
        took = time.monotonic() - start
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert receiver.wait_for(lambda: "last" in bodies(), 5)
        got = bodies()
        assert sorted(got) == sorted(["set up", "last", *(f"record {i}" for i in range(RECORDS))])
        assert took < SHUTDOWN_TIMEOUT
        if sig == signal.SIGTERM:
            assert proc.returncode == -signal.SIGTERM
            assert err.strip() == "" or set(err.strip().splitlines()) <= {_EVENTLET_OWN}, err
        else:  # Ctrl-C: KeyboardInterrupt in the main greenlet, as without us
            assert "KeyboardInterrupt" in err
            assert "highlight_logging" not in err and "Exception ignored" not in err, err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_patched_worker_delivers_while_greenlets_compute_and_sigterm_exits(
    receiver: Receiver, tmp_path: Path, library: str, when: str
) -> None:
    """Patched before or after import: every record once, delivered during a CPU-bound stretch;
    SIGTERM ends the process within shutdown_timeout with its last record delivered."""
    _run(receiver, tmp_path, library, when, signal.SIGTERM)


@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_patched_process_still_stops_on_ctrl_c(receiver: Receiver, tmp_path: Path, library: str) -> None:
    """SIGINT still reaches the main thread: the export worker blocks signals on its own OS thread only."""
    _run(receiver, tmp_path, library, "before", signal.SIGINT)
