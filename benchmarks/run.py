"""highlight_logging benchmark suite: ours vs OpenTelemetry's own handlers, side by side.

    .venv/bin/python benchmarks/run.py                    # the full run: N=20,000, 5 interleaved rounds
    .venv/bin/python benchmarks/run.py --n 50000 --rounds 3
    .venv/bin/python benchmarks/run.py --quick            # smoke: N=5,000, 1 round (not a measurement)
    .venv/bin/python benchmarks/run.py --quick --workloads stdlib --variants base,outage
    .venv/bin/python benchmarks/run.py --report benchmarks/results/latest.json   # the report again

Every measurement runs in a fresh process (``benchmarks/_case.py``), round-robin over all cases,
repeated ``--rounds`` times; the figures are medians over rounds and the ratios medians of the
per-round ratios (each round's two sides ran back to back).  One receiver process
(``benchmarks/_receiver_proc.py``: the bundled OTLP ``Receiver`` behind a byte-counting proxy) serves
every case, so decoding on the receiving end is never charged to the measured process.  The
``grpcjs`` variant delivers to ``benchmarks/grpcjs_receiver.js`` instead (@grpc/grpc-js, installed by
``tests/interop/install.sh``, which ``make bench`` runs), so that our own receiver's speed is not
what is measured.  Every goal is printed with PASS or FAIL, and the exit status is 1 when one fails.

Writes ``benchmarks/results/latest.json`` and ``benchmarks/results/latest.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
WORKLOADS = ("stdlib", "structlog", "loguru")
VARIANTS = ("base", "exc", "excdefault", "threads", "paced", "grpcjs", "outage", "bound", "highlight")
GRPCJS = os.path.join(HERE, "grpcjs_receiver.js")
GRPCJS_MODULE = os.path.join(HERE, "..", "tests", "interop", "node_modules", "@grpc", "grpc-js")
SIDE_LABEL = {
    ("stdlib", "floor"): "floor: deque.append handler",
    ("stdlib", "otel"): "OTel SDK LoggingHandler",
    ("stdlib", "ours"): "HighlightHandler",
    ("structlog", "floor"): "floor: the chain without an exporter",
    ("structlog", "otel"): "OTel structlog processor",
    ("structlog", "ours"): "StructlogProcessor",
    ("loguru", "floor"): "floor: a sink that does nothing",
    ("loguru", "otel"): "OTel LoggingHandler as sink",
    ("loguru", "ours"): "LoguruSink",
    ("stdlib", "baseline"): "HighlightHandler, baseline build",
    ("structlog", "baseline"): "StructlogProcessor, baseline build",
    ("loguru", "baseline"): "LoguruSink, baseline build",
}
# With --baseline: the variants where an older build of the package runs beside ours, interleaved.
BASELINE_VARIANTS = ("base", "exc", "paced")
PACKAGES = (
    "highlight-logging",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-grpc",
    "opentelemetry-instrumentation-structlog",
    "grpcio",
    "protobuf",
    "structlog",
    "loguru",
)

Case = tuple[str, str, str]  # workload, side, variant


@dataclass
class Goal:
    name: str
    value: str
    threshold: str
    passed: bool | None  # None: not measurable (n/a) or informational

    @property
    def mark(self) -> str:
        if self.passed is None:
            return "info" if self.threshold == "-" else "n/a"
        return "PASS" if self.passed else "**FAIL**"


# --- running ------------------------------------------------------------------------------------


def sides(workload: str, variant: str) -> tuple[str, ...]:
    """Who runs a variant: the floor where it shows what the library alone costs; the pipeline's
    own cases (outage, bound) once, with stdlib."""
    if variant == "excdefault":
        return ("floor", "otel", "ours") if workload == "loguru" else ()
    if variant == "grpcjs":
        return ("otel", "ours")
    if variant == "outage":
        return ("otel", "ours") if workload == "stdlib" else ()
    if variant == "bound":
        return ("ours",) if workload == "stdlib" else ()
    if variant == "highlight":  # compared with the same round's base OTel side
        return ("ours",)
    return ("floor", "otel", "ours")


def all_cases(workloads: Iterable[str], variants: Iterable[str], baseline: bool = False) -> list[Case]:
    cases: list[Case] = []
    for variant in variants:
        for workload in workloads:
            cases += [(workload, side, variant) for side in sides(workload, variant)]
            if baseline and variant in BASELINE_VARIANTS:
                cases.append((workload, "baseline", variant))
    return cases


def start_receiver(cmd: list[str]) -> tuple[subprocess.Popen[str], dict[str, int]]:
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"benchmark receiver did not start: {cmd}")
    ports: dict[str, int] = json.loads(line)
    return proc, ports


def stop_receiver(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def run_case(
    case: Case, n: int, ports: dict[str, int] | None, timeout: float, baseline: str = ""
) -> dict[str, Any]:
    workload, side, variant = case
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    if side == "baseline":  # ours, imported from the older build
        env["PYTHONPATH"] = os.path.abspath(baseline)
    result = _run_case(workload, "ours" if side == "baseline" else side, variant, n, ports, timeout, env)
    result["side"] = side
    return result


def _run_case(
    workload: str,
    side: str,
    variant: str,
    n: int,
    ports: dict[str, int] | None,
    timeout: float,
    env: dict[str, str],
) -> dict[str, Any]:
    if ports is None:
        return {
            "workload": workload,
            "side": side,
            "variant": variant,
            "status": "n/a",
            "error": "the grpc-js receiver is not installed (bash tests/interop/install.sh)",
        }
    cmd = [
        sys.executable,
        os.path.join(HERE, "_case.py"),
        f"--workload={workload}",
        f"--side={side}",
        f"--variant={variant}",
        f"--n={n}",
        f"--proxy-port={ports['proxy']}",
        f"--control-port={ports['control']}",
        f"--timeout={timeout}",
    ]
    budget = 60 + timeout + n * 2e-3  # generous for the loop itself (2 ms per record)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget, env=env)
    except subprocess.TimeoutExpired:
        return {
            "workload": workload,
            "side": side,
            "variant": variant,
            "status": "failed",
            "error": f"case process killed after {budget:.0f}s",
        }
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {
            "workload": workload,
            "side": side,
            "variant": variant,
            "status": "error",
            "error": f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}",
        }
    result: dict[str, Any] = json.loads(lines[-1])
    if proc.stderr.strip():
        result["stderr_tail"] = proc.stderr.strip()[-300:]
    return result


# --- aggregation --------------------------------------------------------------------------------

FIELDS = (
    "app_us",
    "cpu_us",
    "bg_cpu_us",
    "e2e_rps",
    "bytes_per_rec",
    "rss_mb",
    "p50_us",
    "p99_us",
    "max_us",
    "deliver_s",
    "rss_before_mb",
    "growth_mb",
    "bound_mb",
    "request_mb",
    "queued_est_mb",
    "queue_full",
    "lost",
)


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    statuses = {r["status"] for r in runs}
    ok = [r for r in runs if r["status"] == "ok"]
    status = "ok" if statuses == {"ok"} else "n/a" if "n/a" in statuses else "failed"
    out: dict[str, Any] = {"status": status, "runs": len(runs), "ok_runs": len(ok)}
    for f in FIELDS:
        values = [r[f] for r in ok if r.get(f) is not None]
        out[f] = statistics.median(values) if values else None
    out["delivered"] = (
        all(r.get("received") == r.get("n") for r in ok) if ok and "received" in ok[0] else None
    )
    out["errors"] = sorted({r["error"] for r in runs if r.get("error")})
    out["note"] = next((r["note"] for r in ok if r.get("note")), "")
    return out


def paired_ratio(
    by_round: list[dict[Case, dict[str, Any]]],
    a: Case,
    b: Case,
    f: Callable[[dict[str, Any], dict[str, Any]], float],
) -> float | None:
    """Median over rounds of f(run a, run b), using only rounds where both ran ok."""
    values = []
    for rnd in by_round:
        ra, rb = rnd.get(a), rnd.get(b)
        if ra and rb and ra["status"] == "ok" and rb["status"] == "ok":
            values.append(f(ra, rb))
    return statistics.median(values) if values else None


def before_after(
    med: dict[Case, dict[str, Any]], w: str, side: str, field: str, fmt_one: Callable[[float, float], str]
) -> str:
    """A side's median ``field`` without and with exceptions; n/a where a case has none (every
    round of it failed, or it was not run)."""
    base, exc = (med.get((w, side, v), {}).get(field) for v in ("base", "exc"))
    return "n/a" if base is None or exc is None else fmt_one(base, exc)


NAMES = {
    "stdlib": "HighlightHandler vs OTel LoggingHandler",
    "structlog": "StructlogProcessor vs OTel structlog",
    "loguru": "LoguruSink vs OTel handler sink",
}
BASE_TARGETS = (
    ("app", "app-thread us/call", 0.25, "le"),
    ("cpu", "process CPU us/record", 0.25, "le"),
    ("e2e", "end-to-end records/s", 4.0, "ge"),
)


def evaluate(
    by_round: list[dict[Case, dict[str, Any]]], med: dict[Case, dict[str, Any]], workloads: Iterable[str]
) -> list[Goal]:
    goals: list[Goal] = []

    def fmt(x: float | None, unit: str = "x") -> str:
        return "n/a" if x is None else f"{x:.2f}{unit}"

    def ratio(w: str, variant: str, field: str, a: str = "ours", b: str = "otel") -> float | None:
        return paired_ratio(by_round, (w, a, variant), (w, b, variant), lambda x, y: x[field] / y[field])

    def three(w: str, variant: str) -> dict[str, float | None]:
        return {
            "app": ratio(w, variant, "app_us"),
            "cpu": ratio(w, variant, "cpu_us"),
            "e2e": ratio(w, variant, "e2e_rps"),
        }

    def check(v: float | None, limit: float, better: str) -> bool | None:
        return None if v is None else (v <= limit if better == "le" else v >= limit)

    def has(w: str, variant: str, *who: str) -> bool:
        return all((w, side, variant) in med for side in who)

    for w in workloads:
        name = NAMES[w]
        for variant, suffix, stated in (
            ("base", "", True),
            (
                "exc",
                " [1/100 exceptions"
                + (", loguru diagnose=False, backtrace=False on both sides" if w == "loguru" else "")
                + "]",
                True,
            ),
            ("excdefault", " [1/100 exceptions, loguru's defaults (informative)]", False),
            ("threads", " [4 threads: same targets, not a stated goal]", False),
        ):
            if not has(w, variant, "ours", "otel"):
                continue
            r = three(w, variant)
            for key, label, limit, better in BASE_TARGETS:
                target = f"{'<=' if better == 'le' else '>='} {limit}x"
                goals.append(
                    Goal(
                        f"{w}: {name}: {label}{suffix}",
                        fmt(r[key]),
                        target if stated else "-",
                        check(r[key], limit, better) if stated else None,
                    )
                )
        if has(w, "highlight", "ours") and has(w, "base", "otel"):
            ours_hl, otel = (w, "ours", "highlight"), (w, "otel", "base")
            hl = [
                paired_ratio(by_round, ours_hl, otel, lambda a, b: a["app_us"] / b["app_us"]),
                paired_ratio(by_round, ours_hl, otel, lambda a, b: a["cpu_us"] / b["cpu_us"]),
                paired_ratio(by_round, ours_hl, otel, lambda a, b: a["e2e_rps"] / b["e2e_rps"]),
            ]
            goals.append(
                Goal(
                    f"{w}: the highlight.io shape (HIGHLIGHT_BACKEND=highlight): app-thread / CPU / "
                    "records/s vs OTel's base (informative)",
                    " / ".join(map(fmt, hl)),
                    "-",
                    None,
                )
            )
        if w == "stdlib" and has(w, "base", "ours", "floor"):
            v = ratio(w, "base", "app_us", "ours", "floor")
            goals.append(
                Goal(
                    "stdlib: HighlightHandler app-thread vs deque.append floor",
                    fmt(v),
                    "<= 2.5x",
                    check(v, 2.5, "le"),
                )
            )
        # Informative: what the library itself costs with an exporter that does nothing, against
        # OTel's exporting side; no exporter's ratio can go below this.
        for variant in ("base", "threads"):
            if w != "stdlib" and has(w, variant, "floor", "otel"):
                v = ratio(w, variant, "app_us", "floor", "otel")
                goals.append(
                    Goal(
                        f"{w}: {SIDE_LABEL[(w, 'floor')]} vs OTel, app-thread"
                        f"{'' if variant == 'base' else ' [4 threads]'} (informative: the lowest ratio any exporter can reach)",
                        fmt(v),
                        "-",
                        None,
                    )
                )
        if all((w, side, v) in med for side in ("floor", "ours", "otel") for v in ("base", "exc")):
            # Informative: what 1 exception in 100 adds to a call, per record, for the library alone
            # (its own exception formatting, paid by every exporter alike) and for each side.
            added = [
                before_after(med, w, side, "app_us", lambda b, x: f"{x - b:+.1f}")
                for side in ("floor", "otel", "ours")
            ]
            goals.append(
                Goal(
                    f"{w}: 1/100 exceptions: app-thread us a record added (informative: floor / OTel / ours)",
                    " / ".join(added),
                    "-",
                    None,
                )
            )
        if all((w, side, v) in med for side in ("otel", "ours") for v in ("base", "exc")):
            # Informative: records still on their way when the loop ends (the drain), without and with
            # exceptions: how much of a side's export work was left until after the loop.
            drain = [
                before_after(med, w, side, "deliver_s", lambda b, x: f"{b:.2f} -> {x:.2f}")
                for side in ("otel", "ours")
            ]
            goals.append(
                Goal(
                    f"{w}: 1/100 exceptions: drain after the loop, s, no exceptions -> 1/100 "
                    "(informative: OTel / ours)",
                    " / ".join(drain),
                    "-",
                    None,
                )
            )
        if has(w, "paced", "ours"):
            for side in ("ours", "otel", "floor"):
                if (w, side, "paced") in med:
                    v = paired_ratio(
                        by_round,
                        (w, side, "paced"),
                        (w, side, "paced"),
                        lambda a, b: a["p99_us"] / a["p50_us"],
                    )
                    goals.append(
                        Goal(
                            f"{w}: paced 2,000/s: {SIDE_LABEL[(w, side)]} p99/p50 (informative)",
                            fmt(v),
                            "-",
                            None,
                        )
                    )
            if has(w, "paced", "floor", "otel"):
                # The tail restated against the machine's own (the floor paced alike) and OTel's.
                p99 = {side: med[(w, side, "paced")].get("p99_us") for side in ("floor", "otel", "ours")}
                if None not in p99.values():
                    goals.append(
                        Goal(
                            f"{w}: paced 2,000/s: p99 us (informative: floor / OTel / ours)",
                            " / ".join(f"{p99[s]:.0f}" for s in ("floor", "otel", "ours")),
                            "-",
                            None,
                        )
                    )
                v = ratio(w, "paced", "p99_us", "ours", "floor")
                goals.append(
                    Goal(
                        f"{w}: paced 2,000/s: our p99 vs the floor's p99",
                        fmt(v),
                        "<= 1.5x",
                        check(v, 1.5, "le"),
                    )
                )
                v = ratio(w, "paced", "p99_us", "ours", "otel")
                goals.append(
                    Goal(f"{w}: paced 2,000/s: our p99 vs OTel's p99", fmt(v), "<= 0.5x", check(v, 0.5, "le"))
                )
        if has(w, "grpcjs", "ours", "otel"):
            r = three(w, "grpcjs")
            goals.append(
                Goal(
                    f"{w}: {name}: end-to-end records/s to the @grpc/grpc-js receiver",
                    fmt(r["e2e"]),
                    ">= 4.0x",
                    check(r["e2e"], 4.0, "ge"),
                )
            )
            goals.append(
                Goal(
                    f"{w}: to the @grpc/grpc-js receiver: app-thread / CPU ratios (informative)",
                    f"{fmt(r['app'])} / {fmt(r['cpu'])}",
                    "-",
                    None,
                )
            )
        if has(w, "base", "ours", "otel"):
            mine, theirs = med[(w, "ours", "base")], med[(w, "otel", "base")]
            bo, bt = mine.get("bytes_per_rec"), theirs.get("bytes_per_rec")
            goals.append(
                Goal(
                    f"{w}: bytes on the wire per record (ours vs OTel)",
                    "n/a" if bo is None or bt is None else f"{bo:.1f} vs {bt:.1f} B",
                    "<= OTel",
                    None if bo is None or bt is None else bo <= bt,
                )
            )
            goals.append(
                rss_goal(
                    by_round,
                    med,
                    (w, "ours", "base"),
                    (w, "otel", "base"),
                    f"{w}: peak RSS, the base burst (ours vs OTel, same run)",
                )
            )
        if has(w, "outage", "ours", "otel"):
            mine, theirs = med[(w, "ours", "outage")], med[(w, "otel", "outage")]
            goals.append(
                rss_goal(
                    by_round,
                    med,
                    (w, "ours", "outage"),
                    (w, "otel", "outage"),
                    f"{w}: peak RSS, 5 s collector outage at 1,000 records/s (ours vs OTel, same run)",
                )
            )
            lost = theirs.get("lost")
            goals.append(
                Goal(
                    f"{w}: 5 s outage at 1,000 records/s: records lost (informative: OTel with its "
                    "default queue; ours is in the no-drop goal below)",
                    "n/a" if lost is None else f"{lost:,.0f} of {mine.get('n', 10_000):,}",
                    "-",
                    None,
                )
            )
            tails = [m.get("p99_us") for m in (theirs, mine)]
            if None not in tails:
                goals.append(
                    Goal(
                        f"{w}: 5 s outage: p99 us of a call (informative: OTel / ours)",
                        " / ".join(f"{x:.0f}" for x in tails),
                        "-",
                        None,
                    )
                )
        if has(w, "bound", "ours"):
            m = med[(w, "ours", "bound")]
            growth = m.get("growth_mb")
            # The documented bound (README, "Memory is bounded"): the queue's max_queue_bytes, plus
            # what the worker holds besides, each at most max_request_bytes: the batch it took, its
            # records' encodings, its requests, the one being compressed and sent, and four requests
            # in flight kept for their retries; plus the one record being logged.
            limit = (m.get("bound_mb") or 64) + 8 * (m.get("request_mb") or 4) + BOUND_RECORD_MB
            goals.append(
                Goal(
                    f"{w}: 1 MiB records into a refusing collector: peak RSS growth (the documented "
                    "bound: max_queue_bytes + 8 x max_request_bytes in the worker's hands + the record "
                    "being logged)",
                    "n/a" if growth is None else f"{growth:.0f} MiB",
                    f"<= {limit:.0f} MiB",
                    None if growth is None else growth <= limit,
                )
            )
            est = m.get("queued_est_mb")
            goals.append(
                Goal(
                    f"{w}: 1 MiB records: the queue's own estimate at its fullest, and records refused "
                    "as queue_full (informative)",
                    "n/a"
                    if est is None or m.get("queue_full") is None
                    else f"{est:.1f} MiB; {m['queue_full']:,.0f} of {BOUND_RECORDS:,}",
                    "-",
                    None,
                )
            )
        for variant in BASELINE_VARIANTS:
            if has(w, variant, "ours", "baseline"):
                now = [ratio(w, variant, f, "ours", "baseline") for f in ("app_us", "cpu_us")]
                if variant == "paced":
                    now[1] = ratio(w, variant, "p99_us", "ours", "baseline")
                    label = "app-thread / p99"
                else:
                    now.append(ratio(w, variant, "e2e_rps", "ours", "baseline"))
                    label = "app-thread / CPU / records/s"
                goals.append(
                    Goal(
                        f"{w}: {variant}: this build vs the baseline build, {label} (informative: "
                        "same rounds, interleaved)",
                        " / ".join(map(fmt, now)),
                        "-",
                        None,
                    )
                )
    # No record dropped, anywhere.
    bad = []
    for rnd_i, rnd in enumerate(by_round):
        for case, res in rnd.items():
            if case[1] == "floor" or case[2] == "bound" or res["status"] == "n/a":
                continue
            if res["status"] != "ok":
                bad.append(f"{'/'.join(case)} round {rnd_i + 1}: {res.get('error', res['status'])}")
    delivering = sum(
        1
        for rnd in by_round
        for c, r in rnd.items()
        if c[1] != "floor" and c[2] != "bound" and r["status"] != "n/a"
    )
    goals.append(
        Goal(
            "no record dropped (receiver count == N, stats() dropped_total == 0) in every run",
            f"{delivering - len(bad)}/{delivering} runs complete",
            "all",
            not bad if delivering else None,
        )
    )
    for line in bad[:10]:
        goals.append(Goal(f"  failed: {line}", "", "", False))
    return goals


# What the bound variant logs (benchmarks/_case.py).
BOUND_RECORDS = 2048
BOUND_RECORD_MB = 1.0


def rss_goal(
    by_round: list[dict[Case, dict[str, Any]]],
    med: dict[Case, dict[str, Any]],
    mine: Case,
    theirs: Case,
    name: str,
) -> Goal:
    """Peak RSS, ours at most OTel's in the same run (median of the per-round ratios)."""
    v = paired_ratio(by_round, mine, theirs, lambda a, b: a["rss_mb"] / b["rss_mb"])
    ro, rt = med[mine].get("rss_mb"), med[theirs].get("rss_mb")
    value = "n/a" if v is None or ro is None or rt is None else f"{ro:.0f} vs {rt:.0f} MB ({v:.2f}x)"
    return Goal(name, value, "<= 1.00x", None if v is None else v <= 1.0)


