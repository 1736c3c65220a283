"""highlight request context: contextvars semantics, the WSGI/ASGI middleware, what arrives.

How the context travels (``_core.context.current`` is a ContextVar):

* asyncio tasks copy the context when created, so every task started inside a request sees it,
  and concurrent requests never see each other's;
* ``contextvars.copy_context().run(fn)`` (and ``asyncio.to_thread``) carries it into a thread;
* a plain ``threading.Thread`` or a ``ThreadPoolExecutor`` worker starts with an empty context
  and does NOT see it (CPython < 3.14, and 3.14 unless ``sys.flags.thread_inherit_context``).
"""

from __future__ import annotations

import asyncio
import contextvars
import http.client
import logging
import sys
import threading
import wsgiref.simple_server
import wsgiref.util
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

import highlight_logging
from highlight_logging import HighlightHandler
from highlight_logging._core import context as _context
from highlight_logging._devtools.receiver import Receiver
from highlight_logging._frontends.middleware import HighlightASGIMiddleware, HighlightWSGIMiddleware

SESSION, REQUEST = "sess-1", "req-1"
HEADER = f"{SESSION}/{REQUEST}"

MALFORMED: list[Any] = [
    None,
    "",
    "abc",
    "/x",
    "/",
    " / ",
    "a b/c",
    "\x00s/r",
    "s/" + "r" * 600,
    b"\xc3\xa9t\xc3\xa9/r",  # UTF-8 bytes
    b"\xff\xfe/\x80",  # not text at all
]


@pytest.fixture
def log(receiver: Receiver) -> Iterator[logging.Logger]:
    logger = logging.getLogger("tests.context")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = HighlightHandler(endpoint=receiver.endpoint)
    logger.addHandler(handler)
    yield logger
    logger.removeHandler(handler)


# --- the context itself ------------------------------------------------------------------------


def test_context_sets_nests_and_resets() -> None:
    """context() sets (session, request) for the block, nests, restores; no session id is a no-op."""
    assert _context.current.get() is None
    with highlight_logging.context(session_id="a", request_id="1"):
        assert _context.current.get() == ("a", "1")
        with highlight_logging.context(session_id="b"):
            assert _context.current.get() == ("b", "")
        assert _context.current.get() == ("a", "1")
        with highlight_logging.context(session_id=None, request_id="ignored"):
            assert _context.current.get() == ("a", "1")
    assert _context.current.get() is None


def _in_thread(fn: Callable[[], Any]) -> Any:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join(5)
    return out[0]


def test_copy_context_carries_into_a_thread() -> None:
    """A thread running copy_context().run sees the caller's request context."""
    with highlight_logging.context(session_id=SESSION, request_id=REQUEST):
        ctx = contextvars.copy_context()
    assert _in_thread(lambda: ctx.run(_context.current.get)) == (SESSION, REQUEST)


@pytest.mark.skipif(
    bool(getattr(sys.flags, "thread_inherit_context", 0)), reason="threads inherit the context here"
)
def test_plain_thread_does_not_inherit() -> None:
    """A plain threading.Thread starts with an empty context: no request context (documented)."""
    with highlight_logging.context(session_id=SESSION, request_id=REQUEST):
        assert _in_thread(_context.current.get) is None


def test_asyncio_tasks_inherit_and_stay_isolated() -> None:
    """Tasks inherit the context at creation; concurrent requests keep their own; to_thread carries it."""

    async def request(session: str, gate: asyncio.Event, peer: asyncio.Event) -> tuple[Any, Any, Any]:
        with highlight_logging.context(session_id=session, request_id="r"):
            seen_child = await asyncio.create_task(_current_later())
            gate.set()
            await asyncio.wait_for(peer.wait(), 5)  # the other request now runs with its own context
            in_thread = await asyncio.to_thread(_context.current.get)
            return _context.current.get(), seen_child, in_thread

    async def main() -> list[tuple[Any, Any, Any]]:
        a, b = asyncio.Event(), asyncio.Event()
        results = await asyncio.gather(request("A", a, b), request("B", b, a))
        assert _context.current.get() is None
        return results

    (own_a, child_a, thread_a), (own_b, child_b, thread_b) = asyncio.run(main())
    assert own_a == child_a == thread_a == ("A", "r")
    assert own_b == child_b == thread_b == ("B", "r")


async def _current_later() -> Any:
    await asyncio.sleep(0)
    return _context.current.get()


def test_records_and_exception_spans_carry_the_context(log: logging.Logger, receiver: Receiver) -> None:
    """Inside context(), log records and the exception span carry highlight.session_id/trace_id."""
    with highlight_logging.context(session_id=SESSION, request_id=REQUEST):
        log.info("inside")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    log.info("outside")
    assert highlight_logging.flush(5)
    assert receiver.wait_for_logs(3, 5) and receiver.wait_for_spans(1, 5)
    inside, failed, outside = receiver.log_records()
    for rec in (inside, failed):
        assert rec.attributes["highlight.session_id"] == SESSION
        assert rec.attributes["highlight.trace_id"] == REQUEST
    assert "highlight.session_id" not in outside.attributes
    (span,) = receiver.spans()
    assert span.attributes["highlight.session_id"] == SESSION
    assert span.attributes["highlight.trace_id"] == REQUEST
    assert span.span.span_id == failed.record.span_id


