"""TimeCorrelationReporter in a plain OpenMM script: on-the-fly MSD/VACF equal offline ones; time rescaling."""

import json

import numpy as np
import openmm
import pytest
from openmm import app, unit

from openmm_cgml.analysis import compute_msd, compute_vacf, remove_com_drift, unwrap_positions
from openmm_cgml.dynamics import ArrheniusAlpha, TimeCorrelationReporter
from openmm_cgml.exceptions import TrajectoryError
from openmm_cgml.testing import lj_fluid


def _lj_fluid(n_side=5, spacing=0.45, periodic=True, seed=0):
    length = n_side * spacing
    fluid = lj_fluid(n_side**3, length, sigma=0.34, epsilon=0.99, mass=40.0,
                     cutoff=min(1.0, length / 2 - 0.01) if periodic else None, shift=0.1)
    integrator = openmm.LangevinMiddleIntegrator(120 * unit.kelvin, 5 / unit.picosecond, 5 * unit.femtosecond)
    integrator.setRandomNumberSeed(seed)
    sim = app.Simulation(fluid.topology, fluid.system, integrator, openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(fluid.positions)
    sim.context.setVelocitiesToTemperature(120 * unit.kelvin, seed)
    return sim


class _Recorder:
    """Records wrapped positions (as a trajectory file would) and velocities at the same interval."""

    def __init__(self, interval):
        self.interval, self.x, self.v, self.t, self.box = interval, [], [], [], []

    def describeNextReport(self, simulation):
        return {"steps": self.interval - simulation.currentStep % self.interval, "periodic": True,
                "include": ["positions", "velocities"]}

    def report(self, simulation, state):
        self.x.append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        self.v.append(state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond))
        self.t.append(state.getTime().value_in_unit(unit.picosecond))
        self.box.append(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer))


def test_on_the_fly_msd_and_vacf_equal_offline(tmp_path):
    sim = _lj_fluid()
    sim.step(200)  # leave the lattice
    interval = 4
    reporter = TimeCorrelationReporter(tmp_path / "tc.json", interval, numLags=20, blockFactor=4, numLevels=2,
                                       writeInterval=50, plotFile=tmp_path / "tc.png")
    recorder = _Recorder(interval)
    assert reporter.describeNextReport(sim) == {"steps": interval, "periodic": False,
                                                "include": ["positions", "velocities"]}
    sim.reporters += [reporter, recorder]
    sim.step(interval * 300)
    reporter.close()
    reporter.close()  # idempotent
    data = json.loads((tmp_path / "tc.json").read_text())
    assert (tmp_path / "tc.png").stat().st_size > 0
    x, v, t = np.array(recorder.x), np.array(recorder.v), np.array(recorder.t)
    masses = np.full(x.shape[1], 40.0)
    # wrapped positions really crossed the boundary, so unwrapping matters
    assert np.abs(np.diff(x, axis=0)).max() > 1.0
    offline = compute_msd(x, t, box=np.array(recorder.box), masses=masses, remove_com=True, max_lag=19)
    np.testing.assert_allclose(data["msd"][:20], offline.msd, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(data["vacf"][:20], compute_vacf(v, t, max_lag=19).vacf, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(data["time_cg"][:20], offline.lag_times, rtol=1e-12)
    # the decimated level: every 4th frame is an origin
    xc = remove_com_drift(unwrap_positions(x, np.array(recorder.box)), masses)
    for lag, value in zip(data["lag_reports"][20:], data["msd"][20:]):
        origins = np.arange(0, len(t) - lag, 4)
        ref = np.mean(np.sum((xc[origins + lag] - xc[origins]) ** 2, axis=-1))
        assert value == pytest.approx(ref, rel=1e-7)
    assert data["alpha"] == 1.0 and data["time_aa"] == data["time_cg"]
    assert data["diffusion"]["msd"]["D_cg_time"] > 0 and data["diffusion"]["green_kubo"]["D_cg_time"] > 0


def test_rescaled_time_axis_is_alpha_times_cg_axis(tmp_path):
    sim = _lj_fluid(n_side=4, seed=1)
    rep = TimeCorrelationReporter(tmp_path / "a.json", 5, alpha=6.3, alphaError=0.3, numLags=10, blockFactor=2,
                                  numLevels=2, writeInterval=None)
    sim.reporters.append(rep)
    sim.step(5 * 40)
    rep.close()
    data = json.loads((tmp_path / "a.json").read_text())
    np.testing.assert_allclose(data["time_aa"], 6.3 * np.array(data["time_cg"]), rtol=1e-14)
    assert data["time_cg"][1] == pytest.approx(5 * 0.005)
    msd = data["diffusion"]["msd"]
    assert msd["D_aa_time"] == pytest.approx(msd["D_cg_time"] / 6.3)
    assert msd["fit_range_aa"] == pytest.approx([6.3 * r for r in msd["fit_range_cg"]])
    assert msd["D_aa_time_err"] >= msd["D_aa_time"] * 0.3 / 6.3


def test_alpha_model_uses_integrator_temperature_and_non_periodic_systems_work(tmp_path):
    sim = _lj_fluid(n_side=3, periodic=False, seed=2)
    model = ArrheniusAlpha(0.5, 10.0, 0.0, 15.0)
    rep = TimeCorrelationReporter(tmp_path / "m.json", 2, alpha=model, numLags=8, blockFactor=2, numLevels=1,
                                  writeInterval=None)
    sim.reporters.append(rep)
    sim.step(2 * 20)
    rep.close()
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["temperature"] == pytest.approx(120.0)
    assert data["alpha"] == pytest.approx(model.alpha(120.0))
    np.testing.assert_allclose(data["time_aa"], data["alpha"] * np.array(data["time_cg"]))


def test_reporter_rejects_irregular_reports(tmp_path):
    sim = _lj_fluid(n_side=3, seed=3)
    rep = TimeCorrelationReporter(tmp_path / "x.json", 2, numLags=8, blockFactor=2, numLevels=1, writeInterval=None)
    for steps in (2, 2, 6):
        sim.step(steps)
        state = sim.context.getState(positions=True, velocities=True)
        if steps == 6:
            with pytest.raises(TrajectoryError, match="evenly spaced"):
                rep.report(sim, state)
        else:
            rep.report(sim, state)
    sim.context.setTime(0.0)
    with pytest.raises(TrajectoryError, match="must increase"):
        rep.report(sim, sim.context.getState(positions=True, velocities=True))
    rep.close()
