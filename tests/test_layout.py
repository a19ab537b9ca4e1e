"""The layout's walls (README "Layout"): checked on the source, so a leaking import fails CI.

- `demands/kafka.py` is a leaf: it imports nothing of the project.
- No import cycle among the project's modules, lazy (in-function) imports included: a cycle is
  what lazy imports are used to hide.
- Monitoring never imports the pages (`views`), and nothing but views, urls and routing imports a view.
- No module (migrations aside) grows past ~400 lines.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "demands"
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Project modules `name` imports anywhere in its body (resolved to the longest known module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets.add(module)
            targets.update(f"{module}.{alias.name}" for alias in node.names)
    resolved = set()
    for target in targets:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, result, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for successor in GRAPH.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return result


def test_the_kafka_module_imports_nothing_of_the_project():
    assert GRAPH["demands.kafka"] == set()


def test_no_import_cycle_between_the_projects_modules():
    # Packages importing their own __init__ (an empty marker) are not cycles.
    cycles = [c for c in _cycles() if not all(m.startswith(c[0]) for m in c)]
    assert cycles == []


def test_monitoring_never_imports_the_pages():
    offenders = {name: sorted(t for t in targets if t.endswith(".views") or t == "demands.views")
                 for name, targets in GRAPH.items() if name.startswith("demands.monitoring")}
    assert {name: views for name, views in offenders.items() if views and not name.endswith((".urls", ".views"))} == {}


def test_only_urls_and_routing_import_views():
    allowed = ("urls", "routing", "views")
    importers = {name for name, targets in GRAPH.items()
                 if any(t.endswith(".views") or t == "demands.views" for t in targets)
                 and not name.rpartition(".")[2] in allowed}
    assert importers == set()


def test_no_module_is_over_four_hundred_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}
