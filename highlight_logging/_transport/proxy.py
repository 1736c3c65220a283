"""Which HTTP proxy an export goes through, read from the environment the way curl and urllib read it.

The rules, written once for every transport (grpcio, the built-in HTTP/2 client, OTLP/HTTP):

* a variable set to an empty value is unset; the lower-case spelling wins over the upper-case one;
* gRPC reads ``grpc_proxy``, then ``https_proxy``, then ``http_proxy`` (grpcio's order, whatever the
  endpoint's scheme), then ``all_proxy``; OTLP/HTTP reads ``https_proxy`` for an ``https://``
  endpoint and ``http_proxy`` for an ``http://`` one (urllib's and curl's), then ``all_proxy``;
* upper-case ``HTTP_PROXY`` is ignored inside a CGI request (``REQUEST_METHOD`` set: "httpoxy"),
  as urllib and curl ignore it;
* ``no_grpc_proxy`` (gRPC only), then ``no_proxy``: comma-separated; ``*`` means every host;
  ``example.com`` and ``.example.com`` cover the name and its subdomains; ``host:port`` covers
  that port only; IP addresses and CIDR blocks (``10.0.0.0/8``, ``::1``, ``[::1]``) match
  addresses written in the endpoint;
* a proxy address without a scheme (``127.0.0.1:3128``) is ``http://``; without a port, 80;
  Basic credentials may be given as ``http://user:pass@host:port`` (percent-decoded).

Only ``http://`` proxies are supported (a TLS or SOCKS proxy is reported and not used).
Credentials are never part of any text this module produces except :meth:`Proxy.authorization`
and :meth:`Proxy.url_with_credentials`, which go on the wire only.

Pure: no I/O except :func:`tunnel`, which opens the connection through a chosen proxy, and
:func:`proxy_for`, which reads the environment and reports an unusable variable.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import socket
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from highlight_logging._core import diag as _diag
from highlight_logging._transport import blocking
from highlight_logging._transport.base import RESOLVER_PREFIXES

__all__ = [
    "Proxy",
    "ProxyAuthError",
    "ProxyError",
    "UnsupportedProxy",
    "auth_message",
    "for_grpc",
    "for_http",
    "proxy_for",
    "tunnel",
]


class UnsupportedProxy(ValueError):
    """A proxy variable that cannot be used; the message names the variable, never credentials."""


class ProxyError(ConnectionError):
    """The proxy could not be reached, or refused the tunnel: worth retrying (it may come back)."""


class ProxyAuthError(Exception):
    """The proxy answered 407: a configuration error, not worth retrying."""


@dataclass(frozen=True)
class Proxy:
    """An ``http://`` proxy; ``repr`` and ``str`` never show the credentials."""

    host: str
    port: int
    source: str  # the variable it came from, e.g. "HTTPS_PROXY"
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        auth = " with credentials" if self.username is not None else ""
        return f"proxy http://{host}:{self.port} (from {self.source}{auth})"

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def authorization(self) -> str | None:
        """The ``Proxy-Authorization`` value, or None without credentials."""
        if self.username is None:
            return None
        raw = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def url_with_credentials(self) -> str:
        """``http://user:pass@host:port``, percent-encoded: for grpcio's ``grpc.http_proxy`` only."""
        if self.username is None:
            return f"http://{self.address}"
        user = urllib.parse.quote(self.username, safe="")
        password = urllib.parse.quote(self.password or "", safe="")
        return f"http://{user}:{password}@{self.address}"


