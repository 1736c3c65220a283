"""The pipeline's fork check: a child forked in C, without Python's fork hooks (as uWSGI forks its
workers), is noticed on its first record, with or without the C speedups (which count forks with
pthread_atfork instead of asking for the pid on every record)."""

from __future__ import annotations

import collections
import ctypes
import os
import subprocess
import sys
import textwrap

import pytest
from paths import ROOT

from highlight_logging._core import native as _native
from highlight_logging._devtools.receiver import Receiver
from highlight_logging._export import pipeline as _pipeline

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")


@pytest.mark.skipif(_native.speedups is None, reason="the C speedups are not in use")
def test_the_c_count_moves_in_a_child_forked_in_c_and_not_in_the_parent() -> None:
    assert _pipeline.fork_mark is _native.speedups.forks
    before = _pipeline.fork_mark()
    r, w = os.pipe()
    pid = ctypes.PyDLL(None).fork()  # the GIL held, no Python fork hook runs: uWSGI's way
    if pid == 0:
        os.write(w, str(_pipeline.fork_mark()).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        seen = pipe.read()
    os.waitpid(pid, 0)
    assert int(seen) == before + 1
    assert _pipeline.fork_mark() == before


SCRIPT = """
import ctypes, logging, os, sys
import highlight_logging

log = logging.getLogger("cfork")
log.setLevel(logging.INFO)
log.propagate = False
log.addHandler(highlight_logging.HighlightHandler(endpoint=sys.argv[1]))
for i in range(10):
    log.info("parent %d", i)
assert highlight_logging.flush(10)
for i in range(5):
    log.info("parent-queued %d", i)  # queued at the fork: the parent's to send, never the child's

pid = ctypes.PyDLL(None).fork()  # in C, no Python fork hook: as uWSGI forks its workers
if pid == 0:
    for i in range(20):
        log.info("child %d", i)
    assert highlight_logging.flush(10)
    os._exit(0)
os.waitpid(pid, 0)
"""


@pytest.mark.parametrize("pure", [False, True], ids=["c", "pure-python"])
def test_a_child_forked_in_c_sends_its_own_records_once(receiver: Receiver, pure: bool) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HIGHLIGHT_LOGGING_PURE_PYTHON", None)
    if pure:
        env["HIGHLIGHT_LOGGING_PURE_PYTHON"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), receiver.endpoint],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    receiver.wait_for_logs(35, 15)
    bodies = [str(r.body) for r in receiver.log_records()]
    assert len(bodies) == len(set(bodies)), "a record arrived twice"
    counts = collections.Counter(b.rsplit(" ", 1)[0] for b in bodies)
    assert dict(counts) == {"parent": 10, "parent-queued": 5, "child": 20}, proc.stderr
    pid = collections.defaultdict(set)
    for r in receiver.log_records():
        pid[str(r.body).startswith("child")].add(r.resource_attributes["process.pid"])
    assert len(pid[True]) == len(pid[False]) == 1 and pid[True] != pid[False]  # the child's own resource
