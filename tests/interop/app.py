"""The application side of an interop run: logs numbered records (and exceptions) through
``HighlightHandler`` and exits, the way a user's process does.

Settings come from the environment (``OTEL_*``, ``HIGHLIGHT_GRPC_CLIENT``); ``INTEROP_*`` shape the
run.  stdout gets one JSON line: ``highlight_logging.stats()`` and the time the exit took.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import time

import highlight_logging


def main() -> None:
    n = int(os.environ.get("INTEROP_N", "1000"))
    extras = int(os.environ.get("INTEROP_EXTRAS", "0"))
    exceptions = int(os.environ.get("INTEROP_EXCEPTIONS", "5"))
    big = int(os.environ.get("INTEROP_BIG", "0"))  # bytes of one record in the middle, if any
    pause = os.environ.get("INTEROP_PAUSE")  # half way: flush, say "HALF", wait for this file
    pace = float(os.environ.get("INTEROP_PACE", "0"))  # seconds the whole run is spread over
    kwargs: dict[str, object] = {}
    if os.environ.get("INTEROP_CERTIFICATE_FILE"):
        kwargs["certificate_file"] = os.environ["INTEROP_CERTIFICATE_FILE"]
    if os.environ.get("INTEROP_SHUTDOWN_TIMEOUT"):
        kwargs["shutdown_timeout"] = float(os.environ["INTEROP_SHUTDOWN_TIMEOUT"])
    handler = highlight_logging.HighlightHandler(**kwargs)
    log = logging.getLogger("interop")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(handler)
    fields = {f"field_{k}": f"value {k}" for k in range(extras)}
    before = resource.getrusage(resource.RUSAGE_SELF)  # imports and set-up excluded
    start = time.monotonic()
    for i in range(n):
        if pause and i == n // 2:
            highlight_logging.flush(10)
            print("HALF", flush=True)
            deadline = time.monotonic() + 30
            while not os.path.exists(pause) and time.monotonic() < deadline:
                time.sleep(0.01)
        if big and i == n // 2:  # alone in its request
            highlight_logging.flush(10)
            log.info("big %d %s", i, "x" * big)  # compressible: grpc-js checks the size unpacked
            highlight_logging.flush(10)
            continue
        if i < exceptions:
            try:
                raise ValueError(f"boom {i}")
            except ValueError:
                log.exception("seq %d", i, extra=fields)
            continue
        log.info("seq %d", i, extra=fields)
        if pace:
            time.sleep(max(0.0, start + pace * (i + 1) / n - time.monotonic()))
    t = time.monotonic()
    highlight_logging.shutdown()
    exit_s = time.monotonic() - t
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread's, grpcio's own included
    cpu = usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime
    print(json.dumps({"stats": highlight_logging.stats(), "exit_s": exit_s, "cpu_s": cpu}), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
