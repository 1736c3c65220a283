"""Forked children keep logging: os.fork, multiprocessing pools and processes, whatever gRPC's fork support."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import textwrap

import pytest

from highlight_logging._devtools.receiver import Receiver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True, params=["h2", "grpcio"])
def grpc_client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every fork test runs with both gRPC clients (the default h2 one and grpcio), subprocesses included."""
    monkeypatch.setenv("HIGHLIGHT_GRPC_CLIENT", request.param)
    return str(request.param)


SCRIPT = """
import functools, logging, multiprocessing as mp, os, sys
import highlight_logging

log = logging.getLogger("fork")
log.setLevel(logging.INFO)
log.propagate = False
log.addHandler(highlight_logging.HighlightHandler(endpoint=sys.argv[1]))

for i in range(10):
    log.info("parent %d", i)
assert highlight_logging.flush(10)
for i in range(5):
    log.info("parent-queued %d", i)  # still queued at fork time: the parent's, never the child's

pid = os.fork()
if pid == 0:
    for i in range(100):
        log.info("child %d", i)
    sys.exit(0)  # atexit flushes
os.waitpid(pid, 0)


def work(i, tag):
    log.info("%s %d", tag, i)
    return i


ctx = mp.get_context("fork")
with ctx.Pool(3) as pool:  # __exit__ terminates the workers with SIGTERM
    pool.map(functools.partial(work, tag="pool-with"), range(60))
pool = ctx.Pool(2)
pool.map(functools.partial(work, tag="pool-close"), range(40))
pool.close()
pool.join()


def proc(i):
    for j in range(20):
        log.info("proc %d", i * 100 + j)
    highlight_logging.flush()  # os._exit skips every exit hook
    os._exit(0)


procs = [ctx.Process(target=proc, args=(i,)) for i in range(2)]
for p in procs:
    p.start()
for p in procs:
    p.join(30)
"""

EXPECTED = {"parent": 10, "parent-queued": 5, "child": 100, "pool-with": 60, "pool-close": 40, "proc": 40}


@pytest.mark.parametrize("fork_support", [None, "1", "0", "false"])
def test_records_arrive_from_every_kind_of_forked_child(receiver: Receiver, fork_support: str | None) -> None:
    """Children that sys.exit, pool workers (terminated or closed), and os._exit after flush() all deliver, once."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("GRPC_ENABLE_FORK_SUPPORT", None)
    if fork_support is not None:
        env["GRPC_ENABLE_FORK_SUPPORT"] = fork_support
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), receiver.endpoint],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    total = sum(EXPECTED.values())
    receiver.wait_for_logs(total, 15)
    bodies = [str(r.body) for r in receiver.log_records()]
    assert len(bodies) == len(set(bodies)), "a record arrived twice"
    counts = collections.Counter(b.rsplit(" ", 1)[0] for b in bodies)
    assert dict(counts) == EXPECTED, proc.stderr
    pids = {r.resource_attributes["process.pid"] for r in receiver.log_records()}
    assert len(pids) >= 4  # parent, child, pool workers, processes each report their own pid
