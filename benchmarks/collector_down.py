"""Logging calls cost the same whether the collector is up, refused or blackholed.

Each run is a fresh process logging N records through HighlightHandler with defaults; we report the
median app-thread microseconds per call of 3 interleaved rounds, and each fault's ratio to "up".

    .venv/bin/python benchmarks/collector_down.py [--n 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import textwrap
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = textwrap.dedent(
    """
    import json, logging, sys, time
    import highlight_logging
    log = logging.getLogger("bench")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(highlight_logging.HighlightHandler(endpoint=sys.argv[1], shutdown_timeout=0.5))
    n = int(sys.argv[2])
    start = time.perf_counter()
    for i in range(n):
        log.info("user %s did %s", i, "checkout", extra={"k": i})
    took = time.perf_counter() - start
    print(json.dumps({"us_per_call": took / n * 1e6}))
    """
)


def _blackhole() -> tuple[socket.socket, str]:
    sock = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            held.append(conn)  # accept and never answer

    threading.Thread(target=accept, daemon=True).start()
    return sock, f"127.0.0.1:{sock.getsockname()[1]}"


def _refused() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _run(endpoint: str, n: int) -> float:
    env = {**os.environ, "PYTHONPATH": ROOT}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, endpoint, str(n)], env=env, capture_output=True, text=True, timeout=300
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["us_per_call"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    from highlight_logging._devtools.receiver import Receiver

    hole, hole_endpoint = _blackhole()
    results: dict[str, list[float]] = {"up": [], "refused": [], "blackholed": []}
    with Receiver() as rx:
        for _ in range(args.rounds):
            results["up"].append(_run(rx.endpoint, args.n))
            results["refused"].append(_run(_refused(), args.n))
            results["blackholed"].append(_run(hole_endpoint, args.n))
    hole.close()
    up = statistics.median(results["up"])
    print(f"| collector | app-thread us/call (median of {args.rounds}) | ratio to up |")
    print("|---|---|---|")
    for name, values in results.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.1f} | {med / up:.2f}x |")


if __name__ == "__main__":
    main()
