"""The benchmark's receiver process: the bundled OTLP ``Receiver``, a byte-counting TCP proxy, a control port.

Runs in its own process so that decoding what arrives is never charged to the measured process.
On start it prints one JSON line to stdout: ``{"grpc": port, "proxy": port, "control": port}``.
Clients export to the *proxy* port; the proxy forwards to the receiver and counts client->server
bytes (the compressed wire size, HTTP/2 framing included).

Control protocol (one line per request on the control port, one JSON line per answer):

* ``reset``               forget everything received, zero the byte counter
* ``wait N TIMEOUT``      block until N log records were accepted (or TIMEOUT seconds)
* ``count``               the counters now
* ``down`` / ``up``       a collector outage: the proxy cuts every connection and refuses new ones
                          (accepts and closes them at once) until ``up``
* ``quit``                stop the process
"""

from __future__ import annotations

import json
import socket
import socketserver
import sys
import threading
import time

from highlight_logging._devtools.receiver import Receiver


class ByteCountingProxy:
    """Loopback TCP proxy; one pair of pump threads per connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._lock = threading.Lock()
        self.client_to_server = 0
        self.down = False
        self._open: set[socket.socket] = set()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.client_to_server = 0

    def set_down(self, down: bool) -> None:
        with self._lock:
            self.down = down
            cut = list(self._open) if down else []
        for sock in cut:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def read(self) -> int:
        with self._lock:
            return self.client_to_server

    def _accept_loop(self) -> None:
        while True:
            client, _ = self._listener.accept()
            if self.down:
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._open.update((client, server))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while True:
                data = src.recv(262144)
                if not data:
                    break
                if count:
                    with self._lock:
                        self.client_to_server += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self._lock:
                self._open.discard(src)
            src.close()


def main() -> int:
    receiver = Receiver("127.0.0.1", 0)
    receiver.start()
    proxy = ByteCountingProxy(receiver.port)
    stop = threading.Event()

    def counters() -> dict[str, int]:
        with receiver._cond:  # one consistent snapshot
            return {
                "logs": receiver._n_logs,
                "spans": receiver._n_spans,
                "requests": len(receiver._requests),
                "bytes": proxy.read(),
            }

    class Control(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for raw in self.rfile:
                words = raw.decode().split()
                if not words:
                    continue
                answer: dict[str, object]
                if words[0] == "reset":
                    receiver.clear()
                    proxy.reset()
                    answer = {"ok": True}
                elif words[0] == "wait":
                    n, timeout = int(words[1]), float(words[2])
                    ok = receiver.wait_for_logs(n, timeout)
                    answer = {"ok": ok, **counters()}
                elif words[0] == "count":
                    answer = {"ok": True, **counters()}
                elif words[0] in ("down", "up"):
                    proxy.set_down(words[0] == "down")
                    answer = {"ok": True}
                elif words[0] == "quit":
                    stop.set()
                    answer = {"ok": True}
                else:
                    answer = {"ok": False, "error": f"unknown command {words[0]!r}"}
                self.wfile.write((json.dumps(answer) + "\n").encode())
                self.wfile.flush()

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    control = Server(("127.0.0.1", 0), Control)
    threading.Thread(target=control.serve_forever, args=(0.1,), daemon=True).start()
    print(
        json.dumps({"grpc": receiver.port, "proxy": proxy.port, "control": control.server_address[1]}),
        flush=True,
    )
    try:
        # Exit with the parent: stdin closes when it goes away.
        def watch_parent() -> None:
            sys.stdin.read()
            stop.set()

        threading.Thread(target=watch_parent, daemon=True).start()
        while not stop.wait(0.5):
            pass
    finally:
        control.shutdown()
        receiver.stop(0)
        time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
