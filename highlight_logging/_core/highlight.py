"""The ``highlight`` output shape: what highlight.io's OTLP ingest needs to show each thing once and right.

Pure rules, applied on the export worker (never on the caller's thread), read from highlight.io's
public ingest code (backend/otel/extract.go and otel.go, backend/clickhouse/log_row.go,
sdk/highlight-go/log/util.go, backend/stacktraces/stacktraces.go); tests/core/test_highlight_rules.py
holds those rules as facts and checks what this module sends against them.  In short:

* the level comes from the severity *text* only (trace, debug, warn/warning, error, fatal, panic,
  anything else info): we send the name of the nearest of those for every level;
* attributes are flattened to strings and bool, bytes, None, empty strings and empty containers
  are dropped: we send those values as text (:func:`shown`);
* a set of keys is taken out of the attributes to fill level, message, environment, project,
  session...: a user's key among them is sent as ``extra.<key>`` (:func:`user_key`);
* an exception on a log record is one error titled by ``exception.message``, which must not be
  empty; a span's ``exception`` event would be a second one, and the span a trace row of its own:
  so the exception travels on the log record only;
* Python frames are parsed only where the function name starts with a word character.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from highlight_logging._core.coerce import truncate
from highlight_logging._core.record import Value

#: Keys highlight.io takes out of a record's merged attributes (to fill its own fields), exactly.
RESERVED = frozenset(
    {
        "level",
        "severity",
        "log.severity",
        "message",
        "log.message",
        "environment",
        "deployment.environment",
        "URL",
        "Source",
        "fluent.tag",
        "x-highlight-project",
        "highlight_project_id",
        "highlight_session_id",
        "metric.name",
        "metric.value",
    }
)
#: ... and by prefix: all of ``highlight.*``, ``service.*`` and ``exception.*`` are ours or theirs.
RESERVED_PREFIXES = ("highlight.", "service.", "exception.")
#: A dict under one of these keys flattens into ``key.sub`` names (``log`` + ``severity``).
_RESERVED_HEADS = frozenset(k.split(".", 1)[0] for k in RESERVED if "." in k) | {
    p[:-1] for p in RESERVED_PREFIXES
}
USER_PREFIX = "extra."

#: The severity text sent for each OTLP severity number (1-24): the level highlight.io knows that
#: is nearest (TRACE 1-4, DEBUG 5-8, INFO 9-12, WARN 13-16, ERROR 17-20, FATAL 21-24).
_TEXTS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")


def severity_text(number: int) -> str:
    if not 1 <= number <= 24:
        return "INFO"
    return _TEXTS[(number - 1) // 4]


def user_key(key: str, value: Value, taken: Collection[str] = ()) -> str:
    """``key``, or ``extra.<key>`` when highlight.io would take it out (or a dict under it would be)."""
    if not (
        key in RESERVED
        or key.startswith(RESERVED_PREFIXES)
        or (type(value) is dict and value and key in _RESERVED_HEADS)
    ):
        return key
    key = USER_PREFIX + key
    while key in taken:
        key = USER_PREFIX + key
    return key


def shown(value: Value, limit: int = 1 << 62) -> Value:
    """``value`` as highlight.io keeps it: bool, bytes, None, "" and empty containers as text
    (bytes as UTF-8, the others as ``\\xNN``, cut at ``limit`` characters)."""
    kind = type(value)
    if kind is str:
        return value if value else '""'
    if kind is int or kind is float:
        return value
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    if kind is bytes:
        return truncate(value.decode("utf-8", "backslashreplace"), limit) if value else '""'  # type: ignore[union-attr]
    if kind is list:
        return [shown(v, limit) for v in value] if value else "[]"  # type: ignore[union-attr]
    if kind is dict:
        return {k: shown(v, limit) for k, v in value.items()} if value else "{}"  # type: ignore[union-attr]
    return str(value)


def needs_shaping(key: str, value: Value) -> bool:
    """True when :func:`shape_extras` would change this pair (the fast path then declines it)."""
    kind = type(value)
    if kind is str:
        return not value or key in RESERVED or key.startswith(RESERVED_PREFIXES)
    if kind is int or kind is float:
        return key in RESERVED or key.startswith(RESERVED_PREFIXES)
    return True


def shape_extras(
    extras: tuple[tuple[str, Value], ...], own: Iterable[str] = (), limit: int = 1 << 62
) -> list[tuple[str, Value]]:
    """The user's extras, renamed where they would collide (never onto another of their keys, nor
    onto ``own``, the record's other attributes) and with every value visible."""
    out: list[tuple[str, Value]] = []
    taken: set[str] | None = None
    for key, value in extras:
        if needs_shaping(key, value):
            value = shown(value, limit)
            renamed = user_key(key, value)
            if renamed != key:
                if taken is None:  # only when a key is renamed: never to one already used
                    taken = {k for k, _ in extras} | set(own)
                key = user_key(key, value, taken)
                taken.add(key)
        out.append((key, value))
    return out


def body(text: str) -> str:
    """A log body highlight.io keeps whole.

    Its log path reads a body that does not start with ``<`` and holds ``" <"`` as a syslog line
    behind a token: the text before the first ``" <"`` is taken as a project id and cut off
    (``"mail to Bob <bob@example.com>"`` would show as ``"<bob@example.com>"``).  A no-break space
    in place of each such space looks the same and is not split on.
    """
    if " <" in text and not text.startswith("<"):
        return text.replace(" <", "\u00a0<")
    return text


# A Python frame line whose function is ``<module>``, ``<lambda>``, ``<listcomp>``...: their parser
# wants a word character after "in ", so such a frame would arrive unparsed (no file, no line).
_ODD_FRAME = re.compile(r'^(\s*File ".+", line \d+, in )<(\w+)>$', re.MULTILINE)


def stacktrace(text: str) -> str:
    """A Python traceback whose every frame highlight.io parses into file, line and function."""
    if ">" not in text:
        return text
    return _ODD_FRAME.sub(r"\1\2", text)


def exception_title(message: str | None, type_name: str) -> str:
    """The error's title: ``str(exc)``, or the type's name when that is empty or withheld (an
    empty title is no error at all: skipped on spans, rejected by their error resolver)."""
    return message if message else type_name
