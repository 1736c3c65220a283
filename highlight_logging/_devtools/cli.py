"""The ``highlight-logging`` command: ``serve`` runs the bundled OTLP receiver in the foreground."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
from types import FrameType

from highlight_logging._version import __version__

_SHUTDOWN_GRACE = 1.0  # seconds in-flight gRPC calls get once a stop signal arrives


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    parser.print_help(sys.stderr)
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="highlight-logging", description="Tools for highlight-logging (OpenTelemetry logs over OTLP)."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser(
        "serve",
        help="run a local OTLP receiver and print what arrives",
        description="Run a local OTLP receiver (gRPC, optionally OTLP/HTTP) and print every log record and span.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument(
        "--port", type=_port, default=4317, help="gRPC port, 0 picks a free one (default: %(default)s)"
    )
    serve.add_argument(
        "--http-port", type=_port, default=None, metavar="PORT", help="also serve OTLP/HTTP on PORT"
    )
    serve.add_argument(
        "--jsonl", metavar="PATH", help="append one JSON object per log record and span to PATH"
    )
    serve.add_argument(
        "--ready-file",
        metavar="PATH",
        help="write the bound gRPC port to PATH once listening (with --ui, then 'http PORT' and 'ui URL' lines)",
    )
    ui = serve.add_argument_group("local viewer")
    ui.add_argument(
        "--ui",
        action="store_true",
        help="also serve a web page of the logs, errors and requests (OTLP/HTTP then defaults to port 4318)",
    )
    ui.add_argument(
        "--ui-port", type=_port, default=8686, metavar="PORT", help="the page's port (default: %(default)s)"
    )
    ui.add_argument(
        "--keep",
        type=_positive,
        default=100_000,
        metavar="N",
        help="keep the newest N records (default: %(default)s)",
    )
    ui.add_argument("--db", metavar="PATH", help="keep the records in this SQLite file across restarts")
    ui.add_argument("--print", action="store_true", help="with --ui, also print each record in the terminal")
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {value}")
    return value


def _serve(args: argparse.Namespace) -> int:
    # Imported here so ``--version`` works without grpc/protobuf being importable.
    from highlight_logging._devtools.receiver import Receiver

    stop = threading.Event()
    previous = _install_signal_handlers(stop)
    viewer = None
    if args.ui:
        from highlight_logging._devtools.viewer._app import Viewer

        if args.http_port is None:
            args.http_port = 4318
        try:
            viewer = Viewer(args.host, args.ui_port, keep=args.keep, db=args.db)
        except (RuntimeError, OSError) as exc:  # the viewer's process says why (a bad --db, a busy --ui-port)
            print(f"highlight-logging: cannot start the viewer: {exc}", file=sys.stderr)
            _restore_signal_handlers(previous)
            return 1
    receiver = Receiver(
        args.host,
        args.port,
        args.http_port,
        printer=_print_line if viewer is None or args.print else None,
        jsonl_path=args.jsonl,
        on_raw=viewer.submit_raw if viewer is not None else None,
        retain=viewer is None,
    )
    try:
        try:
            receiver.start()
        except (RuntimeError, OSError) as exc:
            print(f"highlight-logging: cannot listen on {args.host}: {exc}", file=sys.stderr)
            return 1
        if args.ready_file:
            ready = f"{receiver.port}\n"
            if viewer is not None:
                ready += f"http {receiver.http_port}\nui {viewer.url}\n"
            _write_atomically(args.ready_file, ready)
        warning = _host_warning(args.host) if viewer is not None else None
        if warning is not None:
            print(warning, file=sys.stderr, flush=True)
        _print_line(f"highlight-logging {__version__}: OTLP receiver listening")
        _print_line(f"  gRPC       {receiver.endpoint}")
        if receiver.http_endpoint is not None:
            _print_line(f"  OTLP/HTTP  {receiver.http_endpoint}/v1/logs  {receiver.http_endpoint}/v1/traces")
        if args.jsonl:
            _print_line(f"  JSONL      {args.jsonl}")
        if viewer is not None:
            where = args.db or "memory"
            _print_line(f"  Viewer     {viewer.url}  (newest {args.keep:,} records, in {where})")
        _print_line("Press Ctrl-C to stop.")
        # A timed wait: on Windows a plain wait() would not let the signal handler run.
        while not stop.wait(0.5):
            pass
        _print_line("stopping...")
        receiver.stop(_SHUTDOWN_GRACE)
        n_logs, n_spans = receiver.counts()
        _print_line(f"received {n_logs} log records, {n_spans} spans")
        return 0
    finally:
        receiver.stop(0)  # idempotent; covers the error paths
        if viewer is not None:
            viewer.close()
        _restore_signal_handlers(previous)


def _host_warning(host: str) -> str | None:
    """What ``serve --ui --host HOST`` says when HOST is not loopback: the page has no login."""
    from highlight_logging._devtools.viewer._server import is_loopback

    if is_loopback(host):
        return None
    return (
        f"highlight-logging: WARNING: --host {host} is not loopback: anyone who can reach it reads every"
        " log record on the viewer's page (it has no login) and can send records."
    )


def _print_line(line: str) -> None:
    print(line, flush=True)


def _install_signal_handlers(stop: threading.Event) -> dict[int, object]:
    """Make SIGINT/SIGTERM set ``stop``, so shutdown happens in the main flow, not in a handler."""
    if threading.current_thread() is not threading.main_thread():
        return {}  # signal.signal() only works on the main thread (e.g. main() called from a test)

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[int, object] = {}
    for name in ("SIGINT", "SIGTERM"):
        signum = getattr(signal, name, None)
        if signum is not None:
            previous[signum] = signal.signal(signum, handler)
    return previous


def _restore_signal_handlers(previous: dict[int, object]) -> None:
    for signum, old in previous.items():
        if callable(old) or isinstance(old, int):
            signal.signal(signum, old)


def _write_atomically(path: str, text: str) -> None:
    """Write via rename, so a reader polling for the file never sees it half written."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".ready-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
