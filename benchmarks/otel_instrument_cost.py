"""What OpenTelemetry's logging handler costs next to HighlightHandler under ``opentelemetry-instrument``.

Each run is a fresh process started by ``opentelemetry-instrument`` (opentelemetry-distro, the
logging instrumentation, OTLP exporters aimed at our receiver), with a ``HighlightHandler`` on the
root logger, logging N records; we report the median app-thread microseconds per call of
interleaved rounds for each setting of docs/opentelemetry.md, in both our modes:

* ``their handler off``: ``OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION=false`` (the remedy we name);
* ``their export off``: ``OTEL_LOGS_EXPORTER=none``: their handler stays and converts every record;
* ``defaults``: both handlers export (every record twice).

    .venv/bin/python benchmarks/otel_instrument_cost.py [--n 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)

CHILD = textwrap.dedent(
    """
    import json, logging, os, sys, time
    import highlight_logging
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    providers = os.environ.get("HL_MODE") == "providers"
    root.addHandler(highlight_logging.HighlightHandler(shutdown_timeout=1.0, use_otel_providers=providers))
    log = logging.getLogger("bench")
    n = int(sys.argv[1])
    for i in range(200):  # warm up both handlers
        log.info("warm %s", i)
    highlight_logging.flush()
    start = time.perf_counter()
    for i in range(n):
        log.info("user %s did %s", i, "checkout", extra={"k": i})
    took = time.perf_counter() - start
    print(json.dumps({"us_per_call": took / n * 1e6}))
    """
)

OFF = {"OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION": "false"}
CASES = {
    "ours; their handler off (OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION=false)": OFF,
    "ours; their export off (OTEL_LOGS_EXPORTER=none)": {"OTEL_LOGS_EXPORTER": "none"},
    "ours; defaults (both export: every record twice)": {},
    "use_otel_providers=True; their handler off": {**OFF, "HL_MODE": "providers"},
    "use_otel_providers=True; defaults (every record twice)": {"HL_MODE": "providers"},
}


def _run(endpoint: str, n: int, extra: dict[str, str]) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "HIGHLIGHT_"))}
    env.update(
        PYTHONPATH=ROOT,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{endpoint}",
        OTEL_METRICS_EXPORTER="none",  # our receiver takes logs and traces only
        NO_PROXY="127.0.0.1",
        **extra,
    )
    cmd = [os.path.join(BIN, "opentelemetry-instrument"), sys.executable, "-c", CHILD, str(n)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["us_per_call"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    from highlight_logging._devtools.receiver import Receiver

    results: dict[str, list[float]] = {name: [] for name in CASES}
    with Receiver() as rx:
        for _ in range(args.rounds):
            for name, extra in CASES.items():
                results[name].append(_run(rx.endpoint, args.n, extra))
    base = statistics.median(next(iter(results.values())))
    print(f"| under opentelemetry-instrument | app-thread us/call (median of {args.rounds}) | ratio |")
    print("|---|---|---|")
    for name, values in results.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.1f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
