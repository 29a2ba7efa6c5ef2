"""Dataset integrity: checksums catch damaged files, NaN/inf are refused on read, bad inputs of `cgml map` get
clear errors, and atomically written files keep ordinary permissions."""

import json
import os
import re
import stat

import h5py
import numpy as np
import pytest
from openmm import app

from openmm_cgml import CorruptFileError, DatasetError
from openmm_cgml._io import atomic_path, atomic_write_text, write_json
from openmm_cgml.dataset import TrajectoryWriter, open_dataset, open_h5, read_array, write_dataset
from openmm_cgml.mapping import CGMapping, map_dataset

N_RES, CHUNK = 4, 4


def _topology():
    top = app.Topology()
    chain = top.addChain()
    for _ in range(N_RES):
        res = top.addResidue("MOL", chain)
        a = top.addAtom("C1", app.element.carbon, res)
        b = top.addAtom("C2", app.element.carbon, res)
        top.addBond(a, b)
    return top


def _write(path, n_frames=12, *, edit=None, kind="all-atom", metadata=None):
    """A small AA dataset (2 atoms per molecule, all fields); ``edit(i, frame)`` may change frame i."""
    rng = np.random.default_rng(0)
    n = 2 * N_RES
    with TrajectoryWriter(path, _topology(), np.full(n, 12.011), metadata or {"temperature_K": 300.0},
                          kind=kind, chunk_frames=CHUNK) as w:
        for i in range(n_frames):
            x = np.repeat(rng.random((N_RES, 3)) * 2.5, 2, axis=0)
            x[1::2, 0] += 0.15
            frame = dict(positions=x, velocities=rng.normal(size=(n, 3)), forces=rng.normal(size=(n, 3)),
                         box=np.eye(3) * 3.0, step=10 * i, time=0.02 * i, potential_energy=rng.normal())
            if edit is not None:
                edit(i, frame)
            w.append(**frame)
    return path


def _flip(path, offset, n_bytes=4):
    data = bytearray(path.read_bytes())
    for k in range(offset, offset + n_bytes):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))


def _chunk_offset(path, name, index):
    with h5py.File(path, "r") as f:
        info = f[name].id.get_chunk_info(index)
        return info.byte_offset, info.size


def _mapping():
    return CGMapping.from_groups(_topology(), [[0, 1]])


# --------------------------------------------------------------------------------------------------------------
# checksums
# --------------------------------------------------------------------------------------------------------------
def test_every_array_carries_a_checksum(tmp_path):
    path = _write(tmp_path / "aa.h5")
    write_dataset(tmp_path / "copy.h5", open_dataset(path))
    map_dataset(path, _mapping(), tmp_path / "cg.h5", chunk_frames=5)
    for written in ("aa.h5", "copy.h5", "cg.h5"):
        with h5py.File(tmp_path / written, "r") as f:
            assert {name: f[name].fletcher32 for name in f} == {name: True for name in f}, written
            assert len(f) == 9 and re.fullmatch(rb"[0-9a-f]{64}", f.attrs["header_sha256"])


def test_a_damaged_chunk_is_reported_with_array_and_frames(tmp_path):
    path = _write(tmp_path / "aa.h5")
    clean = open_dataset(path)
    offset, size = _chunk_offset(path, "positions", 1)  # frames 4-7
    assert size == CHUNK * 2 * N_RES * 3 * 4 + 4  # float32 data + the 4-byte Fletcher-32 checksum
    _flip(path, offset + 10)
    message = re.escape(f"{path} is damaged: the array 'positions' fails its checksum in frames 4-7")
    with pytest.raises(CorruptFileError, match=message):
        open_dataset(path)
    with open_h5(path) as f:  # the chunk reads of map_dataset: only the damaged range fails
        np.testing.assert_array_equal(read_array(f, "positions", 0, 4), clean.positions[:4])
        np.testing.assert_array_equal(read_array(f, "positions", 8, 12), clean.positions[8:])
        with pytest.raises(CorruptFileError, match="'positions' fails its checksum in frames 5-6"):
            read_array(f, "positions", 5, 7)
    with pytest.raises(CorruptFileError, match="'positions' fails its checksum in frames 4;"):
        map_dataset(path, _mapping(), tmp_path / "cg.h5", chunk_frames=1)
    assert not (tmp_path / "cg.h5").exists()


