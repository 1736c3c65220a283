"""A scripted HTTP/2 server over a real socket, on the ``h2`` library, for the client's fault tests.

Each accepted connection runs ``script(index, conn)`` in a thread, where ``conn`` is a
:class:`ScriptedConnection`: read requests, answer, PING, GOAWAY, or stay silent, in any order.
Connections after the ones a test scripts usually just answer everything (:func:`answer_all`).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events

OK = [(":status", "200"), ("content-type", "application/grpc")]


class ScriptedConnection:
    def __init__(self, sock: socket.socket, settings: dict[int, int] | None, hold: bool = False) -> None:
        self.sock = sock
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.h2.initiate_connection()
        if settings:
            self.h2.update_settings(settings)
        if not hold:  # hold: the script sends our SETTINGS itself (conn.send()), when it chooses
            self.send()

    def send(self) -> None:
        self.sock.sendall(self.h2.data_to_send())

    def requests(self, n: int) -> list[int]:
        """Read until ``n`` more requests have arrived whole; their stream ids."""
        got: list[int] = []
        while len(got) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("client closed the connection")
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.StreamEnded):
                    got.append(event.stream_id)
                elif isinstance(event, h2.events.DataReceived):
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            self.send()
        return got

    def answer(self, sid: int, status: str = "0") -> None:
        """A gRPC answer: headers, an empty message, trailers."""
        self.h2.send_headers(sid, OK)
        self.h2.send_data(sid, b"\0\0\0\0\0")
        self.h2.send_headers(sid, [("grpc-status", status)], end_stream=True)
        self.send()


def answer_all(index: int, conn: ScriptedConnection) -> None:
    while True:
        for sid in conn.requests(1):
            conn.answer(sid)


class ScriptedServer:
    def __init__(
        self,
        script: Callable[[int, ScriptedConnection], Any],
        settings: dict[int, int] | None = None,
        host: str = "127.0.0.1",
        hold: bool = False,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, 0), family=family)
        self.port: int = self._listener.getsockname()[1]
        self.endpoint = f"http://{f'[{host}]' if ':' in host else host}:{self.port}"
        self._script, self._settings, self._hold = script, settings, hold
        self.connections = 0
        self.errors: list[BaseException] = []
        self.done = threading.Event()  # set when a script returns or fails
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            index, self.connections = self.connections, self.connections + 1
            threading.Thread(target=self._run, args=(index, sock), daemon=True).start()

    def _run(self, index: int, sock: socket.socket) -> None:
        try:
            self._script(index, ScriptedConnection(sock, self._settings, self._hold))
        except (EOFError, OSError):
            pass  # the client went away: the usual end
        except BaseException as exc:  # shown by the test
            self.errors.append(exc)
        finally:
            self.done.set()
            sock.close()

    def close(self) -> None:
        """Stop listening (new connections are refused); open ones go on."""
        try:  # shutdown wakes the blocked accept(); close() alone would leave it listening
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
