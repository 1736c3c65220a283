"""The optional C extension, ``_speedups.c``, for the modules that have a C twin (``_export.fastpath``,
``_core.convert``, ``_core.scrub``, ``_frontends.structlog``, ``_frontends.handler``): one place decides whether it is used.

``speedups`` is None when it was not built (no compiler at install time: the Python references
run, and for ``_export.fastpath`` the general path), when ``HIGHLIGHT_LOGGING_PURE_PYTHON`` was set at
import, or when the built module is not the one this Python code expects (a stale build, e.g. an
old ``.so`` left beside newer sources in an editable install, or one of another ``Pending``
layout): then one warning, and the Python references run instead of a crash later.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from highlight_logging._core import diag as _diag

#: The ``ABI`` the C module must declare (``#define ABI`` in ``_speedups.c``): raise both together
#: whenever a C function's arguments, the Pending layout or a setup's contract change.
ABI = 6

#: HIGHLIGHT_LOGGING_PURE_PYTHON was set at import: the C path is not used even where it was built.
pure_python = bool(os.environ.get("HIGHLIGHT_LOGGING_PURE_PYTHON"))


def load(name: str = "highlight_logging._speedups") -> ModuleType | None:
    """The C module if it is there and matches this code's :data:`ABI`, else None."""
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None  # not built: the pure-Python install
    except Exception as exc:  # a build so old that its own initialisation fails against this code
        _diag.warn(f"the C speedups ({name}) failed to load ({exc!r}); using pure Python", key="native")
        return None
    found = getattr(module, "ABI", None)
    if found != ABI:
        _diag.warn(
            f"the C speedups ({getattr(module, '__file__', name)}) were built for another version "
            f"(ABI {found}, expected {ABI}); using pure Python; reinstall to rebuild them",
            key="native",
        )
        return None
    return module


speedups: ModuleType | None = None if pure_python else load()