def test_damaged_forces_and_masses(tmp_path):
    path = _write(tmp_path / "aa.h5")
    offset, _ = _chunk_offset(path, "forces", 2)
    _flip(path, offset)
    with pytest.raises(CorruptFileError, match="'forces' fails its checksum in frames 8-11"):
        open_dataset(path)
    path = _write(tmp_path / "aa2.h5")
    offset, _ = _chunk_offset(path, "masses", 0)
    _flip(path, offset + 3, 1)
    with pytest.raises(CorruptFileError, match="'masses' fails its checksum in particles 0-7"):
        open_dataset(path)


def _flip_text(path, marker):
    data = bytearray(path.read_bytes())
    at = data.find(marker)
    assert at > 0 and data.count(marker) == 1
    data[at] = ord("N")  # still valid JSON: silently different without a checksum
    path.write_bytes(bytes(data))


def test_a_damaged_header_is_refused(tmp_path):
    # small attributes live in the object header, which HDF5 checksums itself
    path = _write(tmp_path / "aa.h5", metadata={"force_field": "openff-2.2.0-MARKER"})
    _flip_text(path, b"MARKER")
    with pytest.raises(CorruptFileError, match=re.escape(f"{path} is damaged: its header")):
        open_dataset(path)
    # a large topology is stored outside it, unchecked by HDF5: header_sha256 catches the change
    n = 3000
    topology = {"chains": [{"id": "A", "residues": [{"name": "X", "id": str(i), "atoms": [{"name": f"B{i}"}]}
                                                   for i in range(n)]}], "bonds": []}
    path = tmp_path / "big.h5"
    with TrajectoryWriter(path, topology, np.ones(n), fields=("positions",), kind="coarse-grained") as w:
        w.append(positions=np.zeros((n, 3)), box=np.eye(3), step=0, time=0.0)
    _flip_text(path, b"B1234")
    with pytest.raises(CorruptFileError, match=re.escape(f"{path} is damaged: its header (the kind, metadata and "
                                                         "topology attributes) fails its checksum")):
        open_dataset(path)


def test_metadata_updates_keep_the_header_checksum_valid(tmp_path):
    path = tmp_path / "aa.h5"
    with TrajectoryWriter(path, _topology(), np.ones(8)) as w:
        w.update_metadata(completed=True)
    assert open_dataset(path).metadata["completed"] is True


def test_format_versions(tmp_path):
    path = _write(tmp_path / "aa.h5")
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 2
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 3
    with pytest.raises(CorruptFileError, match="has dataset format version 3; this openmm_cgml reads versions 1 and 2"):
        open_dataset(path)
    path = _write(tmp_path / "bb.h5")
    with h5py.File(path, "a") as f:
        del f.attrs["header_sha256"]
    with pytest.raises(CorruptFileError, match=r"is damaged: its header checksum \(header_sha256\) is missing"):
        open_dataset(path)


def _write_without_checksums(path, n_frames=6):
    """A dataset as openmm_cgml wrote them before checksums: no fletcher32, no header_sha256."""
    from openmm_cgml.dataset import UNITS, topology_to_data

    rng = np.random.default_rng(1)
    n = 2 * N_RES
    arrays = {"positions": rng.random((n_frames, n, 3)).astype(np.float32),
              "velocities": rng.random((n_frames, n, 3)).astype(np.float32),
              "forces": rng.random((n_frames, n, 3)).astype(np.float32),
              "box": np.repeat(np.eye(3)[None] * 3.0, n_frames, axis=0),
              "potential_energy": rng.random(n_frames), "kinetic_energy": rng.random(n_frames),
              "time": np.arange(n_frames) * 0.1, "step": np.arange(n_frames, dtype=np.int64)}
    with h5py.File(path, "w") as f:
        f.attrs.update(format="openmm_cgml.trajectory", format_version=1, kind="all-atom", n_frames=n_frames,
                       metadata=json.dumps({"units": UNITS}), topology=json.dumps(topology_to_data(_topology())))
        for name, value in arrays.items():
            f.create_dataset(name, data=value, maxshape=(None, *value.shape[1:]), chunks=(4, *value.shape[1:]))
        f.create_dataset("masses", data=np.full(n, 12.011))
    return arrays


