"""run_simulation: recording a CG run, and stopping with the step when it blows up."""

import numpy as np
import openmm
import pytest
from openmm import app

from openmm_cgml import ConfigurationError, SimulationError
from openmm_cgml.dataset import open_dataset
from openmm_cgml.simulation import run_simulation


def _lj_fluid(n_side=5, spacing=0.45, epsilon=1.0):
    n = n_side**3
    box = n_side * spacing
    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(*np.eye(3) * box)
    nb = openmm.NonbondedForce()
    nb.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    nb.setCutoffDistance(0.9)
    top = app.Topology()
    chain = top.addChain()
    for _ in range(n):
        system.addParticle(40.0)
        nb.addParticle(0.0, 0.34, epsilon)
        top.addAtom("B", None, top.addResidue("BEAD", chain))
    system.addForce(nb)
    grid = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3) * spacing
    return system, top, grid, np.eye(3) * box


def test_run_records_frames_and_speed(tmp_path):
    system, top, pos, box = _lj_fluid()
    res = run_simulation(system, top, pos, tmp_path / "cg.h5", temperature="120 K", timestep="5 fs", steps=200,
                         report_interval=20, equilibration_steps=50, box_vectors=box, platform="Reference",
                         progress=False)
    ds = open_dataset(res.dataset)
    assert ds.n_frames == res.n_frames == 11 and ds.kind == "coarse-grained"
    np.testing.assert_array_equal(ds.step, np.arange(11) * 20)
    np.testing.assert_allclose(ds.time, np.arange(11) * 0.1, atol=1e-9)
    assert res.ns_per_day > 0 and ds.metadata["temperature_K"] == 120.0
    # kinetic energy is that of the velocities recorded (equipartition check is too noisy for 125 beads)
    ke = 0.5 * (ds.masses[None, :, None] * ds.velocities**2).sum(axis=(1, 2))
    np.testing.assert_allclose(ke, ds.kinetic_energy, rtol=0.2)
    assert system.getNumForces() == 1  # the caller's System is not modified


def test_blow_up_is_reported_with_its_step(tmp_path):
    # a potential that is real only for x < 1.5 nm and pushes the particles there: once one crosses,
    # the energy is NaN, as in a CG run that has exploded
    system = openmm.System()
    top = app.Topology()
    chain = top.addChain()
    push = openmm.CustomExternalForce("500*sqrt(1.5 - x)")
    for i in range(4):
        system.addParticle(10.0)
        push.addParticle(i, [])
        top.addAtom("B", None, top.addResidue("BEAD", chain))
    system.addForce(push)
    pos = np.array([[0.0, i * 0.5, 0.0] for i in range(4)])
    with pytest.raises(SimulationError, match=r"at step \d+"):
        run_simulation(system, top, pos, tmp_path / "bad.h5", timestep="2 fs", steps=2000, report_interval=10,
                       platform="Reference", progress=False)
    # the same blow-up during equilibration (nothing recorded yet) is reported with its steps too
    for platform in ("Reference", "CPU"):
        with pytest.raises(SimulationError, match=r"equilibration became unstable between its steps \d+ and \d+"):
            run_simulation(system, top, pos, tmp_path / f"bad_{platform}.h5", timestep="2 fs", steps=10,
                           report_interval=10, equilibration_steps=3000, platform=platform, progress=False)


def test_bad_lengths():
    system, top, pos, box = _lj_fluid()
    with pytest.raises(ConfigurationError, match="multiple of report_interval"):
        run_simulation(system, top, pos, "never.h5", steps=105, report_interval=10, box_vectors=box)


def test_largest_stable_timestep():
    """An LJ fluid holds its temperature at 5 fs and blows up (or heats) at 200 fs; the scan stops there."""
    from openmm_cgml.simulation import largest_stable_timestep

    system, top, pos, box = _lj_fluid()
    scan = largest_stable_timestep(system, pos, temperature="120 K", timesteps_fs=(200, 5), steps=600, block=100,
                                   box_vectors=box, platform="Reference")
    assert scan.largest_stable_fs == 5.0
    assert scan.trials[5.0]["stable"] and abs(scan.trials[5.0]["mean_temperature_K"] / 120.0 - 1) < 0.1
    assert scan.trials[5.0]["steps"] == 600 and scan.trials[5.0]["step_ms_median"] > 0
    assert not scan.trials[200.0]["stable"]
    assert system.getNumForces() == 1  # untouched
    with pytest.raises(ConfigurationError, match="at least one block"):
        largest_stable_timestep(system, pos, steps=10, block=100, box_vectors=box)
    with pytest.raises(ConfigurationError, match="sample_interval"):
        largest_stable_timestep(system, pos, steps=200, block=100, sample_interval=0, box_vectors=box)


