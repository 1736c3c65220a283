"""OTLP/gRPC unary exports over HTTP/2 driven by hand (:mod:`.h2wire` + a plain socket), without grpcio.

The default gRPC client (``grpc_client="auto"``, see :func:`highlight_logging._transport.make`):
less CPU per request than grpcio (docs/performance.md), and it chooses its zlib level where grpcio
is fixed at 6.  Also the only one usable in a forked child whose parent used grpcio while gRPC fork
support is off (``GRPC_ENABLE_FORK_SUPPORT=0``): grpcio's C core is then unusable in the child, and
even creating a channel can deadlock holding the GIL.  Nothing here touches that core: grpcio is
not even imported.  Like every transport it never raises and never logs, and it maps answers to
an :class:`~.base.Outcome` through :func:`~.base.classify_grpc`, as the grpcio client does.

One export at a time (the worker thread); :meth:`cancel` may be called from any thread.
"""

from __future__ import annotations

import base64
import gzip
import importlib.util
import os
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable

from highlight_logging._core import osthread as _osthread
from highlight_logging._core.settings import Settings, is_plaintext
from highlight_logging._transport import blocking
from highlight_logging._transport.base import (
    GRPC_METHODS,
    GZIP_LEVEL,
    LOGS,
    Outcome,
    StatusCode,
    classify_grpc,
    grpc_target,
    partial_success,
    ready,
    status_code,
    status_for_http,
    status_for_reset,
)
from highlight_logging._transport.h2wire import Answer, Connection, header_block
from highlight_logging._transport.proxy import proxy_for, tunnel

_REFUSED_STREAM = 7
# How often one request is sent again because the collector refused its stream unprocessed
# (REFUSED_STREAM, GOAWAY), within its deadline, before it counts as a failed export.
_MAX_REFUSED = 8


def _grpc_dir() -> str:
    """grpcio's directory, found without importing it."""
    spec = importlib.util.find_spec("grpc")
    return os.path.dirname(spec.origin) if spec is not None and spec.origin else ""


def _grpc_roots() -> str | None:
    """The CA file grpcio would use: ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``, else its bundled one."""
    path = os.environ.get("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH") or os.path.join(
        _grpc_dir(), "_cython", "_credentials", "roots.pem"
    )
    return path if os.path.isfile(path) else None


class _NotSent(ConnectionError):
    """The request could not start (the collector's stream limit, then its GOAWAY or our deadline)
    and nothing of it was sent: the requests already on the connection keep it."""


class _SetupError(Exception):
    """Bad TLS files: a configuration problem, not worth retrying (as with grpcio)."""


class _Conn:
    def __init__(self, sock: blocking.Stream, scheme: str, authority: str) -> None:
        self.sock, self.scheme, self.authority = sock, scheme, authority
        self.pid = os.getpid()  # a connection inherited through fork belongs to the parent
        self.wire = Connection()
        self.streams = self.wire.streams  # requests sent and not answered yet, by stream id
        self.blocks: dict[str, tuple[bytes, bytes]] = {}  # each signal's headers, encoded (see _headers)
        self.broken = False  # a failure seen on it: kept only for the answers still owed on it

    @property
    def closing(self) -> bool:
        """GOAWAY received, or a failure seen on it: no new stream on it."""
        return self.wire.closing or self.broken

    def flush(self, deadline: float) -> None:
        """Write what the connection owes.  TimeoutError: the deadline had passed and nothing was
        taken or written (the connection is intact); ConnectionError: the write itself timed out,
        and a frame may be cut short (the connection is spent)."""
        if not self.wire.owes():
            return
        self.sock.settimeout(_remaining(deadline))
        try:
            self.sock.sendall(self.wire.data_to_send())  # since 3.5 the timeout bounds the whole sendall
        except TimeoutError as exc:
            raise ConnectionError(f"sending timed out: {exc}") from exc

    def idle_ok(self) -> bool:
        """Read what arrived while idle (PING, GOAWAY, EOF) so a closed connection is not reused."""
        if self.pid != os.getpid():
            return False
        try:
            self.sock.settimeout(0)
            for _ in range(64):  # a collector that never stops sending is not idle: start afresh
                data = self.sock.recv(65536)
                if not data:
                    return False
                self.wire.receive(data)
                if self.wire.closing:
                    return False
        except (BlockingIOError, ssl.SSLWantReadError):
            return True  # nothing more to read: still open
        except Exception:
            pass
        return False


