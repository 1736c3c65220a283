"""The built-in OTLP/gRPC client (the default; also the one forked children use when grpcio's fork
support is off): HTTP/2 framing of its own, no grpcio."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import h2.errors
import h2.events
import h2.settings
import pytest
from certs import self_signed
from h2_server import ScriptedConnection, ScriptedServer, answer_all
from otlp_receiver import (
    Blackhole,
    ByteCounter,
    FaultyReceiver,
    free_port,
    log_record,
    logs_request,
    span,
    spans_request,
)

from highlight_logging._core.settings import resolve
from highlight_logging._devtools.receiver import Receiver
from highlight_logging._transport import LOGS, TRACES, Outcome
from highlight_logging._transport.grpcio import GrpcTransport
from highlight_logging._transport.h2 import H2Transport, _Conn
from highlight_logging._transport.h2wire import Answer, _frame

TESTS_DIR = Path(__file__).resolve().parents[1]  # tests/, where the helper modules are
REPO_ROOT = TESTS_DIR.parent


def _logs(n: int = 1, body: str = "hello") -> bytes:
    return logs_request(*(log_record(f"{body} {i}") for i in range(n))).SerializeToString()


def _h2(endpoint: str, **kw: Any) -> H2Transport:
    return H2Transport(resolve({"endpoint": endpoint, **kw}))


def _fields(o: Outcome) -> tuple[Any, ...]:
    return (o.ok, o.retryable, o.retry_after, o.rejected, o.detail, o.reconnect, o.too_large)


@pytest.fixture
def rx() -> Iterator[FaultyReceiver]:
    with FaultyReceiver(http_port=None) as receiver:
        yield receiver


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_logs_and_spans_arrive(rx: FaultyReceiver, compression: str) -> None:
    """Logs and spans exported through H2Transport reach a real grpc server, gzip or not."""
    t = _h2(rx.endpoint, compression=compression)
    assert _fields(t.export(LOGS, _logs(3), 5.0))[:2] == (True, False)
    spans = spans_request(span("a"), span("b", span_id=b"\x03" * 8)).SerializeToString()
    assert t.export(TRACES, spans, 5.0).ok
    assert rx.wait_for_logs(3, timeout=5) and rx.wait_for_spans(2, timeout=5)
    assert sorted(str(r.body) for r in rx.log_records()) == ["hello 0", "hello 1", "hello 2"]
    assert [s.span.name for s in rx.spans()] == ["a", "b"]
    t.close()


def test_gzip_is_on_the_wire(rx: FaultyReceiver) -> None:
    """compression=gzip really compresses the request bytes sent."""
    payload = _logs(200, body="very compressible " * 20)
    sent = {}
    for compression in ("gzip", "none"):
        with ByteCounter(rx.port) as counter:
            assert _h2(counter.endpoint, compression=compression).export(LOGS, payload, 5.0).ok
            sent[compression] = counter.sent
    assert sent["gzip"] * 5 < sent["none"]
    assert rx.wait_for_logs(400, timeout=5)


def test_connection_is_reused_and_survives_a_collector_restart() -> None:
    """Exports share one connection; after the collector restarts, the next export reconnects and succeeds."""
    with FaultyReceiver(http_port=None) as first:
        port = first.port
        t = _h2(first.endpoint)
        assert t.export(LOGS, _logs(), 5.0).ok
        sock = t._conns[first.endpoint].sock
        assert t.export(LOGS, _logs(), 5.0).ok
        assert t._conns[first.endpoint].sock is sock
    with FaultyReceiver(port=port, http_port=None) as second:
        assert t.export(LOGS, _logs(), 5.0).ok
        assert second.wait_for_logs(1, timeout=5)


def test_large_payload_respects_flow_control(rx: FaultyReceiver) -> None:
    """A 3 MB uncompressed request (far beyond the 64 KiB initial window) arrives intact."""
    bodies = [os.urandom(1500).hex() for _ in range(1000)]  # ~3 MB, incompressible anyway
    payload = logs_request(*(log_record(b) for b in bodies)).SerializeToString()
    assert len(payload) > 3_000_000
    assert _h2(rx.endpoint, compression="none").export(LOGS, payload, 20.0).ok
    assert rx.wait_for_logs(1000, timeout=10)
    assert sorted(str(r.body) for r in rx.log_records()) == sorted(bodies)


def test_message_over_the_server_limit_is_too_large_like_grpcio(rx: FaultyReceiver) -> None:
    """Over the server's 4 MiB limit: an early RESOURCE_EXHAUSTED answer, too_large, as with grpcio."""
    payload = logs_request(*(log_record(os.urandom(2500).hex()) for _ in range(1000))).SerializeToString()
    t = _h2(rx.endpoint, compression="none")
    h2 = t.export(LOGS, payload, 20.0)
    assert t.export(LOGS, _logs(), 5.0).ok  # the connection is still usable afterwards
    grpcio = GrpcTransport(resolve({"endpoint": rx.endpoint, "compression": "none"}))
    try:
        expected = grpcio.export(LOGS, payload, 20.0)
    finally:
        grpcio.close()
    assert (h2.ok, h2.retryable, h2.too_large) == (False, False, True)
    assert _fields(h2) == _fields(expected)


