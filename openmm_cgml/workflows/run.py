"""Run a CG System and record it as a dataset: the ``cgml run`` workflow.

Example configuration (quantities need units)::

    system: cg_system.xml           # the System XML that `cgml build` wrote
    pdb: cg.pdb                     # start structure: the PDB `cgml build` wrote (positions, box); its bead
                                    # types come from the CG topology JSON `cgml build` wrote beside it
    # topology: cg.topology.json    # that JSON, when it lies elsewhere
    # dataset: cg_mapped.h5         # instead of pdb: a frame of a coarse-grained dataset
    # frame: -1
    output: cg_run.h5               # the run's dataset, for `cgml compare` (or `cgml train`, `cgml ibi`)
    temperature: 298.15 K
    timestep: 10 fs
    friction: 1 /ps                 # Langevin friction of the equilibration (and of the run without thermostat)
    # thermostat: {kind: bussi, tau: 1 ps}   # the recorded part's (default: Langevin at friction); runs that D
                                    # or alpha come from need bussi, nose-hoover or nve (transport as in NVE)
    duration: 100 ps                # or steps: 10000 (recorded steps, after the equilibration)
    report_interval: 100            # steps between frames
    equilibration_steps: 1000       # unrecorded steps first
    fields: [positions, velocities, forces]
    seed: 0
    platform: auto                  # auto (the fastest available; OpenCL only on a GPU) | CUDA | OpenCL | CPU | Reference
    trust_system: false             # true loads a System holding a PythonForce (backend: python); see docs/safety

The run is :func:`openmm_cgml.simulation.run_simulation` (a run under ``thermostat``, Langevin by default, that
stops with the step numbers if it blows up and records its thermostat and whether it held its temperature).
The dataset carries the CG topology in its metadata (``cg_topology``: bead types, molecules, bonds), so ``cgml compare`` compares it per bead type with no
mapping given.  Relative paths are relative to the working directory, as for ``cgml build``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..config import Duration, Friction, StrictModel, Temperature, Timestep
from ..thermostat import Thermostat
from ..units import system_masses

__all__ = ["RunConfig", "RunInputs", "RunResult", "prepare_run", "run_cg"]

logger = logging.getLogger(__name__)


class RunConfig(StrictModel):
    """Configuration of ``cgml run`` (:func:`run_cg`)."""

    system: Path = Field(description="the CG System XML, as `cgml build` writes it")
    pdb: Path | None = Field(None, description="start structure (positions, box): the PDB `cgml build` wrote; "
                                               "give pdb or dataset")
    topology: Path | None = Field(None, description="CG topology JSON with the bead types (with pdb); default: "
                                                    "<pdb stem>.topology.json, which `cgml build` writes beside "
                                                    "the PDB")
    dataset: Path | None = Field(None, description="instead of pdb: a coarse-grained dataset whose frame gives "
                                                   "the bead types, box and start positions")
    frame: int = Field(-1, description="the dataset's frame (negative: from the end); with dataset only")
    output: Path = Field(description="the run's dataset (.h5) with the CG topology, for `cgml compare`")
    temperature: Temperature = Field(description="thermostat temperature")
    timestep: Timestep = Field(description="integration timestep (measure a model's largest stable one with "
                                       "openmm_cgml.simulation.largest_stable_timestep)")
    friction: Friction = Field("1 /ps", description="friction coefficient of the Langevin thermostat "
                                                     "(LangevinMiddleIntegrator) of the equilibration, and of the "
                                                     "recorded part when no thermostat is given")
    thermostat: Thermostat | None = Field(None, description="the recorded part's thermostat, e.g. {kind: bussi, "
                                                            "tau: 1 ps} (kinds: langevin, bussi, nose-hoover, nve); "
                                                            "default: Langevin at friction, which damps diffusion: "
                                                            "runs that D or alpha come from need a global one or "
                                                            "nve")
    steps: int | None = Field(None, ge=1, description="recorded steps, after the equilibration; give steps or "
                                                      "duration")
    duration: Duration | None = Field(None, description="recorded time, a whole number of timesteps; or steps")
    report_interval: int = Field(100, ge=1, description="steps between recorded frames; steps must be a multiple")
    equilibration_steps: int = Field(0, ge=0, description="unrecorded steps before the recorded run")
    fields: list[Literal["positions", "velocities", "forces"]] = Field(
        default_factory=lambda: ["positions", "velocities", "forces"],
        description="per-bead arrays recorded each frame (positions always)")
    seed: int = Field(0, ge=0, description="seed of the initial velocities and the thermostat's random forces")
    platform: str = Field("auto", description="OpenMM platform: auto (the fastest available; OpenCL only on a GPU) | CUDA | OpenCL | CPU "
                                              "| Reference")

    trust_system: bool = Field(False, description="load a System XML that holds executable content (a PythonForce, "
                                                  "as `cgml build` writes with backend: python, or an unknown "
                                                  "force type); only for a file you wrote or whose author you "
                                                  "trust")

    @model_validator(mode="after")
    def _consistent(self):
        if (self.pdb is None) == (self.dataset is None):
            raise ValueError("give exactly one of 'pdb' (the structure `cgml build` wrote) and 'dataset' (a "
                             "coarse-grained dataset and its 'frame')")
        if self.topology is not None and self.pdb is None:
            raise ValueError("'topology' goes with 'pdb'; a dataset carries its own CG topology")
        if "frame" in self.model_fields_set and self.dataset is None:
            raise ValueError("'frame' picks a frame of 'dataset'; a PDB has one structure")
        if (self.steps is None) == (self.duration is None):
            raise ValueError("give exactly one of 'steps' and 'duration' (the recorded length of the run)")
        if "positions" not in self.fields:
            raise ValueError("'fields' must include positions")
        n = self.recorded_steps()
        if n % self.report_interval:
            raise ValueError(f"the run's {n} recorded steps are not a multiple of report_interval "
                             f"({self.report_interval} steps)")
        return self

    def recorded_steps(self) -> int:
        """``steps``, or ``duration`` as a whole number of timesteps."""
        if self.steps is not None:
            return self.steps
        n = self.duration / self.timestep
        if abs(n - round(n)) > 1e-6 * max(1.0, n) or round(n) < 1:
            raise ValueError(f"duration ({self.duration:g} ps) is not a whole, positive number of timesteps of "
                             f"{self.timestep:g} ps")
        return int(round(n))

    def topology_path(self) -> Path | None:
        """The CG topology JSON of a PDB start: ``topology``, or the file `cgml build` writes beside the PDB."""
        from .build import default_topology_path

        if self.pdb is None:
            return None
        return self.topology if self.topology is not None else default_topology_path(self.pdb)


@dataclass(frozen=True)
class RunInputs:
    """What a run starts from: the System, the CG topology (with the box) and the start positions (nm)."""

    system: object
    topology: object
    positions: np.ndarray


@dataclass(frozen=True)
class RunResult:
    """What :func:`run_cg` wrote: the dataset, its frames, the speed and the CG topology it records."""

    dataset: Path
    n_frames: int
    ns_per_day: float
    steps_per_second: float
    topology: object


def _require_file(path: Path, key: str) -> None:
    from ..exceptions import ConfigurationError

    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise ConfigurationError(f"{key}: {path} {what}")


def _structure_from_pdb(cfg: RunConfig, system):
    from openmm import app, unit

    from ..exceptions import CorruptFileError
    from ..topology import CGTopology
    from ..units import strip

    try:
        pdb = app.PDBFile(str(cfg.pdb))
    except Exception as exc:  # OpenMM's PDB reader raises plain exceptions of several kinds
        raise CorruptFileError(f"pdb: cannot read {cfg.pdb} as a PDB file: {exc}") from exc
    positions = np.asarray(pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=float)
    box = pdb.topology.getPeriodicBoxVectors()
    box = None if box is None else strip(box, "length")
    path = cfg.topology_path()
    if path.exists():
        topology = CGTopology.from_json(path)
        if len(positions) != topology.n_beads:
            from ..exceptions import InvalidSystemError

            raise InvalidSystemError(f"topology: the CG topology {path} has {topology.n_beads} beads, the structure "
                                     f"{cfg.pdb} {len(positions)} atoms; are they from the same `cgml build`?")
    elif cfg.topology is not None:
        from ..exceptions import ConfigurationError

        raise ConfigurationError(f"topology: {cfg.topology} does not exist")
    else:
        logger.warning("no CG topology JSON beside %s (%s): the bead types are the PDB's atom names; `cgml build` "
                       "writes that file, which keeps bead types that differ from bead names", cfg.pdb, path)
        _check_particles(system, cfg.system, positions, cfg.pdb)
        topology = CGTopology.from_openmm(pdb.topology, masses=system)
    if topology.box_vectors is None and box is not None:
        topology = topology.replace(box_vectors=box)
    return topology, positions, str(cfg.pdb)


def _check_particles(system, system_file, positions, source) -> None:
    from ..exceptions import InvalidSystemError

    if system.getNumParticles() != len(positions):
        raise InvalidSystemError(f"system: {system_file} has {system.getNumParticles()} particles, the structure "
                                 f"{source} {len(positions)}; build the System for this structure (`cgml build`)")


def _structure_from_dataset(cfg: RunConfig):
    from ..dataset import open_dataset
    from ..exceptions import DatasetError
    from ..topology import CGTopology

    ds = open_dataset(cfg.dataset)
    if ds.kind != "coarse-grained":
        raise DatasetError(f"dataset: {cfg.dataset} holds {ds.kind!r} data; `cgml run` needs a coarse-grained "
                           "dataset (map an all-atom one with `cgml map`)")
    if not -ds.n_frames <= cfg.frame < ds.n_frames:
        raise DatasetError(f"frame: {cfg.dataset} has {ds.n_frames} frames; frame {cfg.frame} does not exist")
    topology = CGTopology.from_dataset(ds, cfg.frame)
    return topology, np.asarray(ds.positions[cfg.frame], dtype=float), str(cfg.dataset)


def _check_cutoffs(system, box, where: Path) -> None:
    """Periodic cutoffs of the System's forces against the run's box (before OpenMM refuses them less clearly)."""
    from ..geometry import check_cutoff
    from ..units import strip

    for i in range(system.getNumForces()):
        force = system.getForce(i)
        if hasattr(force, "getCutoffDistance") and force.usesPeriodicBoundaryConditions():
            name = force.getName() or type(force).__name__
            check_cutoff(strip(force.getCutoffDistance(), "length"), box,
                         f"system: force {name!r} of {where} in the start structure's box")


def prepare_run(config: RunConfig) -> RunInputs:
    """Read and check the inputs of ``config`` (System, structure, CG topology) without running anything.

    Raises
    ------
    ConfigurationError
        A file named by a key does not exist, or the platform is not available.
    InvalidSystemError
        The System, the structure and the CG topology do not describe the same particles, or a periodic cutoff is
        longer than half the box.
    CorruptFileError, DatasetError
        An input cannot be read.
    """
    from ..exceptions import InvalidSystemError, UntrustedContentError
    from ..forces.xml import load_system
    from ..reference.run import choose_platform
    from ..units import strip

    cfg = config if isinstance(config, RunConfig) else RunConfig.from_data(dict(config))
    _require_file(cfg.system, "system")
    if cfg.pdb is not None:
        _require_file(cfg.pdb, "pdb")
    else:
        _require_file(cfg.dataset, "dataset")
    choose_platform(cfg.platform)
    try:
        system = load_system(cfg.system, trusted=cfg.trust_system)
    except UntrustedContentError as exc:
        raise UntrustedContentError(f"{exc} (in a cgml run configuration: trust_system: true)") from None
    if cfg.pdb is not None:
        topology, positions, source = _structure_from_pdb(cfg, system)
    else:
        topology, positions, source = _structure_from_dataset(cfg)
    _check_particles(system, cfg.system, positions, source)
    if not np.all(np.isfinite(positions)):
        raise InvalidSystemError(f"the start positions of {source} are not all finite")
    masses = system_masses(system)
    if topology.masses is not None and not np.allclose(topology.masses, masses, rtol=1e-5):
        logger.warning("the bead masses of %s differ from the particle masses of %s; the run uses the System's",
                       source, cfg.system)
    box = topology.box_vectors
    if box is None and system.usesPeriodicBoundaryConditions():
        box = strip(system.getDefaultPeriodicBoxVectors(), "length")
        topology = topology.replace(box_vectors=box)
    _check_cutoffs(system, box, cfg.system)
    return RunInputs(system, topology.replace(masses=masses), positions)


def run_cg(config: RunConfig, *, overwrite: bool = False, progress: bool = False, reporters=()) -> RunResult:
    """Run the CG System of ``config`` from its start structure and record the dataset ``config.output``.

    Every input is read and checked first (:func:`prepare_run`), so a wrong file stops the command before any
    step.  ``overwrite`` allows replacing an existing output dataset; ``reporters`` are extra OpenMM reporters
    for the recorded part (see :func:`~openmm_cgml.simulation.run_simulation`).

    Raises
    ------
    DatasetError
        ``output`` exists (without ``overwrite``), is an input of the run, or cannot be written.
    SimulationError
        The run became unstable (with the step numbers).
    """
    from .._io import check_writable
    from ..exceptions import DatasetError
    from ..simulation import run_simulation

    cfg = config if isinstance(config, RunConfig) else RunConfig.from_data(dict(config))
    inputs_ = [p for p in (cfg.system, cfg.pdb, cfg.dataset, cfg.topology_path()) if p is not None]
    if any(cfg.output.resolve() == p.resolve() for p in inputs_):
        raise DatasetError(f"output: {cfg.output} is also an input of the run")
    if cfg.output.exists() and not overwrite:
        raise DatasetError(f"output: {cfg.output} exists; pass --overwrite (run_cg(..., overwrite=True)) to replace "
                           "it")
    check_writable(cfg.output)
    inputs = prepare_run(cfg)
    steps = cfg.recorded_steps()
    logger.info("running %s (%d beads, types %s) for %d + %d steps of %g fs at %g K", cfg.system,
                inputs.topology.n_beads, list(inputs.topology.type_names), cfg.equilibration_steps, steps,
                cfg.timestep * 1e3, cfg.temperature)
    result = run_simulation(
        inputs.system, inputs.topology, inputs.positions, cfg.output, temperature=cfg.temperature,
        timestep=cfg.timestep, friction=cfg.friction, thermostat=cfg.thermostat, steps=steps,
        report_interval=cfg.report_interval,
        equilibration_steps=cfg.equilibration_steps, box_vectors=inputs.topology.box_vectors, fields=cfg.fields,
        kind="coarse-grained", platform=cfg.platform, seed=cfg.seed, reporters=reporters, progress=progress,
        metadata={"run_configuration": cfg.to_data(), "system_file": str(cfg.system)},
    )
    return RunResult(result.dataset, result.n_frames, result.ns_per_day, result.steps_per_second, inputs.topology)
