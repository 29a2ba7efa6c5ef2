"""Neural CG force terms: a model bundle as OpenMM forces (TorchForce or PythonForce).

Backends
--------
``"torch"`` (default)
    An :class:`openmmtorch.TorchForce` running a TorchScript module that wraps the model: it takes
    positions (and box vectors when periodic), casts OpenMM's float64 to the model's dtype, and
    returns the energy (and, with ``outputs_forces=True``, the forces from autograd, cast back to
    float64).  Its XML is self-contained; read it back with
    :func:`openmm_cgml.forces.xml.load_system` (openmm-torch's own deserializer crashes with some
    pip builds).  It runs the model inside OpenMM's CUDA platform without host copies.
``"python"``
    An :class:`openmm.PythonForce` calling the eager model from Python (works with any torch and
    any model, TorchScript-compatible or not).  It serialises only by pickling the callback.
``"compiled"``
    The package's own C++ force for :class:`~openmm_cgml.models.CGSchNet` networks
    (:mod:`openmm_cgml.forces.compiled`): the same network evaluated in the model's precision (``dtype``) with
    an analytic backward pass, its filters as cubic Hermite tables (``tabulate``, the default for it) or exact per pair.
    Its XML holds the weights as numbers (self-contained, nothing executable).  It runs on the host, so on a
    GPU platform TorchForce is the faster choice.  On x86-64 it has a portable build and an AVX2 + FMA build,
    chosen per Context from the CPU (:func:`openmm_cgml.forces.compiled.simd`; ``CGML_SIMD`` overrides).
``"auto"`` (default)
    ``"compiled"`` for a CGSchNet whose priors run in OpenMM when the plugin is built and no CUDA/HIP platform
    is installed; otherwise ``"torch"`` when OpenMM-Torch is installed, else ``"python"``.

Which is faster on the CPU, and whether filter tables pay, is measured in
``benchmarks/bench_neural.py`` (figures on the documentation's results page); the defaults
follow those measurements: ``tabulate=None`` means tables for ``"python"`` and ``"compiled"``
and the exact networks for ``"torch"``.

Inference models have ``requires_grad=False`` parameters: OpenMM-Torch's freezing does the same,
and without it every force evaluation would also record the graph for weight gradients.

Priors
------
``priors="openmm"`` (default) evaluates the bundle's priors as ordinary OpenMM forces, each built
from the prior's own OpenMM twin (:meth:`~openmm_cgml.models.priors.Prior.openmm_twin`), so any
registered prior works this way; each becomes a named force of its own (``neural:repulsion``,
...), in a force group of its own.  With the ``"compiled"`` backend a prior that has a compiled twin
(:func:`compiled_prior_force`: the repulsion, as a ``CGPairTableForce`` from its table)
runs as that instead, in the calling thread like the network.  ``priors="network"`` keeps them inside the torch
module.  All give the same energies (tested; the compiled twin to its table's accuracy).

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
from ..geometry import check_cutoff
from ..models.bundle import ModelBundle, load_bundle
from ..models.neighbors import nnpops_available
from ..topology import CGTopology
from .base import ForceTerm
from .spec import build_force

__all__ = [
    "NeuralForceTerm",
    "TorchForceModule",
    "PeriodicTorchForceModule",
    "EnergyWatchdogReporter",
    "prior_forces",
    "compiled_prior_force",
    "trained_temperatures",
    "check_temperature",
    "is_temperature_conditioned",
    "BACKENDS",
    "load_term",
]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "python", "compiled")


class TorchForceModule(torch.nn.Module):
    """TorchScript-ready wrapper for a non-periodic system: ``forward(positions)``."""

    def __init__(self, model: torch.nn.Module, outputs_forces: bool = False):
        super().__init__()
        self.model = model
        self.outputs_forces = bool(outputs_forces)
        self.dtype = model.dtype

    def forward(self, positions: torch.Tensor):
        pos = positions.to(self.dtype)
        if not self.outputs_forces:
            return (self.model(pos, None) + 0.0 * pos.sum()).to(torch.float64), torch.zeros(0)
        pos = pos.detach().requires_grad_(True)
        # + 0 * sum(pos): a model whose energy does not depend on the positions (priors moved to OpenMM) still
        # has a gradient, zero
        energy = self.model(pos, None) + 0.0 * pos.sum()
        grad = torch.autograd.grad([energy], [pos])[0]
        assert grad is not None
        return energy.detach().to(torch.float64), (-grad).to(torch.float64)


class PeriodicTorchForceModule(TorchForceModule):
    """TorchScript-ready wrapper for a periodic system: ``forward(positions, boxvectors)``."""

    def forward(self, positions: torch.Tensor, boxvectors: torch.Tensor):
        pos = positions.to(self.dtype)
        box = boxvectors.to(self.dtype)
        if not self.outputs_forces:
            return (self.model(pos, box) + 0.0 * pos.sum()).to(torch.float64), torch.zeros(0)
        pos = pos.detach().requires_grad_(True)
        energy = self.model(pos, box) + 0.0 * pos.sum()
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
        self.dtype = model.dtype

    def __call__(self, state):
        from openmm import unit

        pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        pos_t = torch.as_tensor(np.asarray(pos), dtype=self.dtype).requires_grad_(True)
        box_t = None
        if self.periodic:
            box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
            box_t = torch.as_tensor(np.asarray(box), dtype=self.dtype)
        energy = self.model(pos_t, box_t) + 0.0 * pos_t.sum()  # a gradient even for a position-free energy
        (grad,) = torch.autograd.grad(energy, pos_t)
        return float(energy.detach()), -grad.detach().numpy().astype(np.float64)


def compiled_prior_force(prior, topology: CGTopology):
    """``prior`` (bound to ``topology``) as the package's compiled pair force, from its pair tables
    (:meth:`~openmm_cgml.models.priors.Prior.pair_table_twin`); None where it has no table form or the compiled
    plugin is not available here."""
    from . import compiled

    data = prior.pair_table_twin(topology)
    if data is None or not compiled.available():
        return None
    return compiled.make_pair_force(**data)


def prior_forces(model, topology: CGTopology, *, compiled: bool = False) -> list:
    """OpenMM forces equal to the priors of ``model`` (bound to ``topology``), from each prior's OpenMM twin; each
    force is named after its prior.  ``compiled``: a prior with pair tables as the compiled pair force
    (:func:`compiled_prior_force`: the repulsion), the others as their custom-force twins."""
    forces = []
    for prior in model.prior_modules:
        twin = compiled_prior_force(prior, topology) if compiled else None
        if twin is not None:
            forces.append(twin)
            continue
        for spec in prior.openmm_twin(topology):
            forces.append(build_force(spec))
    return forces


def trained_temperatures(bundle: ModelBundle) -> list[float]:
    """The temperatures (K) a bundle's model was trained at, sorted (empty when the bundle does not say)."""
    training = bundle.training or {}
    temps = training.get("temperatures_K")
    if temps is None and training.get("temperature") is not None:  # single-temperature bundles
        temps = np.atleast_1d(np.asarray(training["temperature"], dtype=float)).tolist()
    return sorted({float(t) for t in (temps or [])})


