"""Classical priors as torch modules (the torch twins of the OpenMM forces in :mod:`openmm_cgml.forces.neural`).

Every prior is built from plain data (``get_init_args()`` returns it) and bound to a
concrete system with :meth:`bind` (bonded indices).  All share one ``forward`` signature
so a model can sum them in TorchScript:

``forward(pos, n_frames, types, pair_i, pair_j, vec, dist, excluded, boxes)`` -> energy per frame (kJ/mol)

where ``pos`` is (n_frames * n_beads, 3) nm, ``pair_*`` index the neighbour pairs
(global indices), ``vec``/``dist`` their minimum-image vectors (nm) and ``excluded`` marks
bonded (1-2) and 1-3 pairs, which the excluded-volume prior skips; ``boxes`` (n_frames, 3, 3)
or None gives the bonded priors the minimum image.

Conventions follow OpenMM: ``E = k/2 (r - r0)^2`` (HarmonicBondForce) and
``E = k/2 (theta - theta0)^2`` (HarmonicAngleForce, radians).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..exceptions import ConfigurationError
from ..registry import Registry
from .neighbors import minimum_image

__all__ = [
    "PRIORS",
    "Prior",
    "RepulsionPrior",
    "HarmonicBondPrior",
    "HarmonicAnglePrior",
    "pair_key",
    "angle_key",
]

#: Registry of prior factories; each takes ``type_names`` plus its own plain-data arguments.
PRIORS = Registry("prior")


def pair_key(a: str, b: str) -> str:
    """Canonical name of an unordered bead-type pair, e.g. ``"A-B"``."""
    return "-".join(sorted((a, b)))


def angle_key(a: str, b: str, c: str) -> str:
    """Canonical name of a bead-type triplet with ``b`` at the apex (``"A-B-C"`` == ``"C-B-A"``)."""
    return "-".join(min((a, b, c), (c, b, a)))


class Prior(nn.Module):
    """Base class: a prior energy term. Subclasses implement ``forward`` and ``get_init_args``."""

    name: str = "prior"

    def get_init_args(self) -> dict:
        raise NotImplementedError

    def bind(self, bead_types: Sequence[int], bonds, angles) -> None:  # noqa: B027 - optional hook
        """Attach system-specific indices (bead type indices, bonds, angles); default: nothing."""

    @property
    def cutoff(self) -> float:
        """Pair cutoff this prior needs from the neighbour list (0 for bonded priors)."""
        return 0.0


def _type_pairs(type_names: Sequence[str]):
    return [(a, b) for ia, a in enumerate(type_names) for b in type_names[ia:]]


@PRIORS.register("repulsion")
class RepulsionPrior(Prior):
    """Excluded-volume repulsion ``(sigma_ij / r)^n - (sigma_ij / r_c)^n`` for ``r < r_c``, per type pair.

    ``sigma_ij`` is a parameter per unordered type pair (learnable by default), not one
    fixed value for every pair.  Bonded (1-2) and 1-3 pairs are skipped.

    Parameters
    ----------
    type_names : sequence of str
        Bead types, in the model's order.
    sigma : float or mapping
        nm; one start value for all pairs, or ``{"A-B": value}`` for every type pair.
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
        super().__init__()
        self.type_names = list(type_names)
        n = len(self.type_names)
        table = torch.empty(n, n, dtype=torch.float64)
        for ia, a in enumerate(self.type_names):
            for ib, b in enumerate(self.type_names):
                if isinstance(sigma, Mapping):
                    key = pair_key(a, b)
                    if key not in sigma:
                        raise ConfigurationError(
                            f"repulsion prior: no sigma for the type pair {key!r}; expected keys for "
                            f"{[pair_key(x, y) for x, y in _type_pairs(self.type_names)]}, got {sorted(sigma)}"
                        )
                    table[ia, ib] = float(sigma[key])
                else:
                    table[ia, ib] = float(sigma)
        if bool((table <= 0).any()):
            raise ConfigurationError(f"repulsion prior: sigma must be positive, got {table.tolist()}")
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

    def get_init_args(self) -> dict:
        table = self.sigma_table().detach().double()
        sigma = {pair_key(a, b): float(table[self.type_names.index(a), self.type_names.index(b)])
                 for a, b in _type_pairs(self.type_names)}
        return {"sigma": sigma, "exponent": self.exponent, "cutoff": self._cutoff, "learnable": self.learnable}

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


