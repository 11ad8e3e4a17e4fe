"""The package's imports obey the dependency rules of docs/design.md ("Layers").

Every `import` statement of jointvae_fast/ is read with ast (module level, inside functions and under
TYPE_CHECKING alike) and checked:
- each part (the first name below jointvae_fast: a module or a sub-package) imports only parts of a lower
  layer, never one of its own layer or above: data flows one way;
- no import circle between modules, inside a part or across parts;
- no import of the package inside a function (the only lazy loads are the two documented module
  __getattr__ hooks, which use importlib);
- nothing in the package imports `reference` (the NumPy oracle is for tests and benchmarks).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "jointvae_fast"

# Layer of each part, lowest first (docs/design.md, "Layers"). A part may import parts of lower layers only.
LAYERS = [
    {"errors", "progress"},
    {"atomic_write", "devices"},
    {"ops", "data"},
    {"layers"},
    {"model", "total_correlation"},
    {"objective", "paper_checkpoints", "grids", "store"},
    {"training", "pretrained"},
    {"analysis"},
    {"explore", "pack", "train", "evaluate", "doctor", "export"},
]
RANK = {part: i for i, layer in enumerate(LAYERS) for part in layer}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import of the package in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, inner) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                found.extend((f"{target}.{a.name}", child.lineno, inner) for a in child.names)
            visit(child, inner)

    visit(tree, False)
    return [(m, line, inner) for m, line, inner in found
            if m == "jointvae_fast" or m.startswith("jointvae_fast.") or m == "reference" or m.startswith("reference.")]


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}
EDGES = {name: _imports(path) for name, path in MODULES.items()}


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _resolve(module: str) -> str:
    """The package module an import names (an imported function's module, a sub-module itself)."""
    while module not in MODULES and "." in module:
        module = module.rpartition(".")[0]
    return module


def test_every_part_has_a_layer():
    parts = {_part(m) for m in MODULES} - {None}
    assert parts <= set(RANK), f"parts without a layer in this test and docs/design.md: {sorted(parts - set(RANK))}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    src = _part(module)
    bad = []
    for target, line, _ in EDGES[module]:
        if target.split(".")[0] == "reference":
            bad.append(f"line {line}: imports the NumPy oracle {target}")
            continue
        dst = _part(_resolve(target))
        if src is None or dst is None or dst == src:
            continue  # the root's lazy exports; imports inside one part
        if RANK[dst] >= RANK[src]:
            bad.append(f"line {line}: {src} (layer {RANK[src]}) imports {target} (layer {RANK[dst]})")
    assert not bad, f"{module}: " + "; ".join(bad)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_inside_a_function(module):
    inner = [f"line {line}: {target}" for target, line, inside in EDGES[module] if inside]
    assert not inner, f"{module} imports the package inside a function: " + "; ".join(inner)


def test_no_import_circle():
    graph = {m: {_resolve(t) for t, _, _ in EDGES[m] if _resolve(t) in MODULES and _resolve(t) != m} for m in MODULES}
    # a package's __init__ importing its own sub-modules is how packages re-export; leave those edges out
    graph = {m: {t for t in ts if not (MODULES[m].name == "__init__.py" and t.startswith(m + "."))}
             for m, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if t not in state:
                walk(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m)


def test_the_rules_catch_a_violation(tmp_path):
    """The checker itself: an upward import and a function-level import are found in a planted module."""
    planted = PKG / "ops" / "_planted_for_test.py"
    planted.write_text("from ..training import loop\n\ndef f():\n    from .. import model\n")
    try:
        edges = _imports(planted)
    finally:
        planted.unlink()
    assert ("jointvae_fast.training.loop", 1, False) in edges
    assert ("jointvae_fast.model", 4, True) in edges
    assert RANK["training"] > RANK["ops"]


def test_importing_the_entry_points_loads_no_compiled_op():
    """The compiled library loads on the first op use (ops/__init__.py's __getattr__), not when a module that
    uses the ops is imported: importing every CLI and the model layers leaves jointvae_fast.ops.fused unloaded."""
    import subprocess
    import sys

    code = ("import sys, jointvae_fast.train, jointvae_fast.evaluate, jointvae_fast.explore, jointvae_fast.pack, "
            "jointvae_fast.model, jointvae_fast.objective, jointvae_fast.grids.traversal\n"
            "print(sorted(m for m in sys.modules if m.startswith('jointvae_fast.ops')))")
    r = subprocess.run([sys.executable, "-c", code], cwd=PKG.parent, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "jointvae_fast.ops.fused" not in r.stdout and "jointvae_fast.ops.extension" not in r.stdout, r.stdout
