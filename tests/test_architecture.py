"""The package's own imports, read with ``ast``: no import cycle, front ends free of PySCF, argparse at the edge."""

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "src" / "deepks_es"
FRONT_ENDS = ("deepks_es.cli", "deepks_es.ase", "deepks_es.analysis", "deepks_es.ipi.client", "deepks_es.ipi.drive",
              "deepks_es.ipi.launcher", "deepks_es.ipi.outputs", "deepks_es.ipi.protocol", "deepks_es.ipi.resume",
              "deepks_es.ipi.runplan", "deepks_es.lammps", "deepks_es.observables_log")
COMMAND_LINE = ("deepks_es.cli", "deepks_es.engines.spec")  # the only modules that know argparse


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Every module (of ``modules`` or outside the package) that ``path`` imports, wherever the import sits."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules}
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), among the package's modules."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node] & graph.keys():
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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
            visit(node)
    return found


def test_the_reader_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40 and "deepks_es.engines.registry" in graph["deepks_es.engines"]
    assert cycles(graph) == []


def test_front_ends_build_no_pyscf_objects():
    graph = import_graph()
    for module in FRONT_ENDS:
        assert not any(name == "pyscf" or name.startswith("pyscf.") for name in graph[module]), module
    driver = REPO / "driver" / "ipi_pes.py"
    assert "pyscf" not in driver.read_text()


def test_argparse_stays_at_the_command_line():
    users = {module for module, imported in import_graph().items() if "argparse" in imported}
    assert users <= set(COMMAND_LINE), users - set(COMMAND_LINE)