# --- WSGI --------------------------------------------------------------------------------------


class _Body:
    """A WSGI response iterable that notes the request context at each step and at close()."""

    def __init__(self, seen: list[Any], chunks: int = 3) -> None:
        self.seen = seen
        self.chunks = chunks
        self.closed = 0

    def __iter__(self) -> Iterator[bytes]:
        for i in range(self.chunks):
            self.seen.append(("chunk", _context.current.get()))
            yield b"%d" % i

    def close(self) -> None:
        self.closed += 1
        self.seen.append(("close", _context.current.get()))


def _wsgi_app(seen: list[Any], bodies: list[_Body]) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        seen.append(("call", _context.current.get()))
        start_response("200 OK", [("Content-Type", "text/plain")])
        body = _Body(seen)
        bodies.append(body)
        return body

    return app


def _call_wsgi(app: Any, header: Any = None) -> tuple[str, bytes]:
    environ: dict[str, Any] = {}
    wsgiref.util.setup_testing_defaults(environ)
    if header is not None:
        environ["HTTP_X_HIGHLIGHT_REQUEST"] = (
            header.decode("latin-1") if isinstance(header, bytes) else header
        )
    status: list[str] = []

    def start_response(s: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], None]:
        status.append(s)
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return status[0], body


def test_wsgi_context_covers_call_iteration_and_close() -> None:
    """The app call, every chunk of the response and close() run in the request context; close once."""
    seen: list[Any] = []
    bodies: list[_Body] = []
    app = HighlightWSGIMiddleware(_wsgi_app(seen, bodies))
    assert _call_wsgi(app, HEADER) == ("200 OK", b"012")
    expected = (SESSION, REQUEST)
    assert seen == [("call", expected)] + [("chunk", expected)] * 3 + [("close", expected)]
    assert bodies[0].closed == 1
    assert _context.current.get() is None


@pytest.mark.parametrize("header", MALFORMED, ids=repr)
def test_wsgi_missing_or_malformed_header_is_ignored(header: Any) -> None:
    """Without a well-formed header the app runs unchanged and without a context."""
    seen: list[Any] = []
    app = HighlightWSGIMiddleware(_wsgi_app(seen, []))
    assert _call_wsgi(app, header) == ("200 OK", b"012")
    assert {value for _, value in seen} == {None}


def test_wsgi_passes_length_file_wrapper_and_errors_through() -> None:
    """len() of a list response survives, a file_wrapper response is returned as is, app errors propagate."""
    environ: dict[str, Any] = {"HTTP_X_HIGHLIGHT_REQUEST": HEADER}
    wsgiref.util.setup_testing_defaults(environ)
    environ["wsgi.file_wrapper"] = wsgiref.util.FileWrapper

    listed = HighlightWSGIMiddleware(lambda env, sr: [b"one"])
    assert len(listed(environ, lambda *a: None)) == 1  # type: ignore[arg-type]

    wrapper = wsgiref.util.FileWrapper(__import__("io").BytesIO(b"data"))
    assert HighlightWSGIMiddleware(lambda env, sr: wrapper)(environ, lambda *a: None) is wrapper  # type: ignore[arg-type]

    def failing(env: Any, sr: Any) -> Iterable[bytes]:
        raise RuntimeError("app error")

    with pytest.raises(RuntimeError, match="app error"):
        HighlightWSGIMiddleware(failing)(environ, lambda *a: None)  # type: ignore[arg-type]
    assert _context.current.get() is None


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_wsgi_real_server_records_reach_the_receiver(log: logging.Logger, receiver: Receiver) -> None:
    """Through a real wsgiref server, logs from the call and from a streamed body carry the context."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        log.info("handling")
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body() -> Iterator[bytes]:
            log.info("streaming")
            try:
                raise KeyError("missing")
            except KeyError:
                log.exception("while streaming")
            yield b"ok"

        return body()

    server = wsgiref.simple_server.make_server(
        "127.0.0.1", 0, HighlightWSGIMiddleware(app), handler_class=_QuietHandler
    )
    server.timeout = 5
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=5)
        conn.request("GET", "/", headers={"X-Highlight-Request": HEADER})
        assert conn.getresponse().read() == b"ok"
        conn.close()
        thread.join(5)
    finally:
        server.server_close()
    assert highlight_logging.flush(5)
    assert receiver.wait_for_logs(3, 5) and receiver.wait_for_spans(1, 5)
    for rec in receiver.log_records():
        assert (rec.attributes["highlight.session_id"], rec.attributes["highlight.trace_id"]) == (
            SESSION,
            REQUEST,
        )
    (span,) = receiver.spans()
    assert span.attributes["highlight.session_id"] == SESSION


# --- ASGI --------------------------------------------------------------------------------------


def _scope(kind: str = "http", header: Any = HEADER, name: bytes = b"x-highlight-request") -> dict[str, Any]:
    headers: list[tuple[bytes, bytes]] = [(b"host", b"example.com")]
    if header is not None:
        headers.append((name, header.encode("latin-1") if isinstance(header, str) else header))
    return {"type": kind, "headers": headers, "path": "/"}


def _drive(app: Any, scope: dict[str, Any]) -> list[tuple[str, Any]]:
    """Run one ASGI connection; returns (message type, request context) for every send()."""
    sent: list[tuple[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append((message["type"], _context.current.get()))

    async def main() -> None:
        await app(scope, receive, send)
        assert _context.current.get() is None

    asyncio.run(main())
    return sent


async def _streaming_app(scope: Any, receive: Any, send: Any) -> None:
    """Streams three chunks, yielding to the loop between them, and sends from a spawned task."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for i in range(3):
        await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"%d" % i, "more_body": True})
    await asyncio.create_task(send({"type": "http.response.body", "body": b"", "more_body": False}))


