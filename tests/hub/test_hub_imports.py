"""No module of legato.hub imports, directly or through others, a module that imports
it (issue 17): every import counts, the ones under ``if TYPE_CHECKING:`` and inside
functions too. The whole package's graph is tests/examples/test_imports_run_one_way.py's;
this one names the hub's modules so that a cycle here fails here."""

from __future__ import annotations

import ast
from pathlib import Path

HUB = Path(__file__).parents[2] / "src" / "legato" / "hub"


def hub_imports() -> dict[str, set[str]]:
    """module of legato.hub → the modules of legato.hub it imports."""
    names = {p.stem: p for p in HUB.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module is None:  # from . import x: the package, or a module
                    found |= {a.name if a.name in names else "__init__"
                              for a in node.names}
                else:
                    found.add(node.module.split(".")[0])
            elif isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.startswith("legato.hub"):
                rest = node.module.split(".")[2:]
                found.add(rest[0] if rest else "__init__")
        graph[name] = found - {name}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        for nxt in sorted(graph.get(node, ())):
            found = visit(nxt, path + [node])
            if found:
                return found
        return None

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return None


def test_no_hub_module_imports_a_module_that_imports_it() -> None:
    graph = hub_imports()
    assert {"__init__", "outbox", "settings", "backend", "pipeline", "resp", "redis"} <= set(graph)
    assert cycle(graph) is None, " → ".join(cycle(graph) or [])


def test_the_outbox_types_its_hub_as_a_protocol_not_by_importing_the_package() -> None:
    assert "__init__" not in hub_imports()["outbox"]
