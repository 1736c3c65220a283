"""WSGI and ASGI middleware: run each request inside :func:`highlight_logging.context`.

highlight.io's browser SDK sends ``X-Highlight-Request: <session id>/<request id>`` with every
request it traces.  The middleware reads that header and, for the whole request, makes every log
record and exception span carry ``highlight.session_id`` and ``highlight.trace_id``, so the
backend's logs and errors show up in the user's session.

A missing or malformed header (no ``/``, empty session id, longer than 512 characters, spaces,
control or non-ASCII characters) is ignored: the request runs unchanged, without a context.  The
middleware never raises anything of its own; the app's exceptions pass through untouched.

Put it outermost, so that it also covers other middleware's logging::

    app = HighlightWSGIMiddleware(app)          # Flask: app.wsgi_app = HighlightWSGIMiddleware(app.wsgi_app)
    app = HighlightASGIMiddleware(app)          # FastAPI/Starlette: app.add_middleware(HighlightASGIMiddleware)
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from highlight_logging._core import context as _context

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["HighlightASGIMiddleware", "HighlightWSGIMiddleware"]

_WSGI_KEY = "HTTP_X_HIGHLIGHT_REQUEST"
_ASGI_NAME = _context.HEADER.lower().encode("latin-1")
_MAX_LENGTH = 512  # as _context.parse_header


def request_from_header(value: str | bytes | None) -> tuple[str, str] | None:
    """``(session id, request id)`` from a header value; None unless it is printable ASCII and
    well formed.  Stricter than :func:`_context.parse_header`: WSGI hands headers over decoded as
    latin-1, so UTF-8 or binary garbage would otherwise pass as a session id."""
    try:
        if value is None or len(value) > _MAX_LENGTH:
            return None
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        if not isinstance(text, str):
            return None
        text = text.strip(" \t")
        if not text or any(not ("!" <= c <= "~") for c in text):
            return None
        return _context.parse_header(text)
    except Exception:
        return None


# --- WSGI ------------------------------------------------------------------------------------------


class HighlightWSGIMiddleware:
    """Runs a WSGI app, and the iteration and ``close()`` of its response, inside the request's
    :func:`~highlight_logging.context`."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = request_from_header(environ.get(_WSGI_KEY))
        if request is None:
            return self.app(environ, start_response)
        # A copied Context, entered for the call and again for every step of the response: the
        # server iterates the body after we return, often after other requests' code has run.
        ctx = contextvars.copy_context()
        ctx.run(_context.current.set, request)
        result = ctx.run(self.app, environ, start_response)
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(result, file_wrapper):
            return result  # keep the server's sendfile() fast path; reading a file logs nothing
        return _ContextIterable(result, ctx)


class _ContextIterable:
    """A WSGI response whose ``__next__`` and ``close()`` run inside ``ctx``."""

    __slots__ = ("_ctx", "_iterable", "_iterator")

    def __init__(self, iterable: Iterable[bytes], ctx: contextvars.Context) -> None:
        self._iterable = iterable
        self._ctx = ctx
        self._iterator: Iterator[bytes] | None = None

    def __iter__(self) -> _ContextIterable:
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = self._ctx.run(iter, self._iterable)
        return self._ctx.run(next, self._iterator)

    def __len__(self) -> int:
        # Servers set Content-Length for a one-chunk list; TypeError tells them it has no length.
        return len(self._iterable)  # type: ignore[arg-type]

    def close(self) -> None:
        close = getattr(self._iterable, "close", None)
        if close is not None:
            self._ctx.run(close)


# --- ASGI ------------------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class HighlightASGIMiddleware:
    """Runs an ASGI app's ``http`` and ``websocket`` connections inside the request's
    :func:`~highlight_logging.context`; other scopes (``lifespan``) pass straight through.

    The context lasts until the app returns, so it covers streaming responses, websocket
    messages, background tasks that run before the app returns, and tasks the app starts (they
    copy the context when created).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = None
        if scope.get("type") in ("http", "websocket"):
            request = _asgi_request(scope)
        if request is None:
            await self.app(scope, receive, send)
            return
        token = _context.current.set(request)
        try:
            await self.app(scope, receive, send)
        finally:
            _context.current.reset(token)


def _asgi_request(scope: Scope) -> tuple[str, str] | None:
    try:
        for name, value in scope.get("headers") or ():
            if len(name) == len(_ASGI_NAME) and bytes(name).lower() == _ASGI_NAME:
                return request_from_header(bytes(value))
    except Exception:
        pass
    return None
