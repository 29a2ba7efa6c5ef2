"""Classical priors: one parameter table, a torch form, and an OpenMM twin derived from the same table.

The contract of a prior (a subclass of :class:`Prior`, registered in :data:`PRIORS` through the
entry-point group ``openmm_cgml.prior``):

``__init__(type_names, **args)`` and ``get_init_args() -> dict``
    Built from plain data; ``get_init_args`` returns the current values (learned ones included), so
    ``PRIORS.create(name, type_names=..., **prior.get_init_args())`` rebuilds it.
``bind(topology)``
    Attach a :class:`~openmm_cgml.topology.CGTopology` (bonded indices, bead types).
``cutoff``
    The pair range (nm) the prior needs from the model's neighbour list; 0 for bonded priors.
``forward(pos, n_frames, types, pair_i, pair_j, vec, dist, excluded, boxes) -> (n_frames,)``
    The torch form, in kJ/mol: ``pos`` (n_frames * n_beads, 3) nm; ``types`` the type index of every
    bead of every frame; ``pair_*`` the neighbour pairs (global indices) within at least ``cutoff``,
    ``vec``/``dist`` their minimum-image vectors and distances (nm); ``excluded`` marks bonded (1-2)
    and 1-3 pairs; ``boxes`` (n_frames, 3, 3) or None.  One signature for all, so a model sums its
    priors in TorchScript.
``openmm_twin(topology) -> list[ForceSpec]``
    The same energy as OpenMM forces (:class:`~openmm_cgml.forcespec.ForceSpec`, plain data built
    into forces by :func:`openmm_cgml.forces.spec.build_force`), from the same parameter table.
``pair_table_twin(topology) -> dict or None`` (optional)
    The same energy as a table per type pair, as plain data (the arguments of
    :func:`openmm_cgml.forces.compiled.make_pair_force`), or None (the default: no table form).  The compiled
    network backend builds it into a ``CGPairTableForce`` instead of ``openmm_twin``'s forces
    (:func:`openmm_cgml.forces.neural.compiled_prior_force`): that force runs in the calling thread, where
    OpenMM's CPU ``CustomNonbondedForce`` hands its work to the platform's threads every step.
``parse_config(section) -> dict``
    Constructor arguments (MD units) from the prior's YAML section in ``cgml train`` (quantities with
    units).
``example_args(topology) -> dict``
    Parameters for every bonded tuple and type pair of ``topology``, used by the contract test.

The contract test (``tests/test_contracts.py``) checks every registered prior: torch energy equal
to its OpenMM twin's, forces equal to finite differences, and the plain-data round trip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ..exceptions import ConfigurationError, UnitError
from ..forcespec import ARITY, HARMONIC_FORMS, ForceSpec, TabulatedFunctionSpec, harmonic_spec, harmonic_table
from ..registry import Registry
from ..topology import CGTopology, key_to_str, type_key, type_pairs
from ..units import to_md
from .neighbors import minimum_image

__all__ = ["PRIORS", "Prior", "RepulsionPrior", "HarmonicBondPrior", "HarmonicAnglePrior", "prior_configs"]

#: Registry of priors (filled from the entry-point group ``openmm_cgml.prior``); each takes ``type_names``
#: plus its own plain-data arguments.
PRIORS = Registry("prior")

#: Up to this many bead types the repulsion's OpenMM twin picks each pair's sigma from per-particle parameters
#: (a sigma row and a one-hot type); beyond, from a Discrete2DFunction table.
ONE_HOT_MAX_TYPES = 8


class Prior(nn.Module):
    """Base class of priors; see the module documentation for the contract."""

    #: Registry name.
    name: ClassVar[str] = "prior"

    def __init__(self, type_names: Sequence[str]):
        super().__init__()
        self.type_names = [str(t) for t in type_names]

    def get_init_args(self) -> dict:
        raise NotImplementedError

    def bind(self, topology: CGTopology) -> None:  # noqa: B027 - optional hook
        """Attach system-specific indices; the default binds nothing."""

    @property
    def cutoff(self) -> float:
        """Pair cutoff this prior needs from the neighbour list (nm; 0 for bonded priors)."""
        return 0.0

    def openmm_twin(self, topology: CGTopology) -> list[ForceSpec]:
        raise NotImplementedError(f"the prior {self.name!r} has no OpenMM twin")

    def pair_table_twin(self, topology: CGTopology) -> dict | None:
        """The prior as pair tables (plain data for the compiled pair force), or None (it has none; the default)."""
        return None

    @classmethod
    def parse_config(cls, section: Mapping[str, Any]) -> dict:
        """Constructor arguments from the prior's YAML section; the default takes it as it is."""
        return dict(section)

    @classmethod
    def example_args(cls, topology: CGTopology) -> dict:
        raise NotImplementedError(f"the prior {cls.name!r} gives no example parameters for the contract test")

    def _type_indices(self, topology: CGTopology) -> list[int]:
        lookup = {t: i for i, t in enumerate(self.type_names)}
        missing = sorted(set(topology.bead_types) - set(lookup))
        if missing:
            raise ConfigurationError(f"{self.name} prior: the system has bead types {missing} it was not built for "
                                     f"({self.type_names})")
        return [lookup[t] for t in topology.bead_types]