def _addresses(host: str, port: int) -> list[tuple[int, blocking.Address]]:
    """Where ``host`` is, in the resolver's order: (family, address) for each.  ``localhost``
    always means both loopbacks (RFC 6761; c-ares, which grpcio uses, answers so too), even
    where /etc/hosts lists only 127.0.0.1."""
    found: list[tuple[int, blocking.Address]] = []
    try:
        infos = blocking.getaddrinfo(host, port)
    except socket.gaierror:
        infos = []
        if not _is_localhost(host):
            raise
    for entry in infos:
        if entry not in found:
            found.append(entry)
    if _is_localhost(host):
        for family, loopback in ((socket.AF_INET6, "::1"), (socket.AF_INET, "127.0.0.1")):
            if not any(f == family for f, _ in found) and (family != socket.AF_INET6 or socket.has_ipv6):
                found.append((int(family), (loopback, port)))
    return found


def _is_localhost(host: str) -> bool:
    host = host.lower().rstrip(".")
    return host == "localhost" or host.endswith(".localhost")


def _open_socket(host: str, port: int, deadline: float) -> socket.socket:
    """A TCP connection to ``host``: each address it resolves to is tried in turn (IPv6 and IPv4,
    in the resolver's order) before the endpoint counts as unreachable, as grpcio does.  An
    address that does not answer gets its share of the time left, not all of it."""
    errors: list[str] = []
    kind: type[ConnectionError] = ConnectionError
    every_timed_out = True
    addresses = _addresses(host, port)
    for index, (family, address) in enumerate(addresses):
        try:
            return blocking.connect(family, address, _remaining(deadline) / (len(addresses) - index))
        except OSError as exc:
            timed_out = isinstance(exc, TimeoutError)
            errors.append(f"{address[0]}: {'timed out' if timed_out else exc.strerror or exc}")
            if not timed_out:
                kind = type(exc) if isinstance(exc, ConnectionError) else ConnectionError
                every_timed_out = False
    text = f"cannot connect to {host}:{port} ({'; '.join(errors) or 'no address'})"
    if errors and every_timed_out:
        raise TimeoutError(text)  # the deadline
    raise kind(text)


def _number(text: str) -> int:
    """A status code's digits, or -1 (no code) for anything else, without raising."""
    return int(text) if text.isascii() and text.isdigit() else -1


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline exceeded")
    return left