@pytest.mark.parametrize(
    ("code", "delay", "retryable", "reconnect"),
    [
        (grpc.StatusCode.UNAVAILABLE, None, True, True),
        (grpc.StatusCode.UNAVAILABLE, 0.25, True, True),
        (grpc.StatusCode.INVALID_ARGUMENT, None, False, False),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, None, False, False),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 1.5, True, False),
        (grpc.StatusCode.DEADLINE_EXCEEDED, None, True, False),
        (grpc.StatusCode.UNAUTHENTICATED, None, False, False),
    ],
)
def test_status_maps_exactly_like_grpcio(
    rx: FaultyReceiver, code: grpc.StatusCode, delay: float | None, retryable: bool, reconnect: bool
) -> None:
    """Each (trailers-only) error status gives the same Outcome as GrpcTransport, RetryInfo included."""
    rx.fail_next(2, code, message="nope: 100% bad", retry_delay=delay)
    h2 = _h2(rx.endpoint).export(LOGS, _logs(), 5.0)
    grpcio = GrpcTransport(resolve({"endpoint": rx.endpoint}))
    try:
        expected = grpcio.export(LOGS, _logs(), 5.0)
    finally:
        grpcio.close()
    assert (h2.ok, h2.retryable, h2.retry_after, h2.reconnect) == (False, retryable, delay, reconnect)
    assert h2.detail == f"{code.name}: nope: 100% bad"
    assert _fields(h2) == _fields(expected)


def test_partial_success_gives_rejected(rx: FaultyReceiver) -> None:
    """A partial_success in the response body becomes Outcome.rejected and its message."""
    rx.partial_success(2, "two dropped", n=1)
    out = _h2(rx.endpoint).export(LOGS, _logs(3), 5.0)
    assert (out.ok, out.rejected, out.detail) == (True, 2, "two dropped")


def test_connection_refused_is_retryable() -> None:
    """Nothing listening: a retryable UNAVAILABLE with reconnect, at once."""
    start = time.monotonic()
    out = _h2(f"127.0.0.1:{free_port()}").export(LOGS, _logs(), 2.0)
    assert time.monotonic() - start < 2.0
    assert (out.ok, out.retryable, out.reconnect) == (False, True, True)
    assert out.detail.startswith("UNAVAILABLE: ConnectionRefusedError")


def test_blackholed_collector_hits_the_deadline() -> None:
    """A collector that never answers: DEADLINE_EXCEEDED, retryable, within the timeout."""
    with Blackhole() as hole:
        start = time.monotonic()
        out = _h2(hole.endpoint).export(LOGS, _logs(), 0.5)
        elapsed = time.monotonic() - start
    assert 0.4 < elapsed < 1.5
    assert (out.ok, out.retryable, out.reconnect) == (False, True, True)
    assert out.detail.startswith("DEADLINE_EXCEEDED")


def test_cancel_from_another_thread_aborts_the_export(rx: FaultyReceiver) -> None:
    """cancel() ends an export in flight promptly; it is not retried, and the next export works."""
    t = _h2(rx.endpoint)
    rx.set_delay(10)
    threading.Timer(0.3, t.cancel).start()
    start = time.monotonic()
    out = t.export(LOGS, _logs(), 8.0)
    assert time.monotonic() - start < 2.0
    assert (out.ok, out.retryable) == (False, False) and out.detail.startswith("CANCELLED")
    rx.set_delay(0)
    assert t.export(LOGS, _logs(), 5.0).ok


