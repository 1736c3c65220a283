"""The viewer in a process of its own: the store's writer and the page's server get their own GIL.

``serve --ui`` runs the receiver in its process and this child beside it. The receiver hands every
accepted request's protobuf bytes to :meth:`ViewerProcess.submit_raw`, which only queues them; one
sender thread writes them down a pipe (the child's stdin). The child's main thread reads the pipe
and keeps each read's worth of requests as they came, one row each (:meth:`Store.ingest`, cheap:
the records are in the store and the Logs view at once); while the pipe is quiet it files them
into rows, indexes and error groups (:meth:`Store.index`). Reading and filing are one thread, so
they never wait for each other's GIL; the page server answers from the same store.

Framing on stdin: a 9-byte header (tag, count, size) and ``size`` bytes: tag ``L`` log records
and ``T`` spans (count: the records in it), ``F`` a flush (count: its number, acknowledged on the
child's stdout as ``flushed N`` once everything before it is filed). The child's first line is
``ok PORT`` or ``error MESSAGE``. It ignores SIGINT and lives in its own session: Ctrl-C reaches
the parent, which closes the pipe; the child writes what is left and exits at the end of its
input, so it outlives its parent by no more than that, even after a SIGKILL.
"""

from __future__ import annotations

import os
import select
import signal
import struct
import subprocess
import sys
import threading
from collections import deque
from typing import TYPE_CHECKING, TextIO

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

if TYPE_CHECKING:
    from highlight_logging._devtools.viewer._store import Store

__all__ = ["ViewerProcess", "child_main"]

_HEADER = struct.Struct("<cII")
_MAX_PENDING = 200_000  # records queued before the receiver's threads wait (the client's retry takes over)
_INDEX_RECORDS = 2000  # filed per transaction between reads: the pipe is read at least that often
# Records kept but not yet filed before the child stops reading to file: it bounds the memory a
# sustained overload takes, and what the Logs view decodes to answer (about 0.5 s at worst).
_MAX_UNFILED = 100_000
_READ = 1 << 20
_CHILD = "from highlight_logging._devtools.viewer._process import child_main; raise SystemExit(child_main())"


class ViewerProcess:
    """Starts the viewer's process (store and page on ``host:port``) and feeds it; :meth:`close` ends it.

    Raises RuntimeError with the child's reason when it cannot start (a busy port, a bad ``db``).
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 8686, *, keep: int = 100_000, db: str | None = None
    ) -> None:
        self.host = host
        self.keep = keep
        env = dict(os.environ)
        # The child imports this very package, also when it was found by a path of the parent's own.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, host, str(port), str(keep), db or ""],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,  # a terminal's Ctrl-C goes to the parent, which stops the child in order
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin = self._proc.stdin
        self._stdout = self._proc.stdout
        _grow_pipe(self._stdin.fileno())
        first = self._stdout.readline().decode("utf-8", "replace").strip()
        if not first.startswith("ok "):
            self._stdin.close()
            self._proc.wait()
            self._stdout.close()
            reason = first[len("error ") :] if first.startswith("error ") else "the viewer's process exited"
            raise RuntimeError(reason)
        self.port = int(first.split()[1])
        self._cond = threading.Condition()
        self._queue: deque[bytes] = deque()
        self._pending = 0
        self._flushes = 0
        self._acked = 0
        self._closing = False
        self._dead = False
        self._sender = threading.Thread(target=self._send, name="highlight-logging-viewer-send", daemon=True)
        self._reader = threading.Thread(target=self._read, name="highlight-logging-viewer-acks", daemon=True)
        self._sender.start()
        self._reader.start()

    @property
    def url(self) -> str:
        from highlight_logging._devtools.viewer._server import url_for

        return url_for(self.host, self.port)

    @property
    def pid(self) -> int:
        return self._proc.pid

    # -- ingest ----------------------------------------------------------------------------------

    def submit_raw(self, signal: str, raw: bytes, n: int) -> None:
        """Queue a request's protobuf bytes (``signal`` "logs" or "traces") holding ``n`` records."""
        header = _HEADER.pack(b"L" if signal == "logs" else b"T", n, len(raw))
        with self._cond:
            # Backpressure: a slow store slows the answers, so the client's own buffering takes over.
            self._cond.wait_for(lambda: self._pending < _MAX_PENDING or self._closing or self._dead, 30)
            if self._closing or self._dead:
                return
            self._queue.append(header)
            self._queue.append(raw)
            self._pending += n
            self._cond.notify_all()

    def submit_logs(self, request: logs_service_pb2.ExportLogsServiceRequest) -> None:
        n = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
        self.submit_raw("logs", request.SerializeToString(), n)

    def submit_spans(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        n = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        self.submit_raw("traces", request.SerializeToString(), n)

    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far is committed in the child; False on timeout."""
        with self._cond:
            if self._dead or self._closing:
                return False
            self._flushes += 1
            number = self._flushes
            self._queue.append(_HEADER.pack(b"F", number, 0))
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._acked >= number or self._dead, timeout) and (
                self._acked >= number
            )

    def _send(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._closing)
                if not self._queue:
                    return
                chunks = list(self._queue)
                self._queue.clear()
                n = self._pending
            try:
                self._stdin.write(b"".join(chunks))  # one write: the child reads it in one go
                self._stdin.flush()
            except (OSError, ValueError):  # the child is gone: what is queued has nowhere to go
                with self._cond:
                    self._dead = True
                    self._cond.notify_all()
                return
            with self._cond:
                self._pending -= n
                self._cond.notify_all()

    def _read(self) -> None:
        for line in self._stdout:
            words = line.split()
            if len(words) == 2 and words[0] == b"flushed":
                with self._cond:
                    self._acked = max(self._acked, int(words[1]))
                    self._cond.notify_all()
        with self._cond:
            self._dead = True
            self._cond.notify_all()
            if not self._closing:
                print(
                    f"highlight-logging: the viewer's process exited ({self._proc.wait()}); records are no longer stored",
                    file=sys.stderr,
                    flush=True,
                )

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self, timeout: float = 30) -> None:
        """Send what is queued, let the child commit it and exit (killed after ``timeout`` seconds)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._sender.join(timeout)
        try:
            self._stdin.close()  # the end of the child's input: it writes what it has and exits
        except OSError:
            pass
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout)
        self._stdout.close()