def test_files_without_checksums_still_read_and_append(tmp_path):
    path = tmp_path / "old.h5"
    arrays = _write_without_checksums(path)
    ds = open_dataset(path)
    for name, value in arrays.items():
        np.testing.assert_array_equal(getattr(ds, name), value)
    with TrajectoryWriter(path, _topology(), np.full(8, 12.011), mode="a") as w:
        w.append(positions=np.ones((8, 3)), velocities=np.ones((8, 3)), forces=np.ones((8, 3)), box=np.eye(3) * 3,
                 step=6, time=0.6)
        w.update_metadata(completed=True)
    ds = open_dataset(path)
    assert ds.n_frames == 7 and ds.metadata["completed"] is True
    with h5py.File(path, "r") as f:  # still a version-1 file; update_metadata added the header checksum
        assert f.attrs["format_version"] == 1 and isinstance(f.attrs["header_sha256"], str)
        assert isinstance(f.attrs["metadata"], str) and not f["positions"].fletcher32
    map_dataset(path, _mapping(), tmp_path / "cg.h5")
    assert open_dataset(tmp_path / "cg.h5").n_frames == 7


# --------------------------------------------------------------------------------------------------------------
# NaN / inf
# --------------------------------------------------------------------------------------------------------------
def _poke(path, name, frames, index, value):
    """Write ``value`` into ``name[frame][index]`` of an existing dataset, as another program (or an older
    openmm_cgml, whose writer let NaN through) might have."""
    with h5py.File(path, "r+") as f:
        for i in frames:
            row = f[name][i]
            row[index] = value
            f[name][i] = row


def test_non_finite_values_are_refused_on_write(tmp_path):
    def nan_forces(i, frame):
        if i == 3:
            frame["forces"][2, 1] = np.nan

    def inf_box(i, frame):
        if i == 5:
            frame["box"][1, 1] = np.inf

    with pytest.raises(DatasetError, match=r"frame 3 \(step 30\) of .*aa\.h5 has non-finite forces \(NaN or inf\) "
                                           r"for 1 particle\(s\); expected finite values"):
        _write(tmp_path / "aa.h5", edit=nan_forces)
    with pytest.raises(DatasetError, match=r"frame 5 \(step 50\) of .*box\.h5 has a non-finite box"):
        _write(tmp_path / "box.h5", edit=inf_box)


def test_non_finite_values_are_refused_on_read(tmp_path):
    path = _write(tmp_path / "aa.h5")
    _poke(path, "forces", [3], (2, 1), np.nan)
    _poke(path, "box", [5, 6], (1, 1), np.inf)
    with pytest.raises(DatasetError, match=re.escape(f"{path} has non-finite forces (NaN or inf) in 1 frame(s), "
                                                     "first [3]")):
        open_dataset(path)
    with open_h5(path) as f:
        read_array(f, "forces", 4, 12)  # frames without the NaN read fine
        with pytest.raises(DatasetError, match=re.escape("non-finite box (NaN or inf) in 2 frame(s) of frames 4-11, "
                                                         "first [5, 6]")):
            read_array(f, "box", 4, 12)
        assert np.isnan(read_array(f, "kinetic_energy")).all()  # energies may be NaN ("not recorded")
    with pytest.raises(DatasetError, match=re.escape("non-finite forces (NaN or inf) in 1 frame(s) of frames 0-3, "
                                                     "first [3]")):
        map_dataset(path, _mapping(), tmp_path / "cg.h5", chunk_frames=4)
    assert not (tmp_path / "cg.h5").exists()

    path = _write(tmp_path / "box.h5")
    _poke(path, "box", [5, 6], (1, 1), np.inf)
    with pytest.raises(DatasetError, match=re.escape(f"{path} has non-finite box (NaN or inf) in 2 frame(s), "
                                                     "first [5, 6]")):
        open_dataset(path)
    with pytest.raises(DatasetError, match=re.escape("non-finite box (NaN or inf) in 2 frame(s) of frames 4-7, "
                                                     "first [5, 6]")):
        map_dataset(path, _mapping(), tmp_path / "cg.h5", chunk_frames=4)


def test_nan_energies_are_allowed(tmp_path):
    def no_energy(i, frame):
        frame["potential_energy"] = np.nan

    ds = open_dataset(_write(tmp_path / "aa.h5", edit=no_energy))
    assert np.isnan(ds.potential_energy).all() and np.isnan(ds.kinetic_energy).all()


