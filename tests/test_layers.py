"""The house rule: data flows one way, and so do imports.

A module imports only from its own package or a lower layer, and no imports close a cycle, lazy
ones included (an import inside a function is still an edge; only ``if TYPE_CHECKING:`` is not).
Read from the source with ``ast``, so the test needs no import-linter and sees every import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "highlight_logging"

#: Layers, lowest first.  A module's layer is that of its longest matching prefix.
LAYERS: dict[str, int] = {
    "highlight_logging._version": 0,  # a constant, read by every layer
    "highlight_logging._speedups": 0,  # the C twin of _core's rules
    "highlight_logging._core": 0,
    "highlight_logging._transport": 1,
    "highlight_logging._export": 2,
    "highlight_logging._providers": 3,
    "highlight_logging._frontends": 4,
    "highlight_logging._devtools": 5,
    "highlight_logging.testing": 5,
    "highlight_logging.__main__": 5,
    "highlight_logging": 5,
}
#: What the public face may import from beside the layers.
DEVTOOLS = "highlight_logging._devtools"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> tuple[str, int]:
    best = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len)
    return best, LAYERS[best]


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                skip.update(id(n) for n in ast.walk(inner))
    return skip


def imports(module: str) -> set[str]:
    """The package's modules ``module`` imports, at module level or inside a function."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_nodes(tree)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[: len(here) - node.level + 1]
                base = ".".join([*here, base] if base else here)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in MODULES and target != module:
                found.add(target)
    return found


GRAPH = {m: imports(m) for m in MODULES}


def test_the_layers_exist() -> None:
    for prefix in ("_core", "_transport", "_export", "_frontends", "_devtools"):
        assert f"highlight_logging.{prefix}" in MODULES, prefix


def upward(module: str, targets: set[str]) -> list[str]:
    """The imports of ``module`` among ``targets`` that run up a layer."""
    own, rank = layer(module)
    found = []
    for target in sorted(targets):
        their, their_rank = layer(target)
        if their == own or their_rank < rank:
            continue
        if their_rank == rank == 5 and their == DEVTOOLS:
            continue  # the public face (testing, the CLI entry) uses the receiver
        found.append(f"{target} (layer {their_rank})")
    return found


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_down_or_sideways(module: str) -> None:
    assert not upward(module, GRAPH[module]), f"{module} (layer {layer(module)[1]}) imports up"


def test_nothing_below_imports_devtools() -> None:
    for module, targets in GRAPH.items():
        if layer(module)[1] < 5:
            assert not [t for t in targets if t.startswith(DEVTOOLS)], module


def named_modules(module: str) -> set[str]:
    """The package's modules ``module`` names in a string (``importlib.import_module("...")``,
    ``sys.modules.get("...")``): an import all the same, which the ``ast`` walk above misses."""
    path = MODULES[module]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            target = node.value
            while target and target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            # The bare package name is a logger's or a thread's name as often as a module's.
            if target in MODULES and target not in (module, "highlight_logging"):
                found.add(target)
    return found


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_named_in_a_string_runs_up_a_layer(module: str) -> None:
    assert not upward(module, named_modules(module)), f"{module} (layer {layer(module)[1]}) looks up"


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components: each must be a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_the_checker_catches_what_it_should() -> None:
    core, front = "highlight_logging._core.record", "highlight_logging._frontends.handler"
    assert upward(core, {front}) == [f"{front} (layer 4)"]
    assert upward(front, {core, "highlight_logging._frontends.binding"}) == []
    assert upward("highlight_logging._export.pipeline", {"highlight_logging._devtools.receiver"})