def is_temperature_conditioned(bundle: ModelBundle) -> bool:
    """Whether the bundle's model takes the temperature as an input (it is evaluated at the temperature it runs at)."""
    return bool(bundle.model_config.get("args", {}).get("temperature"))


def check_temperature(bundle: ModelBundle, temperature: float | None, *, tolerance: float = 0.5) -> None:
    """Refuse a model trained at several temperatures that is given none (it takes the temperature as input);
    warn when ``temperature`` (K) lies outside the trained range (by more than ``tolerance`` K)."""
    temps = trained_temperatures(bundle)
    where = f"the model bundle {bundle.path}" if bundle.path else "the model bundle"
    if temperature is None:
        if len(temps) > 1 and is_temperature_conditioned(bundle):
            raise ConfigurationError(
                f"{where} is temperature-conditioned, trained at {', '.join(f'{t:g}' for t in temps)} K: give the "
                "temperature the System runs at (temperature=..., or `temperature` in the cgml build configuration)")
        return
    if temps and not temps[0] - tolerance <= temperature <= temps[-1] + tolerance:
        span = f"{temps[0]:g} K" if len(temps) == 1 else f"{temps[0]:g}-{temps[-1]:g} K"
        logger.warning("%s was trained at %s; at %g K it extrapolates (structure and dynamics there are untested)",
                       where, span, temperature)


