"""Running and recording all-atom references: content, NPT, checkpoint/resume, bad input."""

import subprocess
import sys

import numpy as np
import openmm
import openmm.app
import pytest
import yaml
from openmm import unit

from openmm_cgml import CheckpointError, ConfigurationError, DatasetError
from openmm_cgml.dataset import open_dataset
from openmm_cgml.reference import ReferenceConfig, run_reference
from openmm_cgml.testing import requires_openff

pytestmark = requires_openff

ETHANE = dict(
    components=[dict(smiles="CC", count=24, name="ETH")], density="0.40 g/cm**3", cutoff="0.6 nm",
    charge_method="gasteiger", nvt="0.2 ps", npt="0.2 ps", production="1.2 ps", report_interval="0.1 ps",
    checkpoint_interval="0.4 ps", platform="Reference", precision="double",
)


class _Crash(Exception):
    pass


class _CrashAfter:
    """A reporter that kills the run (like a power cut) after a number of reports."""

    def __init__(self, interval, n):
        self.interval, self.n, self.seen = interval, n, 0

    def describeNextReport(self, simulation):
        return {"steps": self.interval - simulation.currentStep % self.interval, "periodic": False, "include": []}

    def report(self, simulation, state):
        self.seen += 1
        if self.seen >= self.n:
            raise _Crash


def test_recorded_dataset_content(tmp_path):
    result = run_reference(ETHANE, tmp_path / "aa.h5", progress=False)
    ds = open_dataset(result.dataset)
    cfg = ReferenceConfig.from_data(ETHANE)
    assert ds.n_frames == 13 == result.n_frames  # frame 0 plus one per 0.1 ps
    np.testing.assert_array_equal(ds.step, np.arange(13) * 50)
    np.testing.assert_allclose(ds.time, np.arange(13) * 0.1, atol=1e-9)
    for key in ("units", "forcefield", "smiles", "counts", "temperature_K", "pressure_bar", "timestep_ps",
                "constraints", "versions", "configuration"):
        assert key in ds.metadata, key
    assert ds.metadata["smiles"] == ["CC"] and ds.metadata["counts"] == [24]
    assert ReferenceConfig.from_data(ds.metadata["configuration"]) == cfg
    assert ds.metadata["constraints"]["n_constraints"] == 24 * 6  # Sage constrains bonds to hydrogen
    # the recorded forces are the System's forces at the recorded positions
    system = openmm.XmlSerializer.deserialize(result.system_xml.read_text())
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    for i in (0, 7, 12):
        ctx.setPeriodicBoxVectors(*ds.box[i])
        ctx.setPositions(ds.positions[i])
        st = ctx.getState(getForces=True, getEnergy=True)
        np.testing.assert_allclose(st.getForces(asNumpy=True)._value, ds.forces[i], rtol=1e-6, atol=1e-6)
        assert st.getPotentialEnergy()._value == pytest.approx(ds.potential_energy[i], rel=1e-9)
    # read back as an mdtraj trajectory
    traj = ds.to_mdtraj()
    assert traj.n_atoms == 24 * 8 and traj.n_residues == 24
    np.testing.assert_allclose(traj.unitcell_lengths[0], np.diag(ds.box[0]), rtol=1e-6)
    # running again without overwrite refuses to clobber, but a finished run just reports itself
    again = run_reference(ETHANE, tmp_path / "aa.h5", progress=False)
    assert again.n_frames == 13


def test_resume_after_crash_matches_uninterrupted_run(tmp_path):
    whole = run_reference(ETHANE, tmp_path / "whole.h5", progress=False)
    with pytest.raises(_Crash):  # dies mid-production, after the 0.4 ps checkpoint
        run_reference(ETHANE, tmp_path / "cut.h5", progress=False, reporters=[_CrashAfter(50, 6)])
    partial = open_dataset(tmp_path / "cut.h5")
    assert 0 < partial.n_frames < 13  # frames after the checkpoint were written and must be dropped
    resumed = run_reference(ETHANE, tmp_path / "cut.h5", progress=False)
    a, b = open_dataset(whole.dataset), open_dataset(resumed.dataset)
    np.testing.assert_array_equal(a.step, b.step)  # no gaps, no duplicates
    np.testing.assert_array_equal(a.positions, b.positions)  # bit-exact continuation (Reference platform)
    np.testing.assert_array_equal(a.forces, b.forces)


