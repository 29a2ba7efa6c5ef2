"""The HDF5 dataset format: exact round trips and clear errors on bad files."""

import h5py
import numpy as np
import pytest
from openmm import app

from openmm_cgml import CorruptFileError, DatasetError
from openmm_cgml.dataset import TrajectoryWriter, open_dataset, topology_from_data, topology_to_data, write_dataset


def _topology(n_res=3):
    top = app.Topology()
    chain = top.addChain()
    for _ in range(n_res):
        res = top.addResidue("MOL", chain)
        a = top.addAtom("C1", app.element.carbon, res)
        b = top.addAtom("B1", None, res)  # a bead: no element
        top.addBond(a, b)
    return top


def _frames(rng, n_frames, n):
    return [
        dict(
            positions=rng.random((n, 3)), velocities=rng.normal(size=(n, 3)), forces=rng.normal(size=(n, 3)),
            box=np.diag(rng.random(3) + 2), step=10 * i, time=0.02 * i,
            potential_energy=rng.normal(), kinetic_energy=rng.random(),
        )
        for i in range(n_frames)
    ]


def test_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    top = _topology()
    masses = np.array([12.011, 30.0] * 3)
    frames = _frames(rng, 37, 6)
    with TrajectoryWriter(tmp_path / "d.h5", top, masses, {"smiles": ["CC"]}, precision="double", chunk_frames=5) as w:
        for fr in frames:
            w.append(**fr)
    ds = open_dataset(tmp_path / "d.h5")
    assert ds.n_frames == 37 and ds.n_particles == 6
    for name in ("positions", "velocities", "forces", "box"):
        np.testing.assert_array_equal(getattr(ds, name), np.stack([fr[name] for fr in frames]))
    np.testing.assert_array_equal(ds.step, [fr["step"] for fr in frames])
    np.testing.assert_array_equal(ds.potential_energy, [fr["potential_energy"] for fr in frames])
    np.testing.assert_array_equal(ds.masses, masses)
    assert ds.metadata["smiles"] == ["CC"] and ds.metadata["units"]["forces"] == "kJ/mol/nm"
    # topology, including a bead without an element, survives
    again = topology_to_data(ds.topology, masses)
    assert again["bonds"] == topology_to_data(top, masses)["bonds"]
    assert [a.element for a in ds.topology.atoms()][1] is None
    traj = ds.to_mdtraj()
    assert traj.n_frames == 37 and traj.n_atoms == 6
    np.testing.assert_allclose(traj.xyz, ds.positions, atol=1e-6)
    # whole-dataset rewrite is exact too
    write_dataset(tmp_path / "copy.h5", ds, precision="double")
    copy = open_dataset(tmp_path / "copy.h5")
    np.testing.assert_array_equal(copy.forces, ds.forces)


def test_single_precision_stores_float32_exactly(tmp_path):
    rng = np.random.default_rng(1)
    frames = _frames(rng, 4, 6)
    for fr in frames:
        fr["positions"] = fr["positions"].astype(np.float32)
    with TrajectoryWriter(tmp_path / "d.h5", _topology(), np.ones(6), fields=("positions",)) as w:
        for fr in frames:
            w.append(positions=fr["positions"], box=fr["box"], step=fr["step"], time=fr["time"])
    ds = open_dataset(tmp_path / "d.h5")
    assert ds.velocities is None and ds.forces is None
    np.testing.assert_array_equal(ds.positions, np.stack([fr["positions"] for fr in frames]))


def test_truncate_and_append(tmp_path):
    rng = np.random.default_rng(2)
    frames = _frames(rng, 10, 6)
    with TrajectoryWriter(tmp_path / "d.h5", _topology(), np.ones(6), chunk_frames=3) as w:
        for fr in frames[:7]:
            w.append(**fr)
        w.truncate(4)
    with TrajectoryWriter(tmp_path / "d.h5", _topology(), np.ones(6), mode="a") as w:
        assert w.n_frames == 4
        for fr in frames[4:]:
            w.append(**fr)
    ds = open_dataset(tmp_path / "d.h5")
    np.testing.assert_array_equal(ds.step, [fr["step"] for fr in frames])


def test_topology_data_round_trip():
    top = _topology(2)
    data = topology_to_data(top, [1, 2, 3, 4])
    assert topology_to_data(topology_from_data(data), [1, 2, 3, 4]) == data


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "missing.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 50)
    with pytest.raises(CorruptFileError, match="not a readable HDF5"):
        open_dataset(junk)
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(CorruptFileError, match="not an openmm_cgml dataset"):
        open_dataset(tmp_path / "foreign.h5")
    # a file truncated on disk (a crash while copying) is refused, not half-read
    rng = np.random.default_rng(3)
    good = tmp_path / "good.h5"
    with TrajectoryWriter(good, _topology(), np.ones(6), chunk_frames=2) as w:
        for fr in _frames(rng, 6, 6):
            w.append(**fr)
    data = good.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError):
        open_dataset(cut)
    with pytest.raises(DatasetError, match="shape"):
        with TrajectoryWriter(tmp_path / "x.h5", _topology(), np.ones(6)) as w:
            w.append(positions=np.zeros((5, 3)), box=np.eye(3), step=0, time=0.0, velocities=np.zeros((6, 3)),
                     forces=np.zeros((6, 3)))


def test_unwritable_output_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DatasetError, match="cannot create the directory"):
        TrajectoryWriter(blocker / "sub" / "d.h5", _topology(), np.ones(6))


def test_a_dataset_being_written_by_another_process_is_said_so(tmp_path):
    """HDF5 locks a file while a writer has it: reading it then is refused as busy, not as damaged."""
    import subprocess
    import sys
    import textwrap

    path = tmp_path / "busy.h5"
    script = textwrap.dedent(f"""
        import sys, time
        import h5py
        f = h5py.File({str(path)!r}, "w")
        print("open", flush=True)
        sys.stdin.readline()
        f.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "open"
        with pytest.raises(DatasetError, match="open for writing by another process") as info:
            open_dataset(path)
        assert not isinstance(info.value, CorruptFileError)
    finally:
        proc.communicate("\n", timeout=30)
