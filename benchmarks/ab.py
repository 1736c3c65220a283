"""Builds of highlight_logging side by side on one workload: an interleaved A/B (or A/B/C...) run.

    .venv/bin/python benchmarks/ab.py --workload structlog --rounds 9 . /tmp/b-8671905
    .venv/bin/python benchmarks/ab.py --variant exc --n 50000 /tmp/b-16bed56 /tmp/b-3ed71d4 .

Each argument is a checkout of the package with its C extension built in place
(``git worktree add --detach /tmp/b-SHA SHA && cd /tmp/b-SHA && python setup.py build_ext --inplace``);
``.`` is this one.  Only the ``ours`` side runs, once per build per round, each in a fresh process
(``benchmarks/_case.py``, this checkout's, with ``PYTHONPATH`` at the build), in an order reversed
every other round; one receiver process serves every run, as in ``run.py``.  The first build is the
reference: for each other build, the median over rounds of the per-round ratio (build / first) and
its range are printed, so a shared machine's drift cancels in the pairs.  ``--json`` keeps the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run  # noqa: E402  (benchmarks/run.py: the receiver process and one case's runner)

FIELDS = (
    ("app_us", "app us/call"),
    ("app_cpu_us", "caller cpu us/call"),
    ("cpu_us", "cpu us/rec"),
    ("e2e_rps", "delivered rec/s"),
    ("p99_us", "p99 us"),  # paced only
)


def one(
    build: str, workload: str, variant: str, n: int, ports: dict[str, int], timeout: float
) -> dict[str, Any]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning", "PYTHONPATH": os.path.abspath(build)}
    return run._run_case(workload, "ours", variant, n, ports, timeout, env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "builds", nargs="+", help="checkouts with the C extension built in place; the first is the reference"
    )
    parser.add_argument("--workload", default="structlog", choices=run.WORKLOADS)
    parser.add_argument("--variant", default="base", choices=("base", "exc", "paced", "highlight"))
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--json", metavar="FILE", help="write every run here")
    args = parser.parse_args()

    receiver, ports = run.start_receiver([sys.executable, os.path.join(HERE, "_receiver_proc.py")])
    runs: list[list[dict[str, Any] | None]] = []
    started = time.monotonic()
    try:
        for rnd in range(args.rounds):
            order = list(range(len(args.builds)))
            if rnd % 2:
                order.reverse()
            row: list[dict[str, Any] | None] = [None] * len(args.builds)
            for i in order:
                r = one(args.builds[i], args.workload, args.variant, args.n, ports, args.timeout)
                row[i] = r if r.get("status") == "ok" else None
                print(
                    f"[{rnd + 1}/{args.rounds} {time.monotonic() - started:4.0f}s] {args.builds[i]:<20} "
                    f"{r.get('status'):<6} app {r.get('app_us', 0) or 0:6.2f} cpu {r.get('cpu_us', 0) or 0:6.2f} "
                    f"{r.get('e2e_rps', 0) or 0:8.0f} rec/s {r.get('error', '')}",
                    file=sys.stderr,
                    flush=True,
                )
            runs.append(row)
    finally:
        run.stop_receiver(receiver)

    print(f"{args.workload}/{args.variant}, n={args.n}, {args.rounds} interleaved rounds; medians (min-max)")
    for b, build in enumerate(args.builds):
        cells = []
        for field, label in FIELDS:
            values = [row[b][field] for row in runs if row[b] is not None and row[b].get(field) is not None]
            if not values:
                cells.append(f"{label} -")
                continue
            cells.append(f"{label} {statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})")
            if b:
                ratios = [
                    row[b][field] / row[0][field]
                    for row in runs
                    if row[0] is not None and row[b] is not None and row[0].get(field) and row[b].get(field)
                ]
                if ratios:
                    cells[-1] += f" = {statistics.median(ratios):.3f}x ({min(ratios):.3f}-{max(ratios):.3f})"
        print(f"  {build}: " + "; ".join(cells))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"config": vars(args), "runs": runs}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
