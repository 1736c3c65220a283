"""Sockets, name lookups and TLS contexts as they were before gevent or eventlet patched them.

The transports run on the export worker, a real OS thread (:mod:`highlight_logging._core.osthread`).
A patched socket there makes gevent or eventlet build a hub of its own on that thread, and share
green objects between threads, which neither supports: under gevent on CPython 3.13, a Ctrl-C that
landed while the main thread built its first hub then left the process hung at exit.  Blocking
calls on a thread of our own need no hub: they release the GIL while they wait.

Looked up at each connection, so patching done after ``import highlight_logging`` is seen too.
"""

from __future__ import annotations

import _socket
import _ssl
import socket
import ssl
import time
from typing import Protocol, cast

from highlight_logging._core.osthread import original


def socket_class() -> type[socket.socket]:
    """The standard library's own ``socket.socket`` (not gevent's or eventlet's)."""
    return cast(type[socket.socket], original("socket", "socket"))


#: A socket address as getaddrinfo gives it: (host, port), or for IPv6 (host, port, flowinfo, scope_id).
Address = tuple[str, int] | tuple[str, int, int, int]


def getaddrinfo(host: str, port: int) -> list[tuple[int, Address]]:
    """(family, address) for each TCP address of ``host``, in the resolver's order, from the C
    resolver itself (gevent's and eventlet's resolvers start threads or hubs of their own).  IPv6
    addresses keep their scope id, which a link-local address needs."""
    found = _socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)  # never patched
    return [(int(f), cast(Address, tuple(addr))) for f, _, _, _, addr in found]


def connect(family: int, address: Address, timeout: float) -> socket.socket:
    """A blocking TCP connection to ``address`` with TCP_NODELAY, within ``timeout`` seconds."""
    sock = socket_class()(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def create_connection(host: str, port: int, timeout: float) -> socket.socket:
    """``socket.create_connection((host, port), timeout)`` on :func:`socket_class`: each address
    in turn, the last error raised if none answers."""
    error: OSError = OSError(f"no address for {host}")
    for family, address in getaddrinfo(host, port):
        try:
            return connect(family, address, timeout)
        except OSError as exc:
            error = exc
    raise error


class Stream(Protocol):
    """What the built-in client reads and writes: a plain socket or a :class:`TlsStream`."""

    def settimeout(self, value: float | None, /) -> None: ...
    def sendall(self, data: bytes, /) -> None: ...
    def recv(self, size: int, /) -> bytes: ...
    def close(self) -> None: ...


class TlsStream:
    """TLS over a plain socket through the ssl module's memory BIOs: an ``SSLObject`` does the
    protocol, this the I/O, under one timeout for each call as ``SSLSocket`` has (0: non-blocking,
    BlockingIOError when nothing is there).  Not ``SSLSocket``: under gevent its methods name the
    patched class and fail, and a green one would build a hub on the export thread."""

    def __init__(self, raw: socket.socket, context: ssl.SSLContext, server_hostname: str) -> None:
        self.raw = raw
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        self._timeout: float | None = raw.gettimeout()
        self._unsent = b""  # TLS bytes a non-blocking call could not send yet: sent first next time
        self._eof = False

    def handshake(self) -> None:
        """The TLS handshake, within the timeout; ssl.SSLError when it fails."""
        deadline = self._deadline()
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._send_pending(deadline)
                if not self._receive(deadline):
                    raise ssl.SSLEOFError("connection closed during the TLS handshake") from None
            except ssl.SSLError:
                self._send_alert()
                raise
        self._send_pending(deadline)

    def selected_alpn_protocol(self) -> str | None:
        return self._tls.selected_alpn_protocol()

    def settimeout(self, value: float | None, /) -> None:
        self._timeout = value
        self.raw.settimeout(value)

    def sendall(self, data: bytes, /) -> None:
        view = memoryview(data)
        while view:  # a memory BIO takes it all: one sendall, so one timeout bounds the whole write
            view = view[self._tls.write(view) :]
        self._send_pending(self._deadline())

    def recv(self, size: int, /) -> bytes:
        """Up to ``size`` bytes of plaintext; b"" once the server has closed the connection."""
        deadline = self._deadline()
        while True:
            try:
                data = self._tls.read(size)
            except ssl.SSLWantReadError:
                if self._eof:
                    return b""
                self._send_pending(deadline)  # a post-handshake message may want an answer
                self._receive(deadline)
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            self._send_pending(deadline)
            return data

    def close(self) -> None:
        self.raw.close()

    def _deadline(self) -> float | None:
        """When this call's timeout ends (None: no timeout, or non-blocking)."""
        timeout = self._timeout
        return None if not timeout else time.monotonic() + timeout

    def _wait_at_most(self, deadline: float | None, what: str) -> None:
        """The raw socket's timeout for its next wait: what is left of this call's."""
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"The {what} operation timed out")
            self.raw.settimeout(left)

    def _receive(self, deadline: float | None) -> bool:
        self._wait_at_most(deadline, "read")
        data = self.raw.recv(65536)
        if data:
            self._incoming.write(data)
            return True
        self._incoming.write_eof()
        self._eof = True
        return False

    def _send_pending(self, deadline: float | None) -> None:
        pending = self._unsent + self._outgoing.read()
        self._unsent = b""
        if not pending:
            return
        if self._timeout == 0:  # non-blocking: keep what the socket does not take now
            view = memoryview(pending)
            try:
                while view:
                    view = view[self.raw.send(view) :]
            except BlockingIOError:
                self._unsent = bytes(view)
            return
        self._wait_at_most(deadline, "write")
        self.raw.sendall(pending)

    def _send_alert(self) -> None:
        """Best effort: the alert a failed handshake left, so the server learns why."""
        try:
            alert = self._outgoing.read()
            if alert:
                self.raw.settimeout(0)
                self.raw.send(alert)
        except OSError:
            pass


def shutdown(sock: Stream | socket.socket) -> None:
    """Shut both directions of ``sock`` down at the TCP level (under TLS too, without TLS's
    closing exchange): this wakes a recv or send blocked on another thread, which close() would not."""
    raw = sock.raw if isinstance(sock, TlsStream) else sock
    _socket.socket.shutdown(cast(socket.socket, raw), socket.SHUT_RDWR)


def tls_context(cafile: str | None) -> ssl.SSLContext:
    """``ssl.create_default_context(cafile=cafile)`` on the standard library's own ``SSLContext``
    (for :class:`TlsStream`).  Unpatched, it is that call; patched, the flags are copied from it, so
    the defaults stay the standard library's."""
    made = ssl.create_default_context(cafile=cafile)
    cls = cast(type[ssl.SSLContext], original("ssl", "SSLContext"))
    if type(made) is cls:
        return made
    ctx = cls(ssl.PROTOCOL_TLS_CLIENT)
    # Through the C type: under gevent the Python setters name the patched class and recurse.
    for name in ("options", "verify_flags", "minimum_version", "maximum_version"):
        getattr(_ssl._SSLContext, name).__set__(ctx, getattr(made, name))
    if getattr(made, "keylog_filename", None):  # SSLKEYLOGFILE, honoured as unpatched
        ctx.keylog_filename = made.keylog_filename
    if cafile:
        ctx.load_verify_locations(cafile=cafile)
    else:
        ctx.load_default_certs()  # for servers, by default (a Purpose of the copy's own)
    return ctx