def test_production_thermostat_and_checkpoints_from_before_it(tmp_path, caplog):
    """The production runs under Bussi's thermostat by default (the equilibration under Langevin at `friction`),
    and the dataset says so; a checkpoint written before `thermostat` existed (its identity lacks the key) still
    resumes, with its production under Langevin at `friction` as it was started."""
    import logging

    from openmm_cgml._checkpoint import identity_hash, read_checkpoint, write_checkpoint
    from openmm_cgml.thermostat import recorded_thermostat

    short = dict(ETHANE, production="0.4 ps")
    meta = open_dataset(run_reference(short, tmp_path / "new.h5", progress=False).dataset).metadata
    assert meta["thermostat"] == {"kind": "bussi", "temperature_K": 298.15, "tau_ps": 1.0}
    assert meta["equilibration_thermostat"] == {"kind": "langevin", "temperature_K": 298.15, "friction_per_ps": 1.0}
    assert "friction_per_ps" not in meta and meta["configuration"]["thermostat"]["kind"] == "bussi"
    assert ReferenceConfig.from_data(dict(short, thermostat={"kind": "nose-hoover"})).thermostat.tau == 0.5
    with pytest.raises(ConfigurationError, match="thermostat: an NPT production needs a thermostat"):
        ReferenceConfig.from_data(dict(short, thermostat={"kind": "nve"}, production_ensemble="npt"))

    # a run killed mid-production, its checkpoint rewritten as an older version wrote it
    with pytest.raises(_Crash):
        run_reference(short, tmp_path / "old.h5", progress=False, reporters=[_CrashAfter(50, 1)])
    path = tmp_path / "old.h5.chk"
    header, payload = read_checkpoint(path)
    legacy = {k: v for k, v in header["identity_data"].items() if k != "thermostat"}
    legacy_config = {k: v for k, v in header["config"].items() if k != "thermostat"}
    write_checkpoint(path, dict(header, identity=identity_hash(legacy), identity_data=legacy, config_key=identity_hash(
        legacy), config=legacy_config, stage="nvt", payload="positions", n_frames=0), _start_payload(tmp_path))
    (tmp_path / "old.h5").unlink()
    with caplog.at_level(logging.WARNING, logger="openmm_cgml"):
        resumed = run_reference(short, tmp_path / "old.h5", progress=False)
    assert "written before the production thermostat was configurable" in caplog.text
    meta = open_dataset(resumed.dataset).metadata
    assert recorded_thermostat(meta) == {"kind": "langevin", "temperature_K": 298.15, "friction_per_ps": 1.0}
    # asking for a thermostat explicitly is another run: refused, naming the key
    with pytest.raises(CheckpointError, match="these settings differ: thermostat"):
        run_reference(dict(short, thermostat={"kind": "bussi", "tau": "1 ps"}), tmp_path / "old.h5", progress=False)


def _start_payload(tmp_path) -> bytes:
    """Packed start positions as a fresh checkpoint holds them (from the finished run's PDB)."""
    import json

    from openmm import app

    pdb = app.PDBFile(str(tmp_path / "new.pdb"))
    box = pdb.topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer)
    return json.dumps({"positions": pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer).tolist(),
                       "box": [list(v) for v in box]}).encode()


def test_npt_moves_density_towards_equilibrium(tmp_path):
    hexane = dict(
        components=[dict(smiles="CCCCCC", count=20)], density="0.45 g/cm**3", cutoff="0.7 nm",
        charge_method="gasteiger", nvt="0.5 ps", npt="4 ps", production="0.1 ps", report_interval="0.1 ps",
        checkpoint_interval="0.1 ps", platform="CPU", barostat_interval=10, friction="5 /ps",
    )
    result = run_reference(hexane, tmp_path / "hex.h5", progress=False)
    series = open_dataset(result.dataset).metadata["npt_density_series_g_cm3"]
    # liquid hexane is ~0.65 g/cm^3: starting at 0.45 the barostat must compress the box
    assert np.mean(series[-10:]) > 0.45 + 0.03, series


