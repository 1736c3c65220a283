"""Process CPU of the two gRPC clients against the grpc-js server: the same run (records logged,
exported, exit) with ``grpc_client="h2"`` and ``"grpcio"``, interleaved, plain records and records
with six extras.  A measurement, not a test: ``python tests/interop/cpu.py [rounds] [records]``.

Prints, per workload, each client's median process CPU per export request (from the first record
logged to the end of the exit flush: imports excluded, logging itself included) and h2/grpcio.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import GrpcJs, installed, run_app


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    reason = installed()
    if reason:
        sys.exit(reason)
    with tempfile.TemporaryDirectory() as tmp:
        for extras in (0, 6):
            cpu: dict[str, list[float]] = {"h2": [], "grpcio": []}
            for _ in range(rounds):
                for client in cpu:
                    with GrpcJs(Path(tmp)) as srv:
                        run = run_app(srv.endpoint, client, n=n, extras=extras, exceptions=0)
                        got = srv.received()
                    if run.returncode or sum(got.seqs.values()) != n:
                        sys.exit(f"{client}: {sum(got.seqs.values())} of {n} arrived; {run.stderr}")
                    cpu[client].append(run.cpu_s / got.requests)
            h2, grpcio = (statistics.median(cpu[c]) for c in ("h2", "grpcio"))
            ratios = sorted(a / b for a, b in zip(cpu["h2"], cpu["grpcio"], strict=True))
            print(
                f"{extras} extras, {n} records: process CPU per request h2 {h2 * 1e3:.2f} ms, "
                f"grpcio {grpcio * 1e3:.2f} ms; h2/grpcio median {h2 / grpcio:.2f}x "
                f"(per round {ratios[0]:.2f}-{ratios[-1]:.2f}x)"
            )


if __name__ == "__main__":
    main()
