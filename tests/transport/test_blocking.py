"""The built-in client's sockets and TLS contexts are the standard library's own, also under gevent
and eventlet: the export worker is a real OS thread, where a green socket builds a hub of its own
(tests/test_green.py counts the hubs of a patched app end to end)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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
    for name in ("options", "verify_flags", "verify_mode", "check_hostname", "minimum_version"):
        assert getattr(ctx, name) == getattr(made, name), name


def test_create_connection_raises_the_last_error_when_nothing_listens() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        blocking.create_connection("127.0.0.1", port, 5.0)