def _quantity(value, kind: str, what: str) -> float:
    """A YAML quantity with units -> MD float (bare numbers refused)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise UnitError(f"{what}: the number {value!r} has no unit; write it with one (e.g. '{value} nm')")
    return to_md(value, kind, name=what, allow_bare=False)


def _angle(value, what: str) -> float:
    """An angle in YAML ("120 deg", "2.09 rad") -> radians."""
    from ..units import _registry

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise UnitError(f"{what}: the number {value!r} has no unit; write it like '{value} deg' or '{value} rad'")
    try:
        return float(_registry().Quantity(str(value)).to("radian").magnitude)
    except Exception as exc:  # pint raises several types for bad strings
        raise UnitError(f"{what}: cannot read {value!r} as an angle (e.g. '120 deg'): {exc}") from exc


# ----------------------------------------------------------------------------- repulsion
class RepulsionPrior(Prior):
    """Excluded-volume repulsion ``(sigma_ij / r)^n - (sigma_ij / r_c)^n`` for ``r < r_c``, per type pair.

    ``sigma_ij`` is a parameter per unordered type pair (learnable by default).  Bonded (1-2) and
    1-3 pairs are skipped.

    Parameters
    ----------
    type_names : sequence of str
    sigma : float or mapping
        nm; one value for every pair, or ``{"A-B": value}`` for every type pair (the parameter table).
    exponent : int
        The power ``n``.
    cutoff : float
        nm; the energy is shifted to zero there.
    learnable : bool
        Whether sigma is trained.
    """

    name = "repulsion"

    def __init__(self, type_names: Sequence[str], sigma=0.3, exponent: int = 6, cutoff: float = 0.8,
                 learnable: bool = True):
        super().__init__(type_names)
        from ..forcespec import type_index_table

        values = sigma if isinstance(sigma, Mapping) else {key_to_str(p): float(sigma)
                                                           for p in type_pairs(self.type_names)}
        values = {key_to_str(k.split("-")) if isinstance(k, str) else key_to_str(k): float(v) for k, v in values.items()}
        table = torch.tensor(type_index_table(self.type_names, values, "repulsion prior sigma"), dtype=torch.float64)
        if bool((table <= 0).any()):
            raise ConfigurationError(f"repulsion prior: sigma must be positive, got {values}")
        if cutoff <= 0 or exponent <= 0:
            raise ConfigurationError(f"repulsion prior: cutoff and exponent must be positive, got {cutoff}, {exponent}")
        self.exponent = int(exponent)
        self._cutoff = float(cutoff)
        self.learnable = bool(learnable)
        log_sigma = torch.log(table).to(torch.get_default_dtype())
        if self.learnable:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)

    @property
    def cutoff(self) -> float:
        return self._cutoff

    def sigma_table(self) -> torch.Tensor:
        """Symmetric (n_types, n_types) sigma in nm."""
        s = torch.exp(self.log_sigma)
        return 0.5 * (s + s.transpose(0, 1))

    def sigma_values(self) -> dict[str, float]:
        """The parameter table ``{"A-B": sigma}`` (nm), current values."""
        table = self.sigma_table().detach().double()
        idx = {t: i for i, t in enumerate(self.type_names)}
        return {key_to_str((a, b)): float(table[idx[a], idx[b]]) for a, b in type_pairs(self.type_names)}

    def get_init_args(self) -> dict:
        return {"sigma": self.sigma_values(), "exponent": self.exponent, "cutoff": self._cutoff,
                "learnable": self.learnable}

    @staticmethod
    def _excluded_pairs(topology: CGTopology) -> list[tuple[int, int]]:
        """The bonded (1-2) and 1-3 pairs the repulsion skips, (i < j), sorted."""
        excl = {(min(a, b), max(a, b)) for a, b in topology.bonds.tolist()}
        excl |= {(min(a, c), max(a, c)) for a, _, c in topology.angles.tolist()}
        return sorted(excl)

    def openmm_twin(self, topology: CGTopology) -> list[ForceSpec]:
        types = self._type_indices(topology)
        n = len(self.type_names)
        sig = self.sigma_table().detach().double().numpy()
        rc, p = self._cutoff, self.exponent
        excl = self._excluded_pairs(topology)
        if n <= ONE_HOT_MAX_TYPES:
            # sigma of the pair as sum_k sigma(t1, k) [t2 == k] from per-particle rows and one-hot types: the same
            # numbers as the table lookup below, about 2x faster on OpenMM's CPU platform (measured for 2 types)
            names = tuple(f"s{k}x" for k in range(n)) + tuple(f"e{k}x" for k in range(n))
            pick = " + ".join(f"s{k}x1*e{k}x2" for k in range(n))
            return [ForceSpec(
                "nonbonded", f"(s/r)^{p} - (s/{rc!r})^{p}; s = {pick}", names,
                tuple(((i,), tuple(float(v) for v in sig[t]) + tuple(float(k == t) for k in range(n)))
                      for i, t in enumerate(types)),
                exclusions=tuple(excl), cutoff=rc, periodic=topology.periodic, name="repulsion")]
        return [ForceSpec(
            "nonbonded", f"(s/r)^{p} - (s/{rc!r})^{p}; s = sigma_table(t1, t2)", ("t",),
            tuple(((i,), (float(t),)) for i, t in enumerate(types)),
            functions={"sigma_table": TabulatedFunctionSpec("discrete2d", tuple(float(sig[i % n, i // n])
                                                                                for i in range(n * n)), (n, n))},
            exclusions=tuple(excl), cutoff=rc, periodic=topology.periodic, name="repulsion")]

    #: The compiled twin's table: grid spacing (nm), and the energy (kJ/mol) above which it continues linearly
    #: (with the slope there) towards r = 0, where the power law has no finite value.  Natural-spline error on
    #: this grid: < 1e-6 relative in energy from the cutoff to where one pair costs 1e3 kJ/mol, for n = 6 and 12
    #: (tests/test_priors_compiled.py).
    COMPILED_SPACING = 0.0005
    COMPILED_ENERGY_CAP = 1.0e6

    def pair_table_twin(self, topology: CGTopology) -> dict:
        """The repulsion as tables for a ``CGPairTableForce``: each type pair's ``(s/r)^n - (s/r_c)^n`` on a uniform
        grid to the cutoff (the force's natural cubic spline, :attr:`COMPILED_SPACING`), bonded and 1-3 pairs
        excluded; the keyword arguments of :func:`openmm_cgml.forces.compiled.make_pair_force`."""
        import numpy as np

        sig = self.sigma_table().detach().double().numpy()
        rc, p, cap = self._cutoff, self.exponent, self.COMPILED_ENERGY_CAP
        m = max(2, int(np.ceil(rc / self.COMPILED_SPACING - 1e-9)))
        r = np.linspace(0.0, rc, m + 1)
        tables = {}
        n = len(self.type_names)
        for a in range(n):
            for b in range(a, n):
                s = float(sig[a, b])
                shift = (s / rc) ** p
                r_cap = s * (cap + shift) ** (-1.0 / p)   # where the shifted energy reaches the cap
                slope = -p * (cap + shift) / r_cap        # dU/dr there
                tables[(a, b)] = np.where(r >= r_cap, (s / np.maximum(r, r_cap)) ** p - shift,
                                          cap + slope * (r - r_cap))
        return {"types": self._type_indices(topology), "n_types": n, "tables": tables,
                "exclusions": np.array(self._excluded_pairs(topology), dtype=int).reshape(-1, 2), "cutoff": rc,
                "periodic": topology.periodic, "name": "repulsion"}

    @classmethod
    def parse_config(cls, section: Mapping[str, Any]) -> dict:
        spec = dict(section)
        sigma = spec.pop("sigma", "0.3 nm")
        sigma = ({k: _quantity(v, "length", f"repulsion sigma {k}") for k, v in sigma.items()}
                 if isinstance(sigma, Mapping) else _quantity(sigma, "length", "repulsion sigma"))
        args = {"sigma": sigma, "exponent": int(spec.pop("exponent", 6)),
                "cutoff": _quantity(spec.pop("cutoff", "0.8 nm"), "length", "repulsion cutoff"),
                "learnable": bool(spec.pop("learnable", True))}
        if spec:
            raise ConfigurationError(f"unknown repulsion prior keys {sorted(spec)}; known: sigma, exponent, cutoff, "
                                     "learnable")
        return args

    @classmethod
    def example_args(cls, topology: CGTopology) -> dict:
        return {"sigma": {key_to_str(p): 0.3 + 0.02 * k for k, p in enumerate(type_pairs(topology.type_names))},
                "exponent": 12, "cutoff": 0.6}

    def forward(self, pos: torch.Tensor, n_frames: int, types: torch.Tensor, pair_i: torch.Tensor,
                pair_j: torch.Tensor, vec: torch.Tensor, dist: torch.Tensor, excluded: torch.Tensor,
                boxes: torch.Tensor | None = None) -> torch.Tensor:
        keep = (dist < self._cutoff) & (~excluded)
        i = pair_i[keep]
        d = dist[keep]
        sig = self.sigma_table()[types[i], types[pair_j[keep]]]
        e = torch.pow(sig / d, self.exponent) - torch.pow(sig / self._cutoff, self.exponent)
        n_beads = pos.shape[0] // n_frames
        out = torch.zeros(n_frames, dtype=pos.dtype, device=pos.device)
        return out.index_add(0, torch.div(i, n_beads, rounding_mode="floor"), e.to(pos.dtype))


# ----------------------------------------------------------------------------- harmonic bonded priors
class _HarmonicPrior(Prior):
    """Shared code of the harmonic bonded priors: the parameter table of :mod:`openmm_cgml.forcespec`
    (``{"A-B": {"r0": .., "k": ..}}``) bound to the system's bonded tuples."""

    kind: ClassVar[str] = "bond"

    def __init__(self, type_names: Sequence[str], parameters: Mapping[str, Mapping[str, float]]):
        super().__init__(type_names)
        self.table = harmonic_table(self.kind, parameters, what=f"{self.name} prior")
        n = ARITY[self.kind]
        self.register_buffer("index", torch.zeros(0, n, dtype=torch.long), persistent=False)
        self.register_buffer("x0", torch.zeros(0), persistent=False)
        self.register_buffer("k", torch.zeros(0), persistent=False)

    def get_init_args(self) -> dict:
        return {"parameters": {k: dict(v) for k, v in self.table.items()}}

    def bind(self, topology: CGTopology) -> None:
        spec = harmonic_spec(self.kind, self.table, topology, what=f"{self.name} prior")
        n = ARITY[self.kind]
        self.index = torch.tensor([list(atoms) for atoms, _ in spec.items], dtype=torch.long).reshape(-1, n)
        self.x0 = torch.tensor([v[0] for _, v in spec.items], dtype=self.x0.dtype)
        self.k = torch.tensor([v[1] for _, v in spec.items], dtype=self.k.dtype)

    def openmm_twin(self, topology: CGTopology) -> list[ForceSpec]:
        return [harmonic_spec(self.kind, self.table, topology, name=self.name, what=f"{self.name} prior")]

    @classmethod
    def example_args(cls, topology: CGTopology) -> dict:
        x0_name = HARMONIC_FORMS[cls.kind][0]
        keys = sorted({type_key(topology.bead_types[i] for i in t) for t in topology.bonded_tuples(cls.kind).tolist()})
        x0, k = (0.35, 2000.0) if cls.kind == "bond" else (2.0, 40.0)
        return {"parameters": {key_to_str(key): {x0_name: x0 + 0.01 * n, "k": k * (1 + 0.1 * n)}
                               for n, key in enumerate(keys)}}


def _bond_vectors(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor, boxes: torch.Tensor | None) -> torch.Tensor:
    """Vectors from beads ``a`` to beads ``b`` in frames ``p`` (n_frames, n_beads, 3), minimum image if periodic."""
    v = p[:, b] - p[:, a]
    if boxes is not None:
        n_frames, m = v.shape[0], v.shape[1]
        box_per = boxes.to(v.dtype).unsqueeze(1).expand(n_frames, m, 3, 3).reshape(-1, 3, 3)
        v = v + minimum_image(v.detach().reshape(-1, 3), box_per).reshape(v.shape)
    return v


class HarmonicBondPrior(_HarmonicPrior):
    """Harmonic bonds ``k/2 (r - r0)^2`` with ``{"A-B": {"r0": nm, "k": kJ/mol/nm^2}}`` per type pair.

    The parameters usually come from Boltzmann inversion of the mapped bond-length distributions
    (:func:`openmm_cgml.training.boltzmann_priors`).
    """

    name = "harmonic_bond"
    kind = "bond"

    @classmethod
    def parse_config(cls, section: Mapping[str, Any]) -> dict:
        return {"parameters": {k: {"r0": _quantity(v["r0"], "length", f"bond {k} r0"),
                                   "k": _force_constant(v["k"], "kJ/mol/nm**2", f"bond {k} k")}
                               for k, v in dict(section).items()}}

    def forward(self, pos: torch.Tensor, n_frames: int, types: torch.Tensor, pair_i: torch.Tensor,
                pair_j: torch.Tensor, vec: torch.Tensor, dist: torch.Tensor, excluded: torch.Tensor,
                boxes: torch.Tensor | None = None) -> torch.Tensor:
        if self.index.shape[0] == 0:
            return torch.zeros(n_frames, dtype=pos.dtype, device=pos.device)
        p = pos.reshape(n_frames, pos.shape[0] // n_frames, 3)
        v = _bond_vectors(p, self.index[:, 0], self.index[:, 1], boxes)
        r = torch.sqrt((v * v).sum(-1))
        return (0.5 * self.k.to(pos.dtype) * (r - self.x0.to(pos.dtype)) ** 2).sum(-1)


class HarmonicAnglePrior(_HarmonicPrior):
    """Harmonic angles ``k/2 (theta - theta0)^2`` with ``{"A-B-C": {"theta0": rad, "k": kJ/mol/rad^2}}``."""

    name = "harmonic_angle"
    kind = "angle"

    @classmethod
    def parse_config(cls, section: Mapping[str, Any]) -> dict:
        return {"parameters": {k: {"theta0": _angle(v["theta0"], f"angle {k} theta0"),
                                   "k": _force_constant(v["k"], "kJ/mol", f"angle {k} k")}
                               for k, v in dict(section).items()}}

    def forward(self, pos: torch.Tensor, n_frames: int, types: torch.Tensor, pair_i: torch.Tensor,
                pair_j: torch.Tensor, vec: torch.Tensor, dist: torch.Tensor, excluded: torch.Tensor,
                boxes: torch.Tensor | None = None) -> torch.Tensor:
        if self.index.shape[0] == 0:
            return torch.zeros(n_frames, dtype=pos.dtype, device=pos.device)
        p = pos.reshape(n_frames, pos.shape[0] // n_frames, 3)
        v1 = _bond_vectors(p, self.index[:, 1], self.index[:, 0], boxes)
        v2 = _bond_vectors(p, self.index[:, 1], self.index[:, 2], boxes)
        # atan2(|v1 x v2|, v1.v2) is accurate (and differentiable) near 0 and pi, unlike acos.
        cross = torch.linalg.cross(v1, v2)
        theta = torch.atan2(torch.sqrt((cross * cross).sum(-1) + 1e-30), (v1 * v2).sum(-1))
        return (0.5 * self.k.to(pos.dtype) * (theta - self.x0.to(pos.dtype)) ** 2).sum(-1)


def _force_constant(value, unit: str, what: str) -> float:
    """A force constant with units (``"3000 kJ/mol/nm**2"``, angles per rad^2 written as kJ/mol) -> MD float."""
    from ..units import _registry

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise UnitError(f"{what}: the number {value!r} has no unit; write it like '{value} {unit}'")
    try:
        q = _registry().Quantity(str(value))
        return float(q.to(unit.replace("kJ/mol", "kilojoule/mole")).magnitude)
    except Exception as exc:  # pint raises several types for bad strings
        raise UnitError(f"{what}: cannot read {value!r} as a quantity in {unit}: {exc}") from exc


def prior_configs(section: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """``[{"name", "args"}]`` (MD units) from a YAML ``priors`` section ``{name: {...with units}}``: each prior
    parses its own section (:meth:`Prior.parse_config`); an unknown name lists the registered ones."""
    out = []
    for name, spec in dict(section).items():
        cls = PRIORS.get(name)
        if not isinstance(spec, Mapping):
            raise ConfigurationError(f"the priors section of {name!r} must be a mapping, got {spec!r}")
        out.append({"name": name, "args": cls.parse_config(spec)})
    return out

