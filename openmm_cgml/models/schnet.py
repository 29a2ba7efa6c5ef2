"""A SchNet-style CG network with separate intra- and intermolecular interaction blocks.

Energy in kJ/mol from positions in nm; forces by autograd.  Built from plain data
(:meth:`CGSchNet.get_init_args`) and bound to one system (:meth:`CGSchNet.bind`, a
:class:`~openmm_cgml.topology.CGTopology`); ``forward(positions, box)`` returns one frame's energy
and ``energy_batch(positions[F, N, 3], boxes[F, 3, 3])`` the energies of many frames at once.  The
module is TorchScript-compatible (OpenMM-Torch runs it).  It follows the :class:`~.base.CGModel`
contract, with every optional fast path: precomputed pairs, filter tables and NNPOps' neighbour kernel.

Architecture (Schütt et al., J. Chem. Phys. 148, 241722 (2018); the hybrid intra/intermolecular
graph of Ruza et al., J. Chem. Phys. 153, 164501 (2020)):

- bead-type embedding ``h_i`` (+ a learned projection of the normalised temperature
  ``(T - T_ref) / T_scale`` when the model is temperature-aware);
- ``n_interactions`` steps, each ``h += CFConv_intra(h) + CFConv_inter(h)``, where the
  intramolecular convolution sees same-molecule pairs within ``intra_cutoff`` and the
  intermolecular one other-molecule pairs within ``inter_cutoff`` (periodic, minimum image);
  filters are MLPs of Gaussian distance features times a cosine cutoff, so the energy
  is smooth at both cutoffs;
- a per-bead readout MLP summed over beads, plus the priors.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from ..config import Length, StrictModel, Temperature
from ..exceptions import ConfigurationError, MissingDependencyError
from ..topology import CGTopology
from .base import _DTYPES, CGModel
from .neighbors import NNPOpsPairSearch, PairSearch, batched_neighbor_pairs, half_min_width, nnpops_available
from .tables import FilterTable, hermite_coefficients

__all__ = ["CGSchNet", "SchNetConfig"]

logger = logging.getLogger(__name__)


class ShiftedSoftplus(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(x) - math.log(2.0)


class DistanceExpansion(nn.Module):
    """Gaussian features of distances times a cosine cutoff (computed once per block, shared by its convolutions)."""

    def __init__(self, n_rbf: int, cutoff: float):
        super().__init__()
        self.cutoff = float(cutoff)
        self.register_buffer("centers", torch.linspace(0.0, cutoff, n_rbf))
        spacing = cutoff / max(n_rbf - 1, 1)
        self.gamma = 0.5 / (spacing * spacing)

    def forward(self, dist: torch.Tensor):
        rbf = torch.exp(-self.gamma * (dist.unsqueeze(-1) - self.centers) ** 2)
        fcut = 0.5 * (torch.cos(dist * (math.pi / self.cutoff)) + 1.0)
        return rbf, fcut.unsqueeze(-1)


class CFConv(nn.Module):
    """One continuous-filter convolution; messages flow both ways along each unordered pair."""

    def __init__(self, hidden: int, n_rbf: int):
        super().__init__()
        self.filter = nn.Sequential(nn.Linear(n_rbf, hidden), ShiftedSoftplus(), nn.Linear(hidden, hidden))
        self.in2f = nn.Linear(hidden, hidden, bias=False)
        self.out = nn.Sequential(nn.Linear(hidden, hidden), ShiftedSoftplus(), nn.Linear(hidden, hidden))

    def filter_weights(self, rbf: torch.Tensor, fcut: torch.Tensor) -> torch.Tensor:
        """The continuous filter ``W(r)`` (n_pairs, hidden), cutoff envelope included."""
        return self.filter(rbf) * fcut

    def forward(self, h: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Convolve features ``h`` along pairs with filter values ``w`` (one row per unordered pair)."""
        x = self.in2f(h)
        # src/dst hold both directions (i->j then j->i), so one gather and one scatter suffice.
        n_pairs = w.shape[0]
        msg = (x[src].view(2, n_pairs, x.shape[1]) * w.unsqueeze(0)).view(2 * n_pairs, x.shape[1])
        agg = torch.zeros_like(x).index_add(0, dst, msg)
        return self.out(agg)