def test_bad_input_and_damaged_files(tmp_path):
    with pytest.raises(ConfigurationError, match="whole number of timesteps"):
        ReferenceConfig.from_data(dict(ETHANE, production="1.001 ps"))
    with pytest.raises(ConfigurationError, match="multiple of report_interval"):
        ReferenceConfig.from_data(dict(ETHANE, checkpoint_interval="0.15 ps"))
    with pytest.raises(ConfigurationError, match="no unit"):
        ReferenceConfig.from_data(dict(ETHANE, temperature=300))
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(DatasetError, match="cannot create the directory"):
        run_reference(ETHANE, blocker / "aa.h5", progress=False)
    existing = tmp_path / "existing.h5"
    existing.write_bytes(b"precious")
    with pytest.raises(DatasetError, match="already exists"):
        run_reference(ETHANE, existing, progress=False)
    assert existing.read_bytes() == b"precious"  # nothing already written is lost
    # a corrupt checkpoint
    (tmp_path / "c.h5.chk").write_bytes(b"CGMLCKPT1\n garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        run_reference(ETHANE, tmp_path / "c.h5", progress=False)
    # a checkpoint from another configuration
    with pytest.raises(_Crash):
        run_reference(ETHANE, tmp_path / "d.h5", progress=False, reporters=[_CrashAfter(50, 6)])
    with pytest.raises(CheckpointError, match=r"d\.h5\.chk belongs to a different reference run \(these settings "
                       r"differ: production\); pass --overwrite"):
        run_reference(dict(ETHANE, production="2 ps"), tmp_path / "d.h5", progress=False)
    # resume=False (--no-resume) does not clobber it either
    with pytest.raises(CheckpointError, match=r"d\.h5\.chk exists but resuming is off.*--overwrite"):
        run_reference(ETHANE, tmp_path / "d.h5", resume=False, progress=False)
    # a dataset truncated on disk behind the checkpoint's back
    data = (tmp_path / "d.h5").read_bytes()
    (tmp_path / "d.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="cannot resume"):
        run_reference(ETHANE, tmp_path / "d.h5", progress=False)


def test_cli_reference(tmp_path):
    cfg = dict(ETHANE, production="0.2 ps", checkpoint_interval="0.2 ps", platform="CPU")
    (tmp_path / "ref.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "openmm_cgml.cli", "reference", str(tmp_path / "ref.yaml"), "-o",
           str(tmp_path / "out.h5"), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert open_dataset(tmp_path / "out.h5").n_frames == 3
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(dict(cfg, temperature="300 nm")))
    proc = subprocess.run(cmd[:4] + [str(tmp_path / "bad.yaml"), "-o", str(tmp_path / "x.h5")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "temperature" in proc.stderr and "not a temperature" in proc.stderr
    assert unit.kelvin  # openmm.unit imported for the reader of this test


class _FakeCheck:
    """A diffusion check that converges once the production has lasted ``after`` ps (None: never), and has a block
    error from ``blocks_after`` ps."""

    def __init__(self, after=None, blocks_after=None):
        self.after, self.blocks_after, self.calls = after, blocks_after, []

    def __call__(self, path):
        ds = open_dataset(path)
        seen = float(ds.time[-1])
        self.calls.append(seen)
        done = self.after is not None and seen >= self.after - 1e-9
        blocks = 3 if self.blocks_after is not None and seen >= self.blocks_after - 1e-9 else 0
        return {"converged": done, "reason": f"{'converged' if done else 'not converged'} after {seen:g} ps",
                "n_blocks": blocks}


def test_production_extends_until_diffusive_or_budget(tmp_path):
    """``max_production``: the production doubles while the check says not converged, frames stay contiguous, each
    check is recorded; the budget caps it."""
    check = _FakeCheck(after=2.4)
    result = run_reference(dict(ETHANE, max_production="9.6 ps"), tmp_path / "a.h5", progress=False,
                           diffusion_check=check)
    ds = open_dataset(result.dataset)
    assert check.calls == pytest.approx([1.2, 2.4])  # 1.2 ps not converged -> 2.4 ps converged: stop
    assert ds.n_frames == 25 and result.n_frames == 25
    np.testing.assert_array_equal(ds.step, np.arange(25) * 50)
    assert [c["converged"] for c in ds.metadata["diffusion_checks"]] == [False, True]
    assert ds.metadata["production_ps"] == pytest.approx(2.4) and ds.metadata["completed"]
    never = _FakeCheck()
    run_reference(dict(ETHANE, max_production="4.8 ps"), tmp_path / "b.h5", progress=False, diffusion_check=never)
    assert never.calls == pytest.approx([1.2, 2.4, 4.8])  # the budget stops it, recorded as not converged
    assert open_dataset(tmp_path / "b.h5").metadata["diffusion_checks"][-1]["converged"] is False
    with pytest.raises(ConfigurationError, match="needs a diffusion check"):
        run_reference(dict(ETHANE, max_production="4.8 ps"), tmp_path / "c.h5", progress=False)
    # extend_until: block-error goes on past a diffusive check until D has a block error
    blocks = _FakeCheck(after=1.2, blocks_after=4.8)
    run_reference(dict(ETHANE, max_production="9.6 ps", extend_until="block-error"), tmp_path / "d.h5",
                  progress=False, diffusion_check=blocks)
    assert blocks.calls == pytest.approx([1.2, 2.4, 4.8])
    assert [c["n_blocks"] for c in open_dataset(tmp_path / "d.h5").metadata["diffusion_checks"]] == [0, 0, 3]
    # a finished run asked afterwards for a block error continues from its checkpoint
    later = _FakeCheck(after=1.2, blocks_after=2.4)
    run_reference(dict(ETHANE, max_production="9.6 ps", extend_until="block-error"), tmp_path / "a.h5",
                  progress=False, diffusion_check=later)
    assert later.calls == pytest.approx([4.8]) and open_dataset(tmp_path / "a.h5").n_frames == 49
    with pytest.raises(ConfigurationError, match="extend_until"):
        ReferenceConfig.from_data(dict(ETHANE, extend_until="forever"))
    with pytest.raises(ConfigurationError, match="max_production .* must be at least production"):
        ReferenceConfig.from_data(dict(ETHANE, max_production="0.6 ps"))


@pytest.mark.slow
def test_a_finished_run_given_a_larger_budget_extends_exactly(tmp_path):
    """Rerunning a finished reference with a larger ``max_production`` continues it from its checkpoint: the
    result equals a run given that budget from the start (bitwise, Reference platform)."""
    run_reference(dict(ETHANE, max_production="1.2 ps"), tmp_path / "x.h5", progress=False,
                  diffusion_check=_FakeCheck())
    assert open_dataset(tmp_path / "x.h5").n_frames == 13
    run_reference(dict(ETHANE, max_production="2.4 ps"), tmp_path / "x.h5", progress=False,
                  diffusion_check=_FakeCheck())
    run_reference(dict(ETHANE, max_production="2.4 ps"), tmp_path / "y.h5", progress=False,
                  diffusion_check=_FakeCheck())
    a, b = open_dataset(tmp_path / "x.h5"), open_dataset(tmp_path / "y.h5")
    assert a.n_frames == b.n_frames == 25
    np.testing.assert_array_equal(a.step, b.step)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert len(a.metadata["diffusion_checks"]) == 2


@pytest.mark.slow
def test_workflow_checks_the_molecular_msd(tmp_path):
    """Through the workflow the check is the real molecular-COM MSD diagnosis, recorded with its reason."""
    from openmm_cgml.workflows import run_reference as workflow_run_reference

    result = workflow_run_reference(dict(ETHANE, max_production="2.4 ps"), tmp_path / "w.h5", progress=False)
    checks = open_dataset(result.dataset).metadata["diffusion_checks"]
    assert checks and all("reason" in c and "production_ps" in c for c in checks)
    last = checks[-1]
    assert last["converged"] or last["production_ps"] == pytest.approx(2.4)
    assert ("not converged" in last["reason"]) != last["converged"]


def _chain_melt(n_chains: int, beads: int, box: float, seed: int = 0):
    """A periodic melt of bonded Lennard-Jones chains (pure OpenMM): System, positions, molecule index, masses."""
    rng = np.random.default_rng(seed)
    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*row) for row in np.eye(3) * box))
    bonds = openmm.HarmonicBondForce()
    bonds.setUsesPeriodicBoundaryConditions(True)
    lj = openmm.NonbondedForce()
    lj.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    lj.setCutoffDistance(0.9)
    positions, molecule = [], []
    for c in range(n_chains):
        start = rng.uniform(0, box, 3)
        step = rng.normal(size=3)
        for b in range(beads):
            i = system.addParticle(14.0)
            lj.addParticle(0.0, 0.35, 0.3)
            positions.append(start + 0.25 * b * step / np.linalg.norm(step))
            molecule.append(c)
            if b:
                bonds.addBond(i - 1, i, 0.25, 5000.0)
                lj.addException(i - 1, i, 0.0, 1.0, 0.0)
    system.addForce(bonds)
    system.addForce(lj)
    return system, np.array(positions), np.array(molecule), np.full(len(molecule), 14.0)


def test_compress_to_box_reaches_the_target_moving_whole_molecules():
    from openmm_cgml.reference import compress_to_box

    system, pos, molecule, masses = _chain_melt(24, 6, 4.0)
    sim = openmm.app.Simulation(openmm.app.Topology(), system,
                                openmm.LangevinMiddleIntegrator(300, 5.0, 0.002),
                                openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(pos)
    sim.minimizeEnergy()
    n = compress_to_box(sim, 3.2, molecule, masses, strain=0.02, relax_steps=20, min_iterations=20)
    state = sim.context.getState(getPositions=True, getEnergy=True)
    box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
    np.testing.assert_allclose(box, np.eye(3) * 3.2, atol=1e-9)
    assert n == int(np.ceil(np.log(3.2 / 4.0) / np.log(0.98)))  # steps of at most 2 %, the last one exact
    assert np.isfinite(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    x = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    d = x[1:] - x[:-1]
    d -= 3.2 * np.round(d / 3.2)
    bonded = molecule[1:] == molecule[:-1]
    assert np.all(np.abs(np.linalg.norm(d[bonded], axis=1) - 0.25) < 0.05)  # the chains compressed whole
    assert compress_to_box(sim, 3.5, molecule, masses) == 0  # a box already small enough is left alone
    with pytest.raises(ConfigurationError, match="strain"):
        compress_to_box(sim, 3.0, molecule, masses, strain=0.7)


def test_molecules_packed_at_a_lower_density_are_compressed_before_nvt(tmp_path):
    from openmm_cgml.reference.run import _identity

    octane = dict(
        components=[dict(smiles="CCCCCCCC", count=12)], density="0.6 g/cm**3", packing_density="0.35 g/cm**3",
        cutoff="0.6 nm", charge_method="gasteiger", nvt="0.1 ps", npt="0 ps", production="0.2 ps",
        report_interval="0.1 ps", checkpoint_interval="0.1 ps", platform="CPU",
    )
    result = run_reference(octane, tmp_path / "oct.h5", progress=False)
    ds = open_dataset(result.dataset)
    mass = 12 * 114.232
    target = (mass / 0.6 / 602.214076) ** (1 / 3)
    record = ds.metadata["compression"]
    assert record["box_nm"] == pytest.approx(target, rel=1e-4)
    np.testing.assert_allclose(np.asarray(ds.box), np.broadcast_to(np.eye(3) * record["box_nm"], ds.box.shape),
                               rtol=1e-6)  # NVT and the production at the liquid's density
    assert record["packed_density_g_cm3"] == pytest.approx(0.35) and record["density_g_cm3"] == pytest.approx(0.6)
    assert record["steps"] == int(np.ceil(np.log(0.35 / 0.6) / 3 / np.log(0.99)))
    # a run packed at its density keeps the identity of checkpoints written before packing_density existed
    assert "packing_density" not in _identity(ReferenceConfig.from_data(ETHANE))
    with pytest.raises(ConfigurationError, match="packing_density .* must be below density"):
        ReferenceConfig.from_data(dict(octane, packing_density="0.7 g/cm**3"))
    with pytest.raises(ConfigurationError, match="needs minimize: true"):
        ReferenceConfig.from_data(dict(octane, minimize=False))


def test_hydrogen_mass_repartitioning(tmp_path):
    """hydrogen_mass moves mass from each heavy atom to its hydrogens in the System, keeps every molecule's mass,
    records the physical masses in the dataset, and resumes exactly; bad values are refused before any work."""
    cfg = {**ETHANE, "hydrogen_mass": "3 Da", "timestep": "4 fs", "production": "1.2 ps"}
    whole = run_reference(cfg, tmp_path / "hmr.h5", progress=False)
    system = openmm.XmlSerializer.deserialize(whole.system_xml.read_text())
    mass = np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())])
    ds = open_dataset(whole.dataset)
    physical = np.asarray(ds.masses)
    hydrogen = np.isclose(physical, 1.008, atol=0.01)
    assert hydrogen.sum() == 24 * 6
    np.testing.assert_allclose(mass[hydrogen], 3.0)
    np.testing.assert_allclose(mass[~hydrogen], 12.011 - 3 * (3.0 - 1.008), atol=1e-3)  # a CH3 carbon
    np.testing.assert_allclose(mass.reshape(24, 8).sum(1), physical.reshape(24, 8).sum(1))  # molecules' masses kept
    assert ds.metadata["hydrogen_mass_da"] == 3.0 and "slower" in ds.metadata["hydrogen_mass_note"]
    assert ds.metadata["timestep_ps"] == pytest.approx(0.004)
    # a crash and a resume continue the repartitioned run exactly
    with pytest.raises(_Crash):
        run_reference(cfg, tmp_path / "cut.h5", progress=False, reporters=[_CrashAfter(25, 6)])
    resumed = open_dataset(run_reference(cfg, tmp_path / "cut.h5", progress=False).dataset)
    np.testing.assert_array_equal(resumed.positions, ds.positions)
    np.testing.assert_allclose(resumed.masses, physical)
    # with and without the key are two runs (a checkpoint does not mix them)
    assert ReferenceConfig.from_data(cfg) != ReferenceConfig.from_data({**cfg, "hydrogen_mass": None})
    for bad, why in (("0.5 Da", "outside"), ("8 Da", "outside"), ("3", "no unit")):
        with pytest.raises(ConfigurationError, match=why):
            ReferenceConfig.from_data({**cfg, "hydrogen_mass": bad})


