"""OTLP/HTTP with protobuf bodies, on the standard library: no extra dependency.

``urllib.request`` (with ``http.client`` and ``email``) is imported with this module, which is
imported only when this transport is chosen (see :func:`highlight_logging._transport.make`).
"""

from __future__ import annotations

import gzip
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable

from highlight_logging._core.settings import Settings
from highlight_logging._transport import proxy as _proxy
from highlight_logging._transport.base import (
    GZIP_LEVEL,
    LOGS,
    TRACES,
    Outcome,
    classify_http,
    partial_success,
    ready,
)
from highlight_logging._transport.proxy import proxy_for

_HTTP_PATHS = {LOGS: "/v1/logs", TRACES: "/v1/traces"}


class HttpTransport:
    """One ``urllib`` opener per URL, through the proxy ``proxy_for`` chooses."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._headers = {k: v for k, v in settings.headers}
        self._headers["Content-Type"] = "application/x-protobuf"
        self._headers["User-Agent"] = "highlight-logging"
        if settings.compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"
        self._context: ssl.SSLContext | None = None
        self._openers: dict[str, tuple[urllib.request.OpenerDirector, _proxy.Proxy | None]] = {}

    def _url(self, signal: str) -> str:
        s = self._settings
        specific = s.logs_endpoint if signal == LOGS else s.traces_endpoint
        if specific:
            return specific  # the per-signal variables are used as given
        return s.endpoint.rstrip("/") + _HTTP_PATHS[signal]

    def _ssl(self) -> ssl.SSLContext:
        if self._context is None:
            s = self._settings
            ctx = ssl.create_default_context(cafile=s.certificate_file or None)
            if s.client_certificate_file:
                ctx.load_cert_chain(s.client_certificate_file, s.client_key_file or None)
            self._context = ctx
        return self._context

    def _opener(self, url: str) -> tuple[urllib.request.OpenerDirector, _proxy.Proxy | None]:
        """An opener for ``url`` that goes through the proxy ``proxy_for`` chose (not urllib's own reading)."""
        found = self._openers.get(url)
        if found is None:
            proxy = proxy_for("", http_url=url)
            via = {} if proxy is None else dict.fromkeys(("http", "https"), proxy.url_with_credentials())
            handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler(via)]
            if url.lower().startswith("https://"):
                handlers.append(urllib.request.HTTPSHandler(context=self._ssl()))
            found = self._openers[url] = (urllib.request.build_opener(*handlers), proxy)
        return found

    def start(self, signal: str, payload: bytes, timeout: float) -> Callable[[], Outcome]:
        """Plain urllib has no request in flight to come back to: the whole export happens here."""
        return ready(self.export(signal, payload, timeout))

    def export(self, signal: str, payload: bytes, timeout: float) -> Outcome:
        body = (
            gzip.compress(payload, compresslevel=GZIP_LEVEL)
            if self._settings.compression == "gzip"
            else payload
        )
        url = self._url(signal)
        request = urllib.request.Request(url, data=body, headers=self._headers, method="POST")
        proxy = None
        try:
            opener, proxy = self._opener(url)
            with opener.open(request, timeout=max(timeout, 0.001)) as response:
                data = response.read()
        except urllib.error.HTTPError as err:
            delay = None
            try:
                retry_after = err.headers.get("Retry-After")
                delay = float(retry_after) if retry_after else None
            except Exception:
                pass
            status = int(err.code)
            if status == 407 and proxy is not None:  # a plain-HTTP request forwarded by the proxy
                return Outcome(False, detail=_proxy.auth_message(proxy, f"407 {err.reason or ''}".rstrip()))
            detail = f"HTTP {status}"
            if proxy is not None:  # a 401 may be the proxy's too (tinyproxy 1.11 answers 401)
                detail = f"{detail} (through {proxy})"
            return classify_http(status, delay, detail)
        except ValueError as exc:  # urllib refused the request before sending it: a retry can't help
            # Its text may quote a header value: the type only.
            return Outcome(False, retryable=False, detail=f"{type(exc).__name__}: invalid request, not sent")
        except Exception as exc:  # refused, timed out, TLS, the proxy's tunnel refused
            reason = getattr(exc, "reason", exc)
            text = f"{type(reason).__name__}: {reason}"
            if proxy is not None:
                for answer in ("407", "401"):  # http.client's words for the proxy's answer to CONNECT
                    if f"Tunnel connection failed: {answer}" in text:
                        return Outcome(False, detail=_proxy.auth_message(proxy, answer))
                text = f"{text} (through {proxy})"
            return Outcome(False, retryable=True, detail=text)
        rejected, message = partial_success(data, signal)
        return Outcome(True, rejected=rejected, detail=message)

    def cancel(self) -> None:
        pass  # urllib cannot be interrupted; every request is bounded by its timeout instead

    def reconnect(self) -> None:
        pass

    def close(self) -> None:
        pass
