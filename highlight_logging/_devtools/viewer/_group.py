"""How exceptions are grouped: type, message pattern and the innermost frame (pure functions)."""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

# Most specific first: a UUID must not be read as a few hex runs and numbers.
_PATTERNS = (
    (
        re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
        "<uuid>",
    ),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])"), "<n>"),
    (re.compile(r"(?<=[A-Za-z_])\d+\b"), "<n>"),  # user42, job_17: the number is the id
)
_PY_FRAME = re.compile(r'^\s*File "(?P<file>[^"]*)", line (?P<line>\d+)(?:, in (?P<function>.*))?$')
# Java/Kotlin ("at pkg.Cls.method(File.java:12)") and JS ("at fn (file.js:3:7)") frames.
_AT_FRAME = re.compile(
    r"^\s*at (?:(?P<function>[^\s(]+) ?\()?(?P<file>[^\s():][^()]*?):(?P<line>\d+)(?::\d+)?\)?$"
)
_MAX_MESSAGE = 300


class Frame(NamedTuple):
    file: str
    line: int
    function: str
    code: str


def message_pattern(message: str) -> str:
    """The message with numbers and ids replaced, so that ``user 42`` and ``user 7`` group together."""
    text = message.strip().splitlines()[0] if message.strip() else ""
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text[:_MAX_MESSAGE]


def parse_stack(stacktrace: str) -> list[Frame]:
    """The frames of a Python traceback (outermost first), or of a Java/JavaScript-style stack."""
    frames: list[Frame] = []
    lines = stacktrace.splitlines()
    for i, line in enumerate(lines):
        m = _PY_FRAME.match(line)
        if m is not None:
            code = ""
            if i + 1 < len(lines) and not _PY_FRAME.match(lines[i + 1]) and lines[i + 1].startswith("    "):
                code = lines[i + 1].strip()
            frames.append(Frame(m["file"], int(m["line"]), (m["function"] or "").strip(), code))
    if frames:
        return frames
    # Other languages list the innermost frame first; keep the Python order (outermost first).
    for line in lines:
        m = _AT_FRAME.match(line)
        if m is not None:
            frames.append(Frame(m["file"], int(m["line"]), m["function"] or "", ""))
    frames.reverse()
    return frames


def top_frame(frames: list[Frame]) -> str:
    """The innermost frame as ``file in function`` (no line number, so edits above it keep the group)."""
    if not frames:
        return ""
    f = frames[-1]
    return f"{f.file} in {f.function}" if f.function else f.file


def fingerprint(exc_type: str, pattern: str, frame: str) -> str:
    return hashlib.blake2b(
        "\x00".join((exc_type, pattern, frame)).encode("utf-8", "replace"), digest_size=12
    ).hexdigest()
