"""The viewer's web server: the static page and a JSON API over the store, on the standard library.

Everything it serves about records is JSON; the page renders it as text. Headers forbid inline
script, framing and MIME sniffing, and on a loopback bind a request whose Host is not a loopback
name is refused (a web page elsewhere cannot read the logs through DNS rebinding).
"""

from __future__ import annotations

import decimal
import json
import math
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from highlight_logging._devtools.viewer._store import LEVELS, LogQuery, Store, json_default

__all__ = ["ViewerServer", "url_for"]

_STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "[::1]", "::1"}


class ViewerServer:
    """Serves the page and ``/api/*`` for ``store`` on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, store: Store, host: str = "127.0.0.1", port: int = 8686) -> None:
        self.store = store
        self.host = host
        self.port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._httpd = _Server(self.store, (self.host, self.port), check_host=is_loopback(self.host))
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.1,), name="highlight-logging-viewer-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is None:
            return
        if self._thread is not None and self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()
        self._httpd = None

    @property
    def url(self) -> str:
        return url_for(self.host, self.port)


def url_for(host: str, port: int) -> str:
    """The page's address for a bind address (a wildcard bind: the loopback one)."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def is_loopback(host: str) -> bool:
    return host in _LOOPBACK_NAMES or host.startswith("127.")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, store: Store, address: tuple[str, int], *, check_host: bool) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.store = store
        self.check_host = check_host
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 30

    def do_GET(self) -> None:
        if self.server.check_host and not self._host_allowed():
            self._send(421, b"unknown Host\n", "text/plain; charset=utf-8")
            return
        url = urlsplit(self.path)
        path = url.path
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            if path in ("/", "/index.html"):
                self._static("index.html")
            elif path == "/favicon.ico":
                self._static("favicon.svg")
            elif path.startswith("/static/"):
                self._static(path[len("/static/") :])
            elif path.startswith("/api/"):
                status, body = _api(self.server.store, path[len("/api/") :], params)
                self._send(status, _json(body), "application/json; charset=utf-8")
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")
        except (ValueError, KeyError, ArithmeticError) as exc:
            self._send(400, _json({"error": str(exc)}), "application/json; charset=utf-8")
        except Exception as exc:  # the page shows the reason instead of a dropped connection
            self._send(
                500, _json({"error": f"{type(exc).__name__}: {exc}"}), "application/json; charset=utf-8"
            )

    def do_HEAD(self) -> None:
        self._send(405, b"", "text/plain; charset=utf-8")

    def _host_allowed(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        if host.startswith("["):
            name = host[: host.find("]") + 1]
        else:
            name = host.rsplit(":", 1)[0] if ":" in host else host
        return name in _LOOPBACK_NAMES or name.startswith("127.")

    def _static(self, name: str) -> None:
        if "/" in name or "\\" in name or name.startswith(".") or not name:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")
            return
        ctype = _STATIC_TYPES.get(name[name.rfind(".") :]) if "." in name else None
        resource = resources.files("highlight_logging._devtools.viewer") / "static" / name
        if ctype is None or not resource.is_file():
            self._send(404, b"not found\n", "text/plain; charset=utf-8")
            return
        self._send(200, resource.read_bytes(), ctype)

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", _CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a polling page would fill the terminal


def _api(store: Store, route: str, p: dict[str, str]) -> tuple[int, object]:
    """Route ``/api/<route>``; returns the HTTP status and the JSON body."""
    parts = route.strip("/").split("/")
    if parts == ["stats"]:
        return 200, store.stats()
    if parts == ["facets"]:
        return 200, store.facets()
    if parts == ["logs"]:
        level = p.get("level", "").upper()
        query = LogQuery(
            min_severity=LEVELS.get(level, 0),
            scope=p.get("scope", ""),
            service=p.get("service", ""),
            text=p.get("q", ""),
            trace=p.get("trace", "").strip(),
            session=p.get("session", "").strip(),
            since_ns=_ns(p.get("since")),
            until_ns=_ns(p.get("until")),
            after_id=_int(p.get("after")),
            before_id=_int(p.get("before")),
            limit=_int(p.get("limit")) or 100,
        )
        last_id = (
            store.last_id()
        )  # before the query: the tail may repeat a row (the page skips it), never miss one
        return 200, {"items": store.logs(query), "last_id": last_id}
    if len(parts) == 2 and parts[0] == "item":
        item = store.item(int(parts[1]))
        return (
            (200, item) if item is not None else (404, {"error": "no such record (it may have been dropped)"})
        )
    if parts == ["errors"]:
        return 200, {"groups": store.error_groups(p.get("service", ""), _ns(p.get("since")))}
    if len(parts) == 2 and parts[0] == "errors":
        group = store.error_group(int(parts[1]))
        return (200, group) if group is not None else (404, {"error": "no such error group"})
    if parts == ["requests"]:
        return 200, {"requests": store.requests()}
    if parts == ["trace"]:
        return 200, {"items": store.trace(p.get("trace", "").strip(), p.get("session", "").strip())}
    return 404, {"error": f"no API at /api/{route}"}


def _int(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    return int(text)


def _ns(text: str | None) -> int | None:
    """A time in milliseconds since the epoch (what the page sends) as nanoseconds."""
    if text is None or text == "":
        return None
    return int(decimal.Decimal(text) * 1_000_000)  # exact: a float would round nanoseconds by ~100


def _json(obj: object) -> bytes:
    try:
        text = json.dumps(obj, allow_nan=False, default=json_default)  # ASCII: a lone surrogate is an escape
    except ValueError:  # NaN/Infinity attribute values: JSON has no such numbers, the page shows text
        text = json.dumps(_finite(obj), default=json_default)
    return text.encode("ascii")


def _finite(obj: object) -> object:
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