def _get(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """(spelling, value) of a variable, lower case first; empty means unset."""
    for spelling in (name, name.upper()):
        if spelling == "HTTP_PROXY" and environ.get("REQUEST_METHOD"):
            continue  # a CGI request's Proxy: header arrives as HTTP_PROXY (httpoxy)
        value = environ.get(spelling, "").strip()
        if value:
            return spelling, value
    return None


def _parse(spelling: str, value: str) -> Proxy:
    text = value if "://" in value else "http://" + value
    try:
        parts = urllib.parse.urlsplit(text)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        port = parts.port or 80
    except ValueError:
        raise UnsupportedProxy(f"{spelling} is not a proxy address (http://host:port)") from None
    if scheme != "http":
        raise UnsupportedProxy(
            f"{spelling} names a {scheme}:// proxy; only http:// proxies (HTTP CONNECT) are supported"
        )
    if not host:
        raise UnsupportedProxy(f"{spelling} has no host (expected http://host:port)")
    username = urllib.parse.unquote(parts.username) if parts.username is not None else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    return Proxy(host, port, spelling, username, password)


def _host_port(endpoint: str, default_port: int) -> tuple[str, int]:
    """The host (lower case, no brackets) and port of a URL or a bare ``host:port``."""
    text = endpoint.strip()
    if "://" not in text:
        text = "//" + text
    try:
        parts = urllib.parse.urlsplit(text)
        return (parts.hostname or "").lower(), parts.port or default_port
    except ValueError:
        return "", default_port


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``no_proxy`` covers ``host:port``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry_port = None
        if entry.startswith("["):  # [::1] or [::1]:4317
            inside, _, rest = entry[1:].partition("]")
            entry = inside
            if rest.startswith(":") and rest[1:].isdigit():
                entry_port = int(rest[1:])
        elif entry.count(":") == 1:  # host:port (an IPv6 address has more colons)
            name, _, maybe_port = entry.partition(":")
            if maybe_port.isdigit():
                entry, entry_port = name, int(maybe_port)
        if entry_port is not None and entry_port != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        entry = entry.lstrip(".")  # ".example.com" and "example.com" alike cover subdomains
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False


def _select(
    endpoint: str,
    default_port: int,
    names: tuple[str, ...],
    no_names: tuple[str, ...],
    environ: Mapping[str, str],
) -> Proxy | None:
    chosen = None
    for name in names:
        chosen = _get(environ, name)
        if chosen is not None:
            break
    if chosen is None:
        return None
    host, port = _host_port(endpoint, default_port)
    for name in no_names:
        found = _get(environ, name)
        if found is not None:
            if _bypassed(host, port, found[1]):
                return None
            break  # no_grpc_proxy, when set, replaces no_proxy (as in grpcio)
    return _parse(*chosen)


def for_grpc(target: str, environ: Mapping[str, str]) -> Proxy | None:
    """The proxy for a gRPC ``target`` (``host:port``, or a URL), or None to go direct.

    Raises :class:`UnsupportedProxy` when the variable that applies cannot be used."""
    return _select(
        target,
        443,
        ("grpc_proxy", "https_proxy", "http_proxy", "all_proxy"),
        ("no_grpc_proxy", "no_proxy"),
        environ,
    )


def for_http(url: str, environ: Mapping[str, str]) -> Proxy | None:
    """The proxy for an OTLP/HTTP ``url``, or None to go direct (raises :class:`UnsupportedProxy`)."""
    secure = url.strip().lower().startswith("https://")
    names = ("https_proxy", "all_proxy") if secure else ("http_proxy", "all_proxy")
    return _select(url, 443 if secure else 80, names, ("no_proxy",), environ)


def auth_message(proxy: Proxy, reason: str) -> str:
    """The one report of a proxy's 407 (``reason``: its status line, e.g. "407 Proxy
    Authentication Required"), whichever client met it."""
    given = "were refused" if proxy.username is not None else "are required and none were given"
    return (
        f"configuration error: {proxy} answered {reason}: its credentials {given}; set them as "
        f"http://user:password@host:port in {proxy.source} (not retried)"
    )


_MAX_HEAD = 16 * 1024  # a CONNECT answer's status line and headers; a proxy sending more is broken


def tunnel(
    proxy: Proxy,
    host: str,
    port: int,
    deadline: float,
    watch: Callable[[socket.socket | None], None] | None = None,
) -> socket.socket:
    """A socket connected to ``host:port`` through ``proxy`` (HTTP CONNECT), before ``deadline``
    (``time.monotonic()``).  TLS, if any, is then wrapped over it as over a direct connection.
    ``watch`` is given the socket while CONNECT is under way (so that another thread may shut it
    down to cancel), then None.

    Raises :class:`ProxyError` (unreachable, no answer, refused: retryable, the proxy named),
    :class:`ProxyAuthError` (407), or TimeoutError naming the proxy."""

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{proxy} did not answer CONNECT in time")
        return remaining

    try:
        sock = blocking.create_connection(proxy.host, proxy.port, left())
    except TimeoutError:
        raise TimeoutError(f"{proxy}: connecting timed out") from None
    except OSError as exc:
        raise ProxyError(f"{proxy}: {exc.strerror or exc}") from None
    try:
        if watch is not None:
            watch(sock)
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}", "User-Agent: highlight-logging"]
        auth = proxy.authorization()
        if auth is not None:
            lines.append(f"Proxy-Authorization: {auth}")
        sock.settimeout(left())
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = b""
        # Read the answer's head and not a byte more: what follows is the server's (its SETTINGS).
        while True:
            sock.settimeout(left())
            peek = sock.recv(4096, socket.MSG_PEEK)
            if not peek:
                raise ProxyError(f"{proxy} gave no answer to CONNECT (connection closed)")
            end = (head[-3:] + peek).find(b"\r\n\r\n")
            take = len(peek) if end < 0 else end + 4 - len(head[-3:])
            head += sock.recv(take)
            if end >= 0:
                break
            if len(head) > _MAX_HEAD:
                raise ProxyError(f"{proxy} answered CONNECT with an oversized header")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
        reason = parts[2] if len(parts) > 2 else ""
        if status in (401, 407):  # tinyproxy 1.11 answers 401: a CONNECT's answer is the proxy's own
            raise ProxyAuthError(auth_message(proxy, f"{status} {reason}".rstrip()))
        if not 200 <= status < 300:
            raise ProxyError(f"{proxy} refused CONNECT to {authority}: HTTP {status} {reason}".rstrip())
        sock.settimeout(None)
        return sock
    except TimeoutError:
        sock.close()
        raise TimeoutError(f"{proxy} did not answer CONNECT in time") from None
    except (ProxyError, ProxyAuthError):
        sock.close()
        raise
    except OSError as exc:
        sock.close()
        raise ProxyError(f"{proxy}: {exc.strerror or exc}") from None
    except BaseException:
        sock.close()
        raise
    finally:
        if watch is not None:
            watch(None)


def proxy_for(target: str, http_url: str | None = None) -> Proxy | None:
    """The proxy for a gRPC ``target`` (or an OTLP/HTTP ``http_url``) from the environment now;
    an unusable variable is reported once and not used."""
    low = target.lower()
    if http_url is None and low.startswith(RESOLVER_PREFIXES):
        if not low.startswith(("dns:", "ipv4:", "ipv6:")):
            return None  # unix:, vsock:, xds:...: no proxy for those
        # dns:///host:port, ipv4:addr:port[,...]: the (first) host:port is what no_proxy is matched to
        target = target.split(":", 1)[1].lstrip("/").split(",")[0]
    try:
        if http_url is not None:
            return for_http(http_url, os.environ)
        return for_grpc(target, os.environ)
    except UnsupportedProxy as exc:
        _diag.warn(f"{exc}; connecting directly", key=f"proxy:{exc}")
        return None
