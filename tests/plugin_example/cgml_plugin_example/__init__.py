"""An example openmm_cgml plug-in: one of each extension point, written against the documented contracts only.

- ``PairMLP`` (model ``pair_mlp``): a pairwise network, E = sum over pairs of MLP(r) . w(type pair) times a
  cosine envelope, plus its priors; hyperparameters validated by its own schema (``PairMLPConfig``).
- ``SoftCorePrior`` (prior ``soft_core``): eps_ab (1 - r / r_c)^2 between non-bonded pairs; one parameter
  table (eps per type pair), a torch form and an OpenMM twin derived from it.
- ``one_bead`` (mapping ``one_bead``): one bead per molecule at its centre of mass.
- ``LinearAlpha`` (alpha model ``linear``): alpha(T) = alpha0 + slope (T - T0).
- ``GaussianPairs`` (force term ``gaussian_pairs``): A_ab exp(-(r / w)^2) between beads of different molecules.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from openmm_cgml.config import Length, StrictModel
from openmm_cgml.dynamics.alpha import AlphaModel
from openmm_cgml.forces.base import ForceTerm
from openmm_cgml.forces.spec import build_force
from openmm_cgml.forcespec import ForceSpec, TabulatedFunctionSpec, type_index_table
from openmm_cgml.mapping import mapping_from_spec
from openmm_cgml.models import CGModel, Prior
from openmm_cgml.models.neighbors import batched_neighbor_pairs
from openmm_cgml.topology import key_to_str, type_pairs
from openmm_cgml.units import to_md

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class PairMLPConfig(StrictModel):
    """The ``model`` section of ``cgml train`` for ``name: pair_mlp``."""

    width: int = Field(8, ge=1)
    cutoff: Length = "0.6 nm"
    dtype: str = "float32"


class PairMLP(CGModel):
    """A pairwise neural potential (an example of the CGModel contract)."""

    name = "pair_mlp"
    Config = PairMLPConfig

    def __init__(self, type_names, priors=(), width: int = 8, cutoff: float = 0.6, dtype: str = "float32"):
        super().__init__(type_names, priors, dtype)
        self.width = int(width)
        self.rc = float(cutoff)
        n = len(self.type_names)
        self.pair_weight = nn.Embedding(n * n, self.width)
        self.mlp = nn.Sequential(nn.Linear(1, self.width), nn.Tanh(), nn.Linear(self.width, self.width))
        self.cutoff = max(self.rc, self.prior_cutoff)
        self.to(_DTYPES[dtype])

    def hyperparameters(self) -> dict:
        return {"width": self.width, "cutoff": self.rc, "dtype": self.dtype_name}

    @classmethod
    def example_args(cls, type_names) -> dict:
        return {"width": 4, "cutoff": 0.55, "dtype": "float64"}

    def drop_priors(self):
        super().drop_priors()
        self.cutoff = self.rc
        return self

    def energy_batch(self, positions: torch.Tensor, boxes: torch.Tensor | None = None,
                     temperature: torch.Tensor | None = None) -> torch.Tensor:
        dtype = self.pair_weight.weight.dtype
        positions = positions.to(dtype)
        b: torch.Tensor | None = None
        if boxes is not None:
            b = boxes.to(dtype)
        n_frames, n = positions.shape[0], positions.shape[1]
        pairs, shifts = batched_neighbor_pairs(positions, self.rc, b)
        pos = positions.reshape(n_frames * n, 3)
        vec = pos[pairs[1]] - pos[pairs[0]] + shifts.to(dtype)
        r = torch.sqrt((vec * vec).sum(-1))
        types = self.bead_type_index.repeat(n_frames)
        nt = len(self.type_names)
        ti, tj = types[pairs[0]], types[pairs[1]]
        h = self.mlp(r.unsqueeze(-1)) * self.pair_weight(torch.minimum(ti, tj) * nt + torch.maximum(ti, tj))
        e = h.sum(-1) * 0.5 * (torch.cos(r * (math.pi / self.rc)) + 1.0)
        frame = torch.div(pairs[0], n, rounding_mode="floor")
        energy = torch.zeros(n_frames, dtype=dtype, device=pos.device).index_add(0, frame, e)
        return energy + self.prior_energy(positions, b)


class SoftCorePrior(Prior):
    """eps_ab (1 - r / r_c)^2 for r < r_c between non-bonded (not 1-2, not 1-3) pairs; ``epsilon`` in kJ/mol per
    type pair (``{"A-B": eps}``) or one value."""

    name = "soft_core"

    def __init__(self, type_names, epsilon=1.0, cutoff: float = 0.5):
        super().__init__(type_names)
        values = epsilon if isinstance(epsilon, dict) else {key_to_str(p): float(epsilon)
                                                            for p in type_pairs(self.type_names)}
        self._values = {key_to_str(k.split("-")): float(v) for k, v in values.items()}
        self.register_buffer("eps", torch.tensor(type_index_table(self.type_names, self._values, "soft_core")))
        self._cutoff = float(cutoff)

    @property
    def cutoff(self) -> float:
        return self._cutoff

    def get_init_args(self) -> dict:
        return {"epsilon": dict(self._values), "cutoff": self._cutoff}

    @classmethod
    def parse_config(cls, section) -> dict:
        eps = section["epsilon"]
        return {"epsilon": ({k: to_md(v, "energy", allow_bare=False) for k, v in eps.items()} if isinstance(eps, dict)
                            else to_md(eps, "energy", allow_bare=False)),
                "cutoff": to_md(section.get("cutoff", "0.5 nm"), "length", allow_bare=False)}

    @classmethod
    def example_args(cls, topology) -> dict:
        return {"epsilon": {key_to_str(p): 2.0 + k for k, p in enumerate(topology.type_pairs())}, "cutoff": 0.5}

    def forward(self, pos: torch.Tensor, n_frames: int, types: torch.Tensor, pair_i: torch.Tensor,
                pair_j: torch.Tensor, vec: torch.Tensor, dist: torch.Tensor, excluded: torch.Tensor,
                boxes: torch.Tensor | None = None) -> torch.Tensor:
        keep = (dist < self._cutoff) & (~excluded)
        i = pair_i[keep]
        d = dist[keep]
        e = self.eps.to(pos.dtype)[types[i], types[pair_j[keep]]] * (1.0 - d / self._cutoff) ** 2
        n = pos.shape[0] // n_frames
        out = torch.zeros(n_frames, dtype=pos.dtype, device=pos.device)
        return out.index_add(0, torch.div(i, n, rounding_mode="floor"), e)

    def openmm_twin(self, topology) -> list[ForceSpec]:
        lookup = {t: i for i, t in enumerate(self.type_names)}
        n = len(self.type_names)
        eps = self.eps.double().numpy()
        excl = {(min(a, b), max(a, b)) for a, b in topology.bonds.tolist()}
        excl |= {(min(a, c), max(a, c)) for a, _, c in topology.angles.tolist()}
        table = TabulatedFunctionSpec("discrete2d", tuple(float(eps[k % n, k // n]) for k in range(n * n)), (n, n))
        return [ForceSpec("nonbonded", f"e*(1-r/{self._cutoff!r})^2; e=eps(t1, t2)", ("t",),
                          tuple(((i,), (float(lookup[t]),)) for i, t in enumerate(topology.bead_types)),
                          functions={"eps": table}, exclusions=tuple(sorted(excl)), cutoff=self._cutoff,
                          periodic=topology.periodic, name=self.name)]


def one_bead(topology, options, masses=None):
    """One bead per molecule (all its atoms), at the centre of mass unless ``weights: centroid``."""
    return mapping_from_spec(topology, lambda t, ref: ([list(range(len(ref.elements)))], None), masses=masses,
                             weights=options.get("weights", "com"), molecules=options.get("molecules", "bonds"))


one_bead.example_options = lambda dataset: {}


class LinearAlpha(AlphaModel):
    """alpha(T) = alpha0 + slope (T - reference_temperature), its error constant."""

    name = "linear"

    def __init__(self, alpha0: float, slope: float, reference_temperature: float = 300.0, alpha_err: float = 0.0):
        self.alpha0, self.slope = float(alpha0), float(slope)
        self.reference_temperature, self.err = float(reference_temperature), float(alpha_err)

    def alpha(self, temperature) -> float:
        return self.alpha0 + self.slope * (to_md(temperature, "temperature") - self.reference_temperature)

    def alpha_err(self, temperature) -> float:
        return self.err

    def to_data(self) -> dict:
        return {"alpha0": self.alpha0, "slope": self.slope, "reference_temperature": self.reference_temperature,
                "alpha_err": self.err}

    @classmethod
    def example_args(cls) -> dict:
        return {"alpha0": 3.0, "slope": -0.01, "reference_temperature": 300.0, "alpha_err": 0.2}


class GaussianPairs(ForceTerm):
    """A_ab exp(-(r / width)^2), cut at ``cutoff``, between beads of different molecules (an example of the
    ForceTerm contract); ``amplitude`` in kJ/mol per type pair (``{"A-B": value}``), lengths in nm."""

    kind = "gaussian_pairs"

    def __init__(self, amplitude: dict, width: float = 0.3, cutoff: float = 0.8, name: str = "gaussian"):
        self.amplitude = {key_to_str(k.split("-")): float(v) for k, v in amplitude.items()}
        self.width, self.cutoff, self.name = float(width), float(cutoff), name

    def create_forces(self, topology) -> list:
        names = list(topology.type_names)
        n = len(names)
        table = type_index_table(names, self.amplitude, f"term {self.name!r}")
        shift = math.exp(-((self.cutoff / self.width) ** 2))
        lookup = {t: i for i, t in enumerate(names)}
        mol = topology.molecule_index
        exclusions = tuple((i, j) for i in range(topology.n_beads) for j in range(i + 1, topology.n_beads)
                           if mol[i] == mol[j])
        spec = ForceSpec("nonbonded", f"a*(exp(-(r/{self.width!r})^2) - {shift!r}); a=amp(t1, t2)", ("t",),
                         tuple(((i,), (float(lookup[t]),)) for i, t in enumerate(topology.bead_types)),
                         functions={"amp": TabulatedFunctionSpec("discrete2d", tuple(
                             float(table[k % n, k // n]) for k in range(n * n)), (n, n))},
                         exclusions=exclusions, cutoff=self.cutoff, periodic=topology.periodic)
        return [build_force(spec)]

    def to_data(self) -> dict:
        return {"kind": self.kind, "name": self.name, "amplitude": dict(self.amplitude), "width": self.width,
                "cutoff": self.cutoff}

    @classmethod
    def from_data(cls, data) -> GaussianPairs:
        return cls(data["amplitude"], width=data["width"], cutoff=data["cutoff"], name=data.get("name", "gaussian"))

    @classmethod
    def example(cls, topology) -> GaussianPairs:
        return cls({key_to_str(p): 3.0 + k for k, p in enumerate(topology.type_pairs())}, width=0.25, cutoff=0.6)
