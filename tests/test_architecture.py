"""The package's import graph: no circles, and imports run one way between layers.

Every ``import`` counts, including those inside functions (a lazy import is still a
dependency: it only moves the failure to run time).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nlp_seg"

#: Layers from the top (entry points) down; a module may import its own layer or lower ones.
LAYERS = {
    "cli": 0,
    "__main__": 0,
    "runs": 1,
    "service": 1,
    "segmenter": 2,
    "stages": 3,
    "behavior": 3,
    "models": 4,
    "io": 4,
    "errors": 5,
    "paths": 5,
    "progress": 5,
    "version": 5,
    "normalize": 5,
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for t in targets:
                if t in modules and t != name:
                    graph[name].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return stack[stack.index(d) :] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_graph_is_read():
    graph = import_graph()
    assert "nlp_seg.segmenter" in graph
    assert "nlp_seg.stages.fusion" in graph["nlp_seg.segmenter"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]


def test_imports_run_one_way():
    upward = []
    for mod, deps in import_graph().items():
        lm = layer(mod)
        for d in deps:
            ld = layer(d)
            if lm is not None and ld is not None and ld < lm:
                upward.append(f"{mod} -> {d}")
    assert not upward, "imports against the layering: " + "; ".join(sorted(upward))


def test_no_pickle_loads_in_the_package():
    """Nothing nlpseg saves or loads goes through pickle (a stranger's file could run code)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] in {"pickle", "joblib", "dill", "cloudpickle"} for n in names):
                offenders.append(str(path.relative_to(PACKAGE.parent)))
            if (
                isinstance(node, ast.keyword)
                and node.arg == "allow_pickle"
                and not (isinstance(node.value, ast.Constant) and node.value.value is False)
            ):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}: allow_pickle")
    assert not offenders, offenders


def test_no_module_imports_another_modules_private_names():
    """A module's ``_name`` is its own: other modules use the public API (so the layering can
    be read off the imports)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nlp_seg"):
                private = [
                    a.name for a in node.names if a.name.startswith("_") and a.name[:2] != "__"
                ]
                if private:
                    offenders.append(f"{path.relative_to(PACKAGE.parent)}: {private}")
    assert not offenders, offenders