class HybridInteraction(nn.Module):
    """``h -> h + CFConv_intra(h) + CFConv_inter(h)`` given both blocks' filter values."""

    def __init__(self, hidden: int, n_rbf: int):
        super().__init__()
        self.intra = CFConv(hidden, n_rbf)
        self.inter = CFConv(hidden, n_rbf)

    def forward(self, h: torch.Tensor, src_a: torch.Tensor, dst_a: torch.Tensor, w_a: torch.Tensor,
                src_e: torch.Tensor, dst_e: torch.Tensor, w_e: torch.Tensor) -> torch.Tensor:
        return h + self.intra(h, src_a, dst_a, w_a) + self.inter(h, src_e, dst_e, w_e)


class SchNetConfig(StrictModel):
    """The ``model`` section of ``cgml train`` for ``name: schnet`` (quantities with units)."""

    hidden: int = Field(32, ge=2)
    n_rbf: int = Field(16, ge=2)
    n_interactions: int = Field(2, ge=1)
    intra_cutoff: Length = "0.6 nm"
    inter_cutoff: Length = "1.0 nm"
    dtype: Literal["float32", "float64"] = "float32"
    skin: Length = "0.1 nm"
    brute_force_max: int = Field(1000, ge=1)
    use_network: bool = True
    temperature_scale: Temperature | None = None


