"""run_simulation: recording a CG run, and stopping with the step when it blows up."""

import numpy as np
import openmm
import pytest
from openmm import app

from openmm_cgml import ConfigurationError, SimulationError
from openmm_cgml.dataset import open_dataset
from openmm_cgml.simulation import run_simulation
from openmm_cgml.testing import lj_fluid


def _lj_fluid(n_side=5, spacing=0.45, epsilon=1.0):
    fluid = lj_fluid(n_side**3, n_side * spacing, sigma=0.34, epsilon=epsilon, mass=40.0, cutoff=0.9, residue="BEAD")
    return fluid.system, fluid.topology, fluid.positions, fluid.box


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
    """An LJ fluid conserves energy at 5 fs and blows up at 200 fs; the scan stops there."""
    from openmm_cgml.simulation import MAX_ENERGY_DRIFT, largest_stable_timestep

    system, top, pos, box = _lj_fluid()
    scan = largest_stable_timestep(system, pos, temperature="120 K", timesteps_fs=(200, 5), steps=600, block=100,
                                   box_vectors=box, platform="Reference", max_drift=1.0)
    assert scan.largest_stable_fs == 5.0 and scan.max_drift == 1.0 and MAX_ENERGY_DRIFT == 0.1
    trial = scan.trials[5.0]
    assert trial["stable"] and abs(trial["energy_drift_kT_per_ns_per_dof"]) <= 1.0
    assert trial["energy_drift_error"] > 0 and trial["mean_temperature_K"] > 0
    assert trial["steps"] == 600 and trial["step_ms_median"] > 0
    assert not scan.trials[200.0]["stable"] and scan.trials[200.0]["energy_drift_kT_per_ns_per_dof"] is None
    assert system.getNumForces() == 1  # untouched
    with pytest.raises(ConfigurationError, match="at least one block"):
        largest_stable_timestep(system, pos, steps=10, block=100, box_vectors=box)
    with pytest.raises(ConfigurationError, match="sample_interval"):
        largest_stable_timestep(system, pos, steps=200, block=100, sample_interval=0, box_vectors=box)
    with pytest.raises(ConfigurationError, match="max_drift"):
        largest_stable_timestep(system, pos, steps=200, block=100, max_drift=0, box_vectors=box)


