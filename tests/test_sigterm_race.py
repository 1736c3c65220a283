"""SIGTERM never leaves a process asleep: ``Pool.terminate()`` ends every worker, and what the workers
logged still arrives.

A Python-level SIGTERM handler only runs when the main thread next checks for signals; a SIGTERM
that lands just before that thread blocks in C (a pool worker taking its queue lock) is never acted
on, and ``Pool.terminate()`` waits for that worker for good.  Measured before the C rescue: 7-9 of
160 workers asleep in this loop; with SIGTERM's default action, 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from highlight_logging._core import native as _native
from highlight_logging._devtools.receiver import Receiver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Without the C speedups the Python handler alone runs, as before the rescue: the race remains.
needs_rescue = pytest.mark.skipif(
    _native.speedups is None or not hasattr(_native.speedups, "sigterm_arm"),
    reason="the rescue is in the C speedups",
)

SCRIPT = """
import json, logging, multiprocessing as mp, os, signal, sys, threading, time
import highlight_logging

log = logging.getLogger("race")
log.setLevel(logging.INFO)
log.propagate = False
log.addHandler(highlight_logging.HighlightHandler(endpoint=sys.argv[1]))
rounds, deadline = int(sys.argv[2]), float(sys.argv[3])
log.info("parent 0")
assert highlight_logging.flush(10)


def work(i):
    log.info("pool %d", i)
    return i


ctx = mp.get_context("fork")
hung = 0
for r in range(rounds):
    pool = ctx.Pool(4)
    pool.map(work, range(r * 8, r * 8 + 8), chunksize=1)
    workers = list(pool._pool)
    ender = threading.Thread(target=pool.terminate, daemon=True)
    ender.start()  # SIGTERM to every worker, then joins them
    ender.join(deadline)
    for p in workers:
        if p.exitcode is None and p.is_alive():
            hung += 1
            os.kill(p.pid, signal.SIGKILL)
    ender.join(deadline)
    assert not ender.is_alive()
print(json.dumps({"hung": hung}))
"""


@needs_rescue
@pytest.mark.parametrize("client", ["h2", "grpcio"])
def test_pool_terminate_ends_every_worker_and_delivers(
    receiver: Receiver, client: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 rounds of Pool(4) + terminate(): every worker ends by SIGTERM within the deadline, and
    every record the workers logged before terminate() arrives, once."""
    rounds = 20
    env = {**os.environ, "PYTHONPATH": ROOT, "HIGHLIGHT_GRPC_CLIENT": client}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), receiver.endpoint, str(rounds), "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["hung"] == 0, proc.stderr
    total = 1 + rounds * 8
    receiver.wait_for_logs(total, 15)
    bodies = [str(r.body) for r in receiver.log_records()]
    assert len(bodies) == len(set(bodies)), "a record arrived twice"
    assert sorted(bodies) == sorted(["parent 0"] + [f"pool {i}" for i in range(rounds * 8)])


ASLEEP = """
import logging, os, signal, sys, threading, time
import highlight_logging

log = logging.getLogger("asleep")
log.setLevel(logging.INFO)
log.propagate = False
log.addHandler(highlight_logging.HighlightHandler(endpoint=sys.argv[1]))
if sys.argv[2] == "app":
    def app_handler(signum, frame):
        print("app handler", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, app_handler)  # the app's own, installed after ours
for i in range(5):
    log.info("asleep %d", i)
# The kernel hands SIGTERM to this thread, never to the main thread, which sleeps in C meanwhile:
# Python's handler cannot run until the main thread wakes (the race, made certain).
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
print("ready", flush=True)
time.sleep(float(sys.argv[3]))
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
print("woke", flush=True)
"""


def _sigterm_asleep(receiver: Receiver, mode: str, sleep: float) -> tuple[int, str, str]:
    """Run ASLEEP, SIGTERM it once it is asleep; its exit code, stdout (after "ready") and stderr."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(ASLEEP), receiver.endpoint, mode, str(sleep)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    return proc.returncode, out, err


@needs_rescue
def test_sigterm_the_main_thread_sleeps_through_still_delivers_and_ends(receiver: Receiver) -> None:
    """Our handler cannot run (the main thread asleep in C): the watcher delivers, then the process dies by SIGTERM."""
    returncode, out, err = _sigterm_asleep(receiver, "ours", 60)
    assert returncode == -signal.SIGTERM, err
    assert "woke" not in out
    receiver.wait_for_logs(5, 15)
    assert sorted(str(r.body) for r in receiver.log_records()) == [f"asleep {i}" for i in range(5)]


@needs_rescue
def test_sigterm_rescue_leaves_the_apps_own_handler_alone(receiver: Receiver) -> None:
    """The app installed its own SIGTERM handler after ours: nothing of ours acts; its handler runs
    once the main thread wakes (1 s, well past the rescue's 150 ms grace)."""
    returncode, out, err = _sigterm_asleep(receiver, "app", 1.0)
    assert returncode == 0, err
    assert out == "app handler\n"  # run as the main thread unblocked SIGTERM, before it printed "woke"


FORKS = """
import logging, os, sys
import highlight_logging

log = logging.getLogger("forks")
log.propagate = False
log.addHandler(highlight_logging.HighlightHandler(endpoint=sys.argv[1]))
log.warning("parent")
before = len(os.listdir("/proc/self/fd"))
for generation in range(5):  # each a child of the one before
    pid = os.fork()
    if pid:
        _, status = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(status))
    log.warning("generation %d", generation)
    now = len(os.listdir("/proc/self/fd"))
    if now > before:
        print(f"generation {generation}: {now} fds, {before} before", flush=True)
        os._exit(3)
highlight_logging.flush(10)
os._exit(0)
"""


@needs_rescue
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts fds in /proc")
def test_forked_children_keep_no_fd_of_their_parents_rescue(receiver: Receiver) -> None:
    """Each forked child closes the pipe it inherited and makes its own: no fd kept per fork."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FORKS), receiver.endpoint],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