def test_asgi_context_covers_the_whole_streaming_response() -> None:
    """Every send of a streamed response, and tasks the app starts, run in the request context."""
    sent = _drive(HighlightASGIMiddleware(_streaming_app), _scope())
    assert len(sent) == 5
    assert {ctx for _, ctx in sent} == {(SESSION, REQUEST)}


def test_asgi_websocket_header_name_case_and_lifespan() -> None:
    """websocket scopes get the context, header names match case-insensitively, lifespan passes through."""
    assert {c for _, c in _drive(HighlightASGIMiddleware(_streaming_app), _scope("websocket"))} == {
        (SESSION, REQUEST)
    }
    upper = _scope(name=b"X-Highlight-Request")
    assert {c for _, c in _drive(HighlightASGIMiddleware(_streaming_app), upper)} == {(SESSION, REQUEST)}
    assert {c for _, c in _drive(HighlightASGIMiddleware(_streaming_app), _scope("lifespan"))} == {None}


def test_asgi_concurrent_requests_keep_their_own_context() -> None:
    """Two interleaved connections each see only their own session."""
    seen: dict[str, set[Any]] = {"a": set(), "b": set()}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for _ in range(5):
            seen[scope["path"]].add(_context.current.get())
            await asyncio.sleep(0)

    async def main() -> None:
        mw = HighlightASGIMiddleware(app)
        a, b = _scope(header="A/1"), _scope(header="B/2")
        a["path"], b["path"] = "a", "b"
        await asyncio.gather(mw(a, _never, _ignore), mw(b, _never, _ignore))

    asyncio.run(main())
    assert seen == {"a": {("A", "1")}, "b": {("B", "2")}}


async def _never() -> dict[str, Any]:
    raise AssertionError("not called")


async def _ignore(message: Any) -> None:
    pass


@pytest.mark.parametrize("header", MALFORMED, ids=repr)
def test_asgi_missing_or_malformed_header_is_ignored(header: Any) -> None:
    """Without a well-formed header the app runs unchanged and without a context."""
    sent = _drive(HighlightASGIMiddleware(_streaming_app), _scope(header=header))
    assert len(sent) == 5 and {ctx for _, ctx in sent} == {None}


def test_asgi_odd_scopes_and_app_errors() -> None:
    """No headers key, or junk in it, is ignored; app errors propagate and the context is reset."""
    assert _drive(HighlightASGIMiddleware(_streaming_app), {"type": "http"})[0] == (
        "http.response.start",
        None,
    )
    junk = {"type": "http", "headers": [(None, None), (b"x-highlight-request",)]}
    assert _drive(HighlightASGIMiddleware(_streaming_app), junk)[0] == ("http.response.start", None)

    async def failing(scope: Any, receive: Any, send: Any) -> None:
        assert _context.current.get() == (SESSION, REQUEST)
        raise RuntimeError("app error")

    with pytest.raises(RuntimeError, match="app error"):
        _drive(HighlightASGIMiddleware(failing), _scope())


def test_asgi_records_reach_the_receiver(log: logging.Logger, receiver: Receiver) -> None:
    """Logs and the exception span from inside an ASGI request carry the context at the receiver."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await asyncio.sleep(0)
        log.info("streaming")
        try:
            raise KeyError("missing")
        except KeyError:
            log.exception("failed")
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    _drive(HighlightASGIMiddleware(app), _scope())
    assert highlight_logging.flush(5)
    assert receiver.wait_for_logs(2, 5) and receiver.wait_for_spans(1, 5)
    for rec in receiver.log_records():
        assert rec.attributes["highlight.session_id"] == SESSION
        assert rec.attributes["highlight.trace_id"] == REQUEST
    assert receiver.spans()[0].attributes["highlight.trace_id"] == REQUEST
