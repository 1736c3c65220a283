"""Loopback HTTP proxies for the proxy tests: a small scripted one, and tinyproxy (a real one).

:class:`ConnectProxy` is a few dozen lines of HTTP CONNECT, kept in the tests because it can do
what a real proxy cannot be told to do on cue: resolve names only it knows (so a client that
resolves the collector itself fails), answer 407 or 502, or accept and never answer, and count
the tunnels and the credentials it saw.  :class:`TinyProxy` runs Debian's tinyproxy (installed by
``tests/install-proxy.sh``) for the same scenarios against a proxy nobody here wrote.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from types import TracebackType

from otlp_receiver import free_port


class ConnectProxy:
    """An HTTP CONNECT proxy on 127.0.0.1.

    ``mode``: ``"ok"`` tunnels (and forwards plain-HTTP requests); ``"silent"`` accepts and never answers; ``"502"`` refuses every
    CONNECT with 502.  ``credentials=("user", "pass")`` requires Basic auth (407 otherwise).
    ``names`` maps host names only this proxy resolves (e.g. ``{"collector.internal": "127.0.0.1"}``).
    """

    def __init__(
        self,
        mode: str = "ok",
        credentials: tuple[str, str] | None = None,
        names: dict[str, str] | None = None,
    ) -> None:
        self.mode = mode
        self._expected = None
        if credentials is not None:
            token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
            self._expected = f"Basic {token}"
        self._names = names or {}
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self.tunnels: list[str] = []  # CONNECT targets tunnelled, and URLs forwarded
        self.refused: list[int] = []  # statuses answered instead
        self.accepted = 0  # TCP connections accepted
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        self._accepted = threading.Condition(self._lock)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> ConnectProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass

    def wait_for_connections(self, n: int, timeout: float) -> bool:
        with self._accepted:
            return self._accepted.wait_for(lambda: self.accepted >= n, timeout)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._accepted:
                self.accepted += 1
                self._socks.append(client)
                self._accepted.notify_all()
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                data = client.recv(4096)
                if not data:
                    return
                head += data
            if self.mode == "silent":
                self._stop.wait()
                return
            lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
            }
            status = 0
            if self._expected is not None and headers.get("proxy-authorization") != self._expected:
                status = 407
            elif self.mode == "502":
                status = 502
            if status:
                with self._lock:
                    self.refused.append(status)
                extra = 'Proxy-Authenticate: Basic realm="test"\r\n' if status == 407 else ""
                client.sendall(f"HTTP/1.1 {status} No\r\n{extra}Content-Length: 0\r\n\r\n".encode())
                return
            forwarded = method != "CONNECT"  # plain HTTP: "POST http://host:port/path HTTP/1.1"
            if forwarded:
                parts = urllib.parse.urlsplit(target)
                host, port = parts.hostname or "", str(parts.port or 80)
                origin = f"{method} {parts.path or '/'} HTTP/1.1"
                head = origin.encode() + head[len(lines[0]) :]
            else:
                host, _, port = target.rpartition(":")
                host = host.strip("[]")
            upstream = socket.create_connection((self._names.get(host, host), int(port)), timeout=5)
            upstream.settimeout(None)
            with self._lock:
                self.tunnels.append(target)
                self._socks.append(upstream)
            if forwarded:
                upstream.sendall(head)
            else:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
            self._pipe(client, upstream)
        except OSError:
            pass

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def tinyproxy_path() -> str | None:
    return shutil.which("tinyproxy") or (
        "/usr/bin/tinyproxy" if os.access("/usr/bin/tinyproxy", os.X_OK) else None
    )


class TinyProxy:
    """Debian's tinyproxy on a free loopback port, optionally with ``BasicAuth``."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        path = tinyproxy_path()
        if path is None:
            raise RuntimeError("tinyproxy is not installed (tests/install-proxy.sh installs it)")
        self._path = path
        self._credentials = credentials
        self._dir = tempfile.mkdtemp(prefix="tinyproxy-")
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> TinyProxy:
        for _ in range(5):  # the free port may be taken between the probe and tinyproxy's bind
            self.port = free_port()
            conf = os.path.join(self._dir, "tinyproxy.conf")
            lines = [
                f"Port {self.port}",
                "Listen 127.0.0.1",
                "Timeout 30",
                "MaxClients 20",
                "LogLevel Error",
                f'LogFile "{os.path.join(self._dir, "log")}"',
                "Allow 127.0.0.1",
                "DisableViaHeader Yes",
            ]
            if self._credentials is not None:
                lines.append(f"BasicAuth {self._credentials[0]} {self._credentials[1]}")
            with open(conf, "w") as f:
                f.write("\n".join(lines) + "\n")
            self._proc = subprocess.Popen(
                [self._path, "-d", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self._proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                    return self
                except OSError:
                    time.sleep(0.02)
            self._stop()
        raise RuntimeError("tinyproxy did not start")

    def _stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __exit__(self, *exc: object) -> None:
        self._stop()
        shutil.rmtree(self._dir, ignore_errors=True)
