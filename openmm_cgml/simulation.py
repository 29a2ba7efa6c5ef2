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
from .units import BAR_PER_KJ_MOL_NM3, G_CM3_PER_DA_NM3, KB, system_masses, to_md

__all__ = ["SimulationResult", "run_simulation", "TimestepScan", "MAX_ENERGY_DRIFT", "largest_stable_timestep",
           "temperature_check", "kinetic_temperature", "degrees_of_freedom", "trajectory_pressure", "npt_density",
           "NPTDensity"]

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
    thermostat=None,
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
    """Equilibrate then record a run of ``system`` into a dataset, under ``thermostat``.

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
    temperature, timestep : str, Quantity or float (MD units)
    friction : str, Quantity or float (MD units)
        Friction of the Langevin thermostat of the equilibration, and of the recorded part when ``thermostat``
        is not given.
    thermostat : Thermostat or dict, optional
        The recorded part's thermostat (:class:`~openmm_cgml.thermostat.Thermostat`; default: Langevin at
        ``friction``, which damps diffusion).  Runs that D or alpha come from need one that leaves transport as
        in NVE: ``{"kind": "bussi", "tau": "1 ps"}``, ``nose-hoover`` or ``nve``.  When it is not Langevin, the
        ``equilibration_steps`` run under Langevin at ``friction`` (a fast, local thermalisation) and the recorded
        part continues from their positions and velocities.  The dataset records it as ``metadata["thermostat"]``
        (and the equilibration's as ``metadata["equilibration_thermostat"]`` when it differs).
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
    from openmm import app, unit
    from tqdm.auto import tqdm

    from .forces.xml import clone_system
    from .reference.reporter import DatasetReporter
    from .reference.run import choose_platform
    from .thermostat import Thermostat, integrator_name, make_integrator
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
    thermostat, equilibration = _thermostats(thermostat, gamma)
    platform_ = choose_platform(platform)

    def simulation(which: Thermostat, seed_: int):
        integrator = make_integrator(which, temperature, dt, seed_, system=system)
        # a copy (the caller's System stays untouched), made TorchForce-safe (XmlSerializer.clone is not)
        sim = app.Simulation(topology, clone_system(system), integrator, platform_)
        if box_vectors is not None:
            sim.context.setPeriodicBoxVectors(*np.asarray(box_vectors, dtype=float))
        return sim

    n_eq = int(equilibration_steps)
    sim = simulation(equilibration if n_eq else thermostat, seed + 1)
    sim.context.setPositions(np.asarray(positions, dtype=float))
    sim.context.setVelocitiesToTemperature(temperature * unit.kelvin, seed + 2)
    eq_block = 100
    for start in range(0, n_eq, eq_block):
        _advance(sim, min(eq_block, n_eq - start), "equilibration", start, dt, check=True)
    if n_eq and equilibration != thermostat:  # the recorded part continues under its own integrator
        state = sim.context.getState(getPositions=True, getVelocities=True, enforcePeriodicBox=False)
        del sim
        sim = simulation(thermostat, seed + 3)
        sim.context.setState(state)
    sim.context.setStepCount(0)
    sim.context.setTime(0.0)
    masses = system_masses(system)
    meta = {"temperature_K": temperature, "timestep_ps": dt, "ensemble": "nve" if thermostat.kind == "nve" else "nvt",
            "thermostat": thermostat.metadata(temperature), "integrator": integrator_name(thermostat),
            "report_interval_steps": report_interval, "versions": package_versions()}
    if thermostat.kind == "langevin":
        meta["friction_per_ps"] = thermostat.friction
    if n_eq and equilibration != thermostat:
        meta["equilibration_thermostat"] = equilibration.metadata(temperature)
    meta.update(**extra_meta, **(metadata or {}))
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
                "the run's mean kinetic temperature was %.1f K against the %s %.1f K (allowed %.1f K): "
                "the timestep (%g fs) is probably too large for this force field, and the trajectory is not a "
                "sample at %.1f K; measure it with largest_stable_timestep", check["mean_temperature_K"],
                "starting temperature (NVE)" if thermostat.kind == "nve" else "thermostat's", temperature,
                check["allowed_deviation_K"], dt * 1e3, temperature)
        writer.update_metadata(ns_per_day=rate * dt * 1e-3 * 86400, completed=True, temperature_check=check)
    finally:
        writer.close()
        for extra in reporters:
            if hasattr(extra, "close"):
                extra.close()
    return SimulationResult(dataset=Path(output), n_frames=steps // report_interval + 1,
                            ns_per_day=rate * dt * 1e-3 * 86400, steps_per_second=rate)


def _thermostats(thermostat, friction: float):
    """The recorded part's thermostat (default: Langevin at ``friction``) and the equilibration's (Langevin at
    ``friction`` when that is positive, else the recorded part's)."""
    from .thermostat import Thermostat, as_thermostat

    langevin = Thermostat(kind="langevin", friction=f"{friction!r} /ps") if friction > 0 else None
    if thermostat is None and langevin is None:
        raise ConfigurationError("friction 0 /ps is no Langevin thermostat: give thermostat={'kind': 'nve'} for a run "
                                 "without one")
    recorded = as_thermostat(thermostat, default=langevin)
    return recorded, langevin if langevin is not None and recorded.kind != "langevin" else recorded


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

    from .reference.reporter import NonFiniteFrame

    problem = None
    try:
        sim.step(n)
    except openmm.OpenMMException as exc:
        if "nan" not in str(exc).lower():
            raise
        problem = str(exc)
    except NonFiniteFrame as exc:  # the dataset reporter met the blow-up first
        problem = f"{exc.what} at step {exc.step}"
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


#: Default limit of the absolute NVE energy drift in :func:`largest_stable_timestep`, kT per ns per degree of freedom
#: (the measurements behind it: docs/guide/dynamics.md, "Choosing the timestep").
MAX_ENERGY_DRIFT = 0.1


@dataclass(frozen=True)
class TimestepScan:
    """Result of :func:`largest_stable_timestep`: per timestep (fs) its NVE energy drift and whether it passed
    (``trials``), the largest that did, and the criterion (``max_drift``, kT/ns per degree of freedom)."""

    largest_stable_fs: float | None
    trials: dict[float, dict]
    temperature_K: float
    max_drift: float


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
                            steps: int = 2500, block: int = 250, settle_steps: int = 200,
                            max_drift: float = MAX_ENERGY_DRIFT, sample_interval: int = 10, friction="1 /ps",
                            box_vectors=None, platform: str = "CPU", seed: int = 1) -> TimestepScan:
    """The largest of ``timesteps_fs`` (tried in increasing order, stopping at the first failure) at which
    velocity Verlet conserves the energy of ``system``: its NVE energy drift stays within ``max_drift`` kT per ns
    per degree of freedom.

    Each trial starts from ``positions`` with velocities at ``temperature``, settles for ``settle_steps`` under
    a Langevin thermostat (``friction``) at the trial's timestep, then runs ``steps`` steps of NVE
    (``VerletIntegrator``) at it, sampling the total energy every ``sample_interval`` steps.  The drift is the
    slope of a straight line fitted to that series, per degree of freedom, in kT/ns; its standard error comes
    from the fit's residuals (counted with their statistical inefficiency).  A trial passes if every energy stays
    finite and ``|drift| <= max_drift``.  Each trial records the drift, its standard error, the mean kinetic
    temperature of the NVE part, the total energy's standard deviation (kT per degree of freedom) and the median
    step time (ms, timed over ``block`` steps).

    An integrator whose error heats the system is caught here long before a thermostat would show it: a
    Langevin thermostat at 1 /ps removes an excess temperature within a picosecond, so the mean temperature of
    a thermostatted run stays within a few per cent even where the NVE energy drifts by kT per nanosecond per
    degree of freedom.  A CG model's stable timestep depends on the model (a network can make the potential
    stiffer than its priors), so measure it rather than assume it.  Training with ``position_noise``
    (``openmm_cgml.training.TrainingConfig``) smooths a network that fails here.  On GPU platforms the scan uses
    mixed precision (single precision adds a drift of its own).
    """
    import openmm

    from .analysis.statistics import statistical_inefficiency
    from .forces.xml import clone_system
    from .reference.run import choose_platform

    if steps < block or block < 1:
        raise ConfigurationError(f"steps ({steps}) must be at least one block ({block})")
    if not 1 <= sample_interval <= block:
        raise ConfigurationError(f"sample_interval ({sample_interval}) must be between 1 and block ({block}) steps")
    if steps // sample_interval < 3:
        raise ConfigurationError(f"steps ({steps}) must give at least 3 energy samples every sample_interval "
                                 f"({sample_interval}) steps")
    if not max_drift > 0:
        raise ConfigurationError(f"max_drift ({max_drift}) must be positive (kT/ns per degree of freedom)")
    if settle_steps < 0:
        raise ConfigurationError(f"settle_steps ({settle_steps}) must not be negative")
    temperature = to_md(temperature, "temperature", name="temperature")
    gamma = to_md(friction, "frequency", name="friction")
    for dt_fs in timesteps_fs:
        _check_state(temperature, float(dt_fs) * 1e-3, gamma)
    n_dof = degrees_of_freedom(system)
    kT = KB * temperature
    masses = system_masses(system)
    chosen = choose_platform(platform)
    properties = {"Precision": "mixed"} if "Precision" in chosen.getPropertyNames() else {}
    trials: dict[float, dict] = {}
    best = None
    for dt_fs in sorted(float(t) for t in timesteps_fs):
        dt = dt_fs * 1e-3
        integrator = openmm.CompoundIntegrator()
        settle = openmm.LangevinMiddleIntegrator(temperature, gamma, dt)
        settle.setRandomNumberSeed(seed)
        integrator.addIntegrator(settle)
        integrator.addIntegrator(openmm.VerletIntegrator(dt))
        ctx = openmm.Context(clone_system(system), integrator, chosen, properties)
        if box_vectors is not None:
            ctx.setPeriodicBoxVectors(*np.asarray(box_vectors, dtype=float))
        ctx.setPositions(np.asarray(positions, dtype=float))
        ctx.setVelocitiesToTemperature(temperature, seed + 1)
        energies, temps, times, finite, n_steps = [], [], [], True, 0
        try:
            integrator.setCurrentIntegrator(0)
            integrator.step(settle_steps)
            integrator.setCurrentIntegrator(1)
            energies.append(_total_energy(ctx))
            for _ in range(steps // block):
                t0 = time.perf_counter()
                done = 0
                while done < block and finite:
                    chunk = min(sample_interval, block - done)
                    integrator.step(chunk)
                    done += chunk
                    energies.append(_total_energy(ctx))
                    temps.append(kinetic_temperature(ctx, masses, n_dof))
                    finite = bool(np.isfinite(energies[-1]) and np.isfinite(temps[-1]))
                times.append((time.perf_counter() - t0) / block)
                if not finite:
                    break
                n_steps += block
        except openmm.OpenMMException:
            finite = False
        drift = drift_error = spread = None
        if finite:
            t = np.arange(len(energies)) * sample_interval * dt  # ps
            e = np.asarray(energies) / (kT * n_dof)  # kT per degree of freedom
            slope, intercept = np.polyfit(t, e, 1)
            residual = e - (slope * t + intercept)
            g = max(1.0, statistical_inefficiency(residual)) if len(e) >= 10 else float(len(e))
            n_eff = max(len(e) / g, 3.0)
            drift = float(slope * 1e3)  # kT/ns per degree of freedom
            drift_error = float(residual.std() * np.sqrt(12.0 / n_eff) / (t[-1] - t[0]) * 1e3)
            spread = float(np.std(e))
        stable = bool(finite and abs(drift) <= max_drift)
        if finite and drift_error > 0.5 * max_drift and abs(abs(drift) - max_drift) < 2 * drift_error:
            logger.warning("timestep %g fs: the energy drift %.3g +/- %.3g kT/ns per degree of freedom is too noisy "
                           "to judge against %g; run more steps per trial", dt_fs, drift, drift_error, max_drift)
        trials[dt_fs] = {"stable": stable, "steps": n_steps, "energy_drift_kT_per_ns_per_dof": drift,
                         "energy_drift_error": drift_error, "energy_std_kT_per_dof": spread,
                         "mean_temperature_K": float(np.mean(temps)) if finite and temps else None,
                         "step_ms_median": float(np.median(times)) * 1e3 if times else None}
        logger.info("timestep %g fs: %s", dt_fs, trials[dt_fs])
        del ctx, integrator
        if not stable:
            break
        best = dt_fs
    return TimestepScan(best, trials, temperature, max_drift)


def _total_energy(context) -> float:
    """Potential plus kinetic energy (kJ/mol); NaN if OpenMM reports a non-finite one."""
    from openmm import unit

    state = context.getState(getEnergy=True)
    return float((state.getPotentialEnergy() + state.getKineticEnergy()).value_in_unit(unit.kilojoule_per_mole))


def trajectory_pressure(system, dataset, *, temperature=None, max_frames: int = 200, platform: str = "CPU",
                        threads: int | None = None, relative_volume_step: float = 1e-4) -> dict:
    """The mean instantaneous pressure (bar) of ``system`` over the frames of ``dataset`` (a trajectory of that
    system) from the molecular virial, P = 2 K_com / (3 V) - dU/dV: dU/dV by a central difference in which the
    box and the molecules' centres of mass (the dataset's molecules, made whole) scale together and each molecule
    keeps its shape, as OpenMM's ``MonteCarloBarostat`` does (but through ``getState``, so TorchForces work);
    K_com the molecules' centre-of-mass kinetic energy from the recorded velocities (3/2 kT per molecule
    without them).  The molecular virial needs no constraint forces, so all-atom and CG runs are measured alike.
    A CG model at the AA density should have the AA pressure; a pair potential fitted to g(r) usually does not.

    Returns ``{"pressure_bar", "pressure_err_bar", "n_frames", "method"}``; the error is the standard error of the
    correlated series (statistical inefficiency).
    """
    import openmm
    from openmm import unit

    from .analysis.compare import molecule_indices
    from .analysis.distributions import molecule_centers
    from .analysis.statistics import mean_with_error
    from .forces.xml import clone_system, remove_barostats
    from .reference.run import choose_platform, platform_properties

    if dataset.n_frames == 0:
        raise SimulationError("the dataset has no frames to compute a pressure from")
    if system.getNumParticles() != dataset.n_particles:
        raise ConfigurationError(f"the System has {system.getNumParticles()} particles, the trajectory "
                                 f"{dataset.n_particles}: give the System the trajectory was run with")
    has_v = "velocities" in dataset.fields
    if temperature is not None:
        t = to_md(temperature, "temperature", name="temperature")
    elif has_v:
        t = float("nan")  # the kinetic term comes from the velocities
    else:
        from .analysis.compare import run_temperature
        from .exceptions import TrajectoryError

        try:
            t = run_temperature(dataset)
        except TrajectoryError as exc:
            raise ConfigurationError(f"the trajectory has no velocities and no temperature: give temperature= "
                                     f"({exc})") from None
    copy = clone_system(system)  # TorchForces too
    remove_barostats(copy)  # a barostat would only be in the way
    plat = choose_platform(platform)
    context = openmm.Context(copy, openmm.VerletIntegrator(0.001), plat, platform_properties(plat, threads))
    mol = molecule_indices(dataset)
    masses = np.asarray(dataset.masses, dtype=np.float64)
    n_mol = int(mol.max()) + 1
    mol_mass = np.bincount(mol, weights=masses, minlength=n_mol)
    frames = np.unique(np.linspace(0, dataset.n_frames - 1, min(max_frames, dataset.n_frames)).round().astype(int))
    eps = float(relative_volume_step)

    def energy(x, box):
        context.setPeriodicBoxVectors(*(openmm.Vec3(*row) for row in box))
        context.setPositions(x)
        return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    values = []
    for f in frames:
        box = np.asarray(dataset.box[f], dtype=np.float64)
        box = np.diag(box) if box.ndim == 1 else box
        x = np.asarray(dataset.positions[f], dtype=np.float64)
        com = molecule_centers(x[None], mol, masses, box=box[None])[0]
        volume = abs(float(np.linalg.det(box)))
        u = []
        for sign in (1.0, -1.0):
            s = (1.0 + sign * eps) ** (1.0 / 3.0)
            u.append(energy(x + (s - 1.0) * com[mol], s * box))
        dudv = (u[0] - u[1]) / (2.0 * eps * volume)
        if has_v:
            v = np.asarray(dataset.velocities[f], dtype=np.float64)
            p_com = np.stack([np.bincount(mol, weights=masses * v[:, k], minlength=n_mol) for k in range(3)], 1)
            k_com = 0.5 * float(np.sum(np.sum(p_com**2, axis=1) / mol_mass))
        else:
            k_com = 1.5 * n_mol * KB * t
        values.append((2.0 * k_com / (3.0 * volume) - dudv) * BAR_PER_KJ_MOL_NM3)
    est = mean_with_error(np.asarray(values))
    return {"pressure_bar": est.value, "pressure_err_bar": est.error, "n_frames": int(frames.size),
            "method": "molecular virial, dU/dV by central difference" + (
                ", recorded velocities" if has_v else f", equipartition kinetic term at {t:g} K")}


@dataclass
class NPTDensity:
    """The density a model holds at constant pressure (:func:`npt_density`)."""

    density_g_cm3: float
    density_err_g_cm3: float
    first_half_g_cm3: float
    second_half_g_cm3: float
    trend_t: float
    settled: bool
    start_g_cm3: float
    reference_g_cm3: float | None
    relative_to_reference: float | None
    holds: bool | None
    pressure_bar: float
    temperature_K: float
    timestep_fs: float
    steps: int
    note: str

    def to_data(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


#: Consecutive blocks whose means :func:`_trend_t` fits a line through.
_TREND_BLOCKS = 8


def _trend_t(y: np.ndarray) -> tuple[float, float]:
    """Student's t of the least-squares slope through the means of :data:`_TREND_BLOCKS` consecutive blocks of the
    series ``y``, and its two-sided 1 % critical value (the slope's error from the block means' scatter about the
    line, so slow correlated fluctuations widen it, and a trend is not hidden, as it is in two half means whose
    errors the trend itself inflates)."""
    from scipy import stats

    blocks = np.array([b.mean() for b in np.array_split(np.asarray(y, dtype=np.float64), _TREND_BLOCKS)])
    fit = stats.linregress(np.arange(blocks.size), blocks)
    t = abs(fit.slope) / fit.stderr if fit.stderr > 0 else (0.0 if fit.slope == 0 else float("inf"))
    return float(t), float(stats.t.ppf(0.995, blocks.size - 2))


def npt_density(system, positions, *, box_vectors, temperature="298.15 K", pressure="1 bar", timestep="5 fs",
                steps: int, equilibration_steps: int = 0, sample_interval: int = 25, barostat_interval: int = 25,
                friction="1 /ps", reference_density=None, tolerance: float = 0.05, platform: str = "auto",
                threads: int | None = None, seed: int = 0) -> NPTDensity:
    """Run ``system`` at constant pressure (OpenMM's ``MonteCarloBarostat``, Langevin thermostat: a density is a
    static property) from ``positions`` in ``box_vectors`` and return the density it holds: the mean over the
    ``steps`` after ``equilibration_steps``, sampled every ``sample_interval`` steps, with the standard error of the
    correlated series; the two halves' means, and Student's t of a linear trend through the means of 8 blocks
    (``trend_t``; ``settled`` when below the two-sided 1 % critical value, 3.7, and the box neither collapsed
    nor evaporated); with ``reference_density`` (e.g. the AA melt's), the
    relative deviation and ``holds`` (settled and within ``tolerance``).  A pair potential fitted at one state
    point usually does not hold the density of the liquid it was fitted to: this is the measurement that says so.

    The system is not modified (a copy gets the barostat; one it had is replaced).

    Raises
    ------
    ConfigurationError
        A system without periodic boundaries, positions that do not match it, or too few samples (fewer than 20).
    """
    import openmm
    from openmm import unit

    from .analysis.statistics import mean_with_error
    from .forces.xml import clone_system, remove_barostats
    from .reference.run import choose_platform, platform_properties

    t = to_md(temperature, "temperature", name="temperature")
    p = to_md(pressure, "pressure", name="pressure")
    dt = to_md(timestep, "time", name="timestep")
    gamma = to_md(friction, "frequency", name="friction")
    x = np.asarray(positions, dtype=np.float64)
    box = np.asarray(box_vectors, dtype=np.float64)
    box = np.diag(box) if box.ndim == 1 else box
    if not system.usesPeriodicBoundaryConditions():
        raise ConfigurationError("npt_density needs a periodic System (a barostat changes the box); this one uses no "
                                 "periodic boundary conditions")
    if x.shape != (system.getNumParticles(), 3):
        raise ConfigurationError(f"positions: expected ({system.getNumParticles()}, 3) for the System, got {x.shape}")
    if steps // sample_interval < 20:
        raise ConfigurationError(f"steps = {steps} gives {steps // max(sample_interval, 1)} samples every "
                                 f"{sample_interval} steps; a density with an error needs at least 20")
    copy = clone_system(system)
    remove_barostats(copy)
    barostat = openmm.MonteCarloBarostat(p * unit.bar, t * unit.kelvin, int(barostat_interval))
    barostat.setRandomNumberSeed(int(seed) + 1)
    copy.addForce(barostat)
    integrator = openmm.LangevinMiddleIntegrator(t, gamma, dt)
    integrator.setRandomNumberSeed(int(seed) + 2)
    plat = choose_platform(platform)
    context = openmm.Context(copy, integrator, plat, platform_properties(plat, threads))
    context.setPeriodicBoxVectors(*(openmm.Vec3(*row) for row in box))
    context.setPositions(x)
    context.setVelocitiesToTemperature(t, int(seed) + 3)
    mass = float(system_masses(copy).sum())

    def density() -> float:
        v = context.getState().getPeriodicBoxVolume().value_in_unit(unit.nanometer ** 3)
        return G_CM3_PER_DA_NM3 * mass / v

    start = G_CM3_PER_DA_NM3 * mass / abs(float(np.linalg.det(box)))
    note, values = "", []
    try:
        if equilibration_steps:
            integrator.step(int(equilibration_steps))
        for _ in range(steps // sample_interval):
            integrator.step(int(sample_interval))
            values.append(density())
            if not np.isfinite(values[-1]) or not 1e-2 < values[-1] / start < 1e2:
                note = (f"the box {'evaporated' if values[-1] < start else 'collapsed'}: density "
                        f"{values[-1]:.3g} g/cm^3 from {start:.3g}")
                break
    except openmm.OpenMMException as exc:  # NaN: the model blew up at constant pressure
        note = f"the run blew up ({exc})"
    rho = np.asarray(values, dtype=np.float64)
    n = rho.size
    if n < 4 or note:
        last = float(rho[-1]) if n else float("nan")
        return NPTDensity(last, float("nan"), float("nan"), last, float("inf"), False, start,
                          None if reference_density is None else float(reference_density),
                          None if reference_density is None else last / float(reference_density) - 1,
                          None if reference_density is None else False, p, t, dt * 1e3, n * sample_interval,
                          note or "too few samples before the run stopped")
    whole, first, second = mean_with_error(rho), mean_with_error(rho[: n // 2]), mean_with_error(rho[n // 2:])
    drift, critical = _trend_t(rho)
    settled = bool(drift < critical)
    ref = None if reference_density is None else to_md(reference_density, "density", name="reference_density")
    rel = None if ref is None else whole.value / ref - 1
    holds = None if ref is None else bool(settled and abs(rel) <= tolerance)
    if not settled:
        note = (f"still drifting: the trend of the block means has t = {drift:.1f} (1 % critical value "
                f"{critical:.3g}; halves' means {first.value:.4g} and {second.value:.4g} g/cm^3; run longer)")
    elif ref is not None:
        note = (f"holds the reference density within {100 * tolerance:g} %" if holds else
                f"settles {100 * rel:+.1f} % from the reference density")
    return NPTDensity(whole.value, whole.error, first.value, second.value, float(drift), settled, start, ref, rel,
                      holds, p, t, dt * 1e3, n * sample_interval, note)
