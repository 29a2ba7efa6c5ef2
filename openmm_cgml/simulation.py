"""Run a (CG or AA) OpenMM System and record it as an openmm_cgml dataset."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._io import package_versions
from .dataset import TrajectoryWriter
from .exceptions import ConfigurationError, SimulationError
from .units import to_md

__all__ = ["SimulationResult", "run_simulation"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulationResult:
    """What :func:`run_simulation` wrote and measured."""

    dataset: Path
    n_frames: int
    ns_per_day: float
    steps_per_second: float


def run_simulation(
    system,
    topology,
    positions,
    output,
    *,
    temperature="298.15 K",
    timestep="10 fs",
    friction="1 /ps",
    steps: int,
    report_interval: int,
    equilibration_steps: int = 0,
    box_vectors=None,
    fields=("positions", "velocities", "forces"),
    kind: str = "coarse-grained",
    platform: str = "auto",
    seed: int = 0,
    metadata: dict | None = None,
    reporters=(),
    progress: bool = True,
) -> SimulationResult:
    """Equilibrate then record an NVT Langevin run of ``system`` into a dataset.

    Parameters
    ----------
    system : openmm.System
        Not modified.
    topology : openmm.app.Topology
        Its particles (beads may have no element).
    positions : array (n, 3), nm
    output : path-like
        The dataset file (written as frames come; see :class:`~openmm_cgml.dataset.TrajectoryWriter`).
    temperature, timestep, friction : str, Quantity or float (MD units)
    steps : int
        Recorded steps (after ``equilibration_steps``); frame 0 is the equilibrated start.
    report_interval : int
        Steps between frames.
    reporters : sequence
        Extra OpenMM reporters attached for the recorded part (e.g. a ``TimeCorrelationReporter``).

    Returns
    -------
    SimulationResult
        Including the speed of the recorded part (ns/day, steps/s).

    Raises
    ------
    SimulationError
        With the step, if energies or forces become non-finite.
    """
    import openmm
    from openmm import app, unit
    from tqdm.auto import tqdm

    from .forces.xml import clone_system
    from .reference.reporter import DatasetReporter
    from .reference.run import choose_platform

    if steps < 1 or report_interval < 1 or steps % report_interval:
        raise ConfigurationError(f"steps ({steps}) must be a positive multiple of report_interval ({report_interval})")
    temperature = to_md(temperature, "temperature", name="temperature")
    dt = to_md(timestep, "time", name="timestep")
    gamma = to_md(friction, "frequency", name="friction")
    integrator = openmm.LangevinMiddleIntegrator(temperature * unit.kelvin, gamma / unit.picosecond,
                                                 dt * unit.picosecond)
    integrator.setRandomNumberSeed(seed + 1)
    # a copy (the caller's System stays untouched), made TorchForce-safe (XmlSerializer.clone is not)
    sim = app.Simulation(topology, clone_system(system), integrator, choose_platform(platform))
    if box_vectors is not None:
        sim.context.setPeriodicBoxVectors(*np.asarray(box_vectors, dtype=float))
    sim.context.setPositions(np.asarray(positions, dtype=float))
    sim.context.setVelocitiesToTemperature(temperature * unit.kelvin, seed + 2)
    eq_block = 100
    for start in range(0, int(equilibration_steps), eq_block):
        _advance(sim, min(eq_block, int(equilibration_steps) - start), "equilibration", start, dt, check=True)
    sim.context.setStepCount(0)
    sim.context.setTime(0.0)
    masses = np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())])
    meta = {"temperature_K": temperature, "timestep_ps": dt, "friction_per_ps": gamma, "ensemble": "nvt",
            "integrator": "LangevinMiddleIntegrator", "report_interval_steps": report_interval,
            "versions": package_versions(), **(metadata or {})}
    writer = TrajectoryWriter(output, topology, masses, meta, fields=fields, kind=kind)
    reporter = DatasetReporter(writer, report_interval)
    try:
        sim.reporters.append(reporter)
        sim.reporters.extend(reporters)
        reporter.report(sim, sim.context.getState(getPositions=True, getVelocities=True, getForces=True,
                                                  getEnergy=True))
        block = max(report_interval, (steps // 50) // report_interval * report_interval)
        t0 = time.perf_counter()
        with tqdm(total=steps, unit="step", desc="CG run", disable=not progress, dynamic_ncols=True) as bar:
            while sim.currentStep < steps:
                n = min(block, steps - sim.currentStep)
                _advance(sim, n, "production", sim.currentStep, dt)
                bar.update(n)
        elapsed = time.perf_counter() - t0
        rate = steps / elapsed
        writer.update_metadata(ns_per_day=rate * dt * 1e-3 * 86400, completed=True)
    finally:
        writer.close()
        for extra in reporters:
            if hasattr(extra, "close"):
                extra.close()
    return SimulationResult(dataset=Path(output), n_frames=steps // report_interval + 1,
                            ns_per_day=rate * dt * 1e-3 * 86400, steps_per_second=rate)


def _advance(sim, n: int, phase: str, start: int, dt: float, check: bool = False) -> None:
    """``sim.step(n)``, turning OpenMM's NaN failure (and, with ``check``, a non-finite energy after the
    steps) into a SimulationError that names the steps."""
    import openmm

    problem = None
    try:
        sim.step(n)
    except openmm.OpenMMException as exc:
        if "nan" not in str(exc).lower():
            raise
        problem = str(exc)
    if problem is None and check:
        energy = sim.context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
        if not np.isfinite(energy):
            problem = f"potential energy {energy}"
    if problem is not None:
        raise SimulationError(
            f"the {phase} became unstable between its steps {start} and {start + n} ({problem}); try a smaller "
            f"timestep (now {dt * 1000:g} fs) or check the force field"
        )
