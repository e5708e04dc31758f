"""The simulator's modules import one another without a cycle.

A cycle works only while every import in it but one waits inside a function,
and breaks when someone moves one to the top of its module. The graph is read
from the source with `ast`, so it holds every import statement wherever it is:
at module level, inside a function, or under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import simulator

PACKAGE = Path(simulator.__file__).parent


def import_graph(folder: Path, package: str = "simulator") -> dict[str, set[str]]:
    """Module -> the modules of the same folder it imports (``__init__`` for the package).

    Only the folder's own ``*.py`` count: an import of a subpackage, or of a
    name that is no module of the folder, leads out of the graph.
    """
    modules = {path.stem for path in folder.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in sorted(folder.glob("*.py")):
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    edges.add(_local(alias.name, package))
            elif isinstance(node, ast.ImportFrom):
                if node.level > 1:
                    continue  # above the folder
                if node.level == 1:
                    base = f"{package}.{node.module}" if node.module else package
                else:
                    base = node.module or ""
                if base == package:  # ``from . import patterns``: modules, or names of __init__
                    edges.update(a.name if a.name in modules else "__init__" for a in node.names)
                else:
                    edges.add(_local(base, package))
        graph[path.stem] = {edge for edge in edges if edge in modules and edge != path.stem}
    return graph


def _local(dotted: str, package: str) -> str:
    """The folder's module that ``dotted`` names: ``simulator.faults`` -> ``faults``."""
    if dotted == package:
        return "__init__"
    head, _, rest = dotted.partition(".")
    if head != package or "." in rest:
        return ""  # another package, or a subpackage's module
    return rest


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as its modules in order, first one repeated at the end; or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            cycle = visit(imported)
            if cycle:
                return cycle
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module)
        if cycle:
            return cycle
    return None


def test_the_simulator_imports_without_a_cycle() -> None:
    graph = import_graph(PACKAGE)
    assert {"config", "faults", "physics", "firmware", "host"} <= graph.keys()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_fault_catalogue_imports_nothing_of_the_simulator() -> None:
    # The config validates fault names and the plant schedules faults: both build on it.
    assert import_graph(PACKAGE)["faults"] == set()


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text("from typing import TYPE_CHECKING\n")
    (tmp_path / "a.py").write_text("from . import b\nimport os\n")
    (tmp_path / "b.py").write_text("def late():\n    from .c import thing\n")
    (tmp_path / "c.py").write_text("import simulator.a\nfrom .sub.x import y\n")
    (tmp_path / "d.py").write_text("from simulator import a\nfrom .. import elsewhere\n")
    graph = import_graph(tmp_path)
    assert graph == {"__init__": set(), "a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]


def test_a_graph_without_a_cycle_has_none() -> None:
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set(), "d": {"a"}}) is None


def test_the_config_reaches_the_broken_rules_by_a_leaf_not_by_the_broken_firmware() -> None:
    # The config checks ``broken=`` names; the broken firmware imports the config.
    folder = PACKAGE / "conformance"
    graph = import_graph(folder, "simulator.conformance")
    assert graph["rules"] == set()
    rules = ast.parse((folder / "rules.py").read_text(encoding="utf-8"))
    assert not [n for n in ast.walk(rules) if isinstance(n, ast.ImportFrom) and n.level]
    config = (PACKAGE / "config.py").read_text(encoding="utf-8")
    assert "conformance.broken" not in config
    assert "conformance.rules" in config
