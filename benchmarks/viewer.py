"""The viewer keeps up with the package, and answers a page in well under a second with the store full.

1. Ingest: a fresh process logs N records through HighlightHandler as fast as it can (the workload of
   run.py, plus one exception in 100) into ``highlight-logging serve --ui`` (another process); the rate
   is N / (time from the first call until the viewer's store holds all N). Beside it, interleaved, the
   same process into the bundled receiver alone (benchmarks/_receiver_proc.py, which keeps nothing):
   the package's own delivery rate. A ratio near 1 means the viewer keeps up. "Stored": in the
   store and the Logs view (the requests kept as they came); "filed": also in rows, indexes, error
   groups and requests, which the store's process does while its input is quiet.
2. Queries: with the store full (the default 100,000 records), each API call the page makes, median
   of 7, in milliseconds.

    .venv/bin/python benchmarks/viewer.py [--n 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The workload: n records through HighlightHandler to ``endpoint``, one in 100 with an exception.
WORKLOAD = textwrap.dedent(
    """
    import json, logging, sys, time
    import highlight_logging

    def workload(endpoint, n):
        highlight_logging.configure(endpoint=endpoint, service_name="bench")
        log = logging.getLogger("bench")
        log.propagate = False
        log.setLevel(logging.INFO)
        log.addHandler(highlight_logging.HighlightHandler())
        actions = ("login", "checkout", "search", "logout")
        for i in range(n):
            if i % 100 == 99:
                try:
                    raise ValueError(f"bad input {i}")
                except ValueError:
                    log.exception("request %s failed", i)
            else:
                log.info("user %s did %s", i, actions[i % 4], extra={"k": i})
        assert highlight_logging.flush(120)
    """
)

CLIENT = WORKLOAD + textwrap.dedent(
    """
    start = time.time()
    workload(sys.argv[1], int(sys.argv[2]))
    print(json.dumps({"start": start, "delivered": time.time()}))
    """
)


def _client(endpoint: str, n: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CLIENT, endpoint, str(n)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.load(r)


class _Viewer:
    def __init__(self, keep: int) -> None:
        self.dir = tempfile.TemporaryDirectory()
        ready = os.path.join(self.dir.name, "ready")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "highlight_logging", "serve", "--ui", "--port", "0", "--http-port", "0",
             "--ui-port", "0", "--keep", str(keep), "--ready-file", ready],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not os.path.exists(ready) and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(ready) as f:
            lines = f.read().splitlines()
        self.endpoint = f"127.0.0.1:{lines[0]}"
        self.ui = lines[2].split()[1]

    def stored(self) -> int:
        return int(self.stats()["last_id"])

    def stats(self) -> dict[str, int]:
        stats = _get(self.ui + "api/stats")
        assert isinstance(stats, dict)
        return stats

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.dir.cleanup()


class _Plain:
    """benchmarks/_receiver_proc.py: the receiver alone, counting what it accepts."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "benchmarks", "_receiver_proc.py")],
            stdin=subprocess.PIPE,  # it exits when its stdin closes
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        ports = json.loads(self.proc.stdout.readline())
        self.endpoint = f"127.0.0.1:{ports['grpc']}"

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


def ingest_round(n: int) -> tuple[float, float, float, float]:
    """(package's rate into the plain receiver, rate into the viewer's store, store's lag after delivery,
    the lag until all is filed)."""
    plain = _Plain()
    try:
        r = _client(plain.endpoint, n)
        plain_rate = n / (r["delivered"] - r["start"])
    finally:
        plain.close()
    viewer = _Viewer(keep=max(n, 100_000))
    try:
        r = _client(viewer.endpoint, n)
        # Everything is delivered; the spans of the exceptions are in the store too (n + n/100 items).
        target = n + n // 100
        while viewer.stored() < target:
            time.sleep(0.02)
        stored = time.time()
        while viewer.stats()["unindexed"]:
            time.sleep(0.02)
        filed = time.time() - r["delivered"]
        viewer_rate = n / (stored - r["start"])
        lag = stored - r["delivered"]
        print(
            f"  round: receiver alone {plain_rate:,.0f}/s; serve --ui: delivered {n / (r['delivered'] - r['start']):,.0f}/s,"
            f" stored {viewer_rate:,.0f}/s, {lag * 1000:.0f} ms after the last was delivered, all filed"
            f" {filed * 1000:.0f} ms after",
            flush=True,
        )
    finally:
        viewer.close()
    return plain_rate, viewer_rate, lag, filed


