"""The rooms of the house and the doors between them, checked from the code's own imports.

    protocol     imports none of ours         (the contract both sides share)
    drivers      imports none of ours         (could be published on its own)
    biometrics   protocol only
    gate_agent   drivers, biometrics, protocol (a gate box has no central)
    central      biometrics, protocol          (gates are reached over MQTT only)
    demo         anything; nothing imports demo

and inside every package, no import cycles (a module that needs another's name at run time imports
it, and the two never need each other). Imports inside functions count too: they are how cycles hide.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("protocol", "drivers", "biometrics", "gate_agent", "central", "demo")
ALLOWED = {
    "protocol": set(),
    "drivers": set(),
    "biometrics": {"protocol"},
    "gate_agent": {"drivers", "biometrics", "protocol"},
    "central": {"biometrics", "protocol"},
    "demo": {"central", "gate_agent", "drivers", "biometrics", "protocol"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """Each module of ours and the modules of ours it imports (resolved to modules, not names)."""
    modules = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # `from x import y`: y may be a module of x
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target.split(".")[0] in PACKAGES:
                    graph[name].add(target)
    for name in modules:
        graph.setdefault(name, set())
    return graph


def test_each_package_imports_only_the_packages_it_may():
    wrong = []
    for module, targets in _imports().items():
        home = module.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if other != home and other not in ALLOWED[home]:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_no_package_has_an_import_cycle():
    graph = _imports()
    # Tarjan's strongly connected components, within each package (a package's __init__ re-exporting
    # its own modules is the one edge from a package to its children that is not a cycle by itself).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def edges(module: str) -> set[str]:
        return {t for t in graph[module] if t.split(".")[0] == module.split(".")[0]}

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges(v):
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

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert cycles == [], "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_gate_agents_collaborators_do_not_import_the_agent():
    graph = _imports()
    users = sorted(m for m, targets in graph.items() if "gate_agent.agent" in targets)
    assert users == ["gate_agent.cli"]  # the program's entry point starts it; nothing it is made of needs it
