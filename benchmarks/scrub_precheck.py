"""The export worker's scrubbing cost for records with nothing to scrub (the common case).

    .venv/bin/python benchmarks/scrub_precheck.py [--records 512] [--repeat 9]

Run it against another checkout to compare (``PYTHONPATH=/path/to/other/checkout``, with its C
extension built in place).  Each figure is the best of ``--repeat`` timings, in microseconds:

1. ``chunk``: the worker's per-chunk question (``RuleScrubber.chunk_clean``, 32 records at once, the C
   pre-check where it was built), per record: the record ``logger.info("user %s did %s", i,
   action, extra={"k": i})``, and the same with three string extras (a path, a user agent, a URL);
2. ``exception``: ``scrub_text`` on a clean exception message and its stacktrace, per record;
3. ``pre-check``: the pre-filter alone on a 90-character line and on the stacktrace.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import highlight_logging
from highlight_logging._core import convert as _convert
from highlight_logging._core import scrub as _scrub
from highlight_logging._core.settings import Settings

ACTIONS = ("login", "logout", "view", "purchase")
STRING_EXTRAS = (
    ("path", "/api/v1/users/42/orders?page=2&limit=50"),
    ("user_agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"),
    ("upstream", "http://orders.internal:8080/v2/orders/7f9c2ba4-e88f-4b2c-9a3d-2f1e0c6b8d71"),
)


def _pending(n: int, strings: bool) -> list[Any]:
    settings = Settings()
    out = []
    for i in range(n):
        p = _convert.capture_record_py(
            settings, 1, 20, "INFO", "bench", f"user {i} did {ACTIONS[i & 3]}", {}, []
        )
        extras: tuple[tuple[str, Any], ...] = (("k", i),)
        if strings:
            extras += STRING_EXTRAS
        out.append(p._replace(extras=extras))
    return out


def _stacktrace() -> tuple[str, str]:
    def deep(n: int) -> None:
        if n == 0:
            raise LookupError("order 7f9c2ba4-e88f-4b2c-9a3d-2f1e0c6b8d71 not found in warehouse eu-west-1")
        deep(n - 1)

    try:
        deep(12)
    except LookupError as exc:
        return str(exc), "".join(traceback.format_exception(exc))
    raise AssertionError


def _best(fn: Callable[[], Any], repeat: int, per: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best / per * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    n, repeat = args.records, args.repeat
    scrubber = _scrub.RuleScrubber()
    rows: dict[str, float] = {}
    for label, strings in (("1 int extra", False), ("+3 string extras", True)):
        pending = _pending(n, strings)
        chunks = [pending[i : i + 32] for i in range(0, n, 32)]
        scrubber.scrub_attributes(dict(pending[0].extras))  # learn the keys, as the first record does
        assert all(scrubber.chunk_clean(c) for c in chunks), "a clean record was flagged"

        def chunk_only(chunks: list[Any] = chunks) -> None:
            for c in chunks:
                scrubber.chunk_clean(c)

        rows[f"chunk check, {label}"] = _best(chunk_only, repeat, n)
    message, stack = _stacktrace()

    def exception() -> None:
        for _ in range(n):
            scrubber.scrub_text(message, "exception.message")
            scrubber.scrub_text(stack, "exception.stacktrace")

    rows[f"exception message + {len(stack)}-char stacktrace"] = _best(exception, repeat, n)
    line = "GET /api/v1/users/42/orders?page=2 200 in 12 ms from 10.0.0.7 request 7f9c2ba4-e88f-4b2c"
    pre = _scrub._maybe_secret
    rows[f"pre-check alone, {len(line)}-char line"] = _best(lambda: [pre(line) for _ in range(n)], repeat, n)
    rows[f"pre-check alone, {len(stack)}-char stacktrace"] = _best(
        lambda: [pre(stack) for _ in range(n)], repeat, n
    )
    print(
        f"highlight_logging from {highlight_logging.__file__}; C speedups: {_scrub._native.speedups is not None}"
    )
    print(f"python {sys.version.split()[0]}, {n} records, best of {repeat}")
    for name, us in rows.items():
        print(f"{name:<55} {us:8.3f} us/record")


if __name__ == "__main__":
    main()