STORE_ALONE = WORKLOAD + textwrap.dedent(
    """
    from highlight_logging._devtools.receiver import Receiver
    from highlight_logging._devtools.viewer._store import LogQuery, Store
    n = int(sys.argv[1])
    raws = []
    with Receiver(on_raw=lambda signal, raw, k: raws.append((signal == "logs", raw, k)), retain=False) as rx:
        workload(rx.endpoint, n)
    store = Store(keep=100_000, writer=False)
    start = time.perf_counter()
    for i in range(0, len(raws), 10):  # about what the store's process reads from its pipe at once
        store.ingest(raws[i : i + 10])
    kept = time.perf_counter()
    reads = {}
    for name, q in (("newest", LogQuery(limit=100)), ("no match", LogQuery(text="no-such-text")),
                    ("tail", LogQuery(after_id=store.last_id() - 10))):
        t = time.perf_counter()
        store.logs(q)
        reads[name] = (time.perf_counter() - t) * 1000
    filing = time.perf_counter()
    while store.index():
        pass
    filed = time.perf_counter()
    print(json.dumps({"keep": n / (kept - start), "file": n / (filed - filing), "reads": reads}))
    store.close()
    """
)


def store_alone(n: int) -> dict[str, Any]:
    """The store by itself, in one process: the same records, already received, kept then filed."""
    out = subprocess.run(
        [sys.executable, "-c", STORE_ALONE, str(n)], check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


QUERIES = (
    ("logs, newest page", "api/logs?limit=100"),
    ("logs, level >= ERROR", "api/logs?limit=100&level=ERROR"),
    ("logs, text filter (rare)", "api/logs?limit=100&q=user%2099999%20did"),
    ("logs, text filter (no match)", "api/logs?limit=100&q=no-such-text"),
    ("logs, service + logger", "api/logs?limit=100&service=bench&scope=bench"),
    ("logs, last 5 minutes", None),
    ("live tail poll", None),
    ("error groups", "api/errors"),
    ("one error group", "api/errors/1"),
    ("requests list", "api/requests"),
    ("one request", None),
    ("stats (status bar)", "api/stats"),
)


def queries(n: int) -> list[tuple[str, float]]:
    viewer = _Viewer(keep=100_000)
    try:
        _client(viewer.endpoint, n)
        target = n + n // 100
        while viewer.stored() < target or viewer.stats()["unindexed"]:
            time.sleep(0.05)
        first = _get(viewer.ui + "api/logs?limit=1&level=ERROR")
        assert isinstance(first, dict)
        trace = first["items"][0]["trace_id"]
        last = viewer.stored()
        out = []
        for name, path in QUERIES:
            if name == "logs, last 5 minutes":
                path = f"api/logs?limit=100&since={int(time.time() * 1000) - 300_000}"
            elif name == "live tail poll":
                path = f"api/logs?limit=500&after={last}"
            elif name == "one request":
                path = f"api/trace?trace={trace}"
            times = []
            for _ in range(7):
                t = time.perf_counter()
                _get(viewer.ui + str(path))
                times.append((time.perf_counter() - t) * 1000)
            out.append((name, statistics.median(times)))
        rss = 0
        with open(f"/proc/{viewer.proc.pid}/task/{viewer.proc.pid}/children") as f:  # Linux
            pids = [viewer.proc.pid, *map(int, f.read().split())]
        for pid in pids:  # the receiver's process and the store's
            with open(f"/proc/{pid}/status") as f:
                rss += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        print(f"  serve --ui resident memory (both processes) with the store full: {rss / 1024:.0f} MB")
        return out
    finally:
        viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = [ingest_round(args.n) for _ in range(args.rounds)]
    plain = statistics.median(r[0] for r in rows)
    viewer = statistics.median(r[1] for r in rows)
    ratio = statistics.median(r[1] / r[0] for r in rows)
    print(f"ingest, N={args.n} (1 in 100 with an exception), medians of {args.rounds} interleaved rounds:")
    print(f"  package -> receiver alone:  {plain:>9,.0f} records/s")
    print(f"  package -> serve --ui store: {viewer:>8,.0f} records/s  ({ratio:.2f}x; stored "
          f"{statistics.median(r[2] for r in rows) * 1000:.0f} ms after the last was delivered, all filed "
          f"{statistics.median(r[3] for r in rows) * 1000:.0f} ms after)")  # fmt: skip
    alone = [store_alone(args.n) for _ in range(args.rounds)]
    print(
        f"  the store alone (same records, already received): kept {statistics.median(a['keep'] for a in alone):,.0f}"
        f" records/s, filed {statistics.median(a['file'] for a in alone):,.0f} records/s"
    )
    reads = ", ".join(
        f"{name} {statistics.median(a['reads'][name] for a in alone):.1f} ms" for name in alone[0]["reads"]
    )
    print(f"  the Logs view with all {args.n:,} kept and none filed yet: {reads}")
    print("queries with the store full (100,000 records), median of 7, ms:")
    for name, ms in queries(max(args.n, 100_000)):
        print(f"  {name:<30} {ms:8.1f}")


if __name__ == "__main__":
    main()