class _BondedPrior(Prior):
    """Shared code of the harmonic bonded priors: a type-keyed parameter table bound to indices."""

    n_atoms: int = 2

    def __init__(self, type_names: Sequence[str], parameters: Mapping[str, Mapping[str, float]]):
        super().__init__()
        self.type_names = list(type_names)
        self.table = {str(k): {"r0" if "r0" in v else "theta0": float(v.get("r0", v.get("theta0", 0.0))),
                                    "k": float(v["k"])} for k, v in dict(parameters).items()}
        self.register_buffer("index", torch.zeros(0, self.n_atoms, dtype=torch.long))
        self.register_buffer("x0", torch.zeros(0))
        self.register_buffer("k", torch.zeros(0))

    def get_init_args(self) -> dict:
        return {"parameters": {k: dict(v) for k, v in self.table.items()}}

    def _key(self, names: list[str]) -> str:
        raise NotImplementedError

    def bind(self, bead_types: Sequence[int], bonds, angles) -> None:
        index = torch.tensor(np.array(self._indices(bonds, angles)), dtype=torch.long).reshape(-1, self.n_atoms)
        x0, k, missing = [], [], set()
        for row in index.tolist():
            key = self._key([self.type_names[int(bead_types[a])] for a in row])
            entry = self.table.get(key)
            if entry is None:
                missing.add(key)
                continue
            x0.append(entry.get("r0", entry.get("theta0")))
            k.append(entry["k"])
        if missing:
            raise ConfigurationError(
                f"{self.name} prior: no parameters for {sorted(missing)}; it has {sorted(self.table)}"
            )
        self.index = index
        self.x0 = torch.tensor(x0, dtype=self.x0.dtype)
        self.k = torch.tensor(k, dtype=self.k.dtype)

    def _indices(self, bonds, angles):
        raise NotImplementedError


@PRIORS.register("harmonic_bond")
class HarmonicBondPrior(_BondedPrior):
    """Harmonic bonds ``k/2 (r - r0)^2`` with ``{"A-B": {"r0": nm, "k": kJ/mol/nm^2}}`` per type pair.

    The parameters usually come from Boltzmann inversion of the mapped bond-length
    distributions (``k = kT / var(r)``, ``r0 = <r>``).
    """

    name = "harmonic_bond"
    n_atoms = 2

    def _key(self, names):
        return pair_key(*names)

    def _indices(self, bonds, angles):
        return bonds

    def forward(self, pos: torch.Tensor, n_frames: int, types: torch.Tensor, pair_i: torch.Tensor,
                pair_j: torch.Tensor, vec: torch.Tensor, dist: torch.Tensor, excluded: torch.Tensor,
                boxes: torch.Tensor | None = None) -> torch.Tensor:
        if self.index.shape[0] == 0:
            return torch.zeros(n_frames, dtype=pos.dtype, device=pos.device)
        p = pos.reshape(n_frames, pos.shape[0] // n_frames, 3)
        v = _bond_vectors(p, self.index[:, 0], self.index[:, 1], boxes)
        r = torch.sqrt((v * v).sum(-1))
        return (0.5 * self.k.to(pos.dtype) * (r - self.x0.to(pos.dtype)) ** 2).sum(-1)


def _bond_vectors(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor, boxes: torch.Tensor | None) -> torch.Tensor:
    """Vectors from beads ``a`` to beads ``b`` in frames ``p`` (n_frames, n_beads, 3), minimum image if periodic."""
    v = p[:, b] - p[:, a]
    if boxes is not None:
        v = v + _bonded_shift(v, boxes)
    return v


def _bonded_shift(v: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Minimum-image shifts for bonded vectors ``v`` (n_frames, m, 3) with boxes (n_frames, 3, 3)."""
    n_frames, m = v.shape[0], v.shape[1]
    box_per = boxes.to(v.dtype).unsqueeze(1).expand(n_frames, m, 3, 3).reshape(-1, 3, 3)
    return minimum_image(v.detach().reshape(-1, 3), box_per).reshape(v.shape)


@PRIORS.register("harmonic_angle")
class HarmonicAnglePrior(_BondedPrior):
    """Harmonic angles ``k/2 (theta - theta0)^2`` with ``{"A-B-C": {"theta0": rad, "k": kJ/mol/rad^2}}``."""

    name = "harmonic_angle"
    n_atoms = 3

    def _key(self, names):
        return angle_key(*names)

    def _indices(self, bonds, angles):
        return angles

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


def degrees_to_radians(value: float) -> float:
    """Convenience for configuration files that give angles in degrees."""
    return value * math.pi / 180.0