class NeuralForceTerm(ForceTerm):
    """A trained CG model (bundle) as OpenMM forces.

    Parameters
    ----------
    bundle : path or ModelBundle
        The model bundle (:func:`openmm_cgml.models.save_bundle`).
    backend : {"auto", "torch", "python", "compiled"}
        ``TorchForce`` (TorchScript), ``PythonForce``, the compiled C++ force, or the fastest of them
        available here (``"auto"``); see the module docstring and :meth:`resolved_backend`.
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
        ``None`` (default): tables for the ``"python"`` and ``"compiled"`` backends, exact networks for
        ``"torch"`` (the faster choice for each, measured; see the module docstring).  The compiled force
        builds its own tables from the weights (``tabulate=False``: exact filters per pair).
        The bundle itself is unchanged.  Models without ``tabulate_filters`` run as they are.
    table_spacing : float
        nm; grid spacing of the filter tables.
    neighbor_search : {"auto", "torch", "nnpops"}
        What rebuilds the model's Verlet list.  ``"auto"``: NNPOps' ``getNeighborPairs`` kernel
        when NNPOps is installed and its pairs agree with ours on probe boxes
        (:meth:`~openmm_cgml.models.CGSchNet.use_nnpops`; a disagreement is logged and our search
        kept), else our pure-PyTorch search; ``"nnpops"`` requires it; ``"torch"`` never uses it.
    temperature : float (K), str or Quantity, optional
        The temperature the System will run at.  A temperature-conditioned model (``uses_temperature``) is
        evaluated at it; one trained at several temperatures refuses to be built without it.  Outside the
        temperatures the bundle was trained at (:func:`trained_temperatures`) a warning says the model
        extrapolates.
    """

    kind = "neural"
    name = "neural"

    def __init__(self, bundle, *, backend: str = "auto", priors: str = "openmm", outputs_forces: bool = True,
                 use_cuda_graphs: bool = False, dtype: str | None = None, strict_mapping: bool = True,
                 tabulate: bool | None = None, table_spacing: float = 0.001, neighbor_search: str = "auto",
                 name: str = "neural", temperature=None):
        if backend not in BACKENDS:
            raise InvalidSystemError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if priors not in ("openmm", "network"):
            raise InvalidSystemError(f"priors must be 'openmm' or 'network', got {priors!r}")
        if backend == "compiled" and priors != "openmm":
            raise InvalidSystemError("the 'compiled' backend runs the network only: its priors must be 'openmm'")
        if dtype not in (None, "float32", "float64"):
            raise InvalidSystemError(f"dtype must be 'float32', 'float64' or None (the bundle's), got {dtype!r}")
        self.bundle = bundle if isinstance(bundle, ModelBundle) else load_bundle(bundle)
        self.backend = backend
        self.priors = priors
        self.outputs_forces = bool(outputs_forces)
        self.use_cuda_graphs = bool(use_cuda_graphs)
        self.dtype = dtype
        self.strict_mapping = strict_mapping
        if table_spacing <= 0:
            raise InvalidSystemError(f"table_spacing must be a positive length in nm, got {table_spacing!r}")
        self._tabulate = tabulate
        self.table_spacing = float(table_spacing)
        if neighbor_search not in ("auto", "torch", "nnpops"):
            raise InvalidSystemError(f"neighbor_search must be 'auto', 'torch' or 'nnpops', got {neighbor_search!r}")
        self.neighbor_search = neighbor_search
        self.name = name
        from ..units import to_md

        self.temperature = None if temperature is None else to_md(temperature, "temperature", name="temperature")
        check_temperature(self.bundle, self.temperature)

    @property
    def tabulate(self) -> bool:
        """Whether the filters run as tables (``tabulate``, or the backend's faster choice when it was None)."""
        if self._tabulate is not None:
            return bool(self._tabulate)
        return self.resolved_backend() in ("python", "compiled")

    def resolved_backend(self) -> str:
        """The backend :meth:`create_forces` uses: ``backend``, with ``"auto"`` resolved (see the module docs)."""
        if self.backend != "auto":
            return self.backend
        from ..models.registry import MODELS

        config = self.bundle.model_config
        if self.priors == "openmm" and hasattr(MODELS.get(config["name"]), "compiled_parameters") \
                and config.get("args", {}).get("use_network", True):
            from .tabulated import _compiled_preferred

            if _compiled_preferred():
                return "compiled"
        try:
            from ._openmmtorch import import_openmmtorch

            import_openmmtorch("")
        except MissingDependencyError:
            return "python"
        return "torch"

    def to_data(self) -> dict:
        if self.bundle.path is None:
            raise ConfigurationError("a neural term whose bundle was never saved cannot be written as data")
        return {"kind": self.kind, "name": self.name, "bundle": str(self.bundle.path), "backend": self.backend,
                "priors": self.priors, "outputs_forces": self.outputs_forces,
                "use_cuda_graphs": self.use_cuda_graphs, "dtype": self.dtype, "fingerprint": self.bundle.fingerprint,
                "strict_mapping": self.strict_mapping, "tabulate": self._tabulate,
                "table_spacing": self.table_spacing, "neighbor_search": self.neighbor_search,
                "temperature": self.temperature}

    @classmethod
    def from_data(cls, data):
        term = cls(data["bundle"], backend=data.get("backend", "auto"), priors=data.get("priors", "openmm"),
                   outputs_forces=data.get("outputs_forces", True), use_cuda_graphs=data.get("use_cuda_graphs", False),
                   dtype=data.get("dtype"), strict_mapping=data.get("strict_mapping", True),
                   tabulate=data.get("tabulate"), table_spacing=data.get("table_spacing", 0.001),
                   neighbor_search=data.get("neighbor_search", "auto"), name=data.get("name", "neural"),
                   temperature=data.get("temperature"))
        if data.get("fingerprint") not in (None, term.bundle.fingerprint):
            raise ConfigurationError(f"the bundle {data['bundle']} has mapping fingerprint {term.bundle.fingerprint}, "
                                     f"the term data expects {data['fingerprint']}: the file was replaced")
        return term

    @classmethod
    def example(cls, topology: CGTopology, model: str = "schnet"):
        """A small untrained model (float64, priors of every bonded kind the topology has) in an in-memory bundle."""
        from ..models.bundle import bundle_from_model
        from ..models.priors import PRIORS
        from ..models.registry import MODELS

        priors = [{"name": "repulsion", "args": PRIORS.get("repulsion").example_args(topology)}]
        if len(topology.bonds):
            priors.append({"name": "harmonic_bond", "args": PRIORS.get("harmonic_bond").example_args(topology)})
        if len(topology.angles):
            priors.append({"name": "harmonic_angle", "args": PRIORS.get("harmonic_angle").example_args(topology)})
        cls_model = MODELS.get(model)
        torch.manual_seed(0)
        net = cls_model(list(topology.type_names), priors=priors, **cls_model.example_args(topology.type_names))
        return cls(bundle_from_model(net, topology), backend="python", tabulate=False)

    def build_model(self, topology: CGTopology, *, with_priors: bool | None = None):
        """The bound eager inference model this term runs: evaluation mode, parameters without gradients,
        priors included unless they go to OpenMM, tabulated filters if ``tabulate`` (and the model has them)."""
        self.bundle.check_mapping(topology, strict=self.strict_mapping)
        if with_priors is None:
            with_priors = self.priors == "network"
        model = self.bundle.build_model(topology, dtype=self.dtype, strict_mapping=self.strict_mapping)
        if self.temperature is not None and getattr(model, "uses_temperature", False):
            model.set_temperature(self.temperature)
        if not with_priors:
            model.drop_priors()
        model.eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        if self.tabulate and model.supports_tables:
            model.tabulate_filters(self.table_spacing)
        if self.neighbor_search != "torch" and model.supports_nnpops:
            if self.neighbor_search == "nnpops":
                model.use_nnpops()
            elif nnpops_available():
                try:
                    model.use_nnpops()
                except ConfigurationError as exc:
                    logger.warning("NNPOps not used: %s", exc)
        elif self.neighbor_search == "nnpops":
            raise ConfigurationError(f"neighbor_search='nnpops': the model {self.bundle.model_config['name']!r} has "
                                     "no NNPOps path")
        return model

    def create_forces(self, topology: CGTopology) -> list:
        if not isinstance(topology, CGTopology):
            raise ConfigurationError(f"create_forces takes a CGTopology, got {type(topology).__name__}")
        periodic = topology.periodic
        model = self.build_model(topology, with_priors=True)
        if periodic:  # the model's own range, priors included, whatever its architecture
            check_cutoff(model.cutoff, topology.box_vectors, f"term {self.name!r}")
        backend = self.resolved_backend()
        # the compiled backend runs its pair priors compiled too (in the calling thread, as the network)
        prior_list = prior_forces(model, topology, compiled=backend == "compiled") if self.priors == "openmm" else []
        if self.priors == "openmm":
            model.drop_priors()
        if backend == "compiled":
            network = self._compiled_force(model, periodic)
        elif backend == "torch":
            network = self._torch_force(model, periodic)
        else:
            network = self._python_force(model, periodic)
        network.setName("network")
        return [network, *prior_list]

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
        return force

    def _compiled_force(self, model, periodic: bool):
        from . import compiled

        if not hasattr(model, "compiled_parameters"):
            raise ConfigurationError(f"the 'compiled' backend runs CGSchNet networks; the bundle's model "
                                     f"{self.bundle.model_config['name']!r} has no compiled form (use backend='torch')")
        return compiled.make_schnet_force(model.compiled_parameters(), periodic=periodic,
                                          table_spacing=self.table_spacing if self.tabulate else 0.0,
                                          skin=max(float(getattr(model, "skin", compiled.DEFAULT_SKIN)), 0.0),
                                          double_precision=model.dtype == torch.float64)

    def _python_force(self, model, periodic: bool):
        import openmm

        if not hasattr(openmm, "PythonForce"):
            raise MissingDependencyError("the 'python' backend needs OpenMM >= 8.3 (openmm.PythonForce)")
        force = openmm.PythonForce(_PythonCallback(model, periodic))
        force.setUsesPeriodicBoundaryConditions(periodic)
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

