"""Bonded CG terms: harmonic and tabulated bonds, angles and dihedrals, keyed by bead types.

Keys match in either direction (:func:`openmm_cgml.topology.type_key`): (A, B) = (B, A);
(A, B, C) = (C, B, A); (A, B, C, D) = (D, C, B, A); they are written ``"A-B"``.  A bonded tuple of the
system whose types have no parameters is an error that names it.

Harmonic terms use the one parameter format of :mod:`openmm_cgml.forcespec`
(``{"A-B": {"r0": nm, "k": kJ/mol/nm^2}}``, ``{"A-B-C": {"theta0": rad, "k": kJ/mol/rad^2}}``),
which the harmonic priors of neural models share.  Every term makes one OpenMM force, whatever the
number of bead-type keys: tabulated terms put all their tables into one
:class:`openmm.Continuous2DFunction`, one row per key (a row index is a per-bond parameter; at an
integer row the bicubic spline is exactly the natural cubic spline of that row's table).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..exceptions import ConfigurationError
from ..forcespec import ARITY, HARMONIC_FORMS, assign_bonded, harmonic_spec, harmonic_table
from ..topology import CGTopology, key_from_str, key_to_str, type_key
from .base import ForceTerm
from .spec import build_force

__all__ = [
    "HarmonicBonds",
    "HarmonicAngles",
    "TabulatedBonds",
    "TabulatedAngles",
    "TabulatedDihedrals",
    "bonded_term_from_data",
]

def _example_keys(topology: CGTopology, kind: str) -> list[tuple[str, ...]]:
    return sorted({type_key(topology.bead_types[i] for i in t) for t in topology.bonded_tuples(kind).tolist()})


# ----------------------------------------------------------------------------- harmonic
class _Harmonic(ForceTerm):
    bonded: str = "bond"
    _legacy_units: dict[str, str] = {}

    def __init__(self, parameters, *, name: str | None = None):
        """``parameters``: ``{"A-B": {"r0": nm, "k": kJ/mol/nm^2}}`` (angles: ``theta0`` rad, ``k`` kJ/mol/rad^2);
        tuple keys and the older ``{("A", "B"): (k, r0)}`` form are accepted."""
        x0_name = HARMONIC_FORMS[self.bonded][0]
        if isinstance(parameters, Mapping):
            parameters = {k: ({x0_name: v[1], "k": v[0]} if isinstance(v, (tuple, list)) else v)
                          for k, v in parameters.items()}
        self.parameters = harmonic_table(self.bonded, parameters, what=f"{type(self).__name__}")
        self.name = name or self.default_name

    def create_forces(self, topology: CGTopology) -> list:
        return [build_force(harmonic_spec(self.bonded, self.parameters, topology, what=f"term {self.name!r}"))]

    def to_data(self) -> dict:
        return {"kind": self.kind, "name": self.name, "parameters": {k: dict(v) for k, v in self.parameters.items()},
                "units": {HARMONIC_FORMS[self.bonded][0]: "nm" if self.bonded == "bond" else "rad",
                          "k": "kJ/mol/nm**2" if self.bonded == "bond" else "kJ/mol/rad**2"}}

    @classmethod
    def from_data(cls, data: Mapping) -> _Harmonic:
        x0_name = HARMONIC_FORMS[cls.bonded][0]
        params = {}
        for key, value in data["parameters"].items():
            if set(value) == set(cls._legacy_units.values()):  # written before the unified parameter format
                value = {x0_name: value[cls._legacy_units[x0_name]], "k": value[cls._legacy_units["k"]]}
            params[key] = value
        return cls(params, name=data.get("name"))

    @classmethod
    def example(cls, topology: CGTopology) -> _Harmonic:
        x0_name = HARMONIC_FORMS[cls.bonded][0]
        x0, k = (0.35, 2000.0) if cls.bonded == "bond" else (2.0, 40.0)
        return cls({key_to_str(key): {x0_name: x0 + 0.01 * n, "k": k}
                    for n, key in enumerate(_example_keys(topology, cls.bonded))})


class HarmonicBonds(_Harmonic):
    """U = k/2 (r - r0)^2 per bond; ``parameters = {"A-B": {"r0": nm, "k": kJ/mol/nm^2}}``."""

    kind = "harmonic_bonds"
    bonded = "bond"
    default_name = "bonds"
    _legacy_units = {"r0": "r0_nm", "k": "k_kJ_per_mol_nm2"}


class HarmonicAngles(_Harmonic):
    """U = k/2 (theta - theta0)^2; ``parameters = {"A-B-C": {"theta0": rad, "k": kJ/mol/rad^2}}``."""

    kind = "harmonic_angles"
    bonded = "angle"
    default_name = "angles"
    _legacy_units = {"theta0": "theta0_rad", "k": "k_kJ_per_mol_rad2"}


# ----------------------------------------------------------------------------- tabulated
def _check_tables(tables, arity: int, what: str) -> dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]]:
    if not isinstance(tables, Mapping) or not tables:
        raise ConfigurationError(f"{what} needs a non-empty mapping of bead types ('A-B') -> (x, U)")
    out = {}
    for key, value in tables.items():
        x, u = (np.asarray(v, dtype=float) for v in value)
        name = key_to_str(key_from_str(key, arity))
        if x.ndim != 1 or x.shape != u.shape or len(x) < 4 or np.any(np.diff(x) <= 0):
            raise ConfigurationError(f"{what} {name}: need increasing x and U of equal length >= 4")
        if not (np.all(np.isfinite(u)) and np.all(np.isfinite(x))):
            raise ConfigurationError(f"{what} {name}: the table contains NaN or infinite values")
        out[key_from_str(key, arity)] = (x, u)
    return out


def _row_table(rows: list[np.ndarray], periodic: bool) -> tuple[list[float], int]:
    """Values of a Continuous2DFunction holding ``rows`` (equal lengths) at y = 0, 1, ...; x-major order.

    A 2-D function needs two rows (a lone table is repeated); a periodic one needs its first and last rows
    equal (the first is appended) and at least three."""
    rows = list(rows)
    if periodic:
        rows.append(rows[0])
    while len(rows) < (3 if periodic else 2):
        rows.append(rows[-1])
    grid = np.stack(rows, axis=1)  # (nx, ny): values[i + nx * j] = grid[i, j]
    return grid.T.ravel().tolist(), len(rows)


class TabulatedBonds(ForceTerm):
    """Tabulated bond potentials ``{"A-B": (r [nm], U [kJ/mol])}``.

    Outside a table's range the energy continues with the table's end slope plus a stiff quadratic
    wall (``wall`` kJ/mol/nm^2), so bonds never fall off the table.
    """

    kind = "tabulated_bonds"
    bonded = "bond"
    default_name = "bond_tables"
    _variable = "r"
    _definition = "r=distance(p1, p2)"
    _default_wall = 1e4
    _x_key = "x"

    def __init__(self, tables, *, wall: float | None = None, name: str | None = None):
        self.tables = _check_tables(tables, ARITY[self.bonded], type(self).__name__)
        self.wall = float(self._default_wall if wall is None else wall)
        self.name = name or self.default_name

    def _resampled(self, n: int):
        from scipy.interpolate import CubicSpline

        out = {}
        for key, (x, u) in self.tables.items():
            grid = np.linspace(x[0], x[-1], n)
            sp = CubicSpline(x, u, bc_type="natural")
            vals = sp(grid)
            fine = CubicSpline(grid, vals, bc_type="natural")  # what OpenMM interpolates: the end slopes of it
            out[key] = (float(grid[0]), float(grid[-1]), vals, float(fine(grid[0], 1)), float(fine(grid[-1], 1)))
        return out

    def create_forces(self, topology: CGTopology) -> list:
        import openmm

        names = {key_to_str(k): k for k in self.tables}
        assigned = assign_bonded(topology, self.bonded, names, f"term {self.name!r}")
        keys = sorted(self.tables)
        row = {k: i for i, k in enumerate(keys)}
        n = max(200, max(len(x) for x, _ in self.tables.values()))
        tabs = self._resampled(n)
        values, ny = _row_table([tabs[k][2] for k in keys], periodic=False)
        v, w = self._variable, self.wall
        expr = (f"select(step(lo-{v}), ulo + slo*({v}-lo) + {w!r}*({v}-lo)^2, "
                f"select(step({v}-hi), uhi + shi*({v}-hi) + {w!r}*({v}-hi)^2, cgbt(({v}-lo)/(hi-lo), row))); "
                f"{self._definition}")
        # CustomCompoundBondForce: Custom{Bond,Angle}Force take no tabulated functions
        force = openmm.CustomCompoundBondForce(ARITY[self.bonded], expr)
        for p in ("lo", "hi", "ulo", "uhi", "slo", "shi", "row"):
            force.addPerBondParameter(p)
        force.addTabulatedFunction("cgbt", openmm.Continuous2DFunction(n, ny, values, 0.0, 1.0, 0.0, float(ny - 1)))
        for atoms, name in assigned:
            key = names[name]
            lo, hi, vals, slo, shi = tabs[key]
            force.addBond(list(atoms), [lo, hi, float(vals[0]), float(vals[-1]), slo, shi, float(row[key])])
        force.setUsesPeriodicBoundaryConditions(topology.periodic)
        return [force]

    def with_tables(self, tables, *, name: str | None = None):
        """The same term (type, wall, name unless ``name`` is given) with ``tables`` instead of its own."""
        return type(self)(tables, wall=self.wall, name=name or self.name)

    def to_data(self) -> dict:
        return {"kind": self.kind, "name": self.name, "wall": self.wall,
                "tables": {key_to_str(k): {self._x_key: v[0].tolist(), "u_kJ_per_mol": v[1].tolist()}
                           for k, v in sorted(self.tables.items())}}

    @classmethod
    def from_data(cls, data: Mapping):
        return cls({k: (v[cls._x_key], v["u_kJ_per_mol"]) for k, v in data["tables"].items()},
                   wall=data.get("wall"), name=data.get("name"))

    @classmethod
    def example(cls, topology: CGTopology):
        lo, hi = (0.25, 0.45) if cls.bonded == "bond" else (1.2, 3.0)
        x = np.linspace(lo, hi, 40)
        mid = 0.5 * (lo + hi)
        return cls({key_to_str(key): (x, (50.0 + 10 * n) * ((x - mid) / (hi - lo)) ** 2 + np.sin(8 * x))
                    for n, key in enumerate(_example_keys(topology, cls.bonded))})


class TabulatedAngles(TabulatedBonds):
    """Tabulated angle potentials ``{"A-B-C": (theta [rad], U [kJ/mol])}``, walls outside the range."""

    kind = "tabulated_angles"
    bonded = "angle"
    default_name = "angle_tables"
    _variable = "theta"
    _definition = "theta=angle(p1, p2, p3)"
    _default_wall = 1e3


class TabulatedDihedrals(ForceTerm):
    """Periodic tabulated dihedral potentials ``{"A-B-C-D": (phi [rad], U [kJ/mol])}``.

    Tables are resampled with a periodic spline on a grid of ``n_points`` over [-pi, pi].
    """

    kind = "tabulated_dihedrals"
    bonded = "dihedral"
    default_name = "dihedral_tables"

    def __init__(self, tables, *, n_points: int = 181, name: str | None = None):
        self.tables = _check_tables(tables, 4, "TabulatedDihedrals")
        self.n_points = int(n_points)
        if self.n_points < 8:
            raise ConfigurationError(f"n_points must be >= 8, got {n_points}")
        self.name = name or self.default_name

    def _periodic_values(self, key) -> np.ndarray:
        from scipy.interpolate import CubicSpline

        phi, u = self.tables[key]
        if phi[-1] >= phi[0] + 2 * np.pi - 1e-9:  # both ends of the period given: drop the duplicate
            phi, u = phi[:-1], u[:-1]
        x = np.concatenate([phi, [phi[0] + 2 * np.pi]])
        y = np.concatenate([u, [u[0]]])
        grid = np.linspace(-np.pi, np.pi, self.n_points)
        vals = CubicSpline(x, y, bc_type="periodic")(np.mod(grid - phi[0], 2 * np.pi) + phi[0])
        vals[-1] = vals[0]
        return vals

    def create_forces(self, topology: CGTopology) -> list:
        import openmm

        names = {key_to_str(k): k for k in self.tables}
        assigned = assign_bonded(topology, "dihedral", names, f"term {self.name!r}")
        keys = sorted(self.tables)
        row = {k: i for i, k in enumerate(keys)}
        values, ny = _row_table([self._periodic_values(k) for k in keys], periodic=True)
        force = openmm.CustomCompoundBondForce(4, "cgdt(dihedral(p1, p2, p3, p4), row)")
        force.addPerBondParameter("row")
        force.addTabulatedFunction("cgdt", openmm.Continuous2DFunction(self.n_points, ny, values, -np.pi, np.pi,
                                                                        0.0, float(ny - 1), True))
        for atoms, name in assigned:
            force.addBond(list(atoms), [float(row[names[name]])])
        force.setUsesPeriodicBoundaryConditions(topology.periodic)
        return [force]

    def with_tables(self, tables, *, name: str | None = None):
        """The same term (resolution, name unless ``name`` is given) with ``tables`` instead of its own."""
        return type(self)(tables, n_points=self.n_points, name=name or self.name)

    def to_data(self) -> dict:
        return {"kind": self.kind, "name": self.name, "n_points": self.n_points,
                "tables": {key_to_str(k): {"phi_rad": v[0].tolist(), "u_kJ_per_mol": v[1].tolist()}
                           for k, v in sorted(self.tables.items())}}

    @classmethod
    def from_data(cls, data: Mapping):
        return cls({k: (v["phi_rad"], v["u_kJ_per_mol"]) for k, v in data["tables"].items()},
                   n_points=data.get("n_points", 181), name=data.get("name"))

    @classmethod
    def example(cls, topology: CGTopology):
        phi = np.linspace(-np.pi, np.pi, 72, endpoint=False)
        return cls({key_to_str(key): (phi, 3.0 * np.cos(phi - 0.3 * n) + 1.5 * np.cos(2 * phi + 0.7))
                    for n, key in enumerate(_example_keys(topology, "dihedral"))})


def bonded_term_from_data(data: Mapping) -> ForceTerm:
    """Rebuild a bonded term from its :meth:`~ForceTerm.to_data` (see :func:`openmm_cgml.forces.base.term_from_data`,
    which rebuilds any registered term)."""
    from .base import term_from_data

    return term_from_data(data)