def test_stable_timestep_allows_for_chance_in_a_small_system():
    """125 beads fluctuate by T sqrt(2 / n_dof) = 7.6 % per sample: the scan allows `confidence` standard errors
    of the mean on top of the tolerance, so a correct integrator is not failed for noise (this is what made the
    quick demo fail at 5 fs on a 96-bead system with a bare 5 % tolerance), while 200 fs still fails."""
    from openmm_cgml.simulation import _mean_temperature_error, largest_stable_timestep

    system, top, pos, box = _lj_fluid()
    kwargs = dict(temperature="120 K", timesteps_fs=(5, 200), steps=600, block=100, box_vectors=box,
                  platform="Reference", tolerance=0.0)
    held = largest_stable_timestep(system, pos, **kwargs)  # the Reference platform is deterministic
    trial = held.trials[5.0]
    assert held.largest_stable_fs == 5.0 and trial["mean_temperature_K"] != 120.0
    assert trial["allowed_deviation_K"] == pytest.approx(3.0 * trial["temperature_sem_K"])
    assert 1.0 <= trial["statistical_inefficiency"] <= 60 and not held.trials[200.0]["stable"]
    # with no allowance for chance the same run fails: the mean is never exactly the thermostat's
    assert largest_stable_timestep(system, pos, confidence=0.0, **kwargs).largest_stable_fs is None

    # the standard error: canonical fluctuation over the independent samples
    rng = np.random.default_rng(0)
    n_dof, temperature = 200, 300.0
    white = temperature * (1 + np.sqrt(2 / n_dof) * rng.standard_normal(4000))
    sem, g = _mean_temperature_error(white, temperature, n_dof)
    assert g == pytest.approx(1.0, abs=0.2)
    assert sem == pytest.approx(temperature * np.sqrt(2 / n_dof / 4000), rel=0.1)
    correlated = np.repeat(white[:400], 10)  # each value held 10 samples: g = 10
    sem, g = _mean_temperature_error(correlated, temperature, n_dof)
    assert g == pytest.approx(10.0, rel=0.25)
    assert sem == pytest.approx(temperature * np.sqrt(2 / n_dof / 400), rel=0.15)
    # too short to estimate g: one independent sample
    assert _mean_temperature_error(white[:5], temperature, n_dof) == (temperature * np.sqrt(2 / n_dof), 5.0)


def test_run_reports_whether_it_held_its_temperature(tmp_path, caplog):
    """A run that stays finite but is far too hot (bounded cosine wells at omega dt = 1.5) is flagged in the log
    and in the dataset metadata; a sound run is recorded as held; one whose velocities become NaN (an LJ fluid at
    80 fs, which OpenMM's own checks let through) stops with the steps."""
    import logging

    system, top, pos, box = _lj_fluid()
    res = run_simulation(system, top, pos, tmp_path / "ok.h5", temperature="120 K", timestep="5 fs", steps=1000,
                         report_interval=50, equilibration_steps=200, box_vectors=box, platform="Reference",
                         progress=False)
    check = open_dataset(res.dataset).metadata["temperature_check"]
    assert check["held"] and abs(check["mean_temperature_K"] - 120) <= check["allowed_deviation_K"]
    assert check["samples"] == 20 and check["temperature_sem_K"] > 0  # one per block of 50 steps

    # bounded cosine wells (no NaN possible) with a harmonic frequency omega = 150/ps: at 10 fs the run heats
    n, mass, dt, depth = 64, 12.0, 0.01, 20.0
    q = 1.5 / dt / np.sqrt(depth / mass)
    wells = openmm.System()
    force = openmm.CustomExternalForce(f"{depth}*(3-cos({q}*x)-cos({q}*y)-cos({q}*z))")
    grid = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3) * 0.5
    for i in range(n):
        wells.addParticle(mass)
        force.addParticle(i, [])
    wells.addForce(force)
    topology = app.Topology()
    chain = topology.addChain()
    for _ in range(n):
        topology.addAtom("W", None, topology.addResidue("W", chain))
    with caplog.at_level(logging.WARNING, logger="openmm_cgml.simulation"):
        hot = run_simulation(wells, topology, grid, tmp_path / "hot.h5", temperature="300 K", timestep=f"{dt} ps",
                             steps=500, report_interval=50, equilibration_steps=100, platform="Reference",
                             progress=False)
    check = open_dataset(hot.dataset).metadata["temperature_check"]
    assert not check["held"] and check["mean_temperature_K"] > 600
    assert "timestep (10 fs) is probably too large" in caplog.text
    with pytest.raises(SimulationError, match=r"production became unstable between its steps \d+ and \d+ "
                                              r"\(velocities are not finite\)"):
        run_simulation(system, top, pos, tmp_path / "nan.h5", temperature="120 K", timestep="80 fs", steps=500,
                       report_interval=50, equilibration_steps=100, box_vectors=box, platform="Reference",
                       progress=False)
