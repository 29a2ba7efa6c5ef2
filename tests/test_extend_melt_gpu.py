"""benchmarks/extend_melt_gpu.py on a tiny system on the CPU: ``run`` continues a bundle exactly from its state and
records the mapped positions in contiguous chunks; ``ingest`` joins them to the CPU production's mapped dataset and
refuses segments that do not continue it; a bundle file that is not the prepared one is refused."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import extend_melt_gpu  # noqa: E402


def _bundle(folder: Path, steps_done: int):
    """Two 4-bead chains with harmonic bonds in a periodic box, Verlet at 2 fs, after ``steps_done`` steps; the map
    takes each chain's two halves' centres (4 beads)."""
    import openmm
    import scipy.sparse
    from openmm import XmlSerializer, unit

    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*row) for row in np.eye(3) * 3.0))
    bonds = openmm.HarmonicBondForce()
    for i in range(8):
        system.addParticle(12.0)
        if i % 4:
            bonds.addBond(i - 1, i, 0.15, 2000.0)
    system.addForce(bonds)
    integrator = openmm.VerletIntegrator(0.002)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    x = np.array([[0.15 * (i % 4), 1.0 + i // 4, 1.0] for i in range(8)])
    context.setPositions(x)
    context.setVelocitiesToTemperature(300.0, 1)
    integrator.step(steps_done)
    state = context.getState(getPositions=True, getVelocities=True, getEnergy=True, getParameters=True)
    matrix = scipy.sparse.csr_matrix(np.kron(np.eye(4), [0.5, 0.5]))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "system.xml").write_text(XmlSerializer.serialize(system))
    (folder / "integrator.xml").write_text(XmlSerializer.serialize(integrator))
    (folder / "state.xml").write_text(XmlSerializer.serialize(state))
    scipy.sparse.save_npz(folder / "position_map.npz", matrix, compressed=False)
    info = {"step": steps_done, "time_ps": steps_done * 0.002, "timestep_ps": 0.002,
            "potential_energy_kj_mol": state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            "sha256": {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in extend_melt_gpu.FILES}}
    (folder / "bundle.json").write_text(json.dumps(info))
    return system, matrix, context, integrator


def _cpu_dataset(work: Path, matrix, context, integrator, frames: int, every: int):
    """The 'CPU production' mapped dataset: ``frames`` frames ``every`` steps apart, ending where the bundle is."""
    from openmm import unit

    from openmm_cgml.dataset import TrajectoryWriter
    from openmm_cgml.topology import CGTopology

    top = CGTopology(bead_types=["A"] * 4, molecule_index=[0, 0, 1, 1], bonds=[[0, 1], [2, 3]],
                     masses=[24.0] * 4, box_vectors=np.eye(3) * 3.0)
    integrator.step(0)
    work.mkdir(parents=True, exist_ok=True)
    with TrajectoryWriter(work / "cg_c32_unperturbed.h5", top.to_openmm(), top.masses,
                          {"cg_topology": top.to_data()}, fields=("positions",), kind="coarse-grained") as w:
        for k in range(frames):
            st = context.getState(getPositions=True)
            w.append(positions=matrix @ st.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
                     box=np.eye(3) * 3.0, step=st.getStepCount(), time=st.getTime().value_in_unit(unit.picosecond))
            if k < frames - 1:
                integrator.step(every)


def test_run_continues_the_state_and_ingest_joins_the_segments(tmp_path):
    import openmm
    from openmm import unit

    from openmm_cgml.dataset import open_dataset

    work = tmp_path / "work"
    # the 'CPU production': 6 frames 5 steps apart (steps 0-25); the bundle is its last state
    system, matrix, context, integrator = _bundle(tmp_path / "scratch", 0)
    _cpu_dataset(work, matrix, context, integrator, frames=6, every=5)
    bundle = tmp_path / "bundle"
    _bundle(bundle, 25)
    out = tmp_path / "out"
    assert extend_melt_gpu.run(bundle, out, budget_s=60.0, max_ns=0.00014, report_steps=10, chunk_frames=3,
                               platform_name="Reference") == 0
    record = json.loads((out / "run.json").read_text())
    assert [c["frames"] for c in record["chunks"]] == [3, 3, 1] and record["steps"] == 70
    # the recorded beads are the map of the same trajectory continued on the reference platform
    ref = openmm.Context(system, openmm.VerletIntegrator(0.002), openmm.Platform.getPlatformByName("Reference"))
    ref.setState(openmm.XmlSerializer.deserialize((bundle / "state.xml").read_text()))
    ref.getIntegrator().step(40)
    expected = matrix @ ref.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    with np.load(out / "chunk_01.npz") as z:
        assert z["step"][0] == 65 and np.allclose(z["positions"][0], expected, atol=1e-5)
    # ingest: the CPU frames thinned to the GPU's 10-step interval (steps 0, 10, 20), then the segment's
    joined = extend_melt_gpu.ingest([out], work, tmp_path / "joined.h5")
    ds = open_dataset(tmp_path / "joined.h5")
    assert list(ds.step) == [0, 10, 20, *range(35, 96, 10)] == list(range(0, 21, 10)) + list(range(35, 96, 10))
    assert joined["cpu_frames"] == 3 and joined["gpu_frames"] == 7 and ds.fields == ("positions",)
    assert ds.metadata["gpu_extension"]["segments"][0]["platform"] == "Reference"
    # a segment that does not continue the CPU run, or a bundle file that is not the prepared one, is refused
    record["start_step"] = 30
    (out / "run.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="expected 25"):
        extend_melt_gpu.ingest([out], work, tmp_path / "bad.h5")
    (bundle / "state.xml").write_text((bundle / "state.xml").read_text() + " ")
    with pytest.raises(SystemExit, match="SHA-256 differs"):
        extend_melt_gpu.run(bundle, tmp_path / "out2", 1.0, 1.0, 10, 3, "Reference")
