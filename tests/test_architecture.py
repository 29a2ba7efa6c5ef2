"""The package's structure stays as designed: import directions, optional heavy imports, one of each helper.

The layers (lowest first; ``docs/architecture.md`` shows them, read from ``LAYERS`` below when the docs build):

0. the ground floor: exceptions, units, config, registry, file helpers, geometry, the CG topology, datasets,
   force specifications;
1. mapping, the all-atom reference, analysis (NumPy), the HTML report (it reads files only);
2. dynamics, models (torch);
3. training, forces (OpenMM forces; the only place torch and OpenMM meet, with the façade above);
4. the System assembler (``potential``);
5. the all-atom-side builder, simulation runs, the LAMMPS / GROMACS export;
6. IBI (it builds its Systems through the façade);
7. the workflows;
8. parameter sweeps (many workflows as Dask tasks);
9. learning from sweeps (networks from force-field parameters to alpha);
10. the command line (nothing imports it but ``python -m openmm_cgml``);
11. ``__main__`` (``python -m openmm_cgml``, the installation report of ``cgml info``).

A module may import from a lower layer or from its own package; nothing imports upwards.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "openmm_cgml"

LAYERS = {
    0: {"__init__", "_version", "exceptions", "units", "config", "registry", "_io", "_checkpoint", "_safety", "geometry", "topology", "thermostat",
        "dataset", "forcespec", "testing"},
    1: {"mapping", "reference", "analysis", "report"},
    2: {"dynamics", "models"},
    3: {"training", "forces"},
    4: {"potential"},
    5: {"builder", "simulation", "export"},
    6: {"ibi"},
    7: {"workflows"},
    8: {"sweep"},
    9: {"learn"},
    10: {"cli"},
    11: {"__main__"},
}
UNIT_OF = {unit: layer for layer, units in LAYERS.items() for unit in units}


def _unit(module: str) -> str:
    """The top-level unit (subpackage or module) of a dotted name inside the package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        yield name, path, path.name == "__init__.py"


def _imports(name: str, path: Path, is_package: bool):
    """(imported module, line, at module level) for every import statement, relative ones resolved."""
    tree = ast.parse(path.read_text())
    package = name if is_package else name.rsplit(".", 1)[0]
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, id(node) in top_level
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # "from . import x" names submodules
            names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
            for t in names:
                yield t, node.lineno, id(node) in top_level


def test_every_unit_has_a_layer():
    units = {_unit(name) for name, _, _ in _modules()}
    assert units <= set(UNIT_OF), f"give these a layer in tests/test_architecture.py: {sorted(units - set(UNIT_OF))}"


def test_imports_point_down_the_layers():
    problems = []
    for name, path, is_package in _modules():
        me = _unit(name)
        for target, line, _ in _imports(name, path, is_package):
            if target != "openmm_cgml" and not target.startswith("openmm_cgml."):
                continue
            other = _unit(target)
            if other not in UNIT_OF or other == me:
                continue
            if UNIT_OF[other] > UNIT_OF[me] or (UNIT_OF[other] == UNIT_OF[me] and UNIT_OF[me] != 0):
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({me}, layer {UNIT_OF[me]}) imports "
                                f"{target} ({other}, layer {UNIT_OF[other]})")
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


def test_the_command_line_is_imported_by_nothing():
    users = [f"{path.name}:{line}" for name, path, pkg in _modules() if _unit(name) not in {"cli", "__main__"}
             for target, line, _ in _imports(name, path, pkg) if target.startswith("openmm_cgml.cli")]
    assert not users


@pytest.mark.parametrize("units, forbidden, anywhere", [
    ({"models", "training"}, "openmm.app", True),       # torch-only layers never touch OpenMM's app layer
    ({"analysis", "mapping"}, "torch", False),           # NumPy layers: torch at most inside a function
    ({"analysis", "mapping", "models", "training", "forcespec", "topology"}, "openmm_cgml.forces", True),
])
def test_heavy_and_upward_imports_stay_out(units, forbidden, anywhere):
    bad = []
    for name, path, is_package in _modules():
        if _unit(name) not in units:
            continue
        for target, line, top in _imports(name, path, is_package):
            if (target == forbidden or target.startswith(forbidden + ".")) and (anywhere or top):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not bad, "\n".join(bad)


def _definitions():
    for name, path, _ in _modules():
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                yield node.name, name
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and isinstance(node.value, ast.Constant):
                        yield target.id, name


@pytest.mark.parametrize("helper, allowed", [
    ("minimum_image", {"openmm_cgml.geometry", "openmm_cgml.models.neighbors"}),  # NumPy, and its torch twin
    ("perpendicular_widths", {"openmm_cgml.geometry"}),
    ("check_cutoff", {"openmm_cgml.geometry", "openmm_cgml.models.neighbors", "openmm_cgml.forces.tabulated"}),
    ("type_key", {"openmm_cgml.topology"}),
    ("pair_key", set()),      # bead-type keys: topology.type_key, written "A-B" by topology.key_to_str
    ("angle_key", set()),
    ("bonded_key", set()),
    ("angles_from_bonds", {"openmm_cgml.topology"}),
    ("KB", {"openmm_cgml.units"}),
    ("GAS_CONSTANT", set()),   # only as an alias of units.KB, never a literal
    ("strip", {"openmm_cgml.units"}),
    ("write_checkpoint", {"openmm_cgml._checkpoint"}),
])
def test_one_definition_of_each_shared_helper(helper, allowed):
    where = {module for name, module in _definitions() if name == helper}
    assert where <= allowed, f"{helper} is defined in {sorted(where - allowed)} as well: use the shared one"


def test_no_quantity_is_stripped_without_converting():
    """``getattr(x, "_value", x)`` and ``._value`` read a Quantity's number in whatever unit it carries;
    :func:`openmm_cgml.units.strip` converts."""
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{n}" for _, path, _ in _modules()
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if '"_value"' in line or "._value" in line]
    assert not offenders, offenders
