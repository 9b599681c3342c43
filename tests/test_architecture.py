"""The four rooms and their import rules, read from the source with ``ast``.

    ground floor  gradflow._checks, _version, _vocabulary (import nothing from gradflow)
    1 symbolic    gradflow._symbolic.*                     (SymPy only: no NumPy, no arrays)
    2 numeric     gradflow._numeric.*                      (array API; never draws, never prints a CLI)
    3 views       gradflow._views.*
    4 CLI         gradflow._cli.*
    facade        gradflow (``__init__``), gradflow.__main__, gradflow.torch (the training hook)

A module may import only from its own floor or the floors below it; the facade is imported by
nobody inside the package; module imports form no cycle; no module imports an underscored
name from another module (privacy is at the folder: names inside a private folder are public).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "gradflow"
FLOORS = {"_checks": 0, "_version": 0, "_vocabulary": 0, "_symbolic": 1, "_numeric": 2, "_views": 3, "_cli": 4}
FACADE = {"gradflow", "gradflow.__main__", "gradflow.torch"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _floor(module: str) -> int:
    if module in FACADE:
        return 5
    return FLOORS[module.split(".")[1]]


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported gradflow module, names imported from it, line) for every import in ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    base = module if _is_package(module) else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "gradflow"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                target = ".".join(parts + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "gradflow":
                continue
            names = [a.name for a in node.names]
            # `from pkg import mod` imports a module: record it as the module
            subs = [n for n in names if f"{target}.{n}" in MODULES]
            for n in subs:
                found.append((f"{target}.{n}", [], node.lineno))
            rest = [n for n in names if n not in subs]
            if rest or not subs:
                found.append((target, rest, node.lineno))
    return found


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _ in _imports(m) if t in MODULES and t != m} for m in MODULES}


def test_every_module_has_a_floor():
    for m in MODULES:
        if m not in FACADE:
            assert m.split(".")[1] in FLOORS, f"{m} is outside the four rooms"


def test_no_import_runs_up_a_floor():
    bad = []
    for m in MODULES:
        for target, _, line in _imports(m):
            if target not in MODULES:
                continue
            if target in FACADE and m not in FACADE:
                bad.append(f"{m}:{line} imports the facade {target}")
            elif _floor(target) > _floor(m):
                bad.append(f"{m}:{line} (floor {_floor(m)}) imports {target} (floor {_floor(target)})")
    assert not bad, "\n".join(bad)


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_no_underscored_name_crosses_a_module():
    bad = [f"{m}:{line} imports {n} from {t}"
           for m in MODULES for t, names, line in _imports(m)
           for n in names if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("floor, forbidden", [("_symbolic", ("numpy", "array_api_compat", "matplotlib", "torch")),
                                              ("_numeric", ("matplotlib",))])
def test_floor_keeps_to_its_libraries(floor, forbidden):
    bad = []
    for m, path in MODULES.items():
        if not m.startswith(f"gradflow.{floor}"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            bad += [f"{m}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in forbidden]
    assert not bad, "\n".join(bad)


def test_import_gradflow_stays_light():
    code = ("import sys, gradflow, gradflow.torch; heavy = [m for m in ('torch', 'cupy', 'dask', 'h5py', 'ipywidgets', "
            "'threadpoolctl') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PKG.parent)
    assert out.stdout.strip() == ""


def test_the_rules_see_a_violation(tmp_path):
    """The reader itself: an upward import, a cycle and an underscored name are all detected."""
    src = "from .._views.plots import plot_decay\nfrom .flow import _private\n"
    tree = ast.parse(src)
    kinds = [(n.level, n.module, [a.name for a in n.names]) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert kinds == [(2, "_views.plots", ["plot_decay"]), (1, "flow", ["_private"])]
    # and the resolved targets of a real module are real modules
    assert all(t in MODULES for t, _, _ in _imports("gradflow._numeric.flow") if t.startswith("gradflow."))