def test_repartitioning_refuses_what_it_cannot_do():
    from openmm_cgml.exceptions import InvalidSystemError
    from openmm_cgml.reference import repartition_hydrogen_mass

    top = openmm.app.Topology()
    res = top.addResidue("HH", top.addChain())
    h1 = top.addAtom("H1", openmm.app.element.hydrogen, res)
    h2 = top.addAtom("H2", openmm.app.element.hydrogen, res)
    top.addBond(h1, h2)
    system = openmm.System()
    for _ in range(2):
        system.addParticle(1.008)
    with pytest.raises(InvalidSystemError, match="bonded to 0 heavy atoms"):
        repartition_hydrogen_mass(system, top, 3.0)
    # a CH4 carbon given four 4-Da hydrogens keeps 0.04 Da: refused
    top = openmm.app.Topology()
    res = top.addResidue("MET", top.addChain())
    c = top.addAtom("C", openmm.app.element.carbon, res)
    system = openmm.System()
    system.addParticle(12.011)
    for i in range(4):
        top.addBond(c, top.addAtom(f"H{i}", openmm.app.element.hydrogen, res))
        system.addParticle(1.008)
    with pytest.raises(InvalidSystemError, match="no heavier than"):
        repartition_hydrogen_mass(system, top, 4.0)
    assert system.getParticleMass(0).value_in_unit(unit.dalton) == pytest.approx(12.011)  # untouched on error


def test_a_resumed_runs_progress_starts_where_it_stopped():
    """The progress bar of a resumed run counts the finished stages and the production's recorded frames."""
    from openmm_cgml.reference.run import _steps_done

    n_eq = {"nvt": 100, "npt": 400, "production": 1000}
    assert _steps_done({"stage": "nvt", "n_frames": 0}, n_eq, 50) == 0
    assert _steps_done({"stage": "production", "n_frames": 0}, n_eq, 50) == 500
    assert _steps_done({"stage": "production", "n_frames": 11}, n_eq, 50) == 500 + 10 * 50
    assert _steps_done({"stage": "done", "n_frames": 21}, n_eq, 50) == 1500