def _grow_pipe(fd: int) -> None:
    """A 1 MiB pipe on Linux (64 KiB by default): fewer round trips between the two processes."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _READ)
    except (ImportError, OSError):
        pass


def child_main() -> int:
    """The viewer's process: argv host, port, keep, db ("" in memory); framed requests on stdin."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us by closing stdin
    from highlight_logging._devtools.viewer._server import ViewerServer
    from highlight_logging._devtools.viewer._store import Store

    # The page's threads wait at most 1 ms (not 5) for the GIL while the main thread files a batch.
    sys.setswitchinterval(0.001)
    host, port, keep, db = sys.argv[1:5]
    # The protocol owns stdout; anything printed goes to stderr.
    acks = os.fdopen(os.dup(1), "w", encoding="ascii", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        store = Store(db or None, int(keep), writer=False)
    except Exception as exc:  # sqlite3.Error for a bad --db
        acks.write(f"error {exc}\n")
        return 1
    server = ViewerServer(store, host, int(port))
    try:
        server.start()
    except Exception as exc:  # OSError for a busy port
        store.close()
        acks.write(f"error {exc}\n")
        return 1
    acks.write(f"ok {server.port}\n")
    try:
        _ingest(store, sys.stdin.fileno(), acks)
    finally:
        server.stop()
        store.close()
        acks.close()
    return 0


def _ingest(store: Store, fd: int, acks: TextIO) -> None:
    """Keep what arrives at once (one row per request); file it into rows and indexes while the pipe
    is quiet. A flush is answered once everything before it is filed."""
    size = _HEADER.size
    buf = bytearray()
    quiet = sys.platform != "win32"  # Windows cannot wait for a pipe: it files after each read
    if quiet:
        os.set_blocking(fd, False)
    while True:
        if store.unindexed() >= _MAX_UNFILED and store.index(_INDEX_RECORDS):
            continue  # bounded: past this the pipe waits, then the receiver's queue, then the client's
        try:
            data: bytes | None = os.read(fd, _READ)
        except (BlockingIOError, InterruptedError):
            data = None
        if data is None:
            if not store.index(_INDEX_RECORDS):
                select.select([fd], [], [])  # nothing to file: sleep until there is input
            continue
        if not data:
            while store.index(_INDEX_RECORDS):
                pass
            return
        buf += data
        batch: list[tuple[bool, bytes, int]] = []
        pos = 0
        while len(buf) - pos >= size:
            tag, n, length = _HEADER.unpack_from(buf, pos)
            if len(buf) - pos - size < length:
                break
            start = pos + size
            pos = start + length
            if tag == b"F":
                store.ingest(batch)
                batch = []
                while store.index(_INDEX_RECORDS):
                    pass
                try:
                    acks.write(f"flushed {n}\n")
                except OSError:  # the parent is gone: its pipe ends next
                    pass
                continue
            batch.append((tag == b"L", bytes(buf[start:pos]), n))
        del buf[:pos]
        store.ingest(batch)
        while not quiet and store.index(_INDEX_RECORDS):
            pass
