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
from .units import KB, to_md

__all__ = ["SimulationResult", "run_simulation", "TimestepScan", "largest_stable_timestep", "temperature_check",
           "kinetic_temperature", "degrees_of_freedom"]

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
    progress: bool = False,
) -> SimulationResult:
    """Equilibrate then record an NVT Langevin run of ``system`` into a dataset.

    Parameters
    ----------
    system : openmm.System
        Not modified.
    topology : CGTopology or openmm.app.Topology
        Its particles (beads may have no element).  A :class:`~openmm_cgml.topology.CGTopology` is also
        stored in the dataset's metadata (``cg_topology``), so analysis and training read its bead types.
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
    progress : bool
        Show a progress bar.

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
    from .topology import CGTopology

    extra_meta = {}
    if isinstance(topology, CGTopology):
        extra_meta["cg_topology"] = topology.replace(box_vectors=None).to_data()
        topology = topology.to_openmm()
    if steps < 1 or report_interval < 1 or steps % report_interval:
        raise ConfigurationError(f"steps ({steps}) must be a positive multiple of report_interval ({report_interval})")
    temperature = to_md(temperature, "temperature", name="temperature")
    dt = to_md(timestep, "time", name="timestep")
    gamma = to_md(friction, "frequency", name="friction")
    _check_state(temperature, dt, gamma)
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
            "versions": package_versions(), **extra_meta, **(metadata or {})}
    writer = TrajectoryWriter(output, topology, masses, meta, fields=fields, kind=kind)
    reporter = DatasetReporter(writer, report_interval)
    try:
        sim.reporters.append(reporter)
        sim.reporters.extend(reporters)
        reporter.report(sim, sim.context.getState(getPositions=True, getVelocities=True, getForces=True,
                                                  getEnergy=True))
        block = max(report_interval, (steps // 50) // report_interval * report_interval)
        n_dof = degrees_of_freedom(system)
        temps = []
        t0 = time.perf_counter()
        with tqdm(total=steps, unit="step", desc="CG run", disable=not progress, dynamic_ncols=True) as bar:
            while sim.currentStep < steps:
                n, start = min(block, steps - sim.currentStep), sim.currentStep
                _advance(sim, n, "production", start, dt)
                temps.append(kinetic_temperature(sim.context, masses, n_dof))
                if not np.isfinite(temps[-1]):  # OpenMM does not always notice NaN velocities itself
                    raise _unstable("production", start, n, "velocities are not finite", dt)
                bar.update(n)
        elapsed = time.perf_counter() - t0
        rate = steps / elapsed
        check = temperature_check(temps, temperature, n_dof)
        if not check["held"]:
            logger.warning(
                "the run's mean kinetic temperature was %.1f K against the thermostat's %.1f K (allowed %.1f K): "
                "the timestep (%g fs) is probably too large for this force field, and the trajectory is not a "
                "sample at %.1f K; measure it with largest_stable_timestep", check["mean_temperature_K"], temperature,
                check["allowed_deviation_K"], dt * 1e3, temperature)
        writer.update_metadata(ns_per_day=rate * dt * 1e-3 * 86400, completed=True, temperature_check=check)
    finally:
        writer.close()
        for extra in reporters:
            if hasattr(extra, "close"):
                extra.close()
    return SimulationResult(dataset=Path(output), n_frames=steps // report_interval + 1,
                            ns_per_day=rate * dt * 1e-3 * 86400, steps_per_second=rate)


def _check_state(temperature: float, timestep: float, friction: float) -> None:
    """Clear errors for an impossible thermodynamic state or integrator, before anything is built."""
    if not temperature > 0:
        raise ConfigurationError(f"temperature must be greater than 0 K (an absolute temperature), got {temperature} K")
    if not timestep > 0:
        raise ConfigurationError(f"timestep must be greater than 0 ps, got {timestep} ps")
    if not friction >= 0:
        raise ConfigurationError(f"friction must be at least 0 /ps (a collision rate), got {friction} /ps")


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
        raise _unstable(phase, start, n, problem, dt)


def _unstable(phase: str, start: int, n: int, problem: str, dt: float) -> SimulationError:
    return SimulationError(
        f"the {phase} became unstable between its steps {start} and {start + n} ({problem}); try a smaller "
        f"timestep (now {dt * 1000:g} fs) or check the force field"
    )


@dataclass(frozen=True)
class TimestepScan:
    """Result of :func:`largest_stable_timestep`: per timestep (fs) whether it held, and the largest that did."""

    largest_stable_fs: float | None
    trials: dict[float, dict]
    temperature_K: float
    tolerance: float


def degrees_of_freedom(system) -> int:
    """3 N - constraints, less 3 when the System removes its centre-of-mass motion."""
    import openmm

    n_dof = 3 * system.getNumParticles() - system.getNumConstraints()
    if any(isinstance(system.getForce(i), openmm.CMMotionRemover) for i in range(system.getNumForces())):
        n_dof -= 3
    return n_dof


def kinetic_temperature(context, masses, n_dof: int) -> float:
    """Instantaneous kinetic temperature (K) from the velocities (no force evaluation); NaN if they are not finite."""
    from openmm import unit

    v = context.getState(getVelocities=True).getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)
    kinetic = 0.5 * float(np.sum(np.asarray(masses)[:, None] * v * v))
    return 2 * kinetic / (n_dof * KB) if np.isfinite(kinetic) else float("nan")


def temperature_check(temps, temperature: float, n_dof: int, *, tolerance: float = 0.10,
                      confidence: float = 3.0) -> dict:
    """Whether a kinetic-temperature series held the thermostat's ``temperature``: its mean within ``tolerance``
    (relative) plus ``confidence`` standard errors of the mean (:func:`_mean_temperature_error`)."""
    temps = np.asarray(temps, dtype=float)
    if temps.size == 0 or not np.all(np.isfinite(temps)):
        return {"held": False, "mean_temperature_K": None, "temperature_sem_K": None,
                "statistical_inefficiency": None, "allowed_deviation_K": None, "samples": int(temps.size)}
    mean_t = float(temps.mean())
    sem, g = _mean_temperature_error(temps, temperature, n_dof)
    allowed = tolerance * temperature + confidence * sem
    return {"held": bool(abs(mean_t - temperature) <= allowed), "mean_temperature_K": mean_t, "temperature_sem_K": sem,
            "statistical_inefficiency": g, "allowed_deviation_K": allowed, "samples": int(temps.size)}


def _mean_temperature_error(temps, temperature: float, n_dof: int) -> tuple[float, float]:
    """Standard error (K) of the mean of a kinetic-temperature series that is at equilibrium, and the series'
    statistical inefficiency g.

    Uses the canonical fluctuation of the kinetic temperature, T sqrt(2 / n_dof), rather than the series' own
    spread (a heating run has a large spread by drift, not by noise), over n / g independent samples; g comes
    from pymbar.  A series too short to estimate g counts as one independent sample.
    """
    from .analysis.statistics import statistical_inefficiency

    temps = np.asarray(temps, dtype=float)
    n = len(temps)
    g = float(n) if n < 10 else min(float(n), max(1.0, statistical_inefficiency(temps)))
    return float(temperature * np.sqrt(2.0 / max(n_dof, 1)) * np.sqrt(g / n)), g


def largest_stable_timestep(system, positions, *, temperature="298.15 K", timesteps_fs=(5, 10, 15, 20, 25),
                            steps: int = 2500, block: int = 250, settle_steps: int = 200, tolerance: float = 0.10,
                            sample_interval: int = 10, confidence: float = 3.0, box_vectors=None,
                            platform: str = "CPU", seed: int = 1) -> TimestepScan:
    """The largest of ``timesteps_fs`` (tried in increasing order, stopping at the first failure) at which a
    Langevin run of ``system`` from ``positions`` stays finite and keeps its mean kinetic temperature within
    ``tolerance`` of the thermostat's over ``steps`` steps (after ``settle_steps``).

    The kinetic temperature is sampled every ``sample_interval`` steps (from the velocities, so sampling costs
    no force evaluation).  A small system's mean temperature fluctuates by chance: the allowed deviation is
    ``tolerance * T`` plus ``confidence`` standard errors of the mean at equilibrium (canonical fluctuation
    ``T sqrt(2 / n_dof)`` over the independent samples, counted with pymbar's statistical inefficiency), so a
    96-bead run is not failed for noise while a heating integrator (hundreds of kelvin too hot) still is.  Each
    trial records the mean, its standard error, the allowed deviation and the median step time (ms, timed
    over ``block`` steps).

    A CG model's stable timestep depends on the model (a network can make the potential stiffer than its
    priors), so measure it rather than assume it.  Training with ``position_noise``
    (``openmm_cgml.training.TrainingConfig``) smooths a network that fails here.
    """
    import openmm
    from openmm import unit

    from .forces.xml import clone_system
    from .reference.run import choose_platform

    if steps < block or block < 1:
        raise ConfigurationError(f"steps ({steps}) must be at least one block ({block})")
    if not 1 <= sample_interval <= block:
        raise ConfigurationError(f"sample_interval ({sample_interval}) must be between 1 and block ({block}) steps")
    if tolerance < 0 or confidence < 0:
        raise ConfigurationError(f"tolerance ({tolerance}) and confidence ({confidence}) must be non-negative")
    temperature = to_md(temperature, "temperature", name="temperature")
    for dt_fs in timesteps_fs:
        _check_state(temperature, float(dt_fs) * 1e-3, 1.0)
    n_dof = degrees_of_freedom(system)
    masses = np.array([system.getParticleMass(i).value_in_unit(unit.dalton)
                       for i in range(system.getNumParticles())])
    trials: dict[float, dict] = {}
    best = None
    for dt_fs in sorted(float(t) for t in timesteps_fs):
        integrator = openmm.LangevinMiddleIntegrator(temperature, 1.0, dt_fs * 1e-3)
        integrator.setRandomNumberSeed(seed)
        ctx = openmm.Context(clone_system(system), integrator, choose_platform(platform))
        if box_vectors is not None:
            ctx.setPeriodicBoxVectors(*np.asarray(box_vectors, dtype=float))
        ctx.setPositions(np.asarray(positions, dtype=float))
        ctx.setVelocitiesToTemperature(temperature, seed + 1)
        temps, times, finite, n_steps = [], [], True, 0
        try:
            integrator.step(settle_steps)
            for _ in range(steps // block):
                t0 = time.perf_counter()
                done = 0
                while done < block and finite:
                    chunk = min(sample_interval, block - done)
                    integrator.step(chunk)
                    done += chunk
                    temps.append(kinetic_temperature(ctx, masses, n_dof))
                    finite = bool(np.isfinite(temps[-1]))
                times.append((time.perf_counter() - t0) / block)
                energy = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
                finite = finite and bool(np.isfinite(energy))
                if not finite:
                    break
                n_steps += block
        except openmm.OpenMMException:
            finite = False
        check = temperature_check(temps, temperature, n_dof, tolerance=tolerance, confidence=confidence)
        stable = bool(finite and check["held"])
        trials[dt_fs] = {"stable": stable, "steps": n_steps,
                         **{k: v for k, v in check.items() if k not in ("held", "samples")},
                         "step_ms_median": float(np.median(times)) * 1e3 if times else None}
        logger.info("timestep %g fs: %s", dt_fs, trials[dt_fs])
        del ctx, integrator
        if not stable:
            break
        best = dt_fs
    return TimestepScan(best, trials, temperature, tolerance)
