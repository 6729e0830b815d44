"""The pack's import graph has no cycle: every module's imports, at module
level or inside functions (TYPE_CHECKING blocks aside), read from the source
with ``ast``, with the package ``__init__`` each import runs on the way. The
layout and the direction of the imports are in docs/architecture.md.

    python -m pytest -q tests/test_layout.py
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACK = "pack"  # the repository root as ComfyUI imports it, under any folder name


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACK, *parts])


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement outside ``if TYPE_CHECKING:`` blocks."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(folders: list[str]) -> dict[str, set[str]]:
    """module -> the pack's modules importing it runs (its own ancestors aside,
    which are already running when it is imported)."""
    files = {module_name(p): p for folder in folders for p in (ROOT / folder).rglob("*.py")}
    files[PACK] = ROOT / "__init__.py"
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if is_package(path) else name.rpartition(".")[0]
        own_ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        for node in runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif node.level == 0:
                targets = [node.module or ""]
            else:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
                # "from . import x" / "from .a import b": the submodule when there is one
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in files else stem for a in node.names]
            for target in targets:
                parts = target.split(".")
                for i in range(1, len(parts) + 1):  # the target and every package __init__ on its way
                    step = ".".join(parts[:i])
                    if step in files and step not in own_ancestors and step != name:
                        graph[name].add(step)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def test_the_pack_has_no_import_cycle():
    graph = import_graph(["focus_engine", "nodes"])
    assert len(graph) > 30 and graph[f"{PACK}.focus_engine.mllm.base"]  # the walk saw the package
    assert find_cycles(graph) == []


def test_the_walk_finds_a_cycle_through_a_function_level_import():
    """The checker itself: the cycle this project once had (relevance needed the
    adapter's cache reader, the adapter imported relevance inside a method)."""
    graph = {
        "p.relevance": {"p.mllm.base"},
        "p.mllm.base": set(),
        "p.pipeline": {"p.relevance"},
    }
    assert find_cycles(graph) == []
    graph["p.mllm.base"].add("p.relevance")
    assert find_cycles(graph) == [["p.mllm.base", "p.relevance"]]
    tree = ast.parse("def f():\n    from .relevance import x\nif TYPE_CHECKING:\n    from .pipeline import y\n")
    assert [n.module for n in runtime_imports(tree)] == ["relevance"]


def test_stage_modules_never_name_a_family():
    """The stages reach a model only through the adapter interface."""
    stages = ["targets", "relevance", "rois", "ranking", "answer", "methods/focus", "config", "kv", "boxes"]
    from focus_engine.mllm.loader import FAMILY_ADAPTERS

    families = {word for name in FAMILY_ADAPTERS for word in (name, *name.split("_"))} - {"vl", "5"}
    assert {"llava", "onevision", "qwen2", "qwen3"} <= families
    for stage in stages:
        text = (ROOT / "focus_engine" / f"{stage}.py").read_text().lower()
        code = "\n".join(line for line in text.splitlines() if not line.strip().startswith("#"))
        tree = ast.parse((ROOT / "focus_engine" / f"{stage}.py").read_text())
        imported = {a.name for n in runtime_imports(tree) for a in n.names} | {
            n.module or "" for n in runtime_imports(tree) if isinstance(n, ast.ImportFrom)}
        assert not any("mllm" in name for name in imported), (stage, imported)
        assert "family ==" not in code and 'family in (' not in code, stage
        assert not any(f'"{f}' in code for f in families), stage


def test_every_way_of_answering_lives_in_methods():
    """A ``Method`` subclass is defined in ``focus_engine/methods/`` and
    nowhere else, so a new method's author knows where their file goes."""
    found = {}
    for path in (ROOT / "focus_engine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(ast.unparse(b).endswith("Method") for b in node.bases):
                found[node.name] = path.relative_to(ROOT).parent.as_posix()
    assert {"Vanilla", "FocusPipeline", "ZoomEye"} <= set(found)
    assert set(found.values()) == {"focus_engine/methods"}, found


def test_nothing_below_the_methods_imports_them():
    """The methods stand on the stages, adapters and facts; of the engine only
    the layer around them (the bench, the command line, the demo, pictures,
    the package's face) imports ``methods``: no arrow points up from it."""
    graph = import_graph(["focus_engine"])
    around = ("focus_engine.bench", "focus_engine.cli", "focus_engine.demo", "focus_engine.render",
              "focus_engine.testing", "focus_engine.methods")
    methods = f"{PACK}.focus_engine.methods"
    below = {name: sorted(t for t in targets if t.startswith(methods))
             for name, targets in graph.items()
             if name.startswith(f"{PACK}.focus_engine.") and not name.startswith(
                 tuple(f"{PACK}.{a}" for a in around))}
    assert {name: t for name, t in below.items() if t} == {}
