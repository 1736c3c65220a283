"""The structlog front end's cost on the caller's thread, builds side by side, without the receiver.

    .venv/bin/python benchmarks/caller_cost.py --rounds 7 /tmp/b-8671905 .

``benchmarks/ab.py`` measures whole runs, where a shared machine's load moves every figure by 10-50%;
this measures only the calling thread's CPU (``time.thread_time``) over the structlog benchmark's
loop (``log.info("user action", user=i, action=action, k=i)`` through add_log_level, TimeStamper,
StructlogProcessor, format_exc_info, KeyValueRenderer -> ReturnLogger), best of 5 x 20,000 calls per
process, one fresh process per build and mode, interleaved over rounds.  The endpoint refuses
connections (the worker's retries run on its own thread).  Modes: ``full``, and ``stub``, where the
pipeline's ``submit`` is a bare ``deque.append``, so ``full - stub`` is what ``submit`` costs.
Each build is a checkout with its C extension built in place (see ``ab.py``); ``.`` is this one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CALLS = 20_000


def child(mode: str) -> None:
    import collections
    import logging

    import structlog

    from highlight_logging import StructlogProcessor

    processor = StructlogProcessor(endpoint="http://127.0.0.1:9")
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(),
            processor,
            structlog.processors.format_exc_info,
            structlog.processors.KeyValueRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=True,
    )
    log = structlog.get_logger("bench")
    log.info("warm-up")
    if mode == "stub":
        processor._binding.get().submit = collections.deque().append  # type: ignore[union-attr,method-assign]
    best = float("inf")
    for _ in range(5):
        t0 = time.thread_time()
        for i in range(CALLS):
            log.info("user action", user=i, action="login", k=i)
        best = min(best, (time.thread_time() - t0) / CALLS * 1e6)
    print(best, flush=True)
    os._exit(0)  # the refused endpoint's retries would hold exit up to shutdown_timeout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "builds", nargs="+", help="checkouts with the C extension built in place; the first is the reference"
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--child", choices=("full", "stub"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
    runs: dict[tuple[int, str], list[float]] = {}
    for rnd in range(args.rounds):
        order = list(range(len(args.builds)))
        for b in order if rnd % 2 == 0 else order[::-1]:
            for mode in ("full", "stub"):
                env = {**os.environ, "PYTHONPATH": os.path.abspath(args.builds[b])}
                out = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--child", mode, "x"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                runs.setdefault((b, mode), []).append(float(out.stdout.split()[-1]))
    print(
        f"caller's CPU, us a call: median (min-max) of {args.rounds} processes, each the best of 5 x {CALLS:,}"
    )
    ref = statistics.median(runs[(0, "full")])
    for b, build in enumerate(args.builds):
        full, stub = runs[(b, "full")], runs[(b, "stub")]
        submit = statistics.median(f - s for f, s in zip(full, stub, strict=True))
        print(
            f"  {build}: {statistics.median(full):.2f} ({min(full):.2f}-{max(full):.2f}) = "
            f"{statistics.median(full) / ref:.3f}x; submit stubbed {statistics.median(stub):.2f}; "
            f"submit ~{submit:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