def _trimer_fluid(n_mol=27, box=2.4, k_bond=60000.0, k_angle=700.0):
    """27 bent trimers (43-28-43 amu, like the demo's 3-bead model) with stiff bonds (omega = 59 /ps) and
    angles, and shifted LJ pairs between molecules: (System, CGTopology, positions, box)."""
    from openmm_cgml.topology import CGTopology

    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(*np.eye(3) * box)
    pair = openmm.CustomNonbondedForce("4*1.5*((0.4/r)^12 - (0.4/r)^6) - 4*1.5*((0.4/1.0)^12 - (0.4/1.0)^6)")
    pair.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic)
    pair.setCutoffDistance(1.0)
    bond, angle = openmm.HarmonicBondForce(), openmm.HarmonicAngleForce()
    side = int(round(n_mol ** (1 / 3)))
    positions, bonds = [], []
    for m in range(n_mol):
        centre = (np.array([m % side, (m // side) % side, m // side**2]) + 0.5) * box / side
        for mass in (43.0, 28.0, 43.0):
            system.addParticle(mass)
            pair.addParticle([])
        positions += [centre + [-0.21, -0.1, 0], centre + [0, 0.1, 0], centre + [0.21, -0.1, 0]]
        bonds += [(3 * m, 3 * m + 1), (3 * m + 1, 3 * m + 2)]
        for a, b in bonds[-2:]:
            bond.addBond(a, b, 0.26, k_bond)
        angle.addAngle(3 * m, 3 * m + 1, 3 * m + 2, 1.47, k_angle)
    pair.createExclusionsFromBonds(bonds, 2)
    for force in (pair, bond, angle, openmm.CMMotionRemover()):
        system.addForce(force)
    topology = CGTopology(bead_types=("A", "B", "A") * n_mol, molecule_index=np.repeat(np.arange(n_mol), 3),
                          bonds=np.array(bonds), masses=np.array([43.0, 28.0, 43.0] * n_mol))
    return system, topology, np.array(positions), np.eye(3) * box


def test_timestep_judged_by_energy_drift_not_by_a_thermostatted_temperature(tmp_path):
    """Stiff bonded trimers at 27.5 fs: a Langevin run at 1 /ps holds 300 K (the old criterion passes: measured
    299 K), but the energy drifts in NVE (measured ~3 kT/ns per degree of freedom, 30 times the default limit);
    at 5 fs it is conserved (measured |drift| < 0.03)."""
    from openmm_cgml.simulation import largest_stable_timestep

    system, topology, pos, box = _trimer_fluid()
    scan = largest_stable_timestep(system, pos, temperature="300 K", timesteps_fs=(5, 27.5), steps=4000, block=200,
                                   settle_steps=1000, box_vectors=box, platform="CPU")
    assert scan.largest_stable_fs == 5.0 and scan.trials[5.0]["stable"]
    drift = scan.trials[27.5]["energy_drift_kT_per_ns_per_dof"]
    assert not scan.trials[27.5]["stable"] and drift > scan.max_drift  # 0.12-2.2 over seeds (2000 steps)
    held = run_simulation(system, topology, pos, tmp_path / "langevin.h5", temperature="300 K", timestep="27.5 fs",
                          steps=2000, report_interval=100, equilibration_steps=1000, box_vectors=box, platform="CPU")
    assert open_dataset(held.dataset).metadata["temperature_check"]["held"]


def test_the_run_records_its_thermostat(tmp_path):
    """The recorded part runs under `thermostat` after a Langevin equilibration; the dataset records both; the
    default stays Langevin at `friction`."""
    from openmm_cgml.thermostat import recorded_thermostat

    system, top, pos, box = _lj_fluid()
    kwargs = dict(temperature="120 K", timestep="5 fs", steps=200, report_interval=50, equilibration_steps=100,
                  box_vectors=box, platform="Reference")
    meta = open_dataset(run_simulation(system, top, pos, tmp_path / "b.h5", thermostat={"kind": "bussi", "tau": "1 ps"},
                                       **kwargs).dataset).metadata
    assert meta["thermostat"] == {"kind": "bussi", "temperature_K": 120.0, "tau_ps": 1.0}
    assert meta["equilibration_thermostat"]["kind"] == "langevin" and "friction_per_ps" not in meta
    assert recorded_thermostat(meta)["kind"] == "bussi" and meta["integrator"].startswith("CustomIntegrator")
    meta = open_dataset(run_simulation(system, top, pos, tmp_path / "nve.h5", thermostat={"kind": "nve"},
                                       **kwargs).dataset).metadata
    assert meta["ensemble"] == "nve" and meta["integrator"] == "VerletIntegrator"
    meta = open_dataset(run_simulation(system, top, pos, tmp_path / "l.h5", friction="2 /ps", **kwargs).dataset).metadata
    assert meta["thermostat"] == {"kind": "langevin", "temperature_K": 120.0, "friction_per_ps": 2.0}
    assert "equilibration_thermostat" not in meta and meta["friction_per_ps"] == 2.0
    with pytest.raises(ConfigurationError, match=r"(?s)thermostat.*kind: Input should be"):
        run_simulation(system, top, pos, tmp_path / "x.h5", thermostat={"kind": "andersen"}, **kwargs)
    with pytest.raises(ConfigurationError, match="friction 0 /ps is no Langevin thermostat"):
        run_simulation(system, top, pos, tmp_path / "y.h5", friction="0 /ps", **kwargs)


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
                                              r"\(velocities are not finite( at step \d+)?\)"):
        run_simulation(system, top, pos, tmp_path / "nan.h5", temperature="120 K", timestep="80 fs", steps=500,
                       report_interval=50, equilibration_steps=100, box_vectors=box, platform="Reference",
                       progress=False)


def test_trajectory_pressure_is_openmms_molecular_virial_and_exact_for_an_ideal_gas(tmp_path):
    """On the LJ dimer fluid the pressure equals OpenMM's MonteCarloBarostat.computeCurrentPressure (molecular
    virial) frame by frame on average; particles without forces and without recorded velocities give the ideal gas's
    N_mol k T / V exactly; the compare row sets the two runs' pressures side by side."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _cg_fluid import known_system, simulate_known_fluid

    from openmm_cgml.forces.xml import save_system
    from openmm_cgml.simulation import trajectory_pressure
    from openmm_cgml.units import BAR_PER_KJ_MOL_NM3, KB

    path = simulate_known_fluid(tmp_path / "fluid.h5", n_frames=30, seed=3)
    ds = open_dataset(path)
    system = known_system()[0]
    ours = trajectory_pressure(system, ds, temperature=300.0)
    # OpenMM's own (it uses the recorded forces' System and the same molecules: the bonded dimers)
    with_barostat = known_system()[0]
    barostat = openmm.MonteCarloBarostat(1.0, 300.0, 0)
    with_barostat.addForce(barostat)
    ctx = openmm.Context(with_barostat, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    values = []
    for f in range(ds.n_frames):
        ctx.setPeriodicBoxVectors(*(openmm.Vec3(*row) for row in np.asarray(ds.box[f])))
        ctx.setPositions(ds.positions[f])
        ctx.setVelocitiesToTemperature(300.0, 1 + f)  # no velocities recorded: compare the virial parts
        kinetic = 2 * 32 * 1.5 * KB * 300.0 / (3 * 2.2**3) * BAR_PER_KJ_MOL_NM3  # equipartition, 32 molecules
        state = ctx.getState(getVelocities=True)
        v = state.getVelocities(asNumpy=True).value_in_unit(openmm.unit.nanometer / openmm.unit.picosecond)
        p = v.reshape(32, 2, 3).sum(axis=1) * 40.0
        k_com = 0.5 * float(np.sum(p**2) / 80.0)
        measured = barostat.computeCurrentPressure(ctx).value_in_unit(openmm.unit.bar)
        values.append(measured - 2 * k_com / (3 * 2.2**3) * BAR_PER_KJ_MOL_NM3 + kinetic)
    assert ours["pressure_bar"] == pytest.approx(np.mean(values), rel=1e-3)
    assert ours["pressure_err_bar"] > 0 and ours["n_frames"] == 30 and "equipartition" in ours["method"]
    # no forces: the ideal gas, exactly
    bare = openmm.System()
    for _ in range(64):
        bare.addParticle(40.0)
    bare.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*row) for row in np.eye(3) * 2.2))
    gas = trajectory_pressure(bare, ds, temperature=300.0)
    assert gas["pressure_bar"] == pytest.approx(32 * KB * 300.0 / 2.2**3 * BAR_PER_KJ_MOL_NM3, rel=1e-9)
    with pytest.raises(ConfigurationError, match="particles"):
        small = openmm.System()
        small.addParticle(1.0)
        trajectory_pressure(small, ds, temperature=300.0)
    # in compare: the same run against itself has no pressure difference
    from openmm_cgml.workflows import run_compare

    save_system(system, tmp_path / "fluid.xml")
    result = run_compare({"reference": "fluid.h5", "model": "fluid.h5", "output": "out", "r_max": "1.0 nm",
                          "pressure": {"reference_system": "fluid.xml", "model_system": "fluid.xml",
                                       "temperature": "300 K"}},
                         base_dir=tmp_path)
    row = next(r for r in result.table.rows if r.quantity.startswith("pressure"))
    assert row.value == pytest.approx(0.0, abs=1e-9) and row.reference == pytest.approx(row.model)
    assert "matches" in row.note


def test_npt_density_of_an_ideal_gas_is_p_over_kt_and_drift_is_flagged():
    """Non-interacting particles under OpenMM's Monte Carlo barostat sample V^N exp(-PV/kT), whose mean density is
    exactly m P / kT: ``npt_density`` recovers it within its error (the volume chain of an ideal gas depends on the
    barostat's random numbers only, not on the CPU).  From a box twice too dense the run is flagged as still
    drifting.  A non-periodic System and a run with too few samples are refused before any work."""
    import openmm

    from openmm_cgml.exceptions import ConfigurationError
    from openmm_cgml.simulation import npt_density
    from openmm_cgml.units import BAR_PER_KJ_MOL_NM3, G_CM3_PER_DA_NM3, KB

    n, mass, t, p = 300, 40.0, 300.0, 200.0
    number_density = p / BAR_PER_KJ_MOL_NM3 / (KB * t)  # 1/nm^3
    exact = mass * number_density * G_CM3_PER_DA_NM3
    system = openmm.System()
    nothing = openmm.CustomNonbondedForce("0")  # periodic, no interaction
    nothing.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic)
    nothing.setCutoffDistance(1.0)
    for _ in range(n):
        system.addParticle(mass)
        nothing.addParticle([])
    system.addForce(nothing)
    length = 0.98 * (n / number_density) ** (1 / 3)  # 6 % too dense
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*row) for row in np.eye(3) * length))
    x = np.random.default_rng(0).uniform(0, length, (n, 3))
    result = npt_density(system, x, box_vectors=np.eye(3) * length, temperature=f"{t} K", pressure=f"{p} bar",
                         timestep="5 fs", steps=8000, equilibration_steps=3000, barostat_interval=5,
                         reference_density=exact, tolerance=0.05, platform="CPU", threads=1, seed=2)
    assert result.start_g_cm3 == pytest.approx(exact / 0.98 ** 3, rel=1e-6)
    assert result.density_err_g_cm3 < 0.015 * exact
    assert abs(result.density_g_cm3 - exact) < 4 * result.density_err_g_cm3
    assert result.settled and result.holds and abs(result.relative_to_reference) < 0.05
    assert system.getNumForces() == 1  # the System itself is not modified
    # from a box 2.3 times too dense, without equilibration: the density is still moving and that is said
    squeezed = 0.75 / 0.98 * length
    drifting = npt_density(system, x * 0.75 / 0.98, box_vectors=np.eye(3) * squeezed, temperature=f"{t} K",
                           pressure=f"{p} bar", timestep="5 fs", steps=1000, barostat_interval=5,
                           reference_density=exact, platform="CPU", threads=1, seed=3)
    assert not drifting.settled and not drifting.holds and "still drifting" in drifting.note
    free = openmm.System()
    free.addParticle(1.0)
    with pytest.raises(ConfigurationError, match="periodic"):
        npt_density(free, np.zeros((1, 3)), box_vectors=np.eye(3), steps=1000)
    with pytest.raises(ConfigurationError, match="at least 20"):
        npt_density(system, x, box_vectors=np.eye(3) * length, steps=100)


def test_lj_fluid_helper_builds_the_lattice_and_the_pair_energy():
    """openmm_cgml.testing.lj_fluid: the fewest lattice sites per edge that hold n beads, the first n used; a pair
    in vacuum has 4 eps ((s/r)^12 - (s/r)^6); bad sizes and cutoffs are refused."""
    from openmm_cgml.testing import lj_fluid

    fluid = lj_fluid(400, 3.85, sigma=0.47, epsilon=3.5, mass=72.0, cutoff=1.2)
    assert fluid.positions.shape == (400, 3) and fluid.topology.getNumAtoms() == 400
    assert np.allclose(fluid.positions[1] - fluid.positions[0], [0, 0, 3.85 / 8])
    assert fluid.positions.max() < 3.85 and np.allclose(fluid.box, np.eye(3) * 3.85)
    assert fluid.system.usesPeriodicBoundaryConditions()
    pair = lj_fluid(2, 0.8, sigma=0.34, epsilon=1.2, mass=40.0, cutoff=None, shift=0.05)
    assert not pair.system.usesPeriodicBoundaryConditions() and pair.topology.getPeriodicBoxVectors() is None
    ctx = openmm.Context(pair.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(pair.positions)
    r = np.linalg.norm(pair.positions[1] - pair.positions[0])
    assert r == pytest.approx(0.4)
    energy = ctx.getState(getEnergy=True).getPotentialEnergy()._value
    assert energy == pytest.approx(4 * 1.2 * ((0.34 / r) ** 12 - (0.34 / r) ** 6), rel=1e-10)
    with pytest.raises(ValueError, match="at most half the box"):
        lj_fluid(8, 1.0, sigma=0.3, epsilon=1.0, mass=1.0, cutoff=0.6)
    with pytest.raises(ValueError, match="n_beads >= 1"):
        lj_fluid(0, 1.0, sigma=0.3, epsilon=1.0, mass=1.0, cutoff=0.4)
