"""Tabulated pair potentials per bead-type pair (IBI tables) and an analytic fit of them.

:class:`TabulatedPairPotential` has two layouts, with the same energies:

``"groups"``
    One ``CustomNonbondedForce`` per type pair, restricted to that pair by interaction groups
    (forces named ``"A-B"``).  Faster on the CPU for small systems only: OpenMM's CPU platform evaluates
    interaction groups without its cell list, so their cost per bead grows with the system
    (``benchmarks/bench_pair_layout.py``, the documentation's results page).  ``"auto"`` picks it for up to
    :data:`MAX_GROUP_FORCES` type pairs and :data:`GROUP_LAYOUT_MAX_BEADS` beads.
``"slot"``
    ONE force whose :class:`openmm.Continuous1DFunction` holds every pair's table, laid end to end
    along the function's axis and separated by runs of zeros; a :class:`openmm.Discrete2DFunction`
    gives each pair of types the offset of its table.  The cost per pair is one lookup, whatever the
    number of types, and it stays flat with the system size (``"auto"`` beyond :data:`MAX_GROUP_FORCES` pairs or
    :data:`GROUP_LAYOUT_MAX_BEADS` beads).

``"compiled"``
    The package's own C++ force (:mod:`openmm_cgml.forces.compiled`): the same splines, its own Verlet list,
    flat cost per bead and several times faster than either custom-force layout on the CPU.  ``"auto"`` picks
    it whenever it is available (it is compiled against the installed OpenMM on first use) and no GPU
    platform (CUDA, HIP) is installed: on a GPU it runs on the host, where the custom forces do not.

Either way the tables can be replaced in a running Context
(:meth:`TabulatedPairPotential.update_context`) without rebuilding it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from .._io import atomic_write_text, package_versions
from ..exceptions import ConfigurationError, CorruptFileError, UnknownNameError
from ..geometry import check_cutoff as _check_cutoff
from ..topology import CGTopology, key_from_str, key_to_str, type_key
from .base import ForceTerm

__all__ = [
    "TabulatedPairPotential",
    "AnalyticPairPotential",
    "resample_table",
    "check_cutoff",
    "add_exclusions",
    "exclusion_pairs",
    "LAYOUTS",
    "write_openmm_tables",
    "read_openmm_tables",
    "PAIR_TABLES_FORMAT",
]

logger = logging.getLogger(__name__)

#: Zero knots between consecutive tables: the natural spline's ringing from the jump to
#: the next table's core decays by ~0.27 per knot, so 32 knots leave < 1e-18 of it.
_GAP_KNOTS = 32
#: Up to this many type pairs, "auto" gives each pair its own force (see the module docs).
MAX_GROUP_FORCES = 10
#: ... and up to this many beads: beyond it the one-force layout is faster on the CPU (bench_pair_layout).
GROUP_LAYOUT_MAX_BEADS = 1000


PAIR_TABLES_FORMAT = "openmm_cgml.pair_tables"
LAYOUTS = ("auto", "groups", "slot", "compiled")


def _parse_pair(key) -> tuple[str, str]:
    return key_from_str(key, 2)


def check_cutoff(cutoff: float, topology: CGTopology, what: str) -> None:
    """Refuse a cutoff longer than half the smallest perpendicular box width (:func:`openmm_cgml.geometry.check_cutoff`)."""
    _check_cutoff(cutoff, topology.box_vectors, what)


def add_exclusions(force, info: CGTopology, exclusions: str) -> None:
    """Add exclusions to a CustomNonbondedForce: ``molecule`` (all intramolecular pairs),
    ``bonded`` (1-2 and 1-3 pairs along CG bonds) or ``none``."""
    if exclusions == "none":
        return
    if exclusions == "molecule":
        mol = np.asarray(info.molecule_index)
        order = np.argsort(mol, kind="stable")
        split = np.flatnonzero(np.diff(mol[order])) + 1
        for group in np.split(order, split):
            g = sorted(int(i) for i in group)
            for a in range(len(g)):
                for b in range(a + 1, len(g)):
                    force.addExclusion(g[a], g[b])
    elif exclusions == "bonded":
        bonds = [(int(i), int(j)) for i, j in np.asarray(info.bonds).reshape(-1, 2)]
        if bonds:
            force.createExclusionsFromBonds(bonds, 2)
    else:
        raise ConfigurationError(f"exclusions must be 'molecule', 'bonded' or 'none', got {exclusions!r}")


def exclusion_pairs(info: CGTopology, exclusions: str) -> np.ndarray:
    """The (n, 2) bead pairs :func:`add_exclusions` excludes (OpenMM's own bond walk, read back)."""
    import openmm

    scratch = openmm.CustomNonbondedForce("0")
    for _ in range(info.n_beads):
        scratch.addParticle([])
    add_exclusions(scratch, info, exclusions)
    return np.array([scratch.getExclusionParticles(k) for k in range(scratch.getNumExclusions())],
                    dtype=int).reshape(-1, 2)


def _compiled_preferred() -> bool:
    """``"auto"``'s choice of the compiled force: available, and no GPU platform installed."""
    import openmm

    from . import compiled

    names = {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}
    return not names & {"CUDA", "HIP"} and compiled.available()


def resample_table(r, u, grid: np.ndarray, *, what: str = "table") -> np.ndarray:
    """Values of a table on ``grid`` (natural cubic spline inside, extrapolated outside).

    Below the table's first point the force is continued linearly (a repulsive wall
    whose force grows at least as fast as at the table's start); beyond its last point
    the value is zero.
    """
    from scipy.interpolate import CubicSpline

    r = np.asarray(r, dtype=float)
    u = np.asarray(u, dtype=float)
    if r.ndim != 1 or r.shape != u.shape or len(r) < 4:
        raise ConfigurationError(f"{what}: r and U must be 1-D arrays of equal length >= 4, got {r.shape}, {u.shape}")
    if not np.all(np.isfinite(u)) or not np.all(np.isfinite(r)):
        raise ConfigurationError(f"{what}: the table contains NaN or infinite values")
    if np.any(np.diff(r) <= 0):
        raise ConfigurationError(f"{what}: r must increase strictly")
    spline = CubicSpline(r, u, bc_type="natural")
    out = np.zeros_like(grid, dtype=float)
    inside = (grid >= r[0]) & (grid <= r[-1])
    out[inside] = spline(grid[inside])
    below = grid < r[0]
    if np.any(below):
        slope = float(spline(r[0], 1))
        force0 = max(-slope, 0.0)
        # linear force continuation: F(r) = F0 + c (r0 - r), c chosen so the wall stays repulsive
        curv = max(float(spline(r[0], 2)), force0 / max(r[0], 1e-3), 1e3)
        dr = r[0] - grid[below]
        out[below] = u[0] + force0 * dr + 0.5 * curv * dr**2
    return out


def _as_tables(tables) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    if not isinstance(tables, Mapping) or not tables:
        raise ConfigurationError("tables must be a non-empty mapping of bead-type pair -> (r, U)")
    out: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for key, value in tables.items():
        k = _parse_pair(key)
        r, u = (np.asarray(x, dtype=float) for x in value)
        if k in out and not (np.array_equal(out[k][0], r) and np.array_equal(out[k][1], u)):
            raise ConfigurationError(f"two different tables are given for the bead-type pair {k}")
        out[k] = (r, u)
    return out


def _check_types(keys, info: CGTopology, what: str, allow_missing: bool) -> None:
    known = set(info.type_names)
    for key in keys:
        unknown = [t for t in key if t not in known]
        if unknown:
            raise UnknownNameError(
                f"{what}: bead type(s) {unknown} of the pair {key[0]}-{key[1]} are not in the system; "
                f"known bead types: {sorted(known)}"
            )
    if not allow_missing:
        names = sorted(known)
        missing = [(a, b) for i, a in enumerate(names) for b in names[i:] if (a, b) not in keys]
        if missing:
            raise ConfigurationError(
                f"{what}: no table for the bead-type pair(s) {['-'.join(m) for m in missing]}; tables are given "
                f"for {['-'.join(k) for k in sorted(keys)]} (pass missing='zero' to leave them non-interacting)"
            )


class TabulatedPairPotential(ForceTerm):
    """Tabulated non-bonded pair potentials U_ab(r), one table per bead-type pair.

    Parameters
    ----------
    tables : mapping
        ``{("A", "B"): (r, U)}`` (or ``"A-B"`` keys); r in nm (strictly increasing), U in
        kJ/mol.  Tables are resampled on a common uniform grid from 0 to the cutoff;
        below a table's first point a repulsive wall continues it.
    cutoff : float, optional
        nm; default the largest table end.  Must not exceed half the box.
    spacing : float
        Grid spacing (nm) of the OpenMM table.
    exclusions : {"molecule", "bonded", "none"}
        Which intramolecular pairs are excluded (IBI targets use ``"molecule"``).
    missing : {"error", "zero"}
        What to do for a type pair without a table.
    layout : {"auto", "groups", "slot", "compiled"}
        How the tables become OpenMM forces (see the module docs); energies are the same.
    name : str
    """

    kind = "tabulated_pair"

    def __init__(self, tables, *, cutoff: float | None = None, spacing: float = 0.002,
                 exclusions: str = "molecule", missing: str = "error", layout: str = "auto", name: str = "pair"):
        if layout not in LAYOUTS:
            raise ConfigurationError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.layout = layout
        self.tables = _as_tables(tables)
        self.cutoff = float(cutoff) if cutoff is not None else max(float(r[-1]) for r, _ in self.tables.values())
        if self.cutoff <= 0:
            raise ConfigurationError(f"the cutoff must be positive, got {self.cutoff} nm")
        self.spacing = float(spacing)
        if not 0 < self.spacing < self.cutoff / 10:
            raise ConfigurationError(f"table spacing {self.spacing} nm must be positive and below cutoff/10")
        if exclusions not in ("molecule", "bonded", "none"):
            raise ConfigurationError(f"exclusions must be 'molecule', 'bonded' or 'none', got {exclusions!r}")
        if missing not in ("error", "zero"):
            raise ConfigurationError(f"missing must be 'error' or 'zero', got {missing!r}")
        self.exclusions = exclusions
        self.missing = missing
        self.name = name
        n = int(round(self.cutoff / self.spacing))
        self.grid = np.linspace(0.0, n * self.spacing, n + 1)
        self.cutoff = float(self.grid[-1])
        for key, (r, u) in self.tables.items():
            if r[-1] >= self.cutoff - 1e-9 and abs(np.interp(self.cutoff, r, u)) > 1e-2:
                logger.warning("table %s-%s is %.3g kJ/mol at the cutoff; the potential jumps there",
                               key[0], key[1], np.interp(self.cutoff, r, u))

    # -------------------------------------------------------------- table layout
    def grid_values(self) -> dict[tuple[str, str], np.ndarray]:
        """Every pair's table on the common grid (0 .. cutoff)."""
        return {k: resample_table(r, u, self.grid, what=f"pair table {k[0]}-{k[1]}")
                for k, (r, u) in self.tables.items()}

    def _layout(self, type_names):
        names = list(type_names)
        index = {t: i for i, t in enumerate(names)}
        keys = sorted(self.tables)
        stride = len(self.grid) + _GAP_KNOTS
        values = self.grid_values()
        # slot 0 is an all-zero table for pairs without one (missing="zero")
        slots = {k: s + 1 for s, k in enumerate(keys)}
        data = np.zeros(stride * (len(keys) + 1))
        for k, s in slots.items():
            data[s * stride : s * stride + len(self.grid)] = values[k]
        nt = len(names)
        pair_slot = np.zeros((nt, nt))
        for (a, b), s in slots.items():
            if a in index and b in index:
                pair_slot[index[a], index[b]] = pair_slot[index[b], index[a]] = s
        return index, data, pair_slot, stride

    def _pairs_present(self, type_names) -> list[tuple[str, str]]:
        """Type pairs that have a table and whose types both occur, in a fixed order."""
        present = set(type_names)
        return [k for k in sorted(self.tables) if k[0] in present and k[1] in present]

    def resolved_layout(self, info: CGTopology) -> str:
        """The layout :meth:`create_forces` uses for ``info`` (``"auto"`` resolved; see the module docs)."""
        if self.layout != "auto":
            return self.layout
        if _compiled_preferred():
            return "compiled"
        if len(self._pairs_present(info.type_names)) <= MAX_GROUP_FORCES and info.n_beads <= GROUP_LAYOUT_MAX_BEADS:
            return "groups"
        return "slot"

    def _new_force(self, expression: str, info: CGTopology):
        import openmm

        force = openmm.CustomNonbondedForce(expression)
        force.setCutoffDistance(self.cutoff)
        force.setNonbondedMethod(
            openmm.CustomNonbondedForce.CutoffPeriodic if info.periodic else openmm.CustomNonbondedForce.CutoffNonPeriodic
        )
        force.setUseLongRangeCorrection(False)
        return force

    def create_forces(self, info: CGTopology) -> list:
        import openmm

        _check_types(set(self.tables), info, f"pair term {self.name!r}", self.missing == "zero")
        check_cutoff(self.cutoff, info, f"pair term {self.name!r}")
        layout = self.resolved_layout(info)
        if layout == "compiled":
            return [self._compiled_force(info)]
        if layout == "slot":
            return [self._slot_force(info)]
        types = np.asarray(info.bead_types)
        values = self.grid_values()
        forces = []
        for a, b in self._pairs_present(info.type_names):
            force = self._new_force("cgtab(r)", info)
            force.addTabulatedFunction("cgtab", openmm.Continuous1DFunction(values[(a, b)].tolist(), 0.0,
                                                                             self.cutoff))
            for _ in range(info.n_beads):
                force.addParticle([])
            force.addInteractionGroup(np.flatnonzero(types == a).tolist(), np.flatnonzero(types == b).tolist())
            add_exclusions(force, info, self.exclusions)
            force.setName(f"{a}-{b}")
            forces.append(force)
        return forces

    def _slot_force(self, info: CGTopology):
        import openmm

        index, data, pair_slot, stride = self._layout(info.type_names)
        nt = len(index)
        x_max = self.spacing * (len(data) - 1)
        force = self._new_force(f"cgtab(r + {stride * self.spacing!r}*cgslot(type1, type2))", info)
        force.addTabulatedFunction("cgtab", openmm.Continuous1DFunction(data.tolist(), 0.0, x_max))
        force.addTabulatedFunction("cgslot", openmm.Discrete2DFunction(nt, nt, pair_slot.T.ravel().tolist()))
        force.addPerParticleParameter("type")
        for t in info.bead_types:
            force.addParticle([float(index[t])])
        add_exclusions(force, info, self.exclusions)
        return force

    def _indexed_tables(self, type_names) -> dict[tuple[int, int], np.ndarray]:
        """The grid values of every type pair present, keyed by the types' indices in ``type_names`` (the compiled
        force's keys)."""
        index = {t: i for i, t in enumerate(type_names)}
        values = self.grid_values()
        return {(index[a], index[b]): values[(a, b)] for a, b in self._pairs_present(type_names)}

    def _compiled_force(self, info: CGTopology):
        from . import compiled

        index = {t: i for i, t in enumerate(info.type_names)}
        return compiled.make_pair_force([index[t] for t in info.bead_types], len(index),
                                        self._indexed_tables(info.type_names), exclusion_pairs(info, self.exclusions),
                                        cutoff=self.cutoff, periodic=info.periodic, name=self.name)

    def with_tables(self, tables) -> TabulatedPairPotential:
        """A copy with new tables (same grid, cutoff and options)."""
        return TabulatedPairPotential(tables, cutoff=self.cutoff, spacing=self.spacing, exclusions=self.exclusions,
                                      missing=self.missing, layout=self.layout, name=self.name)

    def update_context(self, forces, context, type_names) -> None:
        """Copy this term's tables into ``forces`` (made by :meth:`create_forces`) and ``context``.

        Only the table values change (same grid and pairs), so the Context is not rebuilt:
        ``Continuous1DFunction.setFunctionParameters`` then ``updateParametersInContext``.
        ``forces`` is the list :meth:`create_forces` returned (a lone force is accepted too).
        """
        forces = list(forces) if isinstance(forces, (list, tuple)) else [forces]
        from . import compiled

        if len(forces) == 1 and compiled.is_pair_force(forces[0]):
            compiled.set_tables(forces[0], self._indexed_tables(type_names))
            if context is not None:
                compiled.update_in_context(forces[0], context)
            return
        # the layout create_forces chose: the one-force layout has its slot table beside the values
        if not (len(forces) == 1 and forces[0].getNumTabulatedFunctions() == 2):
            pairs = self._pairs_present(type_names)
            if len(forces) != len(pairs):
                raise ConfigurationError(f"cannot update the pair tables in place: expected {len(pairs)} forces "
                                         f"(one per type pair), got {len(forces)}")
            values = self.grid_values()
            new_tables = [values[k] for k in pairs]
        else:
            new_tables = [self._layout(type_names)[1]]
        for force, data in zip(forces, new_tables):
            fn = force.getTabulatedFunction(0)
            old_values, lo, hi = fn.getFunctionParameters()
            if len(old_values) != len(data):
                raise ConfigurationError(
                    f"cannot update the pair tables in place: the force holds {len(old_values)} table points, the "
                    f"new tables {len(data)} (grid, cutoff and pairs must not change)"
                )
            fn.setFunctionParameters(np.asarray(data).tolist(), lo, hi)
            if context is not None:
                force.updateParametersInContext(context)

    def spline(self, a: str, b: str):
        """The natural cubic spline of pair ``a``-``b``'s grid values that OpenMM's Continuous1DFunction
        evaluates (a :class:`scipy.interpolate.CubicSpline` on 0 .. cutoff; ``spline(r, 1)`` is dU/dr)."""
        from scipy.interpolate import CubicSpline

        key = type_key((a, b))
        if key not in self.tables:
            raise UnknownNameError(f"no table for {a}-{b}; tables: {['-'.join(k) for k in sorted(self.tables)]}")
        r, u = self.tables[key]
        return CubicSpline(self.grid, resample_table(r, u, self.grid, what=f"pair table {key[0]}-{key[1]}"),
                           bc_type="natural")

    def energy(self, a: str, b: str, r) -> np.ndarray:
        """U_ab(r) as OpenMM evaluates it (natural cubic spline of the grid values), kJ/mol."""
        spline = self.spline(a, b)
        r = np.asarray(r, dtype=float)
        return np.where(r <= self.cutoff, spline(np.clip(r, 0, self.cutoff)), 0.0)

    def to_data(self) -> dict:
        return {
            "kind": "tabulated_pair",
            "name": self.name,
            "cutoff_nm": self.cutoff,
            "spacing_nm": self.spacing,
            "exclusions": self.exclusions,
            "missing": self.missing,
            "layout": self.layout,
            "tables": {f"{a}-{b}": {"r_nm": r.tolist(), "u_kJ_per_mol": u.tolist()}
                       for (a, b), (r, u) in sorted(self.tables.items())},
        }

    @classmethod
    def from_data(cls, data: Mapping) -> TabulatedPairPotential:
        tables = {k: (v["r_nm"], v["u_kJ_per_mol"]) for k, v in data["tables"].items()}
        return cls(tables, cutoff=data["cutoff_nm"], spacing=data["spacing_nm"], exclusions=data["exclusions"],
                   missing=data.get("missing", "error"), layout=data.get("layout", "auto"),
                   name=data.get("name", "pair"))

    @classmethod
    def example(cls, topology: CGTopology) -> TabulatedPairPotential:
        r = np.linspace(0.2, 0.6, 81)
        return cls({key_to_str(p): (r, 4.0 * (0.3 / r) ** 12 - 2.0 * (0.3 / r) ** 6 * (1 + 0.1 * n) + 0.01)
                    for n, p in enumerate(topology.type_pairs())}, cutoff=0.6, exclusions="bonded")


class AnalyticPairPotential(ForceTerm):
    """U_ab(r) = sum_n c_ab,n r^-n, switched smoothly to zero at the cutoff.

    An analytic stand-in for a pair table (:meth:`fit`): no table lookups per pair.

    Parameters
    ----------
    coefficients : mapping
        ``{("A", "B"): {n: c_n}}`` with c_n in kJ/mol nm^n.
    cutoff, switch_distance : float
        nm; OpenMM's switching function acts between them.
    """

    kind = "analytic_pair"

    def __init__(self, coefficients, *, cutoff: float, switch_distance: float | None = None,
                 exclusions: str = "molecule", name: str = "pair_analytic"):
        self.coefficients = {_parse_pair(k): {int(n): float(c) for n, c in v.items()} for k, v in coefficients.items()}
        self.exponents = tuple(sorted({n for v in self.coefficients.values() for n in v}, reverse=True))
        self.cutoff = float(cutoff)
        self.switch_distance = float(switch_distance) if switch_distance is not None else 0.9 * self.cutoff
        if not 0 < self.switch_distance < self.cutoff:
            raise ConfigurationError(f"switch distance {self.switch_distance} must lie in (0, cutoff={self.cutoff})")
        self.exclusions = exclusions
        self.name = name

    @classmethod
    def fit(cls, tables, *, cutoff: float | None = None, exponents=(12, 10, 8, 6, 4), u_max: float = 25.0,
            switch_distance: float | None = None, exclusions: str = "molecule",
            name: str = "pair_analytic") -> AnalyticPairPotential:
        """Least-squares fit of inverse powers to tables where U < ``u_max`` kJ/mol (above the core).

        The fit residual (RMS, kJ/mol) of every pair is stored in ``fit_rms``.
        """
        tabs = _as_tables(tables)
        rc = float(cutoff) if cutoff is not None else max(float(r[-1]) for r, _ in tabs.values())
        coeffs, rms = {}, {}
        for key, (r, u) in tabs.items():
            sel = (r > 0) & (r <= rc)
            start = np.flatnonzero(sel & (u < u_max))
            if start.size < len(exponents):
                raise ConfigurationError(f"pair {key}: too few table points below {u_max} kJ/mol to fit")
            rr, uu = r[start[0]:][r[start[0]:] <= rc], u[start[0]:][r[start[0]:] <= rc]
            basis = np.stack([rr ** -float(n) for n in exponents], axis=1)
            scale = np.abs(basis).max(axis=0)
            c, *_ = np.linalg.lstsq(basis / scale, uu, rcond=None)
            c = c / scale
            coeffs[key] = {n: float(ci) for n, ci in zip(exponents, c)}
            rms[key] = float(np.sqrt(np.mean((basis @ c - uu) ** 2)))
        term = cls(coeffs, cutoff=rc, switch_distance=switch_distance, exclusions=exclusions, name=name)
        term.fit_rms = rms
        return term

    def energy(self, a: str, b: str, r) -> np.ndarray:
        """Unswitched U_ab(r) in kJ/mol."""
        r = np.asarray(r, dtype=float)
        return sum(c * r ** -float(n) for n, c in self.coefficients[type_key((a, b))].items())

    def create_forces(self, info: CGTopology) -> list:
        import openmm

        _check_types(set(self.coefficients), info, f"pair term {self.name!r}", False)
        check_cutoff(self.cutoff, info, f"pair term {self.name!r}")
        names = list(info.type_names)
        index = {t: i for i, t in enumerate(names)}
        nt = len(names)
        expr = " + ".join(f"cgc{n}(type1, type2)/r^{n}" for n in self.exponents)
        force = openmm.CustomNonbondedForce(expr)
        for n in self.exponents:
            table = np.zeros((nt, nt))
            for (a, b), c in self.coefficients.items():
                table[index[a], index[b]] = table[index[b], index[a]] = c.get(n, 0.0)
            force.addTabulatedFunction(f"cgc{n}", openmm.Discrete2DFunction(nt, nt, table.T.ravel().tolist()))
        force.addPerParticleParameter("type")
        for t in info.bead_types:
            force.addParticle([float(index[t])])
        force.setCutoffDistance(self.cutoff)
        force.setUseSwitchingFunction(True)
        force.setSwitchingDistance(self.switch_distance)
        force.setNonbondedMethod(
            openmm.CustomNonbondedForce.CutoffPeriodic if info.periodic else openmm.CustomNonbondedForce.CutoffNonPeriodic
        )
        force.setUseLongRangeCorrection(False)
        add_exclusions(force, info, self.exclusions)
        return [force]

    def to_data(self) -> dict:
        return {"kind": "analytic_pair", "name": self.name, "cutoff_nm": self.cutoff,
                "switch_distance_nm": self.switch_distance, "exclusions": self.exclusions,
                "coefficients": {f"{a}-{b}": {str(n): c for n, c in v.items()}
                                 for (a, b), v in self.coefficients.items()}}

    @classmethod
    def from_data(cls, data: Mapping) -> AnalyticPairPotential:
        return cls({k: {int(n): float(c) for n, c in v.items()} for k, v in data["coefficients"].items()},
                   cutoff=data["cutoff_nm"], switch_distance=data.get("switch_distance_nm"),
                   exclusions=data.get("exclusions", "molecule"), name=data.get("name", "pair_analytic"))

    @classmethod
    def example(cls, topology: CGTopology) -> AnalyticPairPotential:
        return cls({key_to_str(p): {12: 4.0 * 0.3**12, 6: -4.0 * 0.3**6 * (1 + 0.1 * n)}
                    for n, p in enumerate(topology.type_pairs())}, cutoff=0.6, exclusions="bonded")


def write_openmm_tables(path, term: TabulatedPairPotential, *, settings: dict | None = None) -> None:
    """The pair term as JSON (rebuild with :func:`read_openmm_tables`), with settings and versions."""
    import json

    data = {"format": PAIR_TABLES_FORMAT, "format_version": 1, "term": term.to_data(),
            "settings": settings or {}, "package_versions": package_versions()}
    atomic_write_text(path, json.dumps(data, indent=1))


def read_openmm_tables(path) -> TabulatedPairPotential:
    """Read :func:`write_openmm_tables` output (an IBI run's ``pair_tables.json``)."""
    import json
    from pathlib import Path

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"cannot read pair tables from {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != PAIR_TABLES_FORMAT:
        raise CorruptFileError(f"{path} is not an openmm_cgml pair-table file (format {PAIR_TABLES_FORMAT!r})")
    try:
        return TabulatedPairPotential.from_data(data["term"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptFileError(f"{path}: the pair-table term is incomplete or malformed: {exc!r}") from exc
