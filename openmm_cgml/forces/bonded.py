"""Bonded CG priors: harmonic and tabulated bonds, angles and dihedrals, keyed by bead types.

Keys match in either direction: (A, B) = (B, A); (A, B, C) = (C, B, A);
(A, B, C, D) = (D, C, B, A).  A bonded tuple of the system whose types have no
parameters is an error that names it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..exceptions import ConfigurationError, UnknownNameError
from .base import CGSystemInfo, ForceTerm

__all__ = [
    "HarmonicBonds",
    "HarmonicAngles",
    "TabulatedBonds",
    "TabulatedAngles",
    "TabulatedDihedrals",
    "bonded_key",
    "bonded_term_from_data",
]

_ARITY = {"bond": 2, "angle": 3, "dihedral": 4}


def bonded_key(types) -> tuple[str, ...]:
    """Canonical key of a bonded type tuple (the smaller of it and its reverse)."""
    t = tuple(str(x) for x in types)
    return min(t, t[::-1])


def _parse_key(key, arity: int) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in key.split("-")) if isinstance(key, str) else tuple(key)
    if len(parts) != arity:
        raise ConfigurationError(f"expected {arity} bead types per key, got {key!r}")
    return bonded_key(parts)


def _tuples(info: CGSystemInfo, kind: str) -> np.ndarray:
    return {"bond": np.asarray(info.bonds), "angle": np.asarray(info.angles),
            "dihedral": np.asarray(info.dihedrals)}[kind].reshape(-1, _ARITY[kind])


def _assign(info: CGSystemInfo, kind: str, keys, what: str) -> list[tuple[tuple[int, ...], tuple[str, ...]]]:
    known = set(info.type_names)
    for key in keys:
        bad = [t for t in key if t not in known]
        if bad:
            raise UnknownNameError(f"{what}: bead types {bad} of {'-'.join(key)} are not in the system; "
                                   f"known bead types: {sorted(known)}")
    out = []
    for tup in _tuples(info, kind):
        key = bonded_key(info.bead_types[i] for i in tup)
        if key not in keys:
            raise ConfigurationError(
                f"{what}: no parameters for the {kind} {'-'.join(key)} (beads {tup.tolist()}); parameters are "
                f"given for {['-'.join(k) for k in sorted(keys)]}"
            )
        out.append((tuple(int(i) for i in tup), key))
    return out


class _Bonded(ForceTerm):
    kind = "bond"

    def _check(self, params):
        if not isinstance(params, Mapping) or not params:
            raise ConfigurationError(f"{type(self).__name__} needs a non-empty mapping of bead types -> parameters")
        return {_parse_key(k, _ARITY[self.kind]): v for k, v in params.items()}


class HarmonicBonds(_Bonded):
    """U = k/2 (r - r0)^2 per bond; ``parameters = {("A", "B"): (k [kJ/mol/nm^2], r0 [nm])}``."""

    kind = "bond"

    def __init__(self, parameters, *, name: str = "bonds"):
        self.parameters = {k: (float(v[0]), float(v[1])) for k, v in self._check(parameters).items()}
        self.name = name

    def create_forces(self, info: CGSystemInfo) -> list:
        import openmm

        force = openmm.HarmonicBondForce()
        for (i, j), key in _assign(info, "bond", set(self.parameters), f"term {self.name!r}"):
            k, r0 = self.parameters[key]
            force.addBond(i, j, r0, k)
        force.setUsesPeriodicBoundaryConditions(info.periodic)
        return [force]

    def to_data(self) -> dict:
        return {"kind": "harmonic_bonds", "name": self.name,
                "parameters": {"-".join(k): {"k_kJ_per_mol_nm2": v[0], "r0_nm": v[1]}
                               for k, v in self.parameters.items()}}


class HarmonicAngles(_Bonded):
    """U = k/2 (theta - theta0)^2; ``parameters = {("A", "B", "C"): (k [kJ/mol/rad^2], theta0 [rad])}``."""

    kind = "angle"

    def __init__(self, parameters, *, name: str = "angles"):
        self.parameters = {k: (float(v[0]), float(v[1])) for k, v in self._check(parameters).items()}
        self.name = name

    def create_forces(self, info: CGSystemInfo) -> list:
        import openmm

        force = openmm.HarmonicAngleForce()
        for (i, j, k), key in _assign(info, "angle", set(self.parameters), f"term {self.name!r}"):
            kk, t0 = self.parameters[key]
            force.addAngle(i, j, k, t0, kk)
        force.setUsesPeriodicBoundaryConditions(info.periodic)
        return [force]

    def to_data(self) -> dict:
        return {"kind": "harmonic_angles", "name": self.name,
                "parameters": {"-".join(k): {"k_kJ_per_mol_rad2": v[0], "theta0_rad": v[1]}
                               for k, v in self.parameters.items()}}


def _uniform(x, u, lo, hi, n, what):
    from scipy.interpolate import CubicSpline

    x = np.asarray(x, dtype=float)
    u = np.asarray(u, dtype=float)
    if x.ndim != 1 or x.shape != u.shape or len(x) < 4 or np.any(np.diff(x) <= 0):
        raise ConfigurationError(f"{what}: need increasing x and U of equal length >= 4")
    if not np.all(np.isfinite(u)):
        raise ConfigurationError(f"{what}: the table contains NaN or infinite values")
    grid = np.linspace(lo, hi, n)
    return grid, CubicSpline(x, u, bc_type="natural")(grid)


class TabulatedBonds(_Bonded):
    """Tabulated bond potentials ``{("A", "B"): (r [nm], U [kJ/mol])}``.

    Outside a table's range the energy continues with the table's end slope plus a
    stiff quadratic wall (``wall`` kJ/mol/nm^2), so bonds never fall off the table.
    """

    kind = "bond"

    def __init__(self, tables, *, wall: float = 1e4, name: str = "bond_tables"):
        self.tables = {k: (np.asarray(v[0], float), np.asarray(v[1], float)) for k, v in self._check(tables).items()}
        self.wall = float(wall)
        self.name = name

    _expr_var = "r"
    _definition = "r=distance(p1, p2)"

    def create_forces(self, info: CGSystemInfo) -> list:
        import openmm
        from scipy.interpolate import CubicSpline

        assigned = _assign(info, self.kind, set(self.tables), f"term {self.name!r}")
        forces = []
        for key in sorted(self.tables):
            members = [atoms for atoms, k in assigned if k == key]
            if not members:
                continue
            x, u = self.tables[key]
            grid, vals = _uniform(x, u, x[0], x[-1], max(len(x), 200), f"{self.kind} table {'-'.join(key)}")
            sp = CubicSpline(grid, vals, bc_type="natural")
            lo, hi = float(grid[0]), float(grid[-1])
            ulo, uhi = float(vals[0]), float(vals[-1])
            slo, shi = float(sp(lo, 1)), float(sp(hi, 1))
            v = self._expr_var
            expr = (
                f"select(step({lo!r}-{v}), {ulo!r} + ({slo!r})*({v}-{lo!r}) + {self.wall!r}*({v}-{lo!r})^2, "
                f"select(step({v}-{hi!r}), {uhi!r} + ({shi!r})*({v}-{hi!r}) + {self.wall!r}*({v}-{hi!r})^2, "
                f"cgbt({v}))); {self._definition}"
            )
            # CustomCompoundBondForce: the Custom{Bond,Angle,Torsion}Force classes take no tabulated functions
            force = openmm.CustomCompoundBondForce(_ARITY[self.kind], expr)
            force.addTabulatedFunction("cgbt", openmm.Continuous1DFunction(vals.tolist(), lo, hi))
            for atoms in members:
                force.addBond(list(atoms), [])
            force.setUsesPeriodicBoundaryConditions(info.periodic)
            forces.append(force)
        return forces

    def to_data(self) -> dict:
        return {"kind": f"tabulated_{self.kind}s", "name": self.name, "wall": self.wall,
                "tables": {"-".join(k): {"x": v[0].tolist(), "u_kJ_per_mol": v[1].tolist()}
                           for k, v in self.tables.items()}}


class TabulatedAngles(TabulatedBonds):
    """Tabulated angle potentials ``{("A", "B", "C"): (theta [rad], U [kJ/mol])}``, walls outside the range."""

    kind = "angle"
    _expr_var = "theta"
    _definition = "theta=angle(p1, p2, p3)"

    def __init__(self, tables, *, wall: float = 1e3, name: str = "angle_tables"):
        super().__init__(tables, wall=wall, name=name)


class TabulatedDihedrals(_Bonded):
    """Periodic tabulated dihedral potentials ``{("A", "B", "C", "D"): (phi [rad], U [kJ/mol])}``.

    Tables are resampled on a periodic grid over [-pi, pi].
    """

    kind = "dihedral"

    def __init__(self, tables, *, n_points: int = 181, name: str = "dihedral_tables"):
        self.tables = {k: (np.asarray(v[0], float), np.asarray(v[1], float)) for k, v in self._check(tables).items()}
        self.n_points = int(n_points)
        self.name = name

    def create_forces(self, info: CGSystemInfo) -> list:
        import openmm
        from scipy.interpolate import CubicSpline

        assigned = _assign(info, "dihedral", set(self.tables), f"term {self.name!r}")
        forces = []
        for key in sorted(self.tables):
            members = [atoms for atoms, k in assigned if k == key]
            if not members:
                continue
            phi, u = self.tables[key]
            if phi[-1] >= phi[0] + 2 * np.pi - 1e-9:  # both ends of the period given: drop the duplicate
                phi, u = phi[:-1], u[:-1]
            # periodic spline through the table, closed at +-pi
            x = np.concatenate([phi, [phi[0] + 2 * np.pi]])
            y = np.concatenate([u, [u[0]]])
            grid = np.linspace(-np.pi, np.pi, self.n_points)
            sp = CubicSpline(x, y, bc_type="periodic")
            vals = sp(np.mod(grid - phi[0], 2 * np.pi) + phi[0])
            vals[-1] = vals[0]
            force = openmm.CustomCompoundBondForce(4, "cgdt(dihedral(p1, p2, p3, p4))")
            force.addTabulatedFunction("cgdt", openmm.Continuous1DFunction(vals.tolist(), -np.pi, np.pi, True))
            for atoms in members:
                force.addBond(list(atoms), [])
            force.setUsesPeriodicBoundaryConditions(info.periodic)
            forces.append(force)
        return forces

    def to_data(self) -> dict:
        return {"kind": "tabulated_dihedrals", "name": self.name, "n_points": self.n_points,
                "tables": {"-".join(k): {"phi_rad": v[0].tolist(), "u_kJ_per_mol": v[1].tolist()}
                           for k, v in self.tables.items()}}


def bonded_term_from_data(data: Mapping) -> ForceTerm:
    """Rebuild a bonded term from its :meth:`to_data` (the inverse; tested by round trip)."""
    if not isinstance(data, Mapping) or "kind" not in data:
        raise ConfigurationError(f"bonded term data must be a mapping with a 'kind', got {type(data).__name__}")
    kind, name = data["kind"], data.get("name")
    extra = {} if name is None else {"name": name}
    try:
        if kind == "harmonic_bonds":
            return HarmonicBonds({k: (v["k_kJ_per_mol_nm2"], v["r0_nm"]) for k, v in data["parameters"].items()},
                                 **extra)
        if kind == "harmonic_angles":
            return HarmonicAngles({k: (v["k_kJ_per_mol_rad2"], v["theta0_rad"])
                                   for k, v in data["parameters"].items()}, **extra)
        if kind in ("tabulated_bonds", "tabulated_angles"):
            cls = TabulatedBonds if kind == "tabulated_bonds" else TabulatedAngles
            return cls({k: (v["x"], v["u_kJ_per_mol"]) for k, v in data["tables"].items()}, wall=data["wall"], **extra)
        if kind == "tabulated_dihedrals":
            return TabulatedDihedrals({k: (v["phi_rad"], v["u_kJ_per_mol"]) for k, v in data["tables"].items()},
                                      n_points=data.get("n_points", 181), **extra)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"bonded term data of kind {kind!r} is incomplete or malformed: {exc!r}") from exc
    raise UnknownNameError(f"unknown bonded term kind {kind!r}; known: harmonic_bonds, harmonic_angles, "
                           "tabulated_bonds, tabulated_angles, tabulated_dihedrals")
