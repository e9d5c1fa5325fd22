"""legato's imports run one way (issue 17): no module imports, directly or through
others, a module that imports it, and every import goes to the module's own layer or a
lower one, as docs/design.md ("Imports run one way") lays the layers out.

Every import counts: at the top of a module, inside a function (imported on first use)
and under ``if TYPE_CHECKING:`` alike, since each is a dependency a reader follows. An
import of ``pkg.name`` depends on the module ``pkg.name`` when there is one (a compiled
extension too), else on ``pkg``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
SRC = ROOT / "src"
DESIGN = ROOT / "docs" / "design.md"


def _modules(src: Path, package: str) -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for path in (src / package).rglob("*"):
        if path.suffix not in (".py", ".c") or "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def import_graph(src: Path = SRC, package: str = "legato") -> dict[str, set[str]]:
    """module → the modules of ``package`` it imports (only .py modules import)."""
    modules = _modules(src, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        if path.suffix != ".py":
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, *([node.module] if node.module else [])])
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def documented_layers() -> list[tuple[str, list[str]]]:
    """(layer name, module patterns) from docs/design.md, lowest first."""
    section = DESIGN.read_text().split("## Imports run one way", 1)[1].split("\n## ", 1)[0]
    layers = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].isdigit():
            layers.append((cells[1], re.findall(r"`([\w.*]+)`", cells[2])))
    return layers


def layer_of(module: str, layers: list[tuple[str, list[str]]]) -> int | None:
    for number, (_, patterns) in enumerate(layers):
        for pattern in patterns:
            if module == pattern.removesuffix(".*") or (
                    pattern.endswith(".*") and module.startswith(pattern[:-1])):
                return number
    return None


def test_no_module_imports_a_module_that_imports_it_directly_or_through_others() -> None:
    found = cycles(import_graph())
    assert not found, "imports in a circle (docs/design.md says which way they run):\n" + \
        "\n".join(" ↔ ".join(c) for c in found)


def test_every_module_has_a_layer_in_docs_design() -> None:
    layers = documented_layers()
    assert len(layers) >= 5, "the layer table of docs/design.md was not found"
    missing = sorted(m for m in import_graph() if layer_of(m, layers) is None)
    assert not missing, f"give these modules a layer in docs/design.md: {missing}"


def test_every_import_goes_to_the_modules_own_layer_or_a_lower_one() -> None:
    layers = documented_layers()
    upward = []
    for module, imported in sorted(import_graph().items()):
        mine = layer_of(module, layers)
        for other in sorted(imported):
            theirs = layer_of(other, layers)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{module} ({layers[mine][0]}) imports {other} "
                              f"({layers[theirs][0]})")
    assert not upward, "imports up a layer:\n" + "\n".join(upward)


def test_the_checker_sees_circles_through_functions_and_type_checking(
        tmp_path: Path) -> None:
    """The checks above are only as good as the graph: a circle closed by an import in
    a function (made on first use) or under TYPE_CHECKING is still a circle."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .low import thing\n")
    (package / "sub" / "low.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..top import Top\n"
        "thing = 1\n")
    (package / "top.py").write_text("def f():\n    from .sub import low\n"
                                    "class Top: ...\n")
    (package / "_fast.c").write_text("/* a compiled module */\n")
    (package / "uses_fast.py").write_text("from . import _fast\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.top"] == {"pkg.sub.low"}
    assert graph["pkg.sub.low"] == {"pkg.top"}
    assert graph["pkg.sub"] == {"pkg.sub.low"}
    assert graph["pkg.uses_fast"] == {"pkg._fast"}  # not the package: no false circle
    assert cycles(graph) == [["pkg.sub.low", "pkg.top"]]
