"""_transport is layer 1: it imports only itself and the pure layer below, and only its grpcio
module imports grpcio."""

from __future__ import annotations

import ast
from pathlib import Path

import highlight_logging._transport

PACKAGE = Path(highlight_logging._transport.__file__).parent
# The pure layer's flat names from before the move (all under ``_core`` now, so unused; tests/test_layers.py
# holds the rule for every layer).
LOWER = {"_settings", "_diag", "_osthread", "_native", "_record", "_coerce", "_exceptions", "_version"}


def _imports(path: Path) -> list[str]:
    """Every module ``path`` imports, at any depth (lazy imports included)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
            if node.module == "highlight_logging":
                found += [f"highlight_logging.{alias.name}" for alias in node.names]
    return found


def test_transport_imports_only_itself_and_the_layer_below() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        for name in _imports(path):
            if name == "highlight_logging" or not name.startswith("highlight_logging."):
                continue
            first = name.split(".")[1]
            assert first in {"_transport", "_core"} | LOWER, f"{path.name} imports {name}"


def test_only_the_grpcio_module_imports_grpcio() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        uses = [n for n in _imports(path) if n == "grpc" or n.startswith("grpc.")]
        assert not uses or path.name == "grpcio.py", f"{path.name} imports {uses}"
