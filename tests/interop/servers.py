"""The independent servers of the interop suite, started on loopback with free ports, and what
they received.  Installed by ``install.sh``; every class here is a context manager that kills what
it started.  The proxy scenarios reuse these (``GrpcJs``/``GoGrpc`` as the collector, ``Nginx``)."""

from __future__ import annotations

import base64
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

HERE = Path(__file__).resolve().parent
_numbers = itertools.count()
NODE_SERVER = HERE / "grpcjs_server.js"
GO_SERVER = HERE / "build" / "gogrpc_server"


def installed() -> str | None:
    """Why the suite cannot run here (None: it can)."""
    if not (HERE / "node_modules" / "@grpc" / "grpc-js").is_dir():
        return "grpc-js is not installed (tests/interop/install.sh)"
    if not GO_SERVER.exists():
        return "the grpc-go server is not built (tests/interop/install.sh)"
    if not Path("/usr/sbin/nginx").exists():
        return "nginx is not installed (tests/interop/install.sh)"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Received:
    """What a server took in: sequence numbers of the log records, exception messages of the
    spans, and the connections (client address and port) the requests came on."""

    seqs: Counter[int] = field(default_factory=Counter)
    other_logs: int = 0
    exceptions: Counter[str] = field(default_factory=Counter)
    peers: set[str] = field(default_factory=set)
    requests: int = 0

    def add(self, signal: str, peer: str, body: bytes) -> None:
        self.requests += 1
        self.peers.add(peer)
        if signal == "logs":
            logs = ExportLogsServiceRequest.FromString(body)
            for rl in logs.resource_logs:
                for sl in rl.scope_logs:
                    for rec in sl.log_records:
                        text = rec.body.string_value
                        if text.startswith("seq "):
                            self.seqs[int(text.split()[1])] += 1
                        else:
                            self.other_logs += 1
        else:
            traces = ExportTraceServiceRequest.FromString(body)
            for rs in traces.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        for event in span.events:
                            for attr in event.attributes:
                                if attr.key == "exception.message":
                                    self.exceptions[attr.value.string_value] += 1


class _Process:
    """A server process that prints ``PORT <n>`` once it listens, and appends each request to
    ``out`` as a JSON line (signal, peer, base64 body)."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.out = workdir / f"{name}-{next(_numbers)}.jsonl"  # not id(): ids are reused
        self.out.touch()
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.host = "127.0.0.1"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 20.0) -> None:
        self.proc = subprocess.Popen(
            self._command(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not line or not line[0].startswith("PORT "):
            self.kill()
            raise RuntimeError(f"{self._command()[0]} did not start: {line}")
        self.port = int(line[0].split()[1])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def received(self) -> Received:
        got = Received()
        for line in self.out.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                got.add(entry["signal"], entry["peer"], base64.b64decode(entry["body"]))
        return got

    def __enter__(self) -> _Process:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


class GrpcJs(_Process):
    """@grpc/grpc-js.  ``tls``: (cert, key) or (cert, key, client CA) for mutual TLS."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        super().__init__(workdir, "grpcjs")
        self.host, self.port, self.options = host, port, options

    def _command(self) -> list[str]:
        cmd = [
            "node",
            str(NODE_SERVER),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--out",
            str(self.out),
        ]
        tls = self.options.get("tls")
        if tls:
            cmd += ["--cert", str(tls[0]), "--key", str(tls[1])]
            if len(tls) > 2:
                cmd += ["--client-ca", str(tls[2])]
        for name in ("delay_ms", "max_streams", "max_recv", "rejected", "max_age_ms"):
            if self.options.get(name):
                cmd += ["--" + name.replace("_", "-"), str(self.options[name])]
        return cmd

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.options.get("tls") else "http"
        return super().endpoint.replace("http://", f"{scheme}://", 1)


class GoGrpc(_Process):
    """grpc-go (Debian's golang-google-grpc-dev), plaintext."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        super().__init__(workdir, "gogrpc")
        self.host, self.port, self.options = host, port, options

    def _command(self) -> list[str]:
        cmd = [str(GO_SERVER), "-host", self.host, "-port", str(self.port), "-out", str(self.out)]
        for name in ("delay_ms", "max_streams", "max_recv", "rejected", "max_age_ms"):
            if self.options.get(name):
                cmd += ["-" + name.replace("_", "-"), str(self.options[name])]
        return cmd


@dataclass
class Certs:
    """A CA, a server certificate for ``localhost`` only (so 127.0.0.1 is a hostname mismatch),
    a client certificate, and a second, unrelated CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def make_certs(directory: Path) -> Certs:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    for ca in ("ca", "other"):
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2", "-subj", f"/CN=interop {ca} CA")  # fmt: skip
    for leaf, ext in (("server", "subjectAltName=DNS:localhost"), ("client", "extendedKeyUsage=clientAuth")):
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{leaf}.key", "-out", f"{leaf}.csr", "-subj", f"/CN={leaf}")  # fmt: skip
        (directory / f"{leaf}.ext").write_text(ext + "\n")
        run("x509", "-req", "-in", f"{leaf}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{leaf}.pem", "-days", "2", "-extfile", f"{leaf}.ext")  # fmt: skip
    d = directory
    return Certs(
        d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key", d / "other.pem"
    )


