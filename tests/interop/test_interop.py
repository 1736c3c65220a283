"""Each scenario of issue 17 against independent servers, for both gRPC clients.

Every run is a fresh process logging numbered records and a few exceptions; the checks: every
record arrives exactly once (sequence numbers), every exception span arrives, the exit takes
bounded time, and what the process printed to stderr (nothing, on a healthy path).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from servers import (
    AppRun,
    Certs,
    CutAfterAnswer,
    GoGrpc,
    GrpcJs,
    Nginx,
    Received,
    finish_app,
    note,
    run_app,
    start_app,
)

SERVERS = {"grpcjs": GrpcJs, "gogrpc": GoGrpc}
EXCEPTIONS = 5


def merged(*parts: Received) -> Received:
    out = Received()
    for part in parts:
        out.seqs.update(part.seqs)
        out.exceptions.update(part.exceptions)
        out.peers |= part.peers
        out.requests += part.requests
        out.other_logs += part.other_logs
    return out


def delivered(
    run: AppRun,
    got: Received,
    n: int,
    *,
    quiet: bool = True,
    exit_max: float = 3.5,
    connections: int | None = None,
    skip: tuple[int, ...] = (),
) -> None:
    """Every record exactly once, the exception spans, a bounded exit, and stderr as expected."""
    note(run, got)
    assert run.returncode == 0, run.stderr
    missing = [i for i in range(n) if i not in skip and not got.seqs[i]]
    twice = {i: c for i, c in got.seqs.items() if c > 1}
    assert not missing, f"{len(missing)} records lost, e.g. {missing[:5]}; stderr: {run.stderr[-5:]}"
    assert not twice, f"{len(twice)} records sent more than once, e.g. {list(twice.items())[:5]}"
    assert got.exceptions == {f"boom {i}": 1 for i in range(EXCEPTIONS)}, got.exceptions
    assert run.exit_s < exit_max, run.exit_s
    if quiet:
        assert not run.stderr, run.stderr
    if connections is not None:
        assert len(got.peers) <= connections, got.peers


@pytest.mark.parametrize("server", SERVERS)
def test_plaintext(client: str, server: str, tmp_path: Path) -> None:
    with SERVERS[server](tmp_path) as srv:
        run = run_app(srv.endpoint, client, n=3000)
        delivered(run, srv.received(), 3000, connections=1)


@pytest.mark.parametrize("where", ["localhost-on-ipv6-only", "localhost-on-ipv4-only", "ipv6-literal"])
def test_loopback_addresses(client: str, where: str, tmp_path: Path) -> None:
    host = "127.0.0.1" if "ipv4" in where else "::1"
    with GrpcJs(tmp_path, host=host) as srv:
        endpoint = srv.endpoint if where == "ipv6-literal" else f"http://localhost:{srv.port}"
        run = run_app(endpoint, client, n=500)
        delivered(run, srv.received(), 500, connections=1)


@pytest.mark.parametrize("how", ["keyword", "OTEL_EXPORTER_OTLP_CERTIFICATE"])
def test_tls(client: str, how: str, certs: Certs, tmp_path: Path) -> None:
    with GrpcJs(tmp_path, tls=(certs.server_cert, certs.server_key)) as srv:
        endpoint = f"https://localhost:{srv.port}"
        if how == "keyword":
            run = run_app(endpoint, client, n=500, certificate_file=certs.ca)
        else:
            run = run_app(endpoint, client, {"OTEL_EXPORTER_OTLP_CERTIFICATE": str(certs.ca)}, n=500)
        delivered(run, srv.received(), 500, connections=1)


@pytest.mark.parametrize("case", ["wrong-ca", "hostname-mismatch", "no-ca", "mtls-without-client-cert"])
def test_tls_refused(client: str, case: str, certs: Certs, tmp_path: Path) -> None:
    """Nothing is delivered, the warning says why (TLS), and the exit is bounded."""
    tls: tuple[Path, ...] = (certs.server_cert, certs.server_key)
    if case == "mtls-without-client-cert":
        tls = (*tls, certs.ca)
    with GrpcJs(tmp_path, tls=tls) as srv:
        host = "127.0.0.1" if case == "hostname-mismatch" else "localhost"
        env = (
            {}
            if case == "no-ca"
            else {"OTEL_EXPORTER_OTLP_CERTIFICATE": str(certs.other_ca if case == "wrong-ca" else certs.ca)}
        )
        run = run_app(f"https://{host}:{srv.port}", client, env, n=50)
        note(run, srv.received())
        assert run.returncode == 0
        assert srv.received().requests == 0
        assert any(
            re.search(r"(?i)ssl|tls|certificate|handshake|verification", line) for line in run.stderr
        ), "\n".join(run.stderr)
        assert run.exit_s < 3.5


def test_mutual_tls(client: str, certs: Certs, tmp_path: Path) -> None:
    with GrpcJs(tmp_path, tls=(certs.server_cert, certs.server_key, certs.ca)) as srv:
        env = {
            "OTEL_EXPORTER_OTLP_CERTIFICATE": str(certs.ca),
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": str(certs.client_cert),
            "OTEL_EXPORTER_OTLP_CLIENT_KEY": str(certs.client_key),
        }
        run = run_app(f"https://localhost:{srv.port}", client, env, n=500)
        delivered(run, srv.received(), 500, connections=1)


@pytest.mark.parametrize("server", SERVERS)
def test_partial_success(client: str, server: str, tmp_path: Path) -> None:
    with SERVERS[server](tmp_path, rejected=3) as srv:
        run = run_app(srv.endpoint, client, n=500)
        delivered(run, srv.received(), 500, quiet=False)
        assert run.dropped().get("rejected", 0) > 0
        assert any("rejected" in line and "partial success" in line for line in run.stderr), run.stderr


NGINX = {
    "http2_body_preread_size-0": "http2_body_preread_size 0;",
    "http2_body_preread_size-16k": "http2_body_preread_size 16k;",
    "keepalive_requests-4": "keepalive_requests 4; keepalive_timeout 1s;",
    "keepalive_requests-1": "keepalive_requests 1;",  # GOAWAY after every request
}


@pytest.mark.parametrize("directives", NGINX)
def test_nginx(client: str, directives: str, certs: Certs, tmp_path: Path) -> None:
    with GrpcJs(tmp_path) as srv, Nginx(tmp_path, certs, srv.port, NGINX[directives]) as proxy:
        pace = 3.0 if "keepalive" in directives else 0
        env = {"OTEL_EXPORTER_OTLP_CERTIFICATE": str(certs.ca)}
        run = run_app(proxy.endpoint, client, env, n=3000, pace=pace)
        delivered(run, srv.received(), 3000)


def _restarted(
    client: str, endpoint: str, first: Any, again: Any, env: dict[str, str], tmp_path: Path
) -> tuple[AppRun, Received]:
    """The app logs half its records, flushes, and the server is killed; the app logs the other
    half while it is down, and it is started again 2 s later on the same port."""
    pause = tmp_path / "go-on"
    started = time.monotonic()
    proc = start_app(endpoint, client, env, n=1000, pace=4, pause=pause, shutdown_timeout=10)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "HALF"
    first.kill()
    killed = time.monotonic()
    pause.touch()
    while time.monotonic() < killed + 2:
        time.sleep(0.05)
    with again:
        run = finish_app(proc, started)
        return run, merged(first.received(), again.received())


@pytest.mark.parametrize("server", SERVERS)
def test_server_killed_and_restarted_after_2s(client: str, server: str, tmp_path: Path) -> None:
    with SERVERS[server](tmp_path) as srv:
        run, got = _restarted(
            client, srv.endpoint, srv, SERVERS[server](tmp_path, port=srv.port), {}, tmp_path
        )
        delivered(run, got, 1000, quiet=False, exit_max=10)


def test_nginx_upstream_killed_502(client: str, certs: Certs, tmp_path: Path) -> None:
    """nginx answers 502 while its upstream is down: retried, and the warning names the status."""
    with GrpcJs(tmp_path) as srv, Nginx(tmp_path, certs, srv.port) as proxy:
        env = {"OTEL_EXPORTER_OTLP_CERTIFICATE": str(certs.ca)}
        run, got = _restarted(client, proxy.endpoint, srv, GrpcJs(tmp_path, port=srv.port), env, tmp_path)
        delivered(run, got, 1000, quiet=False, exit_max=10)
        assert any("502" in line for line in run.stderr), run.stderr


@pytest.mark.parametrize("server", SERVERS)
def test_max_concurrent_streams_1(client: str, server: str, tmp_path: Path) -> None:
    """A healthy server allowing one stream at a time, 50 ms a call: silent, one connection."""
    with SERVERS[server](tmp_path, max_streams=1, delay_ms=50) as srv:
        run = run_app(srv.endpoint, client, n=4000)
        delivered(run, srv.received(), 4000, connections=1)


@pytest.mark.parametrize("server", SERVERS)
def test_small_max_message_size(client: str, server: str, tmp_path: Path) -> None:
    """A record over the server's limit (alone in its request) is dropped as too large and
    named so; every other record arrives."""
    with SERVERS[server](tmp_path, max_recv=48 * 1024) as srv:  # 150 plain records: ~33 KB
        run = run_app(srv.endpoint, client, n=300, big=60_000)
        delivered(run, srv.received(), 300, quiet=False, skip=(150,))
        assert run.dropped() == {"too_large": 1}, run.stats
        assert any("too large" in line for line in run.stderr), run.stderr


@pytest.mark.parametrize("server", SERVERS)
def test_max_connection_age_goaway(client: str, server: str, tmp_path: Path) -> None:
    """GOAWAY every 500 ms (grpc.max_connection_age_ms / MaxConnectionAge): silent, nothing twice."""
    with SERVERS[server](tmp_path, max_age_ms=500) as srv:
        run = run_app(srv.endpoint, client, n=3000, pace=3)
        delivered(run, srv.received(), 3000)


def test_connection_cut_right_after_an_answer(client: str, tmp_path: Path) -> None:
    """Each connection carries one answer and is then closed: the answered requests are never
    sent again (the rest were never processed, and are)."""
    with GrpcJs(tmp_path, delay_ms=20) as srv, CutAfterAnswer(srv.port) as relay:
        run = run_app(relay.endpoint, client, n=5000, shutdown_timeout=10)
        delivered(run, srv.received(), 5000, quiet=False, exit_max=10)
        assert relay.cuts >= 1
