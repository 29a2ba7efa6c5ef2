"""The contract of a CG model: what training, bundles and the OpenMM bridge rely on.

A CG model is a :class:`torch.nn.Module` subclassing :class:`CGModel`.  Units: positions and boxes
in nm, energies in kJ/mol, temperatures in K; forces are minus the gradient of the energy (autograd).

Required (a subclass implements):

``energy_batch(positions, boxes=None, temperature=None) -> Tensor (n_frames,)``
    Total energy (network plus the model's priors) of frames ``(n_frames, n_beads, 3)`` with boxes
    ``(n_frames, 3, 3)`` or None and an optional temperature per frame ``(n_frames,)``.  Training
    differentiates it twice (forces, then the loss), so it must be twice differentiable.
``hyperparameters() -> dict``
    The subclass's own constructor arguments as plain data (numbers, strings, lists, dicts): with
    ``type_names`` and ``priors`` (added by :meth:`CGModel.get_init_args`) they rebuild the model.
``cutoff``
    A float attribute: the longest interaction range (nm), priors included.  Systems must be at
    least twice as wide (minimum image).

Provided by the base class (a subclass may extend them):

``bind(topology)``
    Attach a :class:`~openmm_cgml.topology.CGTopology` (bead types, molecules, bonds): sets the
    ``bead_type_index`` and ``exclusion_keys`` buffers and binds the priors.  Buffers that describe
    the bound system are registered with ``persistent=False``, so they never enter a ``state_dict``
    or a bundle.
``forward(positions, box=None) -> Tensor ()``
    One frame's energy (what OpenMM's TorchForce runs): by default ``energy_batch`` of one frame.
    The ``"torch"`` backend needs the module to be TorchScript-compatible; the ``"python"`` backend
    (:class:`openmm.PythonForce`) runs any module.
``prior_modules`` and :meth:`prior_energy`
    The model's priors (built through :data:`~openmm_cgml.models.priors.PRIORS` from the ``priors``
    argument) and their energy; a subclass adds ``prior_energy`` (or the pair-based
    ``_prior_energy_from_pairs``) to its own energy.  :meth:`drop_priors` removes them (the OpenMM
    bridge then evaluates them as ordinary OpenMM forces, each a named force of its own).
``Config``
    A :class:`~openmm_cgml.config.StrictModel` schema of the YAML ``model`` section of ``cgml train``
    (quantities with units); :meth:`parse_config` turns a section into constructor arguments.  None
    takes the section as it is.
``example_args(type_names)``
    Small hyperparameters for the contract test (``tests/test_contracts.py``), which every
    registered model must pass.

Optional fast paths (hooks whose defaults do nothing):

``supports_pair_cache`` and ``energy_from_pairs(positions, boxes, pairs, shifts, temperature)``
    Energy given precomputed neighbour pairs (global indices ``frame * n_beads + i``, pair vector
    ``x[j] - x[i] + shift``) within ``cutoff``: training then searches each frame's pairs once.
``tabulate_filters(spacing)``, ``supports_tables``
    Replace exact sub-networks by interpolation tables for inference.
``use_nnpops(check)``, ``supports_nnpops``
    Use NNPOps' neighbour kernel.
``uses_temperature`` and ``set_temperature(kelvin)``
    A temperature-conditioned model (its energy depends on the frames' temperature) says so with
    ``uses_temperature`` and takes, through ``set_temperature``, the temperature its ``forward`` (what
    OpenMM runs, without a temperature argument) uses.  The default model ignores temperature.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..exceptions import ConfigurationError, InvalidMappingError
from ..topology import CGTopology
from .neighbors import batched_neighbor_pairs

__all__ = ["CGModel", "PriorOnlyModel", "check_type_names"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def check_type_names(type_names: Sequence[str]) -> list[str]:
    """``type_names`` as a list, refusing an empty, unsorted or repeated one."""
    names = [str(t) for t in type_names]
    if not names or names != sorted(set(names)):
        raise ConfigurationError(f"type_names must be a non-empty sorted list of distinct names, got {list(type_names)}")
    return names


class CGModel(nn.Module):
    """Base class of CG energy models (see the module documentation for the contract).

    Parameters
    ----------
    type_names : sequence of str
        The bead types the model knows, sorted.
    priors : sequence of dict
        ``[{"name": registered prior, "args": {...}}]``.
    dtype : {"float32", "float64"}
        Precision of the parameters.
    """

    #: Registry name (set by subclasses; the bundle records it).
    name: ClassVar[str] = ""
    #: Schema of the YAML ``model`` section (None: the section is taken as it is).
    Config: ClassVar[Any] = None
    supports_pair_cache: ClassVar[bool] = False
    supports_tables: ClassVar[bool] = False
    supports_nnpops: ClassVar[bool] = False
    #: Whether the energy depends on the frames' temperature (set per instance by conditioned models).
    uses_temperature = False
    __jit_unused_properties__ = ["dtype"]

    def __init__(self, type_names: Sequence[str], priors: Sequence[Mapping] = (), dtype: str = "float32"):
        super().__init__()
        from .priors import PRIORS

        self.type_names = check_type_names(type_names)
        if dtype not in _DTYPES:
            raise ConfigurationError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        self.dtype_name = dtype
        for p in priors:
            if not isinstance(p, Mapping) or "name" not in p:
                raise ConfigurationError(f"a prior is given as {{'name': ..., 'args': {{...}}}}, got {p!r}")
        self.prior_modules = nn.ModuleList([PRIORS.create(p["name"], type_names=list(self.type_names),
                                                          **dict(p.get("args", {}))) for p in priors])
        self.prior_cutoff = max([0.0] + [float(p.cutoff) for p in self.prior_modules])
        # System buffers (set by bind; never saved).
        self.register_buffer("bead_type_index", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("molecule_index", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("exclusion_keys", torch.zeros(0, dtype=torch.long), persistent=False)

    # ------------------------------------------------------------------ plain data
    def hyperparameters(self) -> dict:
        """The subclass's own constructor arguments (not ``type_names`` or ``priors``) as plain data."""
        return {"dtype": self.dtype_name}

    def get_init_args(self) -> dict:
        """Plain data that rebuilds this model with :func:`~openmm_cgml.models.build_model` (priors with their
        current values)."""
        args = {"type_names": list(self.type_names), **self.hyperparameters()}
        args["priors"] = [{"name": p.name, "args": p.get_init_args()} for p in self.prior_modules]
        return args

    @classmethod
    def parse_config(cls, section: Mapping[str, Any], *, temperature: float | None = None) -> dict:
        """Constructor arguments (MD units) from a YAML ``model`` section (without ``name``), validated by
        :attr:`Config`; ``temperature`` is the data's temperature (K) when known."""
        if cls.Config is None:
            return dict(section)
        return dict(cls.Config.from_data(dict(section), source=f"the model section of {cls.name!r}"))

    @classmethod
    def example_args(cls, type_names: Sequence[str]) -> dict:
        """Small constructor arguments (without ``type_names`` and ``priors``) for the contract test."""
        return {}

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the model's floating-point parameters and buffers (what its inputs are cast to)."""
        for tensor in (*self.parameters(), *self.buffers()):
            if tensor.is_floating_point():
                return tensor.dtype
        return _DTYPES[self.dtype_name]

    # ------------------------------------------------------------------ binding
    def bind(self, topology: CGTopology) -> CGModel:
        """Attach a CG system (:class:`~openmm_cgml.topology.CGTopology`); returns ``self``."""
        if not isinstance(topology, CGTopology):
            raise ConfigurationError(f"bind() takes a CGTopology, got {type(topology).__name__}")
        unknown = sorted(set(topology.bead_types) - set(self.type_names))
        if unknown:
            raise InvalidMappingError(
                f"the system has bead types {unknown} that the model does not know; model types: {self.type_names}")
        lookup = {t: i for i, t in enumerate(self.type_names)}
        n = topology.n_beads
        keys = {min(a, b) * n + max(a, b) for a, b in topology.bonds.tolist()}
        keys |= {min(a, c) * n + max(a, c) for a, _, c in topology.angles.tolist()}
        device = self.bead_type_index.device
        self.bead_type_index = torch.tensor([lookup[t] for t in topology.bead_types], dtype=torch.long, device=device)
        self.molecule_index = torch.tensor(np.asarray(topology.molecule_index), dtype=torch.long, device=device)
        self.exclusion_keys = torch.tensor(sorted(int(k) for k in keys), dtype=torch.long, device=device)
        for prior in self.prior_modules:
            prior.bind(topology)
        return self

    def drop_priors(self) -> CGModel:
        """Remove the priors from the module (they are then evaluated elsewhere); returns ``self``."""
        self.prior_modules = nn.ModuleList()
        self.prior_cutoff = 0.0
        return self

    # ------------------------------------------------------------------ energies
    def _excluded(self, il: torch.Tensor, jl: torch.Tensor, n_beads: int) -> torch.Tensor:
        """Whether local pairs ``(il, jl)`` are bonded (1-2) or 1-3 pairs."""
        keys = torch.minimum(il, jl) * n_beads + torch.maximum(il, jl)
        if self.exclusion_keys.shape[0] == 0:
            return torch.zeros_like(keys, dtype=torch.bool)
        pos = torch.searchsorted(self.exclusion_keys, keys).clamp(max=self.exclusion_keys.shape[0] - 1)
        return self.exclusion_keys[pos] == keys

    def _prior_energy_from_pairs(self, pos: torch.Tensor, n_frames: int, i: torch.Tensor, j: torch.Tensor,
                                 vec: torch.Tensor, dist: torch.Tensor, boxes: torch.Tensor | None) -> torch.Tensor:
        """Energies (n_frames,) of the priors given the flattened positions ``(n_frames * n_beads, 3)`` and the
        neighbour pairs within at least ``prior_cutoff`` (global indices, vectors and distances)."""
        energy = torch.zeros(n_frames, dtype=pos.dtype, device=pos.device)
        if len(self.prior_modules) == 0:
            return energy
        n_beads = pos.shape[0] // n_frames
        types = self.bead_type_index.repeat(n_frames)
        excluded = self._excluded(torch.remainder(i, n_beads), torch.remainder(j, n_beads), n_beads)
        for prior in self.prior_modules:
            energy = energy + prior(pos, n_frames, types, i, j, vec, dist, excluded, boxes)
        return energy

    def prior_energy(self, positions: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        """Energies (n_frames,) of the model's priors for frames ``(n_frames, n_beads, 3)`` (searches the pairs
        the pair priors need)."""
        n_frames, n_beads = positions.shape[0], positions.shape[1]
        pos = positions.reshape(n_frames * n_beads, 3)
        if self.prior_cutoff > 0:
            pairs, shifts = batched_neighbor_pairs(positions, self.prior_cutoff, boxes)
        else:
            pairs = torch.zeros(2, 0, dtype=torch.long, device=pos.device)
            shifts = torch.zeros(0, 3, dtype=pos.dtype, device=pos.device)
        vec = pos[pairs[1]] - pos[pairs[0]] + shifts.to(pos.dtype)
        dist = torch.sqrt((vec * vec).sum(-1))
        return self._prior_energy_from_pairs(pos, n_frames, pairs[0], pairs[1], vec, dist, boxes)

    def energy_batch(self, positions: torch.Tensor, boxes: torch.Tensor | None = None,
                     temperature: torch.Tensor | None = None) -> torch.Tensor:
        """Energies (n_frames,) in kJ/mol of frames (n_frames, n_beads, 3) nm; see the module documentation."""
        raise NotImplementedError(f"{type(self).__name__} must implement energy_batch")

    def forward(self, positions: torch.Tensor, box: torch.Tensor | None = None) -> torch.Tensor:
        """Energy (kJ/mol, scalar) of one frame: positions (n_beads, 3) nm, box (3, 3) nm or None."""
        boxes: torch.Tensor | None = None
        if box is not None:
            boxes = box.unsqueeze(0)
        return self.energy_batch(positions.unsqueeze(0), boxes)[0]

    # ------------------------------------------------------------------ optional fast paths
    def energy_from_pairs(self, positions: torch.Tensor, boxes: torch.Tensor | None, pairs: torch.Tensor,
                          shifts: torch.Tensor, temperature: torch.Tensor | None = None) -> torch.Tensor:
        """Energies given precomputed pairs (only where ``supports_pair_cache``)."""
        raise NotImplementedError(f"{type(self).__name__} does not take precomputed pairs")

    def set_temperature(self, kelvin: float) -> CGModel:
        """The temperature (K) ``forward`` uses (temperature-conditioned models only)."""
        raise ConfigurationError(f"{type(self).__name__} does not take a temperature")

    def tabulate_filters(self, spacing: float = 0.001) -> CGModel:
        """Inference tables (only where ``supports_tables``); the default keeps the model as it is."""
        return self

    def use_nnpops(self, check: bool = True) -> CGModel:
        """NNPOps' neighbour kernel (only where ``supports_nnpops``)."""
        raise ConfigurationError(f"the model {type(self).__name__} has no NNPOps path")


class PriorOnlyModel(CGModel):
    """The priors alone, no network: the baseline a trained network is compared with, and a model in its own
    right (a force field of registered priors, with learnable parameters where the priors have them)."""

    name = "priors"

    def __init__(self, type_names: Sequence[str], priors: Sequence[Mapping] = (), dtype: str = "float32"):
        super().__init__(type_names, priors, dtype)
        # A parameter-free module still needs a dtype anchor for the casts of TorchForce and PythonForce.
        self.register_buffer("_anchor", torch.zeros(0, dtype=_DTYPES[dtype]), persistent=False)
        self.cutoff = float(self.prior_cutoff)
        self.to(_DTYPES[dtype])

    def drop_priors(self) -> CGModel:
        super().drop_priors()
        self.cutoff = 0.0
        return self

    @classmethod
    def example_args(cls, type_names: Sequence[str]) -> dict:
        return {"dtype": "float64"}

    def energy_batch(self, positions: torch.Tensor, boxes: torch.Tensor | None = None,
                     temperature: torch.Tensor | None = None) -> torch.Tensor:
        positions = positions.to(self._anchor.dtype)
        b: torch.Tensor | None = None
        if boxes is not None:
            b = boxes.to(positions.dtype)
        return self.prior_energy(positions, b)
