"""`cgml map` and `cgml ibi` end to end on a tiny argon liquid, with checkpoint/resume."""

import json

import numpy as np
import openmm
import pytest
from openmm import app, unit

from openmm_cgml.cli import main
from openmm_cgml.dataset import TrajectoryWriter, open_dataset

N, BOX, T = 64, 1.75, 120.0


def argon_dataset(path, n_frames=20):
    top = app.Topology()
    chain = top.addChain()
    ar = app.Element.getBySymbol("Ar")
    for _ in range(N):
        top.addAtom("AR", ar, top.addResidue("AR", chain))
    system = openmm.System()
    nb = openmm.NonbondedForce()
    nb.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    nb.setCutoffDistance(0.8)
    for _ in range(N):
        system.addParticle(39.948)
        nb.addParticle(0.0, 0.34, 0.996)
    system.addForce(nb)
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*v) for v in np.eye(3) * BOX))
    g = np.array([[i, j, k] for i in range(4) for j in range(4) for k in range(4)], float)
    integ = openmm.LangevinMiddleIntegrator(T, 5.0, 0.005)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions((g + 0.5) * BOX / 4)
    openmm.LocalEnergyMinimizer.minimize(ctx)
    ctx.setVelocitiesToTemperature(T, 3)
    integ.step(200)
    with TrajectoryWriter(path, top, [39.948] * N, {"constraints": "HBonds", "temperature_K": T}) as w:
        for k in range(n_frames):
            integ.step(20)
            st = ctx.getState(getPositions=True, getVelocities=True, getForces=True, getEnergy=True)
            w.append(positions=st.getPositions(asNumpy=True)._value, velocities=st.getVelocities(asNumpy=True)._value,
                     forces=st.getForces(asNumpy=True)._value, box=np.eye(3) * BOX, step=k * 20, time=k * 0.1,
                     potential_energy=st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))


def test_map_and_ibi_commands(tmp_path):
    aa = tmp_path / "aa.h5"
    argon_dataset(aa)
    (tmp_path / "map.yaml").write_text(
        f"input: {aa}\noutput: {tmp_path / 'cg.h5'}\nmapping_out: {tmp_path / 'm.json'}\n"
        "mapping:\n  method: automatic\n  n_beads: 1\n"
    )
    assert main(["map", str(tmp_path / "map.yaml")]) == 0
    cg = open_dataset(tmp_path / "cg.h5")
    assert cg.kind == "coarse-grained" and cg.n_particles == N
    np.testing.assert_allclose(cg.positions, open_dataset(aa).positions, atol=1e-5)
    cfg = (f"cg_dataset: {tmp_path / 'cg.h5'}\noutput_dir: {tmp_path / 'ibi'}\ntemperature: {T} K\ncutoff: 0.8 nm\n"
           "timestep: 5 fs\nmax_iterations: 2\nequilibration_steps: 20\nproduction_steps: 100\n"
           "sample_interval: 20\nplatform: Reference\ntolerance: 0.0001\n")
    (tmp_path / "ibi.yaml").write_text(cfg)
    assert main(["ibi", str(tmp_path / "ibi.yaml")]) == 0
    out = tmp_path / "ibi"
    for name in ("pair_tables.json", "table_AR_A_AR_A.xvg", "pair_tables.lammps", "convergence.json",
                 "convergence.csv", "convergence.png", "ibi_checkpoint.npz", "config.yaml"):
        assert (out / name).exists(), name
    log = json.loads((out / "convergence.json").read_text())
    assert [h["iteration"] for h in log["history"]] == [0, 1]
    # resume: two more iterations continue from the checkpoint (iterations 2 and 3), not from scratch
    (tmp_path / "ibi.yaml").write_text(cfg.replace("max_iterations: 2", "max_iterations: 4"))
    assert main(["ibi", str(tmp_path / "ibi.yaml")]) == 0
    log = json.loads((out / "convergence.json").read_text())
    assert [h["iteration"] for h in log["history"]] == [0, 1, 2, 3]
    # a checkpoint from other settings is refused with a clear error (exit code 1)
    (tmp_path / "ibi.yaml").write_text(cfg.replace("cutoff: 0.8 nm", "cutoff: 0.7 nm"))
    assert main(["ibi", str(tmp_path / "ibi.yaml")]) == 1


def test_config_needs_units(tmp_path):
    (tmp_path / "ibi.yaml").write_text("cg_dataset: x.h5\noutput_dir: o\ntemperature: 300\ncutoff: 1 nm\n")
    assert main(["ibi", str(tmp_path / "ibi.yaml")]) == 1


@pytest.mark.parametrize("bad", ["mapping:\n  method: groups\n", "mapping:\n  method: nonsense\n"])
def test_map_config_errors(tmp_path, bad):
    aa = tmp_path / "aa.h5"
    argon_dataset(aa, n_frames=1)
    (tmp_path / "map.yaml").write_text(f"input: {aa}\noutput: {tmp_path / 'cg.h5'}\n" + bad)
    assert main(["map", str(tmp_path / "map.yaml")]) == 1