class H2Transport:
    """Same interface and outcomes as the grpcio client; one lazily opened connection per target."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._metadata = [(k.lower(), v) for k, v in settings.headers]
        self._conns: dict[str, _Conn] = {}
        self._tls_context: ssl.SSLContext | None = None
        self._lock = _osthread.Lock()  # guards the three fields cancel() reads
        self._outstanding = 0  # requests started and not yet answered (or failed)
        self._cancelled = False
        self._active: set[_Conn] = set()  # connections with requests outstanding: cancel() wakes each
        self._tunnelling: socket.socket | None = None  # waiting for a proxy's CONNECT answer
        # Replaced after a GOAWAY while the collector still answers streams it took on them.
        self._retired: set[_Conn] = set()

    def export(self, signal: str, payload: bytes, timeout: float) -> Outcome:
        return self.start(signal, payload, timeout)()

    def start(self, signal: str, payload: bytes, timeout: float) -> Callable[[], Outcome]:
        """Send the request; the returned call reads the answer.  A few requests may be on their
        way at once (``_export.sender.MAX_IN_FLIGHT``), each on its own stream of one connection;
        whichever call reads the socket hands every stream its part.  A stream the collector
        refused (REFUSED_STREAM, or above its GOAWAY's last stream id) was never processed
        (RFC 9113 section 8.7): it is sent again at once, as grpcio does, not failed."""
        deadline = time.monotonic() + max(timeout, 0.001)
        s = self._settings
        endpoint = (s.logs_endpoint if signal == LOGS else s.traces_endpoint) or s.endpoint
        target = grpc_target(endpoint)
        plaintext = is_plaintext(endpoint, s.insecure, tls_files=s.tls_files)
        with self._lock:
            if not self._outstanding:
                self._cancelled = False
            self._outstanding += 1
        first = self._begin(target, plaintext, signal, payload, deadline)
        if isinstance(first, Outcome):
            self._answered()
            return ready(first)

        def wait() -> Outcome:
            attempt: Outcome | tuple[_Conn, int, Answer] = first
            try:
                for _ in range(_MAX_REFUSED):
                    if isinstance(attempt, Outcome):
                        return attempt
                    conn, sid, resp = attempt
                    outcome = self._finish(target, conn, sid, resp, signal, deadline)
                    if outcome is not None:
                        return outcome
                    attempt = self._begin(target, plaintext, signal, payload, deadline)
                return self._broken(ConnectionResetError("the collector refused the stream repeatedly"))
            finally:
                self._answered()

        return wait

    def _begin(
        self, target: str, plaintext: bool, signal: str, payload: bytes, deadline: float
    ) -> Outcome | tuple[_Conn, int, Answer]:
        """Open a stream for the request and send it, on the target's connection (opened if need
        be); a failure as an :class:`Outcome`."""
        for _ in range(_MAX_REFUSED):
            conn = None
            try:
                conn = self._conns.get(target)
                # A connection with answers outstanding is in use: reading it idly would take them.
                if (
                    conn is None
                    or conn.closing
                    or conn.pid != os.getpid()
                    or (not conn.streams and not conn.idle_ok())
                ):
                    self._retire(target)
                    # Should connecting fail, the retired one must not be closed as if it were this.
                    conn = None
                    conn = self._conns[target] = self._connect(target, plaintext, deadline)
                with self._lock:
                    self._active.add(conn)
                    if self._cancelled:
                        raise ConnectionAbortedError("cancelled")
                sid, resp = self._send(conn, signal, payload, deadline)
                return conn, sid, resp
            except _NotSent as exc:
                timed_out = isinstance(exc.__cause__, TimeoutError)
                if conn is not None and conn.closing:
                    self._retire(target)  # its streams are still answered (or failed) on it
                self._idle(conn)
                if not timed_out and conn is not None and conn.closing:
                    continue  # GOAWAY before this request went out: at once on a fresh connection
                cause = exc.__cause__
                return self._broken(cause if isinstance(cause, TimeoutError) else exc)
            except Exception as exc:
                outcome = self._failed(target, exc, conn)
                self._idle(conn)
                return outcome
        return self._broken(ConnectionResetError("the collector refused new streams repeatedly"))

    def _finish(
        self, target: str, conn: _Conn, sid: int, resp: Answer, signal: str, deadline: float
    ) -> Outcome | None:
        """Read the answer on stream ``sid``; None: refused, never processed (send it again)."""
        try:
            try:
                # The worker encoded its next batch meanwhile: an answer that arrived before
                # the deadline is read even if the deadline has passed since.
                self._read_arrived(conn, resp, deadline)
                while not resp.ended:
                    self._pump(conn, deadline)
                if resp.lost is not None or (
                    resp.reset == _REFUSED_STREAM and "grpc-status" not in resp.fields
                ):
                    return None  # the next attempt leaves the connection if it is closing
            except TimeoutError as exc:
                # This request's own deadline, with nothing half sent: cancel its stream only,
                # so that the other requests on the connection are not cut off (and resent).
                try:
                    conn.wire.reset_stream(sid, 8)
                    conn.flush(time.monotonic() + 0.5)
                except Exception:
                    self._abandon(target, conn)
                return self._broken(exc)
            except Exception as exc:
                return self._failed(target, exc, conn)
            try:  # acknowledgements; a complete answer stands even if they cannot go out
                conn.flush(time.monotonic() + 1.0)
            except Exception:
                self._abandon(target, conn)
            try:
                return self._outcome(resp, signal)
            except Exception as exc:  # never expected (_outcome reads defensively); never raised
                return Outcome(False, detail=f"UNKNOWN: unreadable answer ({type(exc).__name__}: {exc})")
        finally:
            conn.streams.pop(sid, None)
            if not conn.streams and conn.closing and self._conns.get(target) is not conn:
                self._drop(target, conn)  # replaced (GOAWAY, or retired after a failure), now done with
            self._idle(conn)

    def _idle(self, conn: _Conn | None) -> None:
        """``conn`` need not be woken by :meth:`cancel` when it has no request outstanding."""
        with self._lock:
            if conn is not None and not conn.streams:
                self._active.discard(conn)

    def _answered(self) -> None:
        with self._lock:
            self._outstanding -= 1

    def _retire(self, target: str) -> None:
        """Stop using the target's connection.  After a GOAWAY the collector still answers the
        streams it took on it: it is closed once they are read (in ``wait``), not now, which would
        fail them and have their records sent twice."""
        conn = self._conns.get(target)
        if conn is not None and conn.closing and conn.streams and conn.pid == os.getpid():
            del self._conns[target]
            self._retired.add(conn)
        else:
            self._drop(target)

    def _failed(self, target: str, exc: Exception, conn: _Conn | None) -> Outcome:
        self._abandon(target, conn)  # the connection's state is unknown: start afresh next time
        return self._broken(exc)

    def _abandon(self, target: str, conn: _Conn | None) -> None:
        """Use ``conn`` for no new stream.  While other requests' answers are owed on it, it stays
        open for them (Linux keeps what arrived readable after the peer's FIN or RST): closing it
        now would lose answers already received, and those records would be sent twice."""
        if conn is None:
            self._drop(target)
            return
        conn.broken = True
        if any(not answer.ended for answer in conn.streams.values()):
            if self._conns.get(target) is conn:
                del self._conns[target]
            if conn.pid == os.getpid():
                self._retired.add(conn)
                return
        self._drop(target, conn)

    def _connect(self, target: str, plaintext: bool, deadline: float) -> _Conn:
        parts = urllib.parse.urlsplit("//" + target)
        host = parts.hostname or ""
        proxy = proxy_for(target)  # HTTP CONNECT through the proxy chosen, if any (TLS on top, as direct)
        if proxy is not None:
            sock = tunnel(proxy, host, parts.port or 443, deadline, self._watch)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            sock = _open_socket(host, parts.port or 443, deadline)
        stream: blocking.Stream = sock
        try:
            if not plaintext:
                tls = blocking.TlsStream(sock, self._tls(), host)
                sock.settimeout(_remaining(deadline))
                try:
                    tls.handshake()
                except ssl.SSLError as exc:
                    raise ConnectionError(f"TLS handshake with {target} failed: {exc}") from exc
                if tls.selected_alpn_protocol() != "h2":
                    raise ConnectionError(f"{target} did not agree to HTTP/2 over TLS (ALPN)")
                stream = tls
            conn = _Conn(stream, "http" if plaintext else "https", target)
            with self._lock:
                self._active.add(conn)  # cancel() wakes the wait for the collector's SETTINGS too
                if self._cancelled:
                    raise ConnectionAbortedError("cancelled")
            # The collector's SETTINGS first: its stream limit and windows hold from the first
            # request (nginx refuses a stream sent before them when its body window is small).
            while not conn.wire.settings_received:
                self._pump(conn, deadline)  # writes the preface and our SETTINGS first
            conn.flush(deadline)  # the acknowledgement
            return conn
        except BaseException:
            with self._lock:
                self._active = {c for c in self._active if c.sock is not stream}
            sock.close()
            raise

    def _watch(self, sock: socket.socket | None) -> None:
        """The socket a CONNECT through a proxy waits on, for cancel() to wake (None: done)."""
        with self._lock:
            self._tunnelling = sock
            if sock is not None and self._cancelled:
                raise ConnectionAbortedError("cancelled")

    def _tls(self) -> ssl.SSLContext:
        if self._tls_context is None:
            s = self._settings
            try:
                ctx = blocking.tls_context(s.certificate_file or None)
                if not s.certificate_file:
                    # Trust what grpcio trusts too (its bundled roots, or the file its variable
                    # names), so choosing this client never turns a working setup into TLS errors.
                    roots = _grpc_roots()
                    if roots:
                        ctx.load_verify_locations(cafile=roots)
                if s.client_certificate_file:
                    ctx.load_cert_chain(s.client_certificate_file, s.client_key_file or None)
                ctx.set_alpn_protocols(["h2"])
            except Exception as exc:
                raise _SetupError(f"{type(exc).__name__}: {exc}") from exc
            self._tls_context = ctx
        return self._tls_context

    def _headers(self, conn: _Conn, signal: str, deadline: float) -> bytes:
        """The request's header block: all but grpc-timeout is encoded once per connection and signal."""
        parts = conn.blocks.get(signal)
        if parts is None:
            gz = self._settings.compression == "gzip"
            call = [
                (":method", "POST"),
                (":scheme", conn.scheme),
                (":path", GRPC_METHODS[signal]),
                (":authority", conn.authority),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("user-agent", "highlight-logging"),
                ("grpc-accept-encoding", "gzip"),
                *([("grpc-encoding", "gzip")] if gz else []),
            ]
            parts = conn.blocks[signal] = (header_block(call), header_block(self._metadata))
        timeout = min(max(1, int(_remaining(deadline) * 1000)), 99_999_999)
        return (
            parts[0] + header_block([("grpc-timeout", f"{timeout}m")]) + parts[1]
        )  # metadata last, as gRPC orders them

    def _send(self, conn: _Conn, signal: str, payload: bytes, deadline: float) -> tuple[int, Answer]:
        gz = self._settings.compression == "gzip"
        message = gzip.compress(payload, compresslevel=GZIP_LEVEL) if gz else payload
        body = memoryview(bytes([gz]) + len(message).to_bytes(4, "big") + message)  # gRPC framing
        wire = conn.wire
        while wire.open_streams() >= wire.max_streams:  # the collector's limit: wait for an answer
            if not wire.open_streams():
                raise ConnectionRefusedError(
                    "the collector allows no streams (SETTINGS_MAX_CONCURRENT_STREAMS 0)"
                )
            try:
                self._pump(conn, deadline)
            except TimeoutError as exc:  # clean: nothing half written, nothing of this request sent
                raise _NotSent("no stream became free before the deadline") from exc
        if wire.closing:
            raise _NotSent("GOAWAY from the collector before this request went out")
        sid, resp = wire.send_headers(self._headers(conn, signal, deadline))
        try:
            while body and not resp.ended:  # the collector may answer early (e.g. message too large)
                size = min(wire.window(sid), wire.max_frame_size, len(body))
                if size <= 0:
                    self._pump(conn, deadline)  # blocked: wait for WINDOW_UPDATE
                    continue
                wire.send_data(sid, body[:size], end_stream=size == len(body))
                body = body[size:]
                conn.flush(deadline)
            if body and resp.reset is None and resp.lost is None:
                wire.reset_stream(sid, 8)  # answered early: CANCEL the rest of the request
        except BaseException:
            conn.streams.pop(sid, None)  # never sent whole: nothing to wait for
            raise
        return sid, resp

    @staticmethod
    def _pump(conn: _Conn, deadline: float) -> None:
        """Write what we owe, then wait for the collector's next bytes until the deadline."""
        conn.flush(deadline)
        conn.sock.settimeout(_remaining(deadline))
        data = conn.sock.recv(65536)
        if not data:
            raise ConnectionResetError("connection closed by the collector")
        conn.wire.receive(data)

    @staticmethod
    def _read_arrived(conn: _Conn, resp: Answer, deadline: float) -> None:
        """Take in what is already in the socket, without waiting.  Bounded in time (a collector
        may keep the socket full without answering): what is left is read by ``_pump``."""
        if resp.ended:
            return  # answered already (read with another stream's): the socket may be closed since
        conn.sock.settimeout(0)
        stop = max(deadline, time.monotonic() + 0.05)
        while not resp.ended and time.monotonic() < stop:
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                return
            if not data:
                raise ConnectionResetError("connection closed by the collector")
            conn.wire.receive(data)

    def _outcome(self, resp: Answer, signal: str) -> Outcome:
        f = resp.fields
        if "grpc-status" in f:
            code = status_code(_number(f["grpc-status"]))
        elif resp.reset is not None:
            code = status_for_reset(resp.reset)
            f.setdefault("grpc-message", f"stream reset by the collector (HTTP/2 error {resp.reset})")
        else:
            http = _number(f.get(":status", ""))
            if http == 413:  # a proxy's body limit: the request is too large, as grpc's own message says
                return Outcome(
                    False, detail="RESOURCE_EXHAUSTED: HTTP status 413 (request too large)", too_large=True
                )
            code = status_for_http(http)
            # No grpc-status: a proxy (or a non-gRPC server) answered.  Name its status, as grpcio does.
            f.setdefault(
                "grpc-message",
                f"HTTP status {f.get(':status', 'missing')} without grpc-status (a proxy's answer?)",
            )
        if code is StatusCode.OK:
            try:  # accepted whatever the body says; an unreadable body just hides partial_success
                n = int.from_bytes(resp.data[1:5], "big")
                msg = bytes(resp.data[5 : 5 + n])
                response = gzip.decompress(msg) if resp.data[:1] == b"\x01" else msg
            except Exception:
                response = b""
            rejected, message = partial_success(response, signal)
            return Outcome(True, rejected=rejected, detail=message)
        details = None
        if "grpc-status-details-bin" in f:  # base64, padding usually stripped
            raw = f["grpc-status-details-bin"]
            try:
                details = base64.b64decode(raw + "=" * (-len(raw) % 4))
            except Exception:
                pass
        return classify_grpc(code, urllib.parse.unquote(f.get("grpc-message", "")), details)

    def _broken(self, exc: Exception) -> Outcome:
        """An exception in transit: a broken connection is UNAVAILABLE, as grpcio would report it."""
        text = f"{type(exc).__name__}: {exc}"
        with self._lock:
            cancelled = self._cancelled
        if cancelled:  # like a cancelled grpc future: not retried (shutdown is under way)
            return Outcome(False, detail=f"CANCELLED: {text}", reconnect=True)
        if isinstance(exc, TimeoutError):
            return Outcome(False, retryable=True, detail=f"DEADLINE_EXCEEDED: {text}", reconnect=True)
        if isinstance(exc, OSError):  # refused, reset, TLS, protocol (h2wire.ProtocolError)
            return Outcome(False, retryable=True, detail=f"UNAVAILABLE: {text}", reconnect=True)
        return Outcome(False, detail=text)  # _SetupError, bad endpoint, ...

    def _drop(self, target: str, conn: _Conn | None = None) -> None:
        """Close the target's connection (only if it is still ``conn``, when given)."""
        if conn is not None and self._conns.get(target) is not conn:
            self._retired.discard(conn)
            try:
                conn.sock.close()
            except Exception:
                pass
            return
        conn = self._conns.pop(target, None)
        if conn is not None:
            try:
                conn.sock.close()  # close, not shutdown: an inherited socket must survive in the parent
            except Exception:
                pass

    def cancel(self) -> None:
        """Abort the export in flight (shutdown deadline reached); safe from any thread."""
        with self._lock:
            self._cancelled = self._outstanding > 0
            socks = [conn.sock for conn in self._active]
            if self._tunnelling is not None:
                socks.append(self._tunnelling)
        for sock in socks:
            try:  # shutdown wakes a blocked recv/send; close() from another thread would not
                blocking.shutdown(sock)
            except Exception:
                pass

    def reconnect(self) -> None:
        """Drop the connections so the next export opens a fresh one."""
        for target in list(self._conns):
            self._drop(target)
        retired, self._retired = self._retired, set()
        for conn in retired:
            try:
                conn.sock.close()
            except Exception:
                pass

    def close(self) -> None:
        self.reconnect()
