"""Plain descriptions of OpenMM custom forces, and the functional forms shared by priors and force terms.

A :class:`ForceSpec` says everything needed to build one OpenMM ``Custom*Force`` (energy
expression, per-item parameters, tabulated functions, exclusions, cutoff) as plain data, without
importing OpenMM.  It is the contract between the torch priors of :mod:`openmm_cgml.models`
(each prior's ``openmm_twin`` returns specs equal to its torch energy) and the OpenMM layer
(:func:`openmm_cgml.forces.spec.build_force` turns a spec into a force), so that a new prior
works through the OpenMM path without code that knows its name.

The harmonic bonded forms are defined here once, with one parameter format::

    bonds   {"A-B":   {"r0": nm,      "k": kJ/mol/nm^2}}    U = k/2 (r - r0)^2
    angles  {"A-B-C": {"theta0": rad, "k": kJ/mol/rad^2}}   U = k/2 (theta - theta0)^2

(OpenMM's ``HarmonicBondForce`` / ``HarmonicAngleForce`` conventions).  The torch prior
(:class:`~openmm_cgml.models.priors.HarmonicBondPrior`) and the OpenMM force term
(:class:`~openmm_cgml.forces.bonded.HarmonicBonds`) both read this table and build their forces
with :func:`harmonic_spec`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .exceptions import ConfigurationError, UnknownNameError
from .topology import CGTopology, key_from_str, key_to_str, type_key

__all__ = ["TabulatedFunctionSpec", "ForceSpec", "HARMONIC_FORMS", "harmonic_table", "harmonic_spec",
           "assign_bonded"]

ARITY = {"bond": 2, "angle": 3, "dihedral": 4}


@dataclass(frozen=True)
class TabulatedFunctionSpec:
    """An OpenMM tabulated function: ``kind`` with ``values`` on a grid of ``shape``.

    ``bounds`` is ``(min, max)`` for continuous 1-D functions and ``(xmin, xmax, ymin, ymax)`` for
    continuous 2-D ones (empty for discrete functions).  Values are in x-major order as OpenMM expects
    (``values[i + nx * j]``).
    """

    kind: Literal["discrete1d", "discrete2d", "continuous1d", "continuous2d"]
    values: tuple[float, ...]
    shape: tuple[int, ...]
    bounds: tuple[float, ...] = ()
    periodic: bool = False


@dataclass(frozen=True)
class ForceSpec:
    """One OpenMM custom force as plain data.

    Attributes
    ----------
    kind : {"bond", "angle", "torsion", "compound", "nonbonded"}
        ``CustomBondForce``, ``CustomAngleForce``, ``CustomTorsionForce``, ``CustomCompoundBondForce``
        (``n_particles`` per item) or ``CustomNonbondedForce``.
    energy : str
        The energy expression (kJ/mol; distances nm, angles rad).
    parameters : tuple of str
        Per-item parameter names (per bond, or per particle for ``nonbonded``).
    items : tuple of (indices, values)
        Bonded kinds: the particles of each bond and its parameter values.  ``nonbonded``: one entry per
        particle, ``((i,), values)``, in particle order.
    functions : dict of str to TabulatedFunctionSpec
    global_parameters : dict of str to float
    exclusions : tuple of (i, j)
        ``nonbonded`` only.
    cutoff : float or None
        nm; ``nonbonded`` only (cutoff method periodic or not after ``periodic``).
    periodic : bool
        Whether the force uses periodic boundary conditions.
    n_particles : int
        ``compound`` only.
    name : str
        The force's name (the System assembler may prefix it).
    """

    kind: Literal["bond", "angle", "torsion", "compound", "nonbonded"]
    energy: str
    parameters: tuple[str, ...] = ()
    items: tuple[tuple[tuple[int, ...], tuple[float, ...]], ...] = ()
    functions: Mapping[str, TabulatedFunctionSpec] = field(default_factory=dict)
    global_parameters: Mapping[str, float] = field(default_factory=dict)
    exclusions: tuple[tuple[int, int], ...] = ()
    cutoff: float | None = None
    periodic: bool = False
    n_particles: int = 0
    name: str = ""

    def __post_init__(self):
        if self.kind not in ("bond", "angle", "torsion", "compound", "nonbonded"):
            raise ConfigurationError(f"unknown force kind {self.kind!r}")
        if self.kind == "nonbonded" and self.cutoff is None:
            raise ConfigurationError("a nonbonded ForceSpec needs a cutoff (nm)")
        n_par = len(self.parameters)
        for _, values in self.items:
            if len(values) != n_par:
                raise ConfigurationError(f"{self.name or self.kind}: an item has {len(values)} parameter values "
                                         f"for {n_par} parameters {list(self.parameters)}")


# ----------------------------------------------------------------------------- harmonic bonded forms
#: kind -> (the equilibrium parameter's name, the OpenMM force kind, the energy expression).
HARMONIC_FORMS = {
    "bond": ("r0", "bond", "0.5*k*(r-r0)^2"),
    "angle": ("theta0", "angle", "0.5*k*(theta-theta0)^2"),
}


def harmonic_table(kind: str, parameters: Mapping, *, what: str = "harmonic parameters") -> dict[str, dict[str, float]]:
    """Validate a harmonic parameter table and return it canonicalised: ``{"A-B": {"r0": .., "k": ..}}``.

    Keys may be ``"A-B"`` strings or tuples; values ``{"r0"/"theta0": x0, "k": k}``.  ``k`` must be positive.
    """
    if kind not in HARMONIC_FORMS:
        raise UnknownNameError(f"no harmonic form for {kind!r}; known: {sorted(HARMONIC_FORMS)}")
    x0_name = HARMONIC_FORMS[kind][0]
    if not isinstance(parameters, Mapping) or not parameters:
        raise ConfigurationError(f"{what}: expected a non-empty mapping of bead types ('A-B') to "
                                 f"{{{x0_name!r}: ..., 'k': ...}}, got {parameters!r}")
    out: dict[str, dict[str, float]] = {}
    for key, value in parameters.items():
        name = key_to_str(key_from_str(key, ARITY[kind]))
        if not isinstance(value, Mapping) or set(value) != {x0_name, "k"}:
            raise ConfigurationError(f"{what}: the entry for {name} must have exactly the keys {x0_name!r} and 'k', "
                                     f"got {value!r}")
        x0, k = float(value[x0_name]), float(value["k"])
        if not (np.isfinite(x0) and np.isfinite(k) and k > 0):
            raise ConfigurationError(f"{what}: {name} needs a finite {x0_name} and a positive k, got {x0_name}={x0}, "
                                     f"k={k}")
        if name in out and out[name] != {x0_name: x0, "k": k}:
            raise ConfigurationError(f"{what}: two different entries for {name}")
        out[name] = {x0_name: x0, "k": k}
    return out


def assign_bonded(topology: CGTopology, kind: str, keys, what: str) -> list[tuple[tuple[int, ...], str]]:
    """Every ``kind`` tuple of ``topology`` with its key (``"A-B"``), refusing tuples without parameters and
    keys naming bead types the system lacks."""
    known = set(topology.type_names)
    parsed = {k: key_from_str(k, ARITY[kind]) for k in keys}
    for k, key in parsed.items():
        bad = [t for t in key if t not in known]
        if bad:
            raise UnknownNameError(f"{what}: bead types {bad} of {k} are not in the system; known bead types: "
                                   f"{sorted(known)}")
    names = {key: k for k, key in parsed.items()}
    out = []
    for tup in topology.bonded_tuples(kind):
        key = type_key(topology.bead_types[i] for i in tup)
        if key not in names:
            raise ConfigurationError(
                f"{what}: no parameters for the {kind} {'-'.join(key)} (beads {tup.tolist()}); parameters are given "
                f"for {sorted(names.values())}")
        out.append((tuple(int(i) for i in tup), names[key]))
    return out


def harmonic_spec(kind: str, parameters: Mapping, topology: CGTopology, *, name: str = "",
                  what: str | None = None) -> ForceSpec:
    """The OpenMM force (as a :class:`ForceSpec`) of harmonic ``kind`` terms with ``parameters`` on ``topology``."""
    what = what or f"harmonic {kind}s"
    table = harmonic_table(kind, parameters, what=what)
    x0_name, force_kind, energy = HARMONIC_FORMS[kind]
    items = tuple((atoms, (table[key][x0_name], table[key]["k"]))
                  for atoms, key in assign_bonded(topology, kind, table, what))
    return ForceSpec(force_kind, energy, (x0_name, "k"), items, periodic=topology.periodic, name=name)


def type_index_table(type_names: Sequence[str], values: Mapping[str, float], what: str) -> np.ndarray:
    """A symmetric ``(n_types, n_types)`` table from per-pair values ``{"A-B": v}`` (every pair required)."""
    n = len(type_names)
    table = np.empty((n, n))
    for ia, a in enumerate(type_names):
        for ib, b in enumerate(type_names):
            key = key_to_str((a, b))
            if key not in values:
                raise ConfigurationError(f"{what}: no value for the type pair {key!r}; expected keys for every pair "
                                         f"of {list(type_names)}")
            table[ia, ib] = float(values[key])
    return table