class _Recorder(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Any unary method: records its invocation metadata, answers an empty message."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, Any]] = []

    def service(self, details: Any) -> Any:
        self.metadata.append(dict(details.invocation_metadata))
        return grpc.unary_unary_rpc_method_handler(lambda request, context: b"")


def _serve(
    port_spec: str, credentials: Any = None, options: tuple[tuple[str, Any], ...] = ()
) -> tuple[grpc.Server, _Recorder, int]:
    recorder = _Recorder()
    server = grpc.server(ThreadPoolExecutor(max_workers=2), handlers=[recorder], options=options)
    if credentials is None:
        port = server.add_insecure_port(port_spec)
    else:
        port = server.add_secure_port(port_spec, credentials)
    server.start()
    return server, recorder, port


def test_headers_arrive_as_metadata() -> None:
    """settings.headers reach the server as (lowercased) gRPC metadata, with our user-agent."""
    # The bundled Receiver does not expose metadata, so a tiny generic grpc server records it.
    server, recorder, port = _serve("127.0.0.1:0")
    try:
        out = _h2(
            f"127.0.0.1:{port}", headers=(("X-Highlight-Project", "p1"), ("authorization", "k"))
        ).export(LOGS, _logs(), 5.0)
    finally:
        server.stop(0)
    assert out.ok
    (md,) = recorder.metadata
    assert md["x-highlight-project"] == "p1" and md["authorization"] == "k"
    assert md["user-agent"].startswith("highlight-logging")


def test_a_collector_allowing_one_stream_at_a_time() -> None:
    """SETTINGS_MAX_CONCURRENT_STREAMS 1: a second request in flight waits for the first answer
    instead of breaking the connection; all four arrive, on one connection."""
    server, recorder, port = _serve("127.0.0.1:0", options=(("grpc.max_concurrent_streams", 1),))
    t = _h2(f"127.0.0.1:{port}")
    try:
        assert t.export(LOGS, _logs(), 5.0).ok  # the collector's SETTINGS are known from here on
        assert next(iter(t._conns.values())).wire.max_streams == 1
        waits = [t.start(LOGS, _logs(body=str(i)), 5.0) for i in range(4)]
        outcomes = [wait() for wait in waits]
        assert all(o.ok for o in outcomes), [o.detail for o in outcomes]
        assert len(recorder.metadata) == 5 and len(t._conns) == 1
    finally:
        t.close()
        server.stop(0)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_with_client_certificate(tmp_path: Path) -> None:
    """TLS endpoints use ALPN h2, verify against certificate_file and present the client certificate."""
    cert, key = self_signed(tmp_path)
    creds = grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())], root_certificates=cert.read_bytes(), require_client_auth=True
    )
    server, recorder, port = _serve("127.0.0.1:0", creds)
    try:
        endpoint = f"https://127.0.0.1:{port}"
        anonymous = _h2(endpoint, certificate_file=str(cert)).export(LOGS, _logs(), 5.0)
        out = _h2(
            endpoint, certificate_file=str(cert), client_certificate_file=str(cert), client_key_file=str(key)
        ).export(LOGS, _logs(), 5.0)
        missing = _h2(endpoint, certificate_file=str(tmp_path / "missing.pem")).export(LOGS, _logs(), 5.0)
    finally:
        server.stop(0)
    assert out.ok and len(recorder.metadata) == 1
    assert (anonymous.ok, anonymous.retryable) == (False, True)  # handshake refused: UNAVAILABLE
    assert (missing.ok, missing.retryable) == (False, False)  # bad configuration: not retried


_PATCHED_TLS = """
import sys
{patch}
import gc, logging
import highlight_logging

endpoint, cert = sys.argv[1], sys.argv[2]
log = logging.getLogger("patched-tls")
log.addHandler(highlight_logging.HighlightHandler(endpoint=endpoint, certificate_file=cert))
log.setLevel(logging.INFO)
log.propagate = False
log.info("over TLS from the export thread")
delivered = highlight_logging.flush(10)
hubs = sum(isinstance(o, {hub}) for o in gc.get_objects())
print(delivered, hubs)
"""


