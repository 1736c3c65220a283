"""The interop suite: the package against servers nobody here wrote (grpc-js, grpc-go, nginx).

Run by ``make interop`` (which installs the servers first, see install.sh); skipped by plain
``pytest`` unless ``HIGHLIGHT_INTEROP=1``.  Every scenario runs for both gRPC clients (the
``client`` fixture); the pass/fail matrix and each run's facts are written to build/matrix.md and
shown at the end.  For new scenarios (proxies): ``client``, ``certs`` and ``collector`` here, and
in servers.py the servers, ``run_app(endpoint, client, env, **shape)`` and ``note(run, got)``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from servers import FACTS, Certs, GrpcJs, installed, make_certs

collect_ignore_glob = [] if os.environ.get("HIGHLIGHT_INTEROP") == "1" else ["test_*.py"]

CLIENTS = ["h2", "grpcio"]
_results: dict[tuple[str, str], str] = {}


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    """``grpc_client``: the built-in HTTP/2 client, then grpcio; each scenario runs with both."""
    reason = installed()
    if reason:
        pytest.fail(reason)
    return str(request.param)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Certificates made at test time: CA, server (localhost only), client, and an unrelated CA."""
    return make_certs(tmp_path_factory.mktemp("certs"))


def pytest_runtest_logreport(report: Any) -> None:
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        match = re.match(r".*::(test_\w+)\[(.*)\]$", report.nodeid)
        if not match:
            return
        params = match.group(2).split("-")
        client = next((p for p in params if p in CLIENTS), "?")
        rest = "-".join(p for p in params if p not in CLIENTS)
        scenario = match.group(1)[5:] + (f" [{rest}]" if rest else "")
        _results[(scenario, client)] = "pass" if report.outcome == "passed" else report.outcome


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _results:
        return
    scenarios = list(dict.fromkeys(s for s, _ in _results))
    lines = ["| scenario | " + " | ".join(CLIENTS) + " |", "|---|" + "---|" * len(CLIENTS)]
    for scenario in scenarios:
        cells = [_results.get((scenario, c), "-") for c in CLIENTS]
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    for c in CLIENTS:
        passed = sum(1 for (s, k), v in _results.items() if k == c and v == "pass")
        total = sum(1 for (s, k) in _results if k == c)
        lines.append(f"| **{c}: passed** | {passed}/{total} |")
    lines += ["", "What each run showed:", ""]
    lines += [f"- {test.split('::')[-1]}: {fact}" for test, facts in FACTS.items() for fact in facts]
    build = Path(__file__).resolve().parent / "build"
    build.mkdir(exist_ok=True)
    (build / "matrix.md").write_text("\n".join(lines) + "\n")
    terminalreporter.write_sep("-", "interop matrix (also in tests/interop/build/matrix.md)")
    for line in lines:
        terminalreporter.write_line(line)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[GrpcJs]:
    """A plaintext grpc-js OTLP collector on 127.0.0.1 (``.endpoint``, ``.received()``): the
    target for scenarios that put something between the client and it (proxies)."""
    with GrpcJs(tmp_path) as srv:
        yield srv