def test_ibi_targets_get_a_clear_error_for_nan_positions(tmp_path):
    from openmm_cgml.ibi import targets_from_dataset

    clean = _write(tmp_path / "clean.h5", kind="coarse-grained")
    assert targets_from_dataset(clean, cutoff=1.2)  # the same data without the NaN gives targets
    bad = _write(tmp_path / "bad.h5", kind="coarse-grained")
    _poke(bad, "positions", [7], (0, 2), np.nan)
    with pytest.raises(DatasetError, match=re.escape(f"{bad} has non-finite positions (NaN or inf) in 1 frame(s), "
                                                     "first [7]")):
        targets_from_dataset(bad, cutoff=1.2)


# --------------------------------------------------------------------------------------------------------------
# bad inputs: open_dataset, run_map and `cgml map`
# --------------------------------------------------------------------------------------------------------------
EXPECTED = re.escape("expected an openmm_cgml trajectory dataset")


def _bad_inputs(tmp_path):
    good = _write(tmp_path / "good.h5")
    data = good.read_bytes()
    (tmp_path / "truncated.h5").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.h5").write_bytes(b"")
    (tmp_path / "text.h5").write_text("positions,box\n1,2\n")
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["positions"] = np.zeros((2, 3, 3))
    return {
        "truncated": "is not a readable HDF5 file: it is truncated or damaged",
        "empty": re.escape("is empty (0 bytes)"),
        "text": re.escape("is not an HDF5 file (no HDF5 signature; it starts with b'positio"),
        "foreign": re.escape("is an HDF5 file but not an openmm_cgml dataset: it has no format attribute"),
    }


def test_open_dataset_refuses_bad_files_clearly(tmp_path):
    for name, reason in _bad_inputs(tmp_path).items():
        path = tmp_path / f"{name}.h5"
        with pytest.raises(CorruptFileError, match=re.escape(str(path)) + " " + reason + ".*" + EXPECTED):
            open_dataset(path)


def test_run_map_and_cgml_map_refuse_bad_inputs_clearly(tmp_path, capsys):
    from openmm_cgml.cli import main
    from openmm_cgml.workflows import MapConfig, run_map

    for name, reason in _bad_inputs(tmp_path).items():
        path = tmp_path / f"{name}.h5"
        config = {"input": str(path), "output": str(tmp_path / "cg.h5"),
                  "mapping": {"method": "groups", "groups": [[0, 1]]}}
        with pytest.raises(CorruptFileError, match=re.escape(str(path)) + " " + reason + ".*" + EXPECTED):
            run_map(MapConfig.from_data(config))
        (tmp_path / "map.yaml").write_text(json.dumps(config))
        assert main(["map", str(tmp_path / "map.yaml")]) == 1
        err = capsys.readouterr().err
        assert re.search(f"cgml map: error: {re.escape(str(path))} {reason}.*{EXPECTED}", err), err
        assert "Traceback" not in err and not (tmp_path / "cg.h5").exists()
    # the good file maps
    config["input"] = str(tmp_path / "good.h5")
    (tmp_path / "good.yaml").write_text(json.dumps(config))
    assert main(["map", str(tmp_path / "good.yaml")]) == 0
    assert open_dataset(tmp_path / "cg.h5").n_particles == N_RES


# --------------------------------------------------------------------------------------------------------------
# permissions of atomically written files
# --------------------------------------------------------------------------------------------------------------
@pytest.fixture
def umask():
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)],
                         ids=["umask022", "umask077", "umask002"])
def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path, umask, mask, expected):
    umask(mask)
    plain = tmp_path / "plain.txt"
    with open(plain, "w") as fh:
        fh.write("x")
    assert _mode(plain) == expected
    atomic_write_text(tmp_path / "a.txt", "x")
    write_json({"a": 1}, tmp_path / "a.json")
    write_dataset(tmp_path / "d.h5", open_dataset(_write(tmp_path / "src.h5", n_frames=2)))
    for name in ("a.txt", "a.json", "d.h5", "src.h5"):
        assert _mode(tmp_path / name) == expected, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.txt", "d.h5", "plain.txt", "src.h5"]


def test_atomic_writes_keep_the_mode_of_the_file_they_replace(tmp_path, umask):
    target = tmp_path / "shared.json"
    target.write_text("{}")
    target.chmod(0o640)
    umask(0o077)
    write_json({"a": 1}, target)
    assert _mode(target) == 0o640 and json.loads(target.read_text()) == {"a": 1}
    # a failed write leaves the old file (and its mode) and no temporary file
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert _mode(target) == 0o640 and json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["shared.json"]
