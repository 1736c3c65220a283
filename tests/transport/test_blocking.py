"""The built-in client's sockets and TLS contexts are the standard library's own, also under gevent
and eventlet: the export worker is a real OS thread, where a green socket builds a hub of its own
(tests/test_green.py counts the hubs of a patched app end to end)."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from certs import self_signed

from highlight_logging._transport import blocking

ROOT = str(Path(__file__).resolve().parents[2])

PATCH = {
    "gevent": "import gevent.monkey; gevent.monkey.patch_all()",
    "eventlet": "import eventlet; eventlet.monkey_patch()",
}

CHECK = """
{patch}
import socket, ssl, _socket
from highlight_logging._transport import blocking

listener = socket.socket()  # green, as the app's would be
listener.bind(("127.0.0.1", 0))
listener.listen(1)
port = listener.getsockname()[1]
sock = blocking.create_connection("127.0.0.1", port, 5.0)
assert type(sock).__module__ == "socket" and isinstance(sock, _socket.socket), type(sock)
assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
blocking.shutdown(sock)
sock.close()

made = ssl.create_default_context()
ctx = blocking.tls_context(None)
assert type(ctx).__module__ == "ssl", type(ctx)
for name in ("options", "verify_flags", "verify_mode", "check_hostname", "minimum_version", "maximum_version"):
    assert getattr(ctx, name) == getattr(made, name), name
assert ctx.cert_store_stats() == made.cert_store_stats()
print("ok")
"""


@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_patched_sockets_and_tls_are_the_standard_librarys(library: str) -> None:
    pytest.importorskip(library)
    env = {**os.environ, "PYTHONPATH": ROOT, "PYTHONWARNINGS": "ignore"}
    script = textwrap.dedent(CHECK).format(patch=PATCH[library])
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_unpatched_tls_context_is_create_default_context() -> None:
    made = ssl.create_default_context()
    ctx = blocking.tls_context(None)
    assert type(ctx) is type(made)
    for name in (
        "options",
        "verify_flags",
        "verify_mode",
        "check_hostname",
        "minimum_version",
        "maximum_version",
    ):
        assert getattr(ctx, name) == getattr(made, name), name
    assert ctx.cert_store_stats() == made.cert_store_stats()


def test_create_connection_raises_the_last_error_when_nothing_listens() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        blocking.create_connection("127.0.0.1", port, 5.0)


# --- TlsStream against a local TLS server ------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    return str(cert), str(key)


def _server(
    certs: tuple[str, str], serve: Callable[[socket.socket, ssl.SSLContext], None]
) -> tuple[int, threading.Thread]:
    """A one-connection TLS server on loopback: ``serve`` gets the accepted plain socket."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certs)

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                serve(conn, context)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def _client(port: int, cafile: str | None, timeout: float = 10.0) -> blocking.TlsStream:
    raw = blocking.connect(socket.AF_INET, ("127.0.0.1", port), timeout)
    stream = blocking.TlsStream(raw, blocking.tls_context(cafile), "127.0.0.1")
    stream.handshake()
    return stream


def test_a_read_is_bounded_by_one_timeout_however_the_record_trickles_in(certs: tuple[str, str]) -> None:
    """As with SSLSocket: a TLS record arriving in small pieces does not restart the timeout at each
    piece (it did: a 1 s timeout waited 5 s for a record sent over 5 s)."""
    done = threading.Event()

    def serve(conn: socket.socket, context: ssl.SSLContext) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=True)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                conn.sendall(outgoing.read())
                incoming.write(conn.recv(65536))
        conn.sendall(outgoing.read())
        tls.write(b"x" * 4000)
        record = outgoing.read()
        for i in range(0, len(record), 100):  # until the client gives up
            if done.wait(0.05):
                return
            conn.sendall(record[i : i + 100])

    port, _ = _server(certs, serve)
    stream = _client(port, certs[0])
    stream.settimeout(0.5)
    try:
        with pytest.raises(TimeoutError):
            stream.recv(65536)
    finally:
        done.set()
        stream.close()


@pytest.mark.parametrize("ending", ["close_notify", "ragged"])
def test_the_servers_close_reads_as_end_of_stream(certs: tuple[str, str], ending: str) -> None:
    def serve(conn: socket.socket, context: ssl.SSLContext) -> None:
        tls = context.wrap_socket(conn, server_side=True)
        tls.sendall(b"hello")
        if ending == "close_notify":
            tls.setblocking(False)  # send ours, without waiting for the client's
            with contextlib.suppress(ssl.SSLWantReadError):
                tls.unwrap()

    port, thread = _server(certs, serve)
    stream = _client(port, certs[0])
    got = b""
    while len(got) < 5:
        got += stream.recv(100)
    assert (got, stream.recv(100), stream.recv(100)) == (b"hello", b"", b"")
    stream.close()
    thread.join(10)


def test_non_blocking_read_and_shutdown_from_another_thread(certs: tuple[str, str]) -> None:
    """Timeout 0: BlockingIOError when nothing is there (the client reads what arrived so); and
    shutdown() wakes a read blocked on another thread, as H2Transport.cancel() needs (end of
    stream, or a reset when the server's session tickets were still unread)."""
    release = threading.Event()

    def serve(conn: socket.socket, context: ssl.SSLContext) -> None:
        with context.wrap_socket(conn, server_side=True):
            release.wait(10)

    port, _ = _server(certs, serve)
    stream = _client(port, certs[0])
    stream.settimeout(0)
    with pytest.raises(BlockingIOError):
        stream.recv(100)
    stream.settimeout(10)
    woken: list[object] = []

    def read() -> None:
        try:
            woken.append(stream.recv(100))
        except OSError as exc:
            woken.append(type(exc))

    reader = threading.Thread(target=read)
    reader.start()
    blocking.shutdown(stream)
    reader.join(10)
    release.set()
    assert woken in ([b""], [ConnectionResetError]), woken
    stream.close()


def test_a_failed_handshake_tells_the_server_why(certs: tuple[str, str]) -> None:
    """The client's alert reaches the server (unknown CA), as with SSLSocket, not a bare EOF."""
    seen: list[str] = []

    def serve(conn: socket.socket, context: ssl.SSLContext) -> None:
        try:
            context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            seen.append(str(exc))

    port, thread = _server(certs, serve)
    with pytest.raises(ssl.SSLCertVerificationError):
        _client(port, None)  # the system's roots do not know this self-signed certificate
    thread.join(10)
    assert seen and "ALERT" in seen[0].upper(), seen