@pytest.mark.parametrize(
    "library, patch, hub, app_hubs",
    [
        ("gevent", "import gevent.monkey; gevent.monkey.patch_all()", "__import__('gevent.hub').hub.Hub", 0),
        (
            "eventlet",
            "import eventlet; eventlet.monkey_patch()",
            "__import__('eventlet.hubs.hub').hubs.hub.BaseHub",
            1,
        ),
    ],
)
def test_tls_under_monkey_patching_uses_no_hub(
    tmp_path: Path, library: str, patch: str, hub: str, app_hubs: int
) -> None:
    """Under gevent or eventlet the export thread still speaks TLS (to grpcio's server) on the
    standard library's own sockets: no hub is built for it (eventlet's monkey_patch() builds the app's)."""
    pytest.importorskip(library)
    cert, key = self_signed(tmp_path)
    server, recorder, port = _serve(
        "127.0.0.1:0", grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    )
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONWARNINGS": "ignore"}
        script = _PATCHED_TLS.format(patch=patch, hub=hub)
        args = [f"https://127.0.0.1:{port}", str(cert)]
        done = subprocess.run(
            [sys.executable, "-c", script, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.stop(0)
    assert done.stdout.split() == ["True", str(app_hubs)] and len(recorder.metadata) == 1, (
        done.stdout + done.stderr
    )


_FORK_SCRIPT = """
import multiprocessing, sys
sys.path.insert(0, sys.argv[2])
from otlp_receiver import export_logs, log_record, logs_request
from highlight_logging._core.settings import resolve
from highlight_logging._transport import LOGS
from highlight_logging._transport.h2 import H2Transport, _Conn
from highlight_logging._transport.h2wire import Answer, _frame

def work(i):
    payload = logs_request(log_record(f"child {i}")).SerializeToString()
    out = H2Transport(resolve({"endpoint": sys.argv[1]})).export(LOGS, payload, 5.0)
    return out.ok, out.detail

if __name__ == "__main__":
    export_logs(sys.argv[1], logs_request(log_record("parent")))  # the parent has used grpcio
    with multiprocessing.get_context("fork").Pool(2) as pool:
        print(pool.map(work, range(4), chunksize=1))
"""


@pytest.mark.parametrize("fork_support", ["0", "false"])
def test_forked_pool_workers_export_without_grpc_fork_support(rx: FaultyReceiver, fork_support: str) -> None:
    """GRPC_ENABLE_FORK_SUPPORT off, parent used grpcio: fork-Pool workers still export, nothing hangs."""
    env = {**os.environ, "GRPC_ENABLE_FORK_SUPPORT": fork_support, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", _FORK_SCRIPT, rx.endpoint, str(TESTS_DIR)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str([(True, "")] * 4)
    assert rx.wait_for_logs(5, timeout=5)
    assert sorted(str(r.body) for r in rx.log_records()) == [*(f"child {i}" for i in range(4)), "parent"]


def test_tls_trusts_grpcio_roots_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without certificate_file the h2 client also trusts what grpcio would: its bundled roots, or
    GRPC_DEFAULT_SSL_ROOTS_FILE_PATH."""
    from highlight_logging._transport import h2 as builtin

    monkeypatch.delenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", raising=False)
    bundled = builtin._grpc_roots()
    assert bundled is not None and bundled.endswith("roots.pem")
    custom = tmp_path / "roots.pem"
    custom.write_bytes(Path(bundled).read_bytes())
    monkeypatch.setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", str(custom))
    assert builtin._grpc_roots() == str(custom)
    transport = builtin.H2Transport(resolve({"endpoint": "https://collector.example:4317"}, environ={}))
    ctx = transport._tls()
    assert ctx.cert_store_stats()["x509_ca"] > 0


def test_an_answer_that_came_in_time_is_read_after_the_deadline(rx: FaultyReceiver) -> None:
    """The worker reads an answer only after encoding its next batch: one that reached the socket
    before the request's deadline counts, even when the deadline has passed by the time it is read."""
    t = _h2(rx.endpoint)
    try:
        wait = t.start(LOGS, _logs(1), 0.5)
        assert rx.wait_for_logs(1, 5)
        threading.Event().wait(1.0)  # past the deadline; the answer has long been in the socket
        outcome = wait()
        assert outcome.ok, outcome.detail
        assert len(rx.requests) == 1  # not sent again
    finally:
        t.close()


def test_one_request_timing_out_leaves_the_others_on_the_connection(rx: FaultyReceiver) -> None:
    """A request past its own deadline cancels its stream only: another request in flight on the
    same connection still gets its answer (it is not cut off, to be resent as a duplicate)."""
    t = H2Transport(resolve({"endpoint": rx.endpoint}))
    try:
        assert t.export(LOGS, _logs(), 5).ok  # the connection is open
        rx.set_delay(1.0)  # every answer now comes after a second
        wait_a = t.start(LOGS, _logs(body="a"), 0.3)
        wait_b = t.start(LOGS, _logs(body="b"), 10.0)
        a, b = wait_a(), wait_b()
        assert not a.ok and a.detail.startswith("DEADLINE_EXCEEDED")
        assert b.ok, b.detail
        assert len(t._conns) == 1 and not next(iter(t._conns.values())).streams
    finally:
        t.close()


def test_cancel_wakes_every_connection_in_flight() -> None:
    """With logs and traces on different collectors, cancel() ends the waits on both (the
    shutdown deadline), rather than one of them sitting out its own timeout."""
    with Blackhole() as a, Blackhole() as b:
        environ = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": a.endpoint,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": b.endpoint,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
        }
        t = H2Transport(resolve({}, environ=environ))
        outcomes: dict[str, Outcome] = {}
        threads = [
            threading.Thread(target=lambda s=s: outcomes.__setitem__(s, t.export(s, _logs(), 30.0)))
            for s in (LOGS, TRACES)
        ]
        for thread in threads:
            thread.start()
        # Both wait for their collector's SETTINGS, which never come.
        deadline = time.monotonic() + 10
        while len(t._active) < 2 and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        t.cancel()
        for thread in threads:
            thread.join(10)
        assert [outcomes[s].detail.split(":")[0] for s in (LOGS, TRACES)] == ["CANCELLED", "CANCELLED"]
        t.close()


def _drain(conn: ScriptedConnection) -> None:
    """Read (and ignore) until the client goes away."""
    while conn.sock.recv(65536):
        pass


def test_after_goaway_streams_the_collector_did_not_take_are_sent_again_at_once() -> None:
    """GOAWAY naming stream 1 as the last it takes: stream 1 is answered; stream 3 (never
    processed, RFC 9113 section 8.7) is sent again at once on a new connection, as grpcio does:
    no failure, so no warning and no back-off."""

    def script(index: int, conn: ScriptedConnection) -> None:
        if index:
            return answer_all(index, conn)
        one, _ = conn.requests(2)
        conn.answer(one)
        conn.h2.close_connection(last_stream_id=one)
        conn.send()
        _drain(conn)

    with ScriptedServer(script) as srv:
        t = _h2(srv.endpoint)
        try:
            first, second = t.start(LOGS, _logs(), 5.0), t.start(LOGS, _logs(), 5.0)
            one, three = first(), second()
            assert one.ok, one.detail
            assert three.ok, three.detail
            assert srv.connections == 2
            assert t.export(LOGS, _logs(), 5.0).ok and srv.connections == 2
        finally:
            t.close()
        assert not srv.errors


@pytest.mark.parametrize("new_connection", ["opens", "refused"])
def test_streams_taken_before_goaway_are_still_answered_on_the_old_connection(new_connection: str) -> None:
    """A graceful GOAWAY (both streams taken): a new request opens a new connection (or fails to)
    without closing the old one, whose second answer, coming later, still arrives: nothing is
    sent twice."""
    later = threading.Event()
    taken: list[int] = []

    def script(index: int, conn: ScriptedConnection) -> None:
        if index:
            return answer_all(index, conn)
        one, three = conn.requests(2)
        taken.extend((one, three))
        # h2 sends nothing after its own GOAWAY: this one is written by hand, ahead of answer one.
        conn.sock.sendall(_frame(7, 0, 0, struct.pack(">LL", three, 0)))
        conn.answer(one)
        later.wait(5)
        conn.answer(three)
        _drain(conn)

    with ScriptedServer(script) as srv:
        t = _h2(srv.endpoint)
        try:
            first, second = t.start(LOGS, _logs(), 5.0), t.start(LOGS, _logs(), 5.0)
            assert first().ok  # its answer came after the GOAWAY: the connection is closing
            if new_connection == "refused":
                srv.close()  # stops listening; the open connection goes on
            third = t.start(LOGS, _logs(), 5.0)
            later.set()
            two, three = second(), third()
            assert two.ok, two.detail
            assert three.ok == (new_connection == "opens"), three.detail
            assert taken == [1, 3] and srv.connections == (2 if new_connection == "opens" else 1)
            assert not t._retired  # closed once its last answer was read
        finally:
            t.close()
        assert not srv.errors


def test_an_answer_read_with_another_streams_survives_the_connection_closing() -> None:
    """Stream 3's whole answer arrives while stream 1 is awaited, then the collector closes the
    connection: stream 1 fails (retryable), stream 3 is answered all the same, not sent again."""

    def script(index: int, conn: ScriptedConnection) -> None:
        _, three = conn.requests(2)
        conn.answer(three)
        conn.sock.shutdown(socket.SHUT_RDWR)

    with ScriptedServer(script) as srv:
        t = _h2(srv.endpoint)
        try:
            first, second = t.start(LOGS, _logs(), 5.0), t.start(LOGS, _logs(), 5.0)
            one, three = first(), second()
            assert not one.ok and one.retryable, one.detail
            assert three.ok, three.detail
        finally:
            t.close()


def test_goaway_while_waiting_for_a_free_stream_keeps_the_answers_owed() -> None:
    """At the collector's limit of one stream, the next request waits; a GOAWAY then arrives with
    the first answer: the waiting request goes on a new connection at once (nothing of it was
    sent) without closing the connection under the first, whose answer is still read."""

    def script(index: int, conn: ScriptedConnection) -> None:
        if index:
            return answer_all(index, conn)
        conn.answer(conn.requests(1)[0])  # the settings are known from here on
        (sid,) = conn.requests(1)
        conn.sock.sendall(
            _frame(7, 0, 0, struct.pack(">LL", sid, 0))
        )  # by hand: h2 sends nothing after its own
        conn.answer(sid)
        _drain(conn)

    with ScriptedServer(script, {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1}) as srv:
        t = _h2(srv.endpoint)
        try:
            assert t.export(LOGS, _logs(), 5.0).ok
            first = t.start(LOGS, _logs(), 5.0)
            second = t.start(LOGS, _logs(), 5.0)  # waits for the first answer, and the GOAWAY
            one, two = first(), second()
            assert one.ok, one.detail
            assert two.ok, two.detail
            assert t.export(LOGS, _logs(), 5.0).ok and srv.connections == 2
        finally:
            t.close()
        assert not srv.errors


def test_a_deadline_passing_with_frames_owed_cancels_only_that_stream() -> None:
    """A request past its deadline while we owe the collector a PING ACK: the ACK and a
    RST_STREAM go out, and the other request on the connection still gets its answer."""
    pinged = threading.Event()
    reset: list[int] = []

    def script(index: int, conn: ScriptedConnection) -> None:
        _, three = conn.requests(2)
        conn.h2.ping(b"bdp-ping")  # as grpc-go's BDP estimator does
        conn.send()
        pinged.set()
        while not reset:
            for event in conn.h2.receive_data(conn.sock.recv(65536)):
                if isinstance(event, h2.events.StreamReset):
                    reset.append(event.stream_id)
        conn.answer(three)
        _drain(conn)

    with ScriptedServer(script) as srv:
        t = _h2(srv.endpoint)
        try:
            first = t.start(LOGS, _logs(), 0.2)
            second = t.start(LOGS, _logs(), 5.0)
            assert pinged.wait(5)
            threading.Event().wait(0.3)  # the worker encodes its next batch; the first deadline passes
            one, three = first(), second()
            assert one.detail.startswith("DEADLINE_EXCEEDED") and one.retryable
            assert three.ok, three.detail
            assert reset == [1] and srv.connections == 1
        finally:
            t.close()
        assert not srv.errors


class _EndlessPings:
    """A socket that always has more PINGs to read (a flooding collector), and counts its reads."""

    def __init__(self) -> None:
        self.reads = 0

    def settimeout(self, timeout: float | None) -> None:
        pass

    def recv(self, size: int) -> bytes:
        self.reads += 1
        if self.reads > 100_000:
            raise AssertionError("still reading: the loop has no bound")
        return _frame(6, 0, 0, b"12345678") * 100


def test_reading_what_arrived_is_bounded_against_a_flood() -> None:
    """A collector that keeps the socket full without answering: reading what has arrived stops
    (the ACKs owed hit their bound, or the time does) instead of reading for as long as it sends."""
    conn = _Conn(_EndlessPings(), "http", "x")  # type: ignore[arg-type]
    conn.wire.settings_received = True
    _, answer = conn.wire.send_headers(b"")
    conn.wire.data_to_send()
    start = time.monotonic()
    with contextlib.suppress(ConnectionError):  # "floods us": the owed ACKs' bound, if reached first
        H2Transport._read_arrived(conn, answer, time.monotonic() - 1)  # deadline long past
    assert time.monotonic() - start < 1.0
    assert len(conn.wire.data_to_send()) < 2 * 1024 * 1024
    with pytest.raises(ConnectionError, match="floods us"):  # and reading on, the owed ACKs' bound
        for _ in range(10_000):
            conn.wire.receive(conn.sock.recv(65536))


@pytest.mark.parametrize(
    "fields",
    [{"grpc-status": "\xb2"}, {":status": "2OO"}, {":status": ""}, {"grpc-status": "-1"}],
    ids=["superscript-digit", "letters", "empty", "negative"],
)
def test_a_garbled_status_is_unknown_and_never_raises(fields: dict[str, str]) -> None:
    """Status values that only look like numbers give UNKNOWN (not retried) rather than an exception."""
    answer = Answer(0)
    answer.fields.update(fields)
    answer.ended = True
    outcome = _h2("http://127.0.0.1:1")._outcome(answer, LOGS)
    assert not outcome.ok and not outcome.retryable and outcome.detail.startswith("UNKNOWN")


# -- issue 17: what independent servers and proxies showed -------------------------------------


@pytest.mark.parametrize("host", ["::1", "127.0.0.1"])
def test_localhost_reaches_a_collector_on_either_loopback(host: str) -> None:
    """``localhost`` means both loopbacks, tried in turn, as grpcio (c-ares) does, even where
    /etc/hosts names only 127.0.0.1; an IPv6 literal in brackets works too."""
    with ScriptedServer(answer_all, host=host) as srv:
        for endpoint in (f"http://localhost:{srv.port}", srv.endpoint):
            t = _h2(endpoint)
            try:
                out = t.export(LOGS, _logs(), 5.0)
                assert out.ok, out.detail
            finally:
                t.close()


def test_every_address_refusing_is_named() -> None:
    port = free_port()
    out = _h2(f"http://localhost:{port}").export(LOGS, _logs(), 2.0)
    assert out.retryable and out.detail.startswith("UNAVAILABLE: ConnectionRefusedError")
    assert f"localhost:{port}" in out.detail and "127.0.0.1" in out.detail
    if socket.has_ipv6:
        assert "::1" in out.detail


def test_the_collectors_settings_are_read_before_the_first_request() -> None:
    """A collector that sends its SETTINGS late, allowing one stream and no request body until it
    says so (nginx's http2_body_preread_size 0): no HEADERS come before its SETTINGS, and the
    client keeps to one stream at a time on one connection, without a refusal."""
    early: list[Any] = []

    def script(index: int, conn: ScriptedConnection) -> None:
        conn.sock.settimeout(0.3)  # what the client sends unprompted: the preface and SETTINGS only
        with contextlib.suppress(TimeoutError):
            while True:
                data = conn.sock.recv(65536)
                if not data:
                    return
                early.extend(
                    e for e in conn.h2.receive_data(data) if isinstance(e, h2.events.RequestReceived)
                )
        conn.sock.settimeout(None)
        conn.send()
        while True:  # as nginx does: the body's window opens once the request is taken
            data = conn.sock.recv(65536)
            if not data:
                return
            for event in conn.h2.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    conn.h2.increment_flow_control_window(1 << 20, event.stream_id)
                    conn.h2.increment_flow_control_window(1 << 20)
                elif isinstance(event, h2.events.StreamEnded):
                    conn.answer(event.stream_id)
            conn.send()

    settings = {
        h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1,
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0,
    }
    with ScriptedServer(script, settings, hold=True) as srv:
        t = _h2(srv.endpoint)
        try:
            with ThreadPoolExecutor(1) as pool:
                first = pool.submit(lambda: t.start(LOGS, _logs(), 5.0)).result(10)
            # Window 0: every byte of a body waits for the collector's WINDOW_UPDATE.
            waits = [first, t.start(LOGS, _logs(), 5.0), t.start(LOGS, _logs(), 5.0)]
            outcomes = [wait() for wait in waits]
            assert all(o.ok for o in outcomes), [o.detail for o in outcomes]
            assert not early and srv.connections == 1
        finally:
            t.close()
        assert not srv.errors


def test_a_refused_stream_is_sent_again_at_once_on_the_same_connection() -> None:
    """REFUSED_STREAM (RFC 9113 section 8.7: never processed) is no failed export: the request is
    sent again at once, with no warning, reconnect or back-off."""
    got: list[int] = []

    def script(index: int, conn: ScriptedConnection) -> None:
        (sid,) = conn.requests(1)
        got.append(sid)
        conn.h2.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
        conn.send()
        while True:
            for sid in conn.requests(1):
                got.append(sid)
                conn.answer(sid)

    with ScriptedServer(script) as srv:
        t = _h2(srv.endpoint)
        try:
            start = time.monotonic()
            out = t.export(LOGS, _logs(), 5.0)
            assert out.ok and not out.reconnect, out.detail
            assert time.monotonic() - start < 2.0
            assert got == [1, 3] and srv.connections == 1
        finally:
            t.close()
        assert not srv.errors


def test_a_collector_refusing_every_stream_fails_in_the_end() -> None:
    def script(index: int, conn: ScriptedConnection) -> None:
        while True:
            for sid in conn.requests(1):
                conn.h2.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
                conn.send()

    with ScriptedServer(script) as srv:
        t = _h2(srv.endpoint)
        try:
            out = t.export(LOGS, _logs(), 5.0)
            assert not out.ok and out.retryable and "refused" in out.detail, out.detail
        finally:
            t.close()


def test_a_failed_send_never_loses_an_answer_already_received() -> None:
    """The collector answers the first request and closes the connection; the next requests fail
    to go out on it (or to be answered).  The first answer, received before the close, still
    counts: closing the socket under it would have the first batch sent twice."""
    closed = threading.Event()

    def script(index: int, conn: ScriptedConnection) -> None:
        if index:
            return answer_all(index, conn)
        (sid,) = conn.requests(1)
        conn.answer(sid)
        conn.sock.shutdown(socket.SHUT_RDWR)
        closed.set()

    with ScriptedServer(script) as srv:
        t = _h2(srv.endpoint)
        try:
            first = t.start(LOGS, _logs(), 5.0)
            assert closed.wait(5)
            # Starts until one fails outright (the peer's RST makes a write fail), or a few.
            later = []
            for _ in range(5):
                later.append(t.start(LOGS, _logs(), 5.0))
                if srv.connections > 1:
                    break
            one = first()
            assert one.ok, one.detail
            for wait in later:
                out = wait()
                assert out.ok or out.retryable, out.detail
        finally:
            t.close()


@pytest.mark.parametrize(
    ("status", "code", "too_large"), [("502", "UNAVAILABLE", False), ("413", "RESOURCE_EXHAUSTED", True)]
)
def test_a_proxys_http_status_is_named(status: str, code: str, too_large: bool) -> None:
    def script(index: int, conn: ScriptedConnection) -> None:
        while True:
            for sid in conn.requests(1):
                conn.h2.send_headers(
                    sid, [(":status", status), ("content-type", "text/html")], end_stream=True
                )
                conn.send()

    with ScriptedServer(script) as srv:
        t = _h2(srv.endpoint)
        try:
            out = t.export(LOGS, _logs(), 5.0)
            assert out.detail.startswith(code) and f"HTTP status {status}" in out.detail, out.detail
            assert out.too_large is too_large
        finally:
            t.close()


def test_a_server_not_speaking_http2_is_named() -> None:
    """E.g. plaintext sent to nginx's TLS port, which answers with an HTTP/1.1 400."""
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            with contextlib.suppress(OSError):
                sock, _ = listener.accept()
                with sock:
                    sock.recv(65536)
                    sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" + b"x" * 20000)

        threading.Thread(target=serve, daemon=True).start()
        out = _h2(f"http://127.0.0.1:{listener.getsockname()[1]}").export(LOGS, _logs(), 5.0)
        assert "did not answer in HTTP/2" in out.detail and "HTTP/1.1 400" in out.detail, out.detail


def test_a_tls_failure_is_named() -> None:
    with ScriptedServer(answer_all) as srv:
        out = _h2(f"https://127.0.0.1:{srv.port}").export(LOGS, _logs(), 5.0)
        assert out.retryable and f"TLS handshake with 127.0.0.1:{srv.port} failed" in out.detail, out.detail


_NO_GRPCIO = """
import logging, sys
import highlight_logging
loaded = lambda: sorted(m for m in sys.modules if m in ("grpc", "urllib.request") or m.startswith("grpc."))
print(loaded())
log = logging.getLogger("no-grpcio")
log.addHandler(highlight_logging.HighlightHandler(endpoint=sys.argv[1], protocol=sys.argv[2]))
log.warning("one")
try:
    raise ValueError("two")
except ValueError:
    log.exception("two")
assert highlight_logging.flush(20)
print(loaded())
"""


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_only_the_grpcio_client_imports_grpcio(protocol: str) -> None:
    """grpcio is costly to import (docs/performance.md): neither importing the package nor exporting
    through the built-in client (the default) or OTLP/HTTP imports it, nor does the first export, its
    retry or its answer; urllib.request is imported only for OTLP/HTTP."""
    with Receiver(http_port=0) as receiver:
        endpoint = receiver.endpoint if protocol == "grpc" else f"http://127.0.0.1:{receiver.http_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "HIGHLIGHT_"))}
        out = subprocess.run(
            [sys.executable, "-c", _NO_GRPCIO, endpoint, protocol],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert out.returncode == 0, out.stderr
        after_import, after_export = out.stdout.split("\n")[:2]
        assert after_import == "[]"
        assert after_export == ("[]" if protocol == "grpc" else "['urllib.request']")
        assert receiver.wait_for_logs(2, 10)
