"""The package's layout holds: data flows one way, modules stay readable, reading
results needs no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "toolkit"
LAYERS = {"engine": 1, "analysis": 1, "studies": 2, "ui": 3}
"""A module may import the top-level modules (rank 0, e.g. the store), its own
subpackage, and subpackages of a lower rank: engine and analysis know nothing of
each other or of what is above them; studies use both; the ui uses everything."""

ENTRY_POINTS = {"toolkit.__main__"}
"""``python -m toolkit`` runs the command line: the one module above every layer."""


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The toolkit modules ``path`` imports at module level (not inside functions)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("toolkit"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("toolkit"))
    return found


MODULES = {_module(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: {m for m in _imports(p) if m in MODULES} - {name} for name, p in MODULES.items()}


def _rank(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 2 else 0


def test_no_module_is_over_500_lines():
    long = {name: n for name, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 500}
    assert not long


def test_there_is_no_import_cycle():
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                raise AssertionError(" -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [])


@pytest.mark.parametrize("module", sorted(set(MODULES) - ENTRY_POINTS))
def test_data_flows_one_way(module):
    """Imports point down the layers (:data:`LAYERS`), never up or sideways."""
    mine = _rank(module)
    for imported in GRAPH[module]:
        theirs = _rank(imported)
        same_layer_ok = imported.split(".")[:2] == module.split(".")[:2]
        assert theirs < mine or same_layer_ok or theirs == 0, f"{module} imports {imported}"


@pytest.mark.parametrize(
    "module", ["toolkit.store", "toolkit.analysis.transfer", "toolkit.analysis.intrinsic",
               "toolkit.analysis.spectra", "toolkit.analysis.coord_check",
               "toolkit.analysis.claims"]
)  # fmt: skip
def test_reading_results_imports_no_torch(module):
    """Analysis reads stores without torch."""
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE.parent)


@pytest.mark.parametrize(
    "module", ["toolkit.ui.cli", "toolkit.engine.config", "toolkit.studies.costs",
               "toolkit.studies.sweep"]
)  # fmt: skip
def test_checking_a_request_imports_no_torch(module):
    """The command line, configs, the schema and the planner load without torch (the
    names they check come from :mod:`toolkit.engine.catalogue`), so a mistake is refused
    before torch's import, which costs more than a second."""
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE.parent)
