"""highlight.io request context: links backend logs and errors to a frontend session.

Backed by a ContextVar, so it follows threads started with ``contextvars.copy_context()`` and
every asyncio task, and costs one lookup per record.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

#: (session_id, request_id) or None
current: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "highlight_logging_request", default=None
)

HEADER = "X-Highlight-Request"


@contextlib.contextmanager
def context(session_id: str | None = None, request_id: str | None = None) -> Iterator[None]:
    """Inside this block every log record and exception span carries ``highlight.session_id``
    and ``highlight.trace_id`` (highlight.io's name for the frontend request id)."""
    if not session_id:
        yield
        return
    token = current.set((str(session_id), str(request_id or "")))
    try:
        yield
    finally:
        current.reset(token)


def parse_header(value: str | bytes | None) -> tuple[str, str] | None:
    """``<session id>/<request id>`` -> (session, request); None when missing or malformed."""
    if value is None:
        return None
    try:
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        session, sep, request = value.strip().partition("/")
        session, request = session.strip(), request.strip()
        if not sep or not session or len(value) > 512 or any(c.isspace() for c in session + request):
            return None
        return session, request
    except Exception:
        return None
