"""The package's shape (issue #14): one package per pipeline stage, each importing only from the stages
below it, no import circle (lazy imports inside functions count too), and no module over 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lakegen"

# Lowest first. A module may import from its own part and from parts of a lower rank only.
LAYERS: list[tuple[str, ...]] = [
    ("version", "errors", "atomicfile", "terminal", "gitrepo", "safeyaml", "fastjson"),
    ("model",),
    ("artifacts", "executor"),
    ("weights",),
    ("catalog",),
    ("fingerprint",),
    ("attribution",),
    ("lineage", "bench"),
    ("governance",),
    ("compile",),
    ("check", "search", "api", "scaffold", "importhf"),
    ("exports", "site"),
    ("cli", "__main__"),
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the lakegen modules it imports anywhere in its body (also under TYPE_CHECKING)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
                found |= set(subs) if len(subs) == len(node.names) else {base, *subs}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _part(module: str) -> str:
    return module.split(".")[1] if "." in module else "lakegen"


def test_no_module_imports_from_a_stage_above_it() -> None:
    modules = _modules()
    wrong = []
    for module, imported in _imports(modules).items():
        if module == "lakegen":
            continue  # the public API: every name is imported lazily, on first use
        assert _part(module) in RANK, f"{module}: its part is in no layer of LAYERS"
        for other in imported:
            if other == "lakegen" or _part(other) == _part(module):
                continue
            if RANK[_part(other)] > RANK[_part(module)]:
                wrong.append(f"{module} imports {other}")
    assert not wrong, "\n".join(sorted(wrong))


def test_there_is_no_import_circle() -> None:
    graph = _imports(_modules())
    graph.pop("lakegen")  # the lazy public API
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                circles.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, circles


def test_no_module_is_over_500_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert not long, long
