"""Neural CG force terms: a model bundle as an OpenMM force (TorchForce or PythonForce).

Backends
--------
``"torch"`` (default)
    An :class:`openmmtorch.TorchForce` running a TorchScript module that wraps the
    model: it takes positions (and box vectors when periodic), casts OpenMM's float64 to
    the model's dtype, and returns the energy (and, with ``outputs_forces=True``, the
    forces from autograd, cast back to float64).  It serialises with ``XmlSerializer``; read such
    XML back with :func:`openmm_cgml.forces.xml.load_system` (openmm-torch's own deserializer
    segfaults with acellera-openmmtorch-cpu 1.10 + torch 2.12 from PyPI).
    Default, although not the fastest on the CPU: there PythonForce (with its tables) measured
    about 10 % faster in four of five interleaved runs (``benchmarks/bench_neural.py``: 192-bead
    trimethylpentane box, CPU platform, one thread, each backend with its faster filter path; per
    step 9.4-11.0 vs 10.5-12.4 ms for TorchForce), equal in the fifth.  TorchForce stays the default
    because its XML is self-contained (PythonForce serialises a pickled Python callback) and it runs
    the model inside OpenMM's CUDA platform without host copies; pass ``backend="python"`` for the
    extra CPU speed.
``"python"``
    An :class:`openmm.PythonForce` calling the eager model from Python (works with any
    torch; what openmm-ml uses upstream).  Serialisable only by pickling the callback.

Tabulated filters
-----------------
``tabulate=True`` replaces the model's continuous filters, when the force is built, by cubic
Hermite tables of the bundle's weights (0.001 nm grid; relative force error ~1e-9 in float64,
tested); ``tabulate=False`` runs the exact filter networks.  The default (``None``) picks per
backend by measured OpenMM step time (``benchmarks/bench_neural.py``, 192 beads, CPU platform, one
thread, all configurations interleaved in one process).  PythonForce: tables, consistently faster
(8.2-10.6 vs 9.3-12.7 ms per step in five runs).  TorchForce: the exact networks, because the
tables are not reliably faster there: from 11 % faster to 38 % slower across eight runs (tables vs
networks: 11.2 vs 11.1, 12.1 vs 10.7, 13.7 vs 10.9, 17.7 vs 12.8, 8.7 vs 9.4, 10.9 vs 12.3, 12.0 vs
11.5 and 10.1 vs 10.5 ms; median 3 % slower).  OpenMM-Torch freezes the scripted module
(``torch.jit.freeze``) before running it, and the frozen TorchScript graph of the table lookup
runs at a speed that varies from process to process, never clearly faster than the networks'.

Inference models have ``requires_grad=False`` parameters: OpenMM-Torch's freezing does the same,
and without it every force evaluation would also record the graph for weight gradients (about
7 ms of a 17 ms call at 192 beads, measured).

Priors
------
``priors="openmm"`` (default) puts the bundle's priors into ordinary OpenMM forces
(``CustomNonbondedForce`` excluded volume with a per-type-pair sigma table,
``HarmonicBondForce``, ``HarmonicAngleForce``), each named and returned separately so the
builder gives each its own force group; ``priors="network"`` keeps them in the torch
module.  Both give the same energies (tested) and the same speed within noise (same benchmark,
TorchForce: 11.1 vs 11.4 ms per step; PythonForce: 10.1 vs 9.7 ms), so ``"openmm"`` is the
default for what it adds: each prior its own named force and energy group.

Runaway detection
-----------------
:class:`EnergyWatchdogReporter` (an OpenMM reporter) raises :class:`SimulationError`
naming the step when the potential energy becomes NaN/inf or exceeds a bound.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from ..exceptions import ConfigurationError, InvalidSystemError, MissingDependencyError, SimulationError
from ..models.bundle import ModelBundle, load_bundle
from ..models.neighbors import check_cutoff, nnpops_available
from ..models.topology import ModelTopology, model_topology
from .base import CGSystemInfo, ForceTerm

__all__ = [
    "NeuralForceTerm",
    "TorchForceModule",
    "PeriodicTorchForceModule",
    "EnergyWatchdogReporter",
    "prior_forces",
    "BACKENDS",
    "load_term",
]

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "python")


class TorchForceModule(torch.nn.Module):
    """TorchScript-ready wrapper for a non-periodic system: ``forward(positions)``."""

    def __init__(self, model: torch.nn.Module, outputs_forces: bool = False):
        super().__init__()
        self.model = model
        self.outputs_forces = bool(outputs_forces)
        self.dtype = next(iter(model.parameters())).dtype

    def forward(self, positions: torch.Tensor):
        pos = positions.to(self.dtype)
        if not self.outputs_forces:
            return self.model(pos, None).to(torch.float64), torch.zeros(0)
        pos = pos.detach().requires_grad_(True)
        energy = self.model(pos, None)
        grad = torch.autograd.grad([energy], [pos])[0]
        assert grad is not None
        return energy.detach().to(torch.float64), (-grad).to(torch.float64)


class PeriodicTorchForceModule(TorchForceModule):
    """TorchScript-ready wrapper for a periodic system: ``forward(positions, boxvectors)``."""

    def forward(self, positions: torch.Tensor, boxvectors: torch.Tensor):
        pos = positions.to(self.dtype)
        box = boxvectors.to(self.dtype)
        if not self.outputs_forces:
            return self.model(pos, box).to(torch.float64), torch.zeros(0)
        pos = pos.detach().requires_grad_(True)
        energy = self.model(pos, box)
        grad = torch.autograd.grad([energy], [pos])[0]
        assert grad is not None
        return energy.detach().to(torch.float64), (-grad).to(torch.float64)


def _script(model, periodic: bool, outputs_forces: bool):
    cls = PeriodicTorchForceModule if periodic else TorchForceModule
    wrapper = cls(model, outputs_forces)
    if not outputs_forces:
        # Without outputsForces, TorchForce expects the energy alone and differentiates it itself.
        wrapper = _PeriodicEnergyOnly(wrapper) if periodic else _EnergyOnly(wrapper)
    return torch.jit.script(wrapper)


class _EnergyOnly(torch.nn.Module):
    def __init__(self, inner: TorchForceModule):
        super().__init__()
        self.inner = inner

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.inner(positions)[0]


class _PeriodicEnergyOnly(torch.nn.Module):
    def __init__(self, inner: PeriodicTorchForceModule):
        super().__init__()
        self.inner = inner

    def forward(self, positions: torch.Tensor, boxvectors: torch.Tensor) -> torch.Tensor:
        return self.inner(positions, boxvectors)[0]


class _PythonCallback:
    """The computation of an :class:`openmm.PythonForce` (picklable: holds the bound eager model)."""

    def __init__(self, model: torch.nn.Module, periodic: bool):
        self.model = model
        self.periodic = periodic
        self.dtype = next(iter(model.parameters())).dtype

    def __call__(self, state):
        from openmm import unit

        pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        pos_t = torch.as_tensor(np.asarray(pos), dtype=self.dtype).requires_grad_(True)
        box_t = None
        if self.periodic:
            box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
            box_t = torch.as_tensor(np.asarray(box), dtype=self.dtype)
        energy = self.model(pos_t, box_t)
        (grad,) = torch.autograd.grad(energy, pos_t)
        return float(energy.detach()), -grad.detach().numpy().astype(np.float64)


def prior_forces(prior_configs, topology: ModelTopology, type_names, periodic: bool) -> list:
    """OpenMM forces equal to the torch priors ``prior_configs`` (``[{"name", "args"}]``) bound to ``topology``."""
    import openmm

    from ..models.priors import PRIORS

    lookup = {t: i for i, t in enumerate(type_names)}
    types = [lookup[t] for t in topology.bead_types]
    forces = []
    for cfg in prior_configs:
        prior = PRIORS.create(cfg["name"], type_names=list(type_names), **cfg.get("args", {}))
        prior.bind(types, topology.bonds, topology.angles)
        if cfg["name"] == "repulsion":
            n = len(type_names)
            sig = prior.sigma_table().detach().double().numpy()
            rc, p = prior.cutoff, prior.exponent
            f = openmm.CustomNonbondedForce(f"(s/r)^{p} - (s/{rc!r})^{p}; s = sigma_table(t1, t2)")
            f.addTabulatedFunction("sigma_table", openmm.Discrete2DFunction(n, n, [float(sig[i % n, i // n])
                                                                                  for i in range(n * n)]))
            f.addPerParticleParameter("t")
            for t in types:
                f.addParticle([float(t)])
            excl = {(min(a, b), max(a, b)) for a, b in np.asarray(topology.bonds).reshape(-1, 2).tolist()}
            excl |= {(min(a, c), max(a, c)) for a, _, c in np.asarray(topology.angles).reshape(-1, 3).tolist()}
            for a, b in sorted(excl):
                f.addExclusion(int(a), int(b))
            f.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic if periodic
                                 else openmm.CustomNonbondedForce.CutoffNonPeriodic)
            f.setCutoffDistance(rc)
            f.setUseLongRangeCorrection(False)
            f.setName("prior:repulsion")
        elif cfg["name"] == "harmonic_bond":
            f = openmm.HarmonicBondForce()
            for (a, b), r0, k in zip(prior.index.tolist(), prior.x0.tolist(), prior.k.tolist()):
                f.addBond(int(a), int(b), r0, k)
            f.setUsesPeriodicBoundaryConditions(periodic)
            f.setName("prior:harmonic_bond")
        elif cfg["name"] == "harmonic_angle":
            f = openmm.HarmonicAngleForce()
            for (a, b, c), t0, k in zip(prior.index.tolist(), prior.x0.tolist(), prior.k.tolist()):
                f.addAngle(int(a), int(b), int(c), t0, k)
            f.setUsesPeriodicBoundaryConditions(periodic)
            f.setName("prior:harmonic_angle")
        else:
            raise InvalidSystemError(
                f"the prior {cfg['name']!r} has no OpenMM equivalent; build the term with priors='network'"
            )
        forces.append(f)
    return forces


class NeuralForceTerm(ForceTerm):
    """A trained CG model (bundle) as OpenMM forces.

    Parameters
    ----------
    bundle : path or ModelBundle
        The model bundle (:func:`openmm_cgml.models.save_bundle`).
    backend : {"torch", "python"}
        ``TorchForce`` (TorchScript) or ``PythonForce``; see the module docstring.
    priors : {"openmm", "network"}
        Where the bundle's priors are evaluated.
    outputs_forces : bool
        TorchForce only: the module returns forces from its own autograd call
        (``setOutputsForces(True)``) instead of letting OpenMM-Torch differentiate.
    use_cuda_graphs : bool
        TorchForce ``useCUDAGraphs`` property (CUDA platform only; ignored elsewhere).
    dtype : {"float32", "float64"} or None
        Override the bundle's precision.
    strict_mapping : bool
        Require the system's mapping fingerprint to equal the bundle's.
    tabulate : bool or None
        Replace the per-pair filter networks by cubic Hermite tables built from the bundle's
        weights when the force is created (:meth:`~openmm_cgml.models.CGSchNet.tabulate_filters`);
        energies and forces agree with the exact network to interpolation accuracy (tested).
        ``None`` (default): tables for the ``"python"`` backend, exact networks for ``"torch"``
        (the faster choice for each, measured; see the module docstring).
        The bundle itself is unchanged.  Models without ``tabulate_filters`` run as they are.
    table_spacing : float
        nm; grid spacing of the filter tables.
    neighbor_search : {"auto", "torch", "nnpops"}
        What rebuilds the model's Verlet list.  ``"auto"``: NNPOps' ``getNeighborPairs`` kernel
        when NNPOps is installed and its pairs agree with ours on probe boxes
        (:meth:`~openmm_cgml.models.CGSchNet.use_nnpops`; a disagreement is logged and our search
        kept), else our pure-PyTorch search; ``"nnpops"`` requires it; ``"torch"`` never uses it.
    """

    name = "neural"

    def __init__(self, bundle, *, backend: str = "torch", priors: str = "openmm", outputs_forces: bool = True,
                 use_cuda_graphs: bool = False, dtype: str | None = None, strict_mapping: bool = True,
                 tabulate: bool | None = None, table_spacing: float = 0.001, neighbor_search: str = "auto"):
        if backend not in BACKENDS:
            raise InvalidSystemError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if priors not in ("openmm", "network"):
            raise InvalidSystemError(f"priors must be 'openmm' or 'network', got {priors!r}")
        self.bundle = bundle if isinstance(bundle, ModelBundle) else load_bundle(bundle)
        self.backend = backend
        self.priors = priors
        self.outputs_forces = bool(outputs_forces)
        self.use_cuda_graphs = bool(use_cuda_graphs)
        self.dtype = dtype
        self.strict_mapping = strict_mapping
        if table_spacing <= 0:
            raise InvalidSystemError(f"table_spacing must be a positive length in nm, got {table_spacing!r}")
        self.tabulate = (backend == "python") if tabulate is None else bool(tabulate)
        self.table_spacing = float(table_spacing)
        if neighbor_search not in ("auto", "torch", "nnpops"):
            raise InvalidSystemError(f"neighbor_search must be 'auto', 'torch' or 'nnpops', got {neighbor_search!r}")
        self.neighbor_search = neighbor_search

    def to_data(self) -> dict:
        return {"bundle": str(self.bundle.path) if self.bundle.path else None, "backend": self.backend,
                "priors": self.priors, "outputs_forces": self.outputs_forces,
                "use_cuda_graphs": self.use_cuda_graphs, "dtype": self.dtype, "fingerprint": self.bundle.fingerprint,
                "tabulate": self.tabulate, "table_spacing": self.table_spacing,
                "neighbor_search": self.neighbor_search}

    def build_model(self, info, *, with_priors: bool | None = None):
        """The bound eager inference model this term runs: evaluation mode, parameters without gradients,
        priors included unless they go to OpenMM, tabulated filters if ``tabulate``."""
        top = model_topology(info)
        self.bundle.check_mapping(top, strict=self.strict_mapping)
        if with_priors is None:
            with_priors = self.priors == "network"
        bundle = self.bundle
        if not with_priors:
            cfg = {"name": bundle.model_config["name"], "args": dict(bundle.model_config["args"], priors=[])}
            state = {k: v for k, v in bundle.state_dict.items() if not k.startswith("prior_modules.")}
            bundle = ModelBundle(cfg, state, bundle.mapping, bundle.units, bundle.training, bundle.versions,
                                 bundle.path)
        model = bundle.build_model(top, dtype=self.dtype, strict_mapping=self.strict_mapping)
        model.eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        if self.tabulate and hasattr(model, "tabulate_filters"):
            model.tabulate_filters(self.table_spacing)
        if self.neighbor_search != "torch" and hasattr(model, "use_nnpops"):
            if self.neighbor_search == "nnpops":
                model.use_nnpops()
            elif nnpops_available():
                try:
                    model.use_nnpops()
                except ConfigurationError as exc:
                    logger.warning("NNPOps not used: %s", exc)
        return model

    def create_forces(self, info: CGSystemInfo) -> list:
        top = model_topology(info)
        periodic = top.box_vectors is not None
        if periodic:
            check_cutoff(self.bundle.cutoff, top.box_vectors)
        model = self.build_model(top)
        forces = []
        if self.backend == "torch":
            forces.append(self._torch_force(model, periodic))
        else:
            forces.append(self._python_force(model, periodic))
        if self.priors == "openmm":
            forces += prior_forces(self.bundle.model_config["args"].get("priors", []), top,
                                   self.bundle.type_names, periodic)
        return forces

    def _torch_force(self, model, periodic: bool):
        from ._openmmtorch import import_openmmtorch

        openmmtorch = import_openmmtorch(
            "the 'torch' backend needs OpenMM-Torch: pip install acellera-openmmtorch-cpu (or conda install "
            "-c conda-forge openmm-torch), or use backend='python'")
        module = _script(model, periodic, self.outputs_forces)
        force = openmmtorch.TorchForce(module)
        force.setUsesPeriodicBoundaryConditions(periodic)
        force.setOutputsForces(self.outputs_forces)
        force.setProperty("useCUDAGraphs", "true" if self.use_cuda_graphs else "false")
        force.setName("neural")
        return force

    def _python_force(self, model, periodic: bool):
        import openmm

        if not hasattr(openmm, "PythonForce"):
            raise MissingDependencyError("the 'python' backend needs OpenMM >= 8.3 (openmm.PythonForce)")
        force = openmm.PythonForce(_PythonCallback(model, periodic))
        force.setUsesPeriodicBoundaryConditions(periodic)
        force.setName("neural")
        return force


class EnergyWatchdogReporter:
    """OpenMM reporter that stops a run whose potential energy is NaN, infinite or exploding.

    Parameters
    ----------
    reportInterval : int
        Steps between checks.
    maxEnergy : float or Quantity, optional
        Upper bound on the potential energy (kJ/mol); default: none.
    maxEnergyPerParticle : float, optional
        kJ/mol per particle; default 1000, a value no sane CG liquid reaches.

    Raises
    ------
    SimulationError
        From :meth:`report`, naming the step and the energy.
    """

    def __init__(self, reportInterval: int, maxEnergy=None, maxEnergyPerParticle: float | None = 1000.0):
        from ..units import to_md

        if reportInterval < 1:
            raise InvalidSystemError(f"reportInterval must be >= 1, got {reportInterval}")
        self._interval = int(reportInterval)
        self._max = None if maxEnergy is None else to_md(maxEnergy, "energy")
        self._max_per_particle = maxEnergyPerParticle
        self.lastEnergy = math.nan

    def describeNextReport(self, simulation):
        steps = self._interval - simulation.currentStep % self._interval
        return {"steps": steps, "periodic": None, "include": ["energy"]}

    def report(self, simulation, state):
        from openmm import unit

        energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        step = simulation.currentStep
        limit = self._max
        if self._max_per_particle is not None:
            per = self._max_per_particle * simulation.system.getNumParticles()
            limit = per if limit is None else min(limit, per)
        if not math.isfinite(energy):
            raise SimulationError(f"the potential energy became {energy} at step {step} (time "
                                  f"{state.getTime().value_in_unit(unit.picosecond):.4g} ps); the CG run blew up")
        if limit is not None and energy > limit:
            raise SimulationError(f"the potential energy {energy:.6g} kJ/mol exceeded {limit:.6g} kJ/mol at step "
                                  f"{step}; the CG run is exploding")
        self.lastEnergy = energy

    def close(self):
        """Nothing to release (reporter protocol)."""


def load_term(path: str | Path, **kwargs) -> NeuralForceTerm:
    """Shortcut: ``NeuralForceTerm(load_bundle(path), **kwargs)``."""
    return NeuralForceTerm(load_bundle(path), **kwargs)

