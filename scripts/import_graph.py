"""The import graph of Phoenix's four apps, and the one-way rule between them.

Walks every module of ``phoenix``, ``models_registry``, ``inference`` and ``monitoring``
with ``ast`` (function-level imports included, since a cycle through a function is still
a cycle), then reports:

- cycles between modules (strongly connected components of more than one module),
- imports that break the allowed direction between the apps
  (monitoring -> inference -> models_registry -> phoenix's shared pieces; only phoenix's
  composition files may import every app),
- imports of the bundled demo (``phoenix.demo``) from outside it.

``python -m scripts.import_graph`` prints both and exits 1 when either is non-empty;
``make lint`` runs it and ``tests/unit/test_import_boundaries.py`` asserts the same.
docs/ARCHITECTURE.md explains the layers.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("phoenix", "models_registry", "inference", "monitoring")
# Lower number = lower layer; an app may import only its own layer or lower ones.
LAYER = {"phoenix": 0, "models_registry": 1, "inference": 2, "monitoring": 3}
# phoenix's composition files wire every app together (URLs, ASGI routing, Celery, settings,
# the process launcher and the operator commands that bootstrap the whole stack).
COMPOSITION = (
    "phoenix.asgi",
    "phoenix.urls",
    "phoenix.wsgi",
    "phoenix.celery",
    "phoenix.settings",
    "phoenix.management",
    "phoenix.demo",
)


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover(root: Path = ROOT) -> dict[str, Path]:
    """Every project module (migrations excluded), by dotted name."""
    modules: dict[str, Path] = {}
    for app in APPS:
        for path in sorted((root / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            modules[_module_name(path)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest project module that ``name`` names (``a.b.c`` -> ``a.b`` if c is an attr)."""
    while name:
        if name in modules:
            return name
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return None


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterable[tuple[str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                drop = node.level - (1 if is_package else 0)
                base = base[: len(base) - drop] if drop else base
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                yield f"{prefix}.{alias.name}", node.lineno
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value, node.lineno


def edges(modules: dict[str, Path] | None = None) -> list[Edge]:
    """Every import from one project module to another (self-imports dropped)."""
    modules = modules if modules is not None else discover()
    found: set[Edge] = set()
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        for imported, line in _imported_names(tree, name, is_package):
            target = _resolve(imported, modules)
            if target is not None and target != name:
                found.add(Edge(name, target, line))
    return sorted(found, key=lambda e: (e.importer, e.imported, e.line))


def cycles(graph_edges: Iterable[Edge]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), sorted."""
    graph: dict[str, set[str]] = {}
    for e in graph_edges:
        graph.setdefault(e.importer, set()).add(e.imported)
        graph.setdefault(e.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(result)


def _app(module: str) -> str:
    return module.split(".", 1)[0]


def _is_composition(module: str) -> bool:
    return any(module == c or module.startswith(c + ".") for c in COMPOSITION)


def backwards(graph_edges: Iterable[Edge]) -> list[Edge]:
    """Imports from a lower app into a higher one (composition files excepted)."""
    bad = []
    for e in graph_edges:
        if _is_composition(e.importer):
            continue
        if LAYER[_app(e.imported)] > LAYER[_app(e.importer)]:
            bad.append(e)
    return bad


DEMO = "phoenix.demo"


def demo_imports(graph_edges: Iterable[Edge]) -> list[Edge]:
    """Imports of the bundled demo from outside it: the product must run without it."""
    return [
        e
        for e in graph_edges
        if (e.imported == DEMO or e.imported.startswith(DEMO + "."))
        and not (e.importer == DEMO or e.importer.startswith(DEMO + "."))
    ]


def app_cycles(graph_edges: Iterable[Edge]) -> list[list[str]]:
    """Cycles in the graph of apps (composition files left out, as they compose everything)."""
    collapsed = {
        Edge(_app(e.importer), _app(e.imported), 0)
        for e in graph_edges
        if not _is_composition(e.importer) and _app(e.importer) != _app(e.imported)
    }
    return cycles(collapsed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="also list every cross-app import")
    args = parser.parse_args(argv)
    graph_edges = edges()
    module_cycles = cycles(graph_edges)
    apps = app_cycles(graph_edges)
    bad = backwards(graph_edges)
    demo = demo_imports(graph_edges)
    if args.edges:
        for e in graph_edges:
            if _app(e.importer) != _app(e.imported):
                print(f"edge {e.importer} -> {e.imported} (line {e.line})")
    for component in apps:
        print("app cycle: " + " <-> ".join(component))
    for component in module_cycles:
        print("module cycle: " + " <-> ".join(component))
    for e in bad:
        print(f"backwards import: {e.importer} -> {e.imported} (line {e.line})")
    for e in demo:
        print(f"demo import: {e.importer} -> {e.imported} (line {e.line})")
    if module_cycles or apps or bad or demo:
        return 1
    print(
        f"import graph: {len(graph_edges)} imports, no cycle, no backwards import, "
        "no import of the demo from outside it"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
