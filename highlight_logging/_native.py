"""The optional C extension, ``_speedups.c``, for the modules that have a C twin (``_plain``,
``_frontend``, ``_scrub``): one place decides whether it is used.

``speedups`` is None when it was not built (no compiler at install time: the Python references
run) or when ``HIGHLIGHT_LOGGING_PURE_PYTHON`` was set at import.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

#: HIGHLIGHT_LOGGING_PURE_PYTHON was set at import: the C path is not used even where it was built.
pure_python = bool(os.environ.get("HIGHLIGHT_LOGGING_PURE_PYTHON"))

speedups: ModuleType | None = None
if not pure_python:
    try:
        speedups = importlib.import_module("highlight_logging._speedups")
    except ImportError:
        pass