class Nginx:
    """nginx as a TLS HTTP/2 gRPC proxy in front of ``upstream_port``; ``directives`` go in its
    ``server`` block (e.g. ``http2_body_preread_size 0;``)."""

    def __init__(self, workdir: Path, certs: Certs, upstream_port: int, directives: str = "") -> None:
        self.dir = workdir / f"nginx-{next(_numbers)}"
        self.dir.mkdir()
        self.port = free_port()
        self.certs, self.upstream_port, self.directives = certs, upstream_port, directives
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"https://localhost:{self.port}"

    def start(self) -> None:
        d = self.dir
        (d / "nginx.conf").write_text(
            f"""daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{self.port} ssl http2;
        ssl_certificate {self.certs.server_cert};
        ssl_certificate_key {self.certs.server_key};
        {self.directives}
        location / {{ grpc_pass grpc://127.0.0.1:{self.upstream_port}; }}
    }}
}}
"""
        )
        self.proc = subprocess.Popen(
            ["nginx", "-p", str(d), "-c", str(d / "nginx.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.02)
        raise RuntimeError(
            f"nginx did not start: {(d / 'error.log').read_text() if (d / 'error.log').exists() else ''}"
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> Nginx:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


class CutAfterAnswer:
    """A TCP relay in front of a plaintext gRPC server that passes one request on each connection
    and closes it right after forwarding its answer (a HEADERS frame with END_STREAM: the
    trailers)."""

    def __init__(self, upstream_port: int) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.upstream_port = upstream_port
        self.cuts = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._up, args=(client, server), daemon=True).start()
            threading.Thread(target=self._down, args=(client, server), daemon=True).start()

    @staticmethod
    def _up(client: socket.socket, server: socket.socket) -> None:
        """Forward the preface, connection frames and the first request's stream only: the other
        requests on the connection are never processed, so a record that arrives twice is the
        client's fault, not the cut's."""
        buf, first = b"", 0
        try:
            while data := client.recv(65536):
                buf += data
                if buf.startswith(b"PRI * HTTP/2.0"):
                    if len(buf) < 24:
                        continue
                    server.sendall(buf[:24])
                    buf = buf[24:]
                while len(buf) >= 9:
                    length = int.from_bytes(buf[:3], "big")
                    if len(buf) < 9 + length:
                        break
                    frame, buf = buf[: 9 + length], buf[9 + length :]
                    sid = int.from_bytes(frame[5:9], "big") & 0x7FFFFFFF
                    if sid and not first:
                        first = sid
                    if not sid or sid == first:
                        server.sendall(frame)
        except OSError:
            pass

    def _down(self, client: socket.socket, server: socket.socket) -> None:
        buf = b""
        try:
            while data := server.recv(65536):
                buf += data
                while len(buf) >= 9:
                    length = int.from_bytes(buf[:3], "big")
                    if len(buf) < 9 + length:
                        break
                    frame, buf = buf[: 9 + length], buf[9 + length :]
                    client.sendall(frame)
                    if frame[3] == 1 and frame[4] & 1:  # HEADERS, END_STREAM: an answer complete
                        self.cuts += 1
                        raise ConnectionAbortedError
        except OSError:
            pass
        for sock in (client, server):
            try:  # shutdown first: it wakes the other thread's recv, and the FIN goes out now
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass

    def close(self) -> None:
        self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()

    def __enter__(self) -> CutAfterAnswer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: What each test's runs showed (test id -> lines), for the summary the suite prints at its end.
FACTS: dict[str, list[str]] = {}


def note(run: AppRun, got: Received) -> None:
    """Keep a run's facts (records, connections, exit time, stderr lines) for the summary."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
    FACTS.setdefault(test, []).append(
        f"{sum(got.seqs.values())} records in {got.requests} requests on {len(got.peers)} connection(s), "
        f"exit {run.exit_s:.2f} s, {len(run.stderr)} stderr line(s)"
        + (f": {run.stderr[0][:160]}" if run.stderr else "")
    )


def start_app(
    endpoint: str, client: str, env: dict[str, str] | None = None, **shape: Any
) -> subprocess.Popen[str]:
    """Start ``app.py`` as a user's process would (a fresh interpreter)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "HIGHLIGHT_", "INTEROP_"))}
    full.update({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "HIGHLIGHT_GRPC_CLIENT": client})
    full.update({f"INTEROP_{k.upper()}": str(v) for k, v in shape.items()})
    full.update(env or {})
    return subprocess.Popen(
        [sys.executable, str(HERE / "app.py")],
        env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish_app(proc: subprocess.Popen[str], started: float, timeout: float = 60.0) -> AppRun:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return AppRun.of(proc.returncode, out, err, time.monotonic() - started)


def run_app(
    endpoint: str, client: str, env: dict[str, str] | None = None, timeout: float = 60.0, **shape: Any
) -> AppRun:
    """Run ``app.py`` to its exit: what it printed, its counters, how long it took."""
    started = time.monotonic()
    return finish_app(start_app(endpoint, client, env, **shape), started, timeout)


@dataclass
class AppRun:
    returncode: int
    stderr: list[str]
    stats: dict[str, Any]
    exit_s: float
    wall_s: float
    cpu_s: float = 0.0  # the process's CPU, every thread

    @classmethod
    def of(cls, returncode: int, out: str, err: str, wall: float) -> AppRun:
        last = [line for line in out.splitlines() if line.startswith("{")]
        result = json.loads(last[-1]) if last else {"stats": {}, "exit_s": -1.0}
        return cls(
            returncode, err.splitlines(), result["stats"], result["exit_s"], wall, result.get("cpu_s", 0.0)
        )

    def dropped(self, signal: str = "logs") -> dict[str, int]:
        return {k: v for k, v in self.stats.get(signal, {}).get("dropped", {}).items() if v}