# --- report -------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "packages": versions,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def num(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def markdown(
    info: dict[str, Any], config: dict[str, Any], med: dict[Case, dict[str, Any]], goals: list[Goal]
) -> str:
    out = [
        "# highlight_logging benchmarks",
        "",
        f"N = {config['n']:,} records per run (paced: 6,000 at 2,000/s; outage: 10,000 at 1,000/s with the "
        f"collector refused from 2 s to 7 s; bound: 2,048 records of 1 MiB into a refusing collector), medians of "
        f"{config['rounds']} interleaved round(s), each run in a fresh process; receiver (bundled `Receiver`) in "
        "another process on loopback, behind a byte-counting proxy; variant grpcjs: the base workload delivered "
        "to an @grpc/grpc-js server instead (`benchmarks/grpcjs_receiver.js`). Generated by `benchmarks/run.py`.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, Python {info['python']} ({info['platform']}); "
        f"load average at start {', '.join(f'{x:.2f}' for x in info['loadavg_at_start'] or ())}.",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in info["packages"].items()) + ".",
        *(
            [
                f"Baseline build (beside ours in the {', '.join(BASELINE_VARIANTS)} variants): `{config['baseline']}`."
            ]
            if config.get("baseline")
            else []
        ),
        "",
        "## Goals",
        "",
        "| goal | measured | target | result |",
        "|---|---|---|---|",
    ]
    out += [f"| {g.name} | {g.value} | {g.threshold} | {g.mark} |" for g in goals]
    out += [
        "",
        "## Medians",
        "",
        "app us/call: wall time of the logging loop / N (paced: mean call). CPU us/rec: `process_time()` from "
        "before the loop until the receiver has all N, / N; off-thread: the part not on the calling thread (export "
        "worker, gRPC). rec/s: N / wall time until the receiver has all N. "
        "B/rec: client-to-server bytes through the proxy / N (ours sends exceptions as spans too; none counted "
        "to grpc-js). Peak RSS: `ru_maxrss` of the measured process. Paced and outage: p50 / p99 / max of a call.",
        "",
        "| workload | side | variant | app us/call | CPU us/rec | of which off-thread | end-to-end rec/s | B/rec | peak RSS MB "
        "| p50 / p99 / max us | status |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for (w, side, variant), m in med.items():
        lat = (
            "-" if m.get("p50_us") is None else f"{m['p50_us']:.0f} / {m['p99_us']:.0f} / {m['max_us']:,.0f}"
        )
        status = m["status"] + (f" ({m['ok_runs']}/{m['runs']})" if m["status"] != "n/a" else "")
        out.append(
            f"| {w} | {SIDE_LABEL[(w, side)]} | {variant} | {num(m['app_us'])} | {num(m['cpu_us'])} | "
            f"{num(m['bg_cpu_us']) if variant != 'threads' else '-'} | "
            f"{num(m['e2e_rps'], 0)} | {num(m['bytes_per_rec'])} | {num(m['rss_mb'], 0)} | {lat} | {status} |"
        )
    otel_notes = sorted({m["note"] for c, m in med.items() if c[1] == "otel" and m.get("note")})
    our_notes = sorted({m["note"] for c, m in med.items() if c[1] == "ours" and m.get("note")})
    errors = sorted({f"{'/'.join(c)}: {e}" for c, m in med.items() for e in m["errors"]})
    out += [
        "",
        "OTel side: opentelemetry-sdk `LoggerProvider` + `BatchLogRecordProcessor` (defaults: batch 512, "
        "schedule delay 1 s; `max_queue_size` raised to hold every record) + `OTLPLogExporter` (gRPC, insecure, "
        "`Compression.Gzip`). structlog counterpart: " + (", ".join(otel_notes) or "-") + ". "
        "structlog chain on both sides: add_log_level, TimeStamper, <side>, format_exc_info, KeyValueRenderer, "
        'ReturnLogger; loguru: `format="{message}"` on both sides. '
        "Both sides end with their own flush (`force_flush()` / `highlight_logging.flush()`) before waiting "
        "for the receiver." + (f" Ours: {'; '.join(our_notes)}." if our_notes else ""),
    ]
    if errors:
        out += ["", "Errors and skipped cases:", ""] + [f"- {e}" for e in errors]
    return "\n".join(out) + "\n"


def report_from(path: str) -> str:
    """The markdown report of a saved run, with this version's goals and rows."""
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    config = saved["config"]
    cases = all_cases(config["workloads"], config["variants"], bool(config.get("baseline")))
    rounds: dict[int, dict[Case, dict[str, Any]]] = {}
    for r in saved["runs"]:
        rounds.setdefault(r["round"], {})[(r["workload"], r["side"], r["variant"])] = r
    by_round = [rounds[k] for k in sorted(rounds)]
    med = {
        case: aggregate([rnd[case] for rnd in by_round if case in rnd])
        for case in cases
        if any(case in rnd for rnd in by_round)
    }
    return markdown(saved["machine"], config, med, evaluate(by_round, med, config["workloads"]))


def short_table(path: str) -> str:
    """The README's short table of a saved run: each stated goal's ratio per workload, FAIL marked."""
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    goals = {g["goal"]: g for g in saved["goals"]}
    workloads = [w for w in WORKLOADS if w in saved["config"]["workloads"]]
    rows = (
        ("app thread vs OTel (<= 0.25x)", "{w}: {n}: app-thread us/call"),
        ("CPU vs OTel (<= 0.25x)", "{w}: {n}: process CPU us/record"),
        ("delivery vs OTel, our receiver (>= 4x)", "{w}: {n}: end-to-end records/s"),
        ("delivery vs OTel, grpc-js (>= 4x)", "{w}: {n}: end-to-end records/s to the @grpc/grpc-js receiver"),
        ("1/100 exceptions: app thread (<= 0.25x)", "{w}: {n}: app-thread us/call [1/100 exceptions{x}]"),
        ("1/100 exceptions: CPU (<= 0.25x)", "{w}: {n}: process CPU us/record [1/100 exceptions{x}]"),
        ("1/100 exceptions: delivery (>= 4x)", "{w}: {n}: end-to-end records/s [1/100 exceptions{x}]"),
        ("paced p99 vs the floor's (<= 1.5x)", "{w}: paced 2,000/s: our p99 vs the floor's p99"),
        ("paced p99 vs OTel's (<= 0.5x)", "{w}: paced 2,000/s: our p99 vs OTel's p99"),
        ("peak RSS, burst, vs OTel (<= 1x)", "{w}: peak RSS, the base burst (ours vs OTel, same run)"),
        ("peak RSS, 5 s outage, vs OTel (<= 1x)", "{w}: peak RSS, 5 s collector outage"),
        ("app thread vs the floor (<= 2.5x)", "{w}: HighlightHandler app-thread vs deque.append floor"),
        (
            "1 MiB records: RSS growth (bound)",
            "{w}: 1 MiB records into a refusing collector: peak RSS growth",
        ),
    )
    out = ["| goal | " + " | ".join(workloads) + " |", "|---|" + "---|" * len(workloads)]
    for label, pattern in rows:
        cells = []
        for w in workloads:
            x = ", loguru diagnose=False, backtrace=False on both sides" if w == "loguru" else ""
            key = pattern.format(w=w, n=NAMES[w], x=x)
            g = goals.get(key) or next((g for name, g in goals.items() if name.startswith(key)), None)
            if g is None:
                cells.append("-")
                continue
            value = g["measured"].split("(")[-1].rstrip(")") if " MB (" in g["measured"] else g["measured"]
            if "MiB" in value:
                value += f" ({g['target']})"
            cells.append(value + ("" if g["passed"] is not False else " **FAIL**"))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description="highlight_logging vs OpenTelemetry benchmark suite")
    parser.add_argument("--n", type=int, default=20_000, help="records per run (default 20,000)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--quick", action="store_true", help="smoke run: N=5,000, 1 round")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a run may take to deliver")
    parser.add_argument("--out", default=RESULTS, help="directory for latest.json / latest.md")
    parser.add_argument(
        "--report", metavar="JSON", help="print the report again from a saved latest.json; run nothing"
    )
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        default="",
        help="a directory holding an older build of highlight_logging (its C extension built in "
        "place), run beside ours in the base, exc and paced variants: before/after, interleaved",
    )
    parser.add_argument(
        "--short", metavar="JSON", help="print the README's short table of a saved run; run nothing"
    )
    args = parser.parse_args()
    if args.short:
        sys.stdout.write(short_table(args.short))
        return 0
    if args.report:
        sys.stdout.write(report_from(args.report))
        return 0
    if args.quick:
        args.n, args.rounds = 5_000, 1
    workloads = [w for w in args.workloads.split(",") if w]
    variants = [v for v in args.variants.split(",") if v]
    cases = all_cases(workloads, variants, bool(args.baseline))
    info = machine_info()
    config: dict[str, Any] = {
        "n": args.n,
        "rounds": args.rounds,
        "workloads": workloads,
        "variants": variants,
    }
    if args.baseline:
        config["baseline"] = args.baseline

    receiver, ports = start_receiver([sys.executable, os.path.join(HERE, "_receiver_proc.py")])
    grpcjs: subprocess.Popen[str] | None = None
    js_ports: dict[str, int] | None = None
    if "grpcjs" in variants and os.path.isdir(GRPCJS_MODULE) and shutil.which("node"):
        grpcjs, js_ports = start_receiver(["node", GRPCJS])
    by_round: list[dict[Case, dict[str, Any]]] = []
    started = time.monotonic()
    try:
        for rnd in range(args.rounds):
            order = cases if rnd % 2 == 0 else cases[::-1]  # alternate who goes first within each pair
            results: dict[Case, dict[str, Any]] = {}
            for i, case in enumerate(order):
                r = run_case(
                    case, args.n, js_ports if case[2] == "grpcjs" else ports, args.timeout, args.baseline
                )
                r["round"] = rnd + 1
                results[case] = r
                extra = f" {r.get('error', '')}" if r["status"] != "ok" else ""
                print(
                    f"[round {rnd + 1}/{args.rounds} {i + 1}/{len(order)} {time.monotonic() - started:5.0f}s] "
                    f"{'/'.join(case):<24} {r['status']:<6} app {num(r.get('app_us'))} us  cpu {num(r.get('cpu_us'))} us  "
                    f"{num(r.get('e2e_rps'), 0)} rec/s{extra}",
                    file=sys.stderr,
                    flush=True,
                )
            by_round.append(results)
    finally:
        stop_receiver(receiver)
        if grpcjs is not None:
            stop_receiver(grpcjs)

    med = {case: aggregate([rnd[case] for rnd in by_round if case in rnd]) for case in cases}
    goals = evaluate(by_round, med, workloads)
    md = markdown(info, config, med, goals)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "latest.json"), "w", encoding="utf-8") as f:
        json.dump(
            {
                "machine": info,
                "config": config,
                "elapsed_s": time.monotonic() - started,
                "medians": [{"workload": c[0], "side": c[1], "variant": c[2], **m} for c, m in med.items()],
                "goals": [
                    {"goal": g.name, "measured": g.value, "target": g.threshold, "passed": g.passed}
                    for g in goals
                ],
                "runs": [r for rnd in by_round for r in rnd.values()],
            },
            f,
            indent=1,
        )
    with open(os.path.join(args.out, "latest.md"), "w", encoding="utf-8") as f:
        f.write(md)
    print(md)
    return summary(goals)


def summary(goals: list[Goal]) -> int:
    """PASS/FAIL of every goal on stderr; 1 when one failed."""
    stated = [g for g in goals if g.passed is not None]
    failed = [g for g in stated if not g.passed]
    print(f"\n{len(stated) - len(failed)} of {len(stated)} goals PASS", file=sys.stderr)
    for g in failed:
        print(f"FAIL  {g.name}: {g.value} (target {g.threshold})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