class CGSchNet(CGModel):
    """SchNet-style CG energy model with intra/intermolecular blocks and priors.

    Parameters
    ----------
    type_names : sequence of str
        The bead types the model knows (embedding rows), sorted.
    hidden : int
        Feature width.
    n_rbf : int
        Gaussians per distance expansion.
    n_interactions : int
        Number of hybrid interaction steps.
    intra_cutoff, inter_cutoff : float
        nm; cutoffs of the intramolecular and intermolecular blocks.
    priors : sequence of dict
        ``[{"name": "repulsion", "args": {...}}, ...]`` built through :data:`~.priors.PRIORS`.
    temperature : dict or None
        ``{"reference": K, "scale": K, "default": K}``: makes the model temperature-aware
        with input ``(T - reference) / scale`` (a raw kelvin value would swamp a linear layer).
    use_network : bool
        False gives a prior-only model (the baseline).
    dtype : {"float32", "float64"}
    brute_force_max : int
        Systems up to this many beads use the all-pairs search, larger ones the cell list.
    skin : float
        nm; Verlet skin of the single-frame path: pairs within ``cutoff + skin`` are cached and
        reused until a bead has moved more than ``skin / 2`` (or the box changed), so the
        search does not run at every MD step.  0 rebuilds every call.
    """

    name = "schnet"
    Config = SchNetConfig
    supports_pair_cache = True
    supports_tables = True
    supports_nnpops = True

    def __init__(self, type_names: Sequence[str], hidden: int = 32, n_rbf: int = 16, n_interactions: int = 2,
                 intra_cutoff: float = 0.6, inter_cutoff: float = 1.0, priors: Sequence[Mapping] = (),
                 temperature: Mapping[str, float] | None = None, use_network: bool = True,
                 dtype: str = "float32", brute_force_max: int = 1000, skin: float = 0.1):
        super().__init__(type_names, priors, dtype)
        if min(intra_cutoff, inter_cutoff) <= 0:
            raise ConfigurationError(f"cutoffs must be positive, got {intra_cutoff}, {inter_cutoff}")
        self._args = {
            "hidden": int(hidden), "n_rbf": int(n_rbf),
            "n_interactions": int(n_interactions), "intra_cutoff": float(intra_cutoff),
            "inter_cutoff": float(inter_cutoff), "temperature": None if temperature is None else dict(temperature),
            "use_network": bool(use_network), "dtype": dtype, "brute_force_max": int(brute_force_max),
            "skin": float(skin),
        }
        self.intra_cutoff = float(intra_cutoff)
        self.inter_cutoff = float(inter_cutoff)
        self.use_network = bool(use_network)
        self.brute_force_max = int(brute_force_max)
        self.skin = float(skin)
        self.embedding = nn.Embedding(len(type_names), hidden)
        self.intra_expansion = DistanceExpansion(n_rbf, intra_cutoff)
        self.inter_expansion = DistanceExpansion(n_rbf, inter_cutoff)
        self.interactions = nn.ModuleList([HybridInteraction(hidden, n_rbf) for _ in range(n_interactions)])
        self.readout = nn.Sequential(nn.Linear(hidden, hidden // 2), ShiftedSoftplus(), nn.Linear(hidden // 2, 1))
        # Inference fast path (tabulate_filters): the filters of all steps of each block in one table.
        self.intra_table = FilterTable()
        self.inter_table = FilterTable()
        self.use_tables = False
        self.table_spacing = 0.0
        self.uses_temperature = temperature is not None
        t = dict(temperature or {"reference": 300.0, "scale": 100.0, "default": 300.0})
        if t.get("scale", 1.0) <= 0:
            raise ConfigurationError(f"temperature scale must be positive, got {t}")
        self.t_reference = float(t["reference"])
        self.t_scale = float(t["scale"])
        self.temperature_embedding = nn.Linear(1, hidden, bias=False)
        self.register_buffer("default_temperature", torch.tensor(float(t.get("default", t["reference"]))))
        self.cutoff = max(self.intra_cutoff, self.inter_cutoff, self.prior_cutoff)
        # Verlet-list cache of the single-frame path (not saved: it describes the last positions seen).
        self.register_buffer("_nl_ref", torch.zeros(0, 3), persistent=False)
        self.register_buffer("_nl_box", torch.zeros(3, 3), persistent=False)
        self.register_buffer("_nl_pairs", torch.zeros(2, 0, dtype=torch.long), persistent=False)
        self.register_buffer("_nl_shifts", torch.zeros(0, 3), persistent=False)
        self.n_rebuilds = 0
        # What rebuilds the Verlet list: our search, or NNPOps' kernel after use_nnpops().
        self.pair_search: nn.Module = PairSearch(self.brute_force_max)
        self.to(_DTYPES[dtype])

    # ------------------------------------------------------------------ the contract
    def hyperparameters(self) -> dict:
        return dict(self._args)

    @classmethod
    def parse_config(cls, section: Mapping[str, Any], *, temperature: float | None = None) -> dict:
        """Constructor arguments from the YAML section; ``temperature_scale`` makes the model temperature-aware
        around the data's ``temperature``."""
        cfg = dict(SchNetConfig.from_data(dict(section), source="the schnet model section"))
        scale = cfg.pop("temperature_scale")
        if scale is not None:
            if temperature is None:
                raise ConfigurationError("model.temperature_scale needs the data's temperature (top-level "
                                         "'temperature')")
            cfg["temperature"] = {"reference": temperature, "scale": scale, "default": temperature}
        return cfg

    @classmethod
    def example_args(cls, type_names: Sequence[str]) -> dict:
        return {"hidden": 8, "n_rbf": 6, "n_interactions": 1, "intra_cutoff": 0.5, "inter_cutoff": 0.6,
                "dtype": "float64", "skin": 0.0}

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding.weight.dtype

    def bind(self, topology: CGTopology) -> CGSchNet:
        """Attach a system (:class:`~openmm_cgml.topology.CGTopology`); returns ``self``."""
        super().bind(topology)
        self._nl_ref = torch.zeros(0, 3, dtype=self.dtype, device=self._nl_ref.device)  # a new system: rebuild
        return self

    def drop_priors(self) -> CGSchNet:
        super().drop_priors()
        self.cutoff = max(self.intra_cutoff, self.inter_cutoff)
        return self

    # ------------------------------------------------------------------ energies
    def energy_from_pairs(self, positions: torch.Tensor, boxes: torch.Tensor | None, pairs: torch.Tensor,
                          shifts: torch.Tensor, temperature: torch.Tensor | None = None) -> torch.Tensor:
        """Energies (n_frames,) in kJ/mol of frames (n_frames, n_beads, 3) given precomputed neighbour pairs."""
        n_frames = positions.shape[0]
        n_beads = positions.shape[1]
        if n_beads != self.bead_type_index.shape[0]:
            raise RuntimeError(
                f"the model is bound to {self.bead_type_index.shape[0]} beads but got positions of {n_beads}"
            )
        pos = positions.reshape(n_frames * n_beads, 3)
        i = pairs[0]
        j = pairs[1]
        vec = pos[j] - pos[i] + shifts.to(pos.dtype)
        dist = torch.sqrt((vec * vec).sum(-1))
        il = torch.remainder(i, n_beads)
        jl = torch.remainder(j, n_beads)
        types = self.bead_type_index.repeat(n_frames)
        energy = torch.zeros(n_frames, dtype=pos.dtype, device=pos.device)
        if self.use_network:
            same = self.molecule_index[il] == self.molecule_index[jl]
            intra = same & (dist < self.intra_cutoff)
            inter = (~same) & (dist < self.inter_cutoff)
            ia, ja, da = i[intra], j[intra], dist[intra]
            ie, je, de = i[inter], j[inter], dist[inter]
            h = self.embedding(types)
            if self.uses_temperature:
                t = self.default_temperature.expand(n_frames) if temperature is None else temperature
                tn = ((t.to(pos.dtype) - self.t_reference) / self.t_scale).reshape(n_frames, 1)
                h = h + self.temperature_embedding(tn).repeat_interleave(n_beads, 0)
            wa = self._filters(da, True)
            we = self._filters(de, False)
            src_a = torch.cat([ia, ja])
            dst_a = torch.cat([ja, ia])
            src_e = torch.cat([ie, je])
            dst_e = torch.cat([je, ie])
            k = 0
            for layer in self.interactions:
                h = layer(h, src_a, dst_a, wa[k], src_e, dst_e, we[k])
                k += 1
            energy = energy + self.readout(h).reshape(n_frames, n_beads).sum(1)
        return energy + self._prior_energy_from_pairs(pos, n_frames, i, j, vec, dist, boxes)

    def _filters(self, dist: torch.Tensor, intra: bool) -> list[torch.Tensor]:
        """Filter values (n_pairs, hidden) of every interaction step for one block (exact or tabulated)."""
        out: list[torch.Tensor] = []
        n_steps = len(self.interactions)
        # Explicit branches (not conditional expressions on modules): TorchScript types every submodule.
        if self.use_tables:
            if intra:
                return list(torch.chunk(self.intra_table(dist), n_steps, dim=1))
            return list(torch.chunk(self.inter_table(dist), n_steps, dim=1))
        if intra:
            rbf, fcut = self.intra_expansion(dist)
            for layer in self.interactions:
                out.append(layer.intra.filter_weights(rbf, fcut))
        else:
            rbf, fcut = self.inter_expansion(dist)
            for layer in self.interactions:
                out.append(layer.inter.filter_weights(rbf, fcut))
        return out

    # ------------------------------------------------------------------ inference fast path
    def set_temperature(self, kelvin: float) -> CGSchNet:
        """The temperature (K) ``forward`` uses (a temperature-aware model only: ``temperature_scale``)."""
        if not self.uses_temperature:
            raise ConfigurationError("this model does not take a temperature (it was built without "
                                     "temperature_scale)")
        if not float(kelvin) > 0:
            raise ConfigurationError(f"temperature must be positive, got {kelvin!r} K")
        with torch.no_grad():
            self.default_temperature.fill_(float(kelvin))
        return self

    @torch.no_grad()
    def tabulate_filters(self, spacing: float = 0.001) -> CGSchNet:
        """Replace the per-pair filter MLPs by tables of the current weights (inference fast path).

        Every interaction step's filter ``W(r)`` (cutoff envelope included) is evaluated in
        float64 on a grid of about ``spacing`` nm (adjusted so the cutoff is a grid point), with
        exact derivatives from forward-mode autograd, and interpolated with cubic Hermite
        polynomials (:class:`FilterTable`).  Energies and forces then agree with the exact model
        to interpolation accuracy (relative force error ~1e-7 at 0.001 nm in float64, tested) and
        remain continuous.  The weights and ``state_dict`` are untouched; the tables are a
        snapshot, so changing the weights (or calling ``train()``) drops them.  Returns ``self``.
        """
        if spacing <= 0:
            raise ConfigurationError(f"the table spacing must be positive, got {spacing}")
        if not self.use_network:
            return self
        dtype = self.embedding.weight.dtype
        for intra in (True, False):
            expansion = self.intra_expansion if intra else self.inter_expansion
            cutoff = expansion.cutoff
            n_intervals = max(2, int(math.ceil(cutoff / spacing - 1e-9)))
            h = cutoff / n_intervals
            exp64 = copy.deepcopy(expansion).double()
            filters = [copy.deepcopy(layer.intra if intra else layer.inter).double() for layer in self.interactions]

            def all_filters(r, exp64=exp64, filters=filters):
                rbf, fcut = exp64(r)
                return torch.cat([f.filter_weights(rbf, fcut) for f in filters], 1)

            grid = torch.arange(n_intervals + 1, dtype=torch.float64, device=self.embedding.weight.device) * h
            with torch.enable_grad():
                values, slopes = torch.func.jvp(all_filters, (grid,), (torch.ones_like(grid),))
            # The exact block drops pairs at r >= cutoff, where the envelope (and its slope) vanish anyway.
            values[-1] = 0.0
            slopes[-1] = 0.0
            table = self.intra_table if intra else self.inter_table
            table.set_table(hermite_coefficients(values, slopes, h).to(dtype), h)
        self.use_tables = True
        self.table_spacing = float(spacing)
        return self

    @torch.no_grad()
    def compiled_parameters(self) -> dict:
        """The network as the compiled force takes it (:func:`openmm_cgml.forces.compiled.make_schnet_force`):
        the architecture, each bead's type and molecule (the model must be bound) and the weights as float64
        arrays.  The initial features fold in the temperature term at the model's current temperature
        (:meth:`set_temperature`).  Priors are not part of it (they run as OpenMM forces)."""
        if not self.use_network:
            raise ConfigurationError("a prior-only model (use_network=False) has no network to compile")
        if self.bead_type_index.shape[0] == 0:
            raise ConfigurationError("bind() the model to a CGTopology before compiling it")

        def arr(t: torch.Tensor):
            return t.detach().to(torch.float64).cpu().reshape(-1).numpy()

        h0 = self.embedding.weight.to(torch.float64)
        if self.uses_temperature:
            tn = (float(self.default_temperature) - self.t_reference) / self.t_scale
            h0 = h0 + tn * self.temperature_embedding.weight.to(torch.float64)[:, 0]
        params = {"embedding": arr(h0), "readout1.weight": arr(self.readout[0].weight),
                  "readout1.bias": arr(self.readout[0].bias), "readout2.weight": arr(self.readout[2].weight),
                  "readout2.bias": arr(self.readout[2].bias)}
        for block, expansion in (("intra", self.intra_expansion), ("inter", self.inter_expansion)):
            params[f"{block}.centers"] = arr(expansion.centers)
            params[f"{block}.gamma"] = [expansion.gamma]
            for k, layer in enumerate(self.interactions):
                conv = layer.intra if block == "intra" else layer.inter
                for key, lin in (("filter1", conv.filter[0]), ("filter2", conv.filter[2]), ("in2f", conv.in2f),
                                 ("out1", conv.out[0]), ("out2", conv.out[2])):
                    params[f"{block}{k}.{key}.weight"] = arr(lin.weight)
                    if lin.bias is not None:
                        params[f"{block}{k}.{key}.bias"] = arr(lin.bias)
        hidden = self.embedding.weight.shape[1]
        arch = {"num_types": self.embedding.weight.shape[0], "hidden": hidden,
                "num_rbf": self.intra_expansion.centers.shape[0], "num_interactions": len(self.interactions),
                "intra_cutoff": self.intra_cutoff, "inter_cutoff": self.inter_cutoff}
        return {"architecture": arch, "types": self.bead_type_index.cpu().numpy(),
                "molecules": self.molecule_index.cpu().numpy(), "parameters": params}

    def use_nnpops(self, check: bool = True) -> CGSchNet:
        """Rebuild the Verlet list with NNPOps' ``getNeighborPairs`` kernel (it must be registered: see
        :func:`~openmm_cgml.models.nnpops_available`); returns ``self``.

        With ``check`` its pairs and image shifts are first compared with our search on probe boxes
        (periodic cubic and triclinic, and non-periodic); a disagreement (for example an NNPOps
        version with another signature) raises :class:`ConfigurationError` and the model keeps our
        search.  Training (``energy_batch``) always uses our batched search.
        """
        if not nnpops_available():
            raise MissingDependencyError("NNPOps is not installed (conda install -c conda-forge nnpops)")
        search = NNPOpsPairSearch()
        if check:
            _check_search(search, PairSearch(self.brute_force_max), self.cutoff + max(self.skin, 0.0), self.dtype)
        self.pair_search = search
        self._nl_ref = torch.zeros(0, 3, dtype=self.dtype, device=self._nl_ref.device)  # rebuild at the next call
        return self

    def clear_tables(self) -> CGSchNet:
        """Back to the exact per-pair filter MLPs; returns ``self``."""
        self.use_tables = False
        self.table_spacing = 0.0
        for table in (self.intra_table, self.inter_table):
            table.set_table(torch.zeros(0, 4, 0, dtype=self.embedding.weight.dtype), 1.0)
        return self

    def train(self, mode: bool = True) -> CGSchNet:
        """As :meth:`torch.nn.Module.train`; training mode drops filter tables (they would go stale)."""
        if mode and self.use_tables:
            logger.info("train(): dropping the filter tables; call tabulate_filters() again after training")
            self.clear_tables()
        return super().train(mode)

    def energy_batch(self, positions: torch.Tensor, boxes: torch.Tensor | None = None,
                     temperature: torch.Tensor | None = None) -> torch.Tensor:
        """Energies (n_frames,) of frames (n_frames, n_beads, 3) nm with boxes (n_frames, 3, 3) or None."""
        positions = positions.to(self.embedding.weight.dtype)
        b: torch.Tensor | None = None
        if boxes is not None:
            b = boxes.to(positions.dtype)
        pairs, shifts = batched_neighbor_pairs(positions, self.cutoff, b, self.brute_force_max)
        return self.energy_from_pairs(positions, b, pairs, shifts, temperature)

    def _verlet_pairs(self, pos: torch.Tensor, box: torch.Tensor | None):
        """Cached pairs within ``cutoff + skin`` (exact superset of the pairs within ``cutoff``)."""
        skin = self.skin
        if box is not None:
            skin = min(skin, half_min_width(box.detach()) - self.cutoff)
        rebuild = skin <= 0.0 or self._nl_ref.shape[0] != pos.shape[0] or self._nl_ref.dtype != pos.dtype
        if not rebuild:
            if box is None:
                rebuild = bool((self._nl_box != 0).any())
            else:
                rebuild = not bool(torch.equal(box.detach(), self._nl_box))
        if not rebuild:
            moved = ((pos.detach() - self._nl_ref) ** 2).sum(-1).max()
            rebuild = bool(moved > 0.25 * skin * skin)
        if rebuild:
            pairs, shifts = self.pair_search(pos, self.cutoff + max(skin, 0.0), box)
            self._nl_ref = pos.detach().clone()
            self._nl_box = torch.zeros(3, 3, dtype=pos.dtype, device=pos.device) if box is None \
                else box.detach().clone()
            self._nl_pairs = pairs
            self._nl_shifts = shifts
            self.n_rebuilds += 1
        return self._nl_pairs, self._nl_shifts

    def forward(self, positions: torch.Tensor, box: torch.Tensor | None = None) -> torch.Tensor:
        """Energy (kJ/mol, scalar) of one frame: positions (n_beads, 3) nm, box (3, 3) nm or None."""
        pos = positions.to(self.embedding.weight.dtype)
        b: torch.Tensor | None = None
        bs: torch.Tensor | None = None
        if box is not None:
            b = box.to(pos.dtype)
            bs = b.unsqueeze(0)
        pairs, shifts = self._verlet_pairs(pos, b)
        return self.energy_from_pairs(pos.unsqueeze(0), bs, pairs, shifts)[0]


def _check_search(candidate: nn.Module, reference: nn.Module, cutoff: float, dtype: torch.dtype) -> None:
    """Raise ConfigurationError unless ``candidate`` finds the pairs and shifts of ``reference`` on probes."""
    gen = torch.Generator().manual_seed(0)
    edge = 2.2 * cutoff + 0.1
    tri = torch.tensor([[edge, 0.0, 0.0], [0.3 * edge, edge, 0.0], [-0.2 * edge, 0.25 * edge, edge]], dtype=dtype)
    for box in (torch.eye(3, dtype=dtype) * edge, tri, None):
        cell = tri if box is None else box
        pos = torch.rand(300, 3, generator=gen, dtype=dtype) @ cell
        try:
            got, got_shift = candidate(pos, cutoff, box)
        except RuntimeError as exc:
            raise ConfigurationError(f"the candidate neighbour search failed on a probe: {exc}") from exc
        ref, ref_shift = reference(pos, cutoff, box)
        n = pos.shape[0]
        key_got = got[0] * n + got[1]
        key_ref = ref[0] * n + ref[1]
        og, orf = torch.argsort(key_got), torch.argsort(key_ref)
        same = key_got.shape == key_ref.shape and bool(torch.equal(key_got[og], key_ref[orf]))
        if same:
            same = bool(torch.allclose(got_shift[og], ref_shift[orf], atol=1e-4 * edge))
        if not same:
            raise ConfigurationError(
                f"the candidate neighbour search disagrees with ours on a probe ({'periodic' if box is not None else 'open'}"
                f" box, {key_got.shape[0]} vs {key_ref.shape[0]} pairs); keeping the pure-PyTorch search"
            )
