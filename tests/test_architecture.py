"""The layers of docs/architecture.md hold in the code: no import cycle, no import up the table.

The import graph is built from the source with `ast`: every `import` statement, at module level
or inside a function, and every lazy registry reference (`.add("name", "package.module:attr")`).
Imports under `if TYPE_CHECKING:` never run and are left out. The layer table is read from
docs/architecture.md itself, so the document and the code cannot drift apart.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("prunectl", "gates", "exporters")
ARCHITECTURE = ROOT / "docs" / "architecture.md"
REFERENCE = re.compile(r"^([A-Za-z_][\w.]*):[A-Za-z_]\w*$")
CLI = ("prunectl.commands", "prunectl.cli")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    how: str  # "import" at module level, "import in a function", or "registry reference"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str, source: str, known: set[str], is_package: bool = False) -> list[Edge]:
    """The internal modules `name` imports (see the module docstring for what counts)."""
    edges: list[Edge] = []

    def resolve(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child, in_function)
            return
        how = "import in a function" if in_function else "import"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (target := resolve(alias.name)) is not None:
                    edges.append(Edge(name, target, node.lineno, how))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}".strip(".")
            for alias in node.names:
                target = resolve(f"{base}.{alias.name}") if f"{base}.{alias.name}" in known else resolve(base)
                if target is not None:
                    edges.append(Edge(name, target, node.lineno, how))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add":
            for argument in node.args:
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str) and (match := REFERENCE.match(argument.value)):
                    if (target := resolve(match.group(1))) is not None:
                        edges.append(Edge(name, target, node.lineno, "registry reference"))
        function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, in_function or function)

    visit(ast.parse(source), False)
    return [edge for edge in edges if edge.target != name]


def import_graph() -> list[Edge]:
    modules = package_modules()
    known = set(modules)
    return [edge for name, path in modules.items() for edge in imports_of(name, path.read_text(), known, path.name == "__init__.py")]


def documented_layers(text: str) -> list[tuple[str, list[str]]]:
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md has no ```layers block"
    return [(line.split()[0], line.split()[1:]) for line in block.group(1).splitlines() if line.strip()]


def layer_of(module: str, layers: list[tuple[str, list[str]]]) -> int | None:
    """The index of the layer whose most specific pattern matches `module`."""
    best: tuple[int, int] | None = None  # (specificity, layer)
    for index, (_, patterns) in enumerate(layers):
        for pattern in patterns:
            if pattern == module:
                specificity = 2 * len(pattern) + 1
            elif pattern.endswith(".*") and module.startswith(pattern[:-1]):
                specificity = 2 * len(pattern)
            else:
                continue
            if best is None or specificity > best[0]:
                best = (specificity, index)
    return None if best is None else best[1]


def upward_imports(edges: list[Edge], layers: list[tuple[str, list[str]]]) -> list[str]:
    problems = []
    for edge in edges:
        source, target = layer_of(edge.source, layers), layer_of(edge.target, layers)
        if source is not None and target is not None and target > source:
            problems.append(
                f"{edge.source} (layer {layers[source][0]}) imports {edge.target} (layer {layers[target][0]}) "
                f"on line {edge.line} ({edge.how})"
            )
    return problems


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def connect(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                connect(successor)
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
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


@pytest.fixture(scope="module")
def graph() -> list[Edge]:
    return import_graph()


@pytest.fixture(scope="module")
def layers() -> list[tuple[str, list[str]]]:
    return documented_layers(ARCHITECTURE.read_text())


# -- the code ------------------------------------------------------------------------------------


def test_the_package_import_graph_has_no_cycle(graph):
    assert cycles(graph) == []


def test_no_import_points_up_the_documented_layer_order(graph, layers):
    assert upward_imports(graph, layers) == []


def test_every_module_has_a_documented_layer(layers):
    unplaced = [name for name in package_modules() if layer_of(name, layers) is None]
    assert unplaced == [], "add these modules to the layer table in docs/architecture.md"


def test_gates_and_exporters_never_import_prunectl_and_exporters_imports_neither(graph):
    wrong = [e for e in graph if e.source.split(".")[0] in ("gates", "exporters") and e.target.split(".")[0] == "prunectl"]
    wrong += [e for e in graph if e.source.split(".")[0] == "exporters" and e.target.split(".")[0] == "gates"]
    assert wrong == []


def test_only_the_cli_imports_the_facade(graph):
    importers = {e.source for e in graph if e.target == "prunectl.api"}
    assert importers, "the CLI imports prunectl.api"
    assert {name for name in importers if not name.startswith(CLI)} == set()


# -- the checker itself: it cannot pass by looking away -------------------------------------------

LAYERS = [("low", ["pkg.low"]), ("high", ["pkg.high", "pkg.sub.*"])]
KNOWN = {"pkg", "pkg.low", "pkg.high", "pkg.sub", "pkg.sub.impl"}


@pytest.mark.parametrize(
    ("source", "how"),
    [
        ("import pkg.high\n", "import"),
        ("def f():\n    from pkg import high\n", "import in a function"),
        ("class C:\n    def m(self):\n        import pkg.sub.impl as impl\n", "import in a function"),
        ("REGISTRY.add('name', 'pkg.sub.impl:Thing')\n", "registry reference"),
        ("from .high import X\n", "import"),
    ],
    ids=["module level", "inside a function", "inside a method", "a lazy registry entry", "a relative import"],
)
def test_the_checker_finds_an_upward_import_wherever_it_is_written(source, how):
    edges = imports_of("pkg.low", source, KNOWN)
    assert [e.how for e in edges] == [how]
    assert len(upward_imports(edges, LAYERS)) == 1


def test_the_checker_leaves_out_type_only_imports_and_finds_cycles():
    typing_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.high import X\n"
    assert imports_of("pkg.low", typing_only, KNOWN) == []
    edges = imports_of("pkg.low", "import pkg.high\n", KNOWN) + imports_of("pkg.high", "def f():\n    import pkg.low\n", KNOWN)
    assert cycles(edges) == [["pkg.high", "pkg.low"]]


# -- entry modules import on their own --------------------------------------------------------------

ENTRY_MODULES = ["prunectl.api", "prunectl.cli", *(f"prunectl.stages.{p.stem}" for p in sorted((ROOT / "prunectl" / "stages").glob("[a-z]*.py")))]


def test_each_entry_module_imports_in_a_fresh_interpreter():
    """A cycle held together by import order breaks only when a module is imported first; so each
    entry module (the facade, each stage, the CLI) is imported first, in its own interpreter."""
    running = {name: subprocess.Popen([sys.executable, "-c", f"import {name}"], stderr=subprocess.PIPE, text=True) for name in ENTRY_MODULES}
    failures = {}
    for name, process in running.items():
        _, stderr = process.communicate(timeout=300)
        if process.returncode != 0:
            failures[name] = stderr.strip().splitlines()[-1]
    assert len(ENTRY_MODULES) >= 8
    assert failures == {}
