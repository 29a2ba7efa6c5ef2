"""Trajectory datasets: the HDF5 file format shared by all-atom and coarse-grained data.

Layout of a dataset file (``format = "openmm_cgml.trajectory"``, version 1)::

    /                 attrs: format, format_version, kind ("all-atom" | "coarse-grained"),
                             metadata (JSON: units, force field, molecules, thermodynamic
                             state, timestep, constraints, package versions, configuration),
                             topology (JSON, see :func:`topology_to_data`), n_frames
    /positions        (n_frames, n_particles, 3)  nm
    /velocities       (n_frames, n_particles, 3)  nm/ps        (optional)
    /forces           (n_frames, n_particles, 3)  kJ/mol/nm    (optional)
    /box              (n_frames, 3, 3)            nm, rows are the box vectors
    /potential_energy (n_frames,)                 kJ/mol
    /kinetic_energy   (n_frames,)                 kJ/mol
    /step             (n_frames,)                 integrator step
    /time             (n_frames,)                 ps
    /masses           (n_particles,)              dalton

Per-frame arrays are chunked along the frame axis and grow as frames are appended.
``n_frames`` (an attribute, updated after each flush) is the number of complete frames:
readers trust it over the arrays' lengths, so a frame half-written when a process died
is never read.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._io import check_writable
from .exceptions import CorruptFileError, DatasetError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "FRAME_FIELDS",
    "UNITS",
    "TrajectoryWriter",
    "Dataset",
    "open_dataset",
    "open_h5",
    "write_dataset",
    "topology_to_data",
    "topology_from_data",
]

logger = logging.getLogger(__name__)

FORMAT = "openmm_cgml.trajectory"
FORMAT_VERSION = 1

#: Units of every stored array.
UNITS = {
    "positions": "nm",
    "velocities": "nm/ps",
    "forces": "kJ/mol/nm",
    "box": "nm",
    "potential_energy": "kJ/mol",
    "kinetic_energy": "kJ/mol",
    "step": "1",
    "time": "ps",
    "masses": "Da",
}

#: Per-particle vector fields, in the order they are stored.
VECTOR_FIELDS = ("positions", "velocities", "forces")
SCALAR_FIELDS = ("potential_energy", "kinetic_energy", "time")
FRAME_FIELDS = (*VECTOR_FIELDS, "box", *SCALAR_FIELDS, "step")
_KINDS = ("all-atom", "coarse-grained")


def _require_h5py():
    import h5py

    return h5py


# --------------------------------------------------------------------------------------
# Topology <-> plain data
# --------------------------------------------------------------------------------------
def topology_to_data(topology, masses: Sequence[float] | None = None) -> dict[str, Any]:
    """Describe an :class:`openmm.app.Topology` as plain JSON-ready data.

    Atoms without an element (coarse-grained beads) are written with ``element: null``
    and, if given, their mass; ``masses`` overrides element masses.
    """
    chains = []
    index = 0
    for chain in topology.chains():
        residues = []
        for residue in chain.residues():
            atoms = []
            for atom in residue.atoms():
                entry = {"name": atom.name, "element": atom.element.symbol if atom.element is not None else None}
                if masses is not None:
                    entry["mass"] = float(masses[index])
                atoms.append(entry)
                index += 1
            residues.append({"name": residue.name, "id": str(residue.id), "atoms": atoms})
        chains.append({"id": str(chain.id), "residues": residues})
    bonds = [[a.index, b.index] for a, b in topology.bonds()]
    box = topology.getPeriodicBoxVectors()
    data: dict[str, Any] = {"chains": chains, "bonds": bonds}
    if box is not None:
        from openmm import unit

        data["box"] = [[float(x) for x in v.value_in_unit(unit.nanometer)] for v in box]
    return data


def topology_from_data(data: Mapping[str, Any]):
    """Rebuild an :class:`openmm.app.Topology` from :func:`topology_to_data` output."""
    from openmm import Vec3, app, unit

    top = app.Topology()
    atoms = []
    for chain_data in data["chains"]:
        chain = top.addChain(chain_data.get("id"))
        for res_data in chain_data["residues"]:
            residue = top.addResidue(res_data["name"], chain, res_data.get("id"))
            for atom_data in res_data["atoms"]:
                symbol = atom_data.get("element")
                element = app.Element.getBySymbol(symbol) if symbol else None
                atoms.append(top.addAtom(atom_data["name"], element, residue))
    for i, j in data.get("bonds", []):
        top.addBond(atoms[i], atoms[j])
    if data.get("box") is not None:
        top.setPeriodicBoxVectors([Vec3(*v) for v in data["box"]] * unit.nanometer)
    return top


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------
class TrajectoryWriter:
    """Append frames to a dataset file.

    Parameters
    ----------
    path : path-like
        The ``.h5`` file.  With ``mode="w"`` it is created (an existing file is replaced
        only when the writer is first flushed); with ``mode="a"`` an existing dataset is
        reopened for appending after checking that it matches.
    topology : openmm.app.Topology or dict
        The particles' topology (or :func:`topology_to_data` output).
    masses : array, shape (n_particles,)
        Particle masses in dalton.
    metadata : dict
        JSON-serialisable provenance (units are added automatically).
    fields : sequence of str
        Which of ``positions``, ``velocities``, ``forces`` are stored (positions always).
    kind : str
        ``"all-atom"`` or ``"coarse-grained"``.
    precision : {"single", "double"}
        Storage precision of the per-particle vectors.
    chunk_frames : int
        Frames per HDF5 chunk (and per buffered write).
    """

    def __init__(
        self,
        path,
        topology,
        masses,
        metadata: Mapping[str, Any] | None = None,
        *,
        fields: Sequence[str] = VECTOR_FIELDS,
        kind: str = "all-atom",
        precision: str = "single",
        chunk_frames: int = 16,
        mode: str = "w",
    ):
        h5py = _require_h5py()
        if kind not in _KINDS:
            raise DatasetError(f"dataset kind must be one of {_KINDS}, got {kind!r}")
        if precision not in ("single", "double"):
            raise DatasetError(f"precision must be 'single' or 'double', got {precision!r}")
        unknown = set(fields) - set(VECTOR_FIELDS)
        if unknown or "positions" not in fields:
            raise DatasetError(f"fields must include 'positions' and be among {VECTOR_FIELDS}, got {list(fields)}")
        if mode not in ("w", "a"):
            raise DatasetError(f"mode must be 'w' or 'a', got {mode!r}")
        self.path = check_writable(path)
        self.fields = tuple(f for f in VECTOR_FIELDS if f in fields)
        self._topology_data = topology if isinstance(topology, Mapping) else topology_to_data(topology, masses)
        self.masses = np.asarray(masses, dtype=float)
        self.n_particles = int(self.masses.shape[0])
        self._dtype = np.float32 if precision == "single" else np.float64
        self._chunk = max(1, int(chunk_frames))
        self._buffer: list[dict[str, np.ndarray]] = []
        metadata = dict(metadata or {})
        metadata.setdefault("units", UNITS)
        if mode == "a":
            if not self.path.exists():
                raise DatasetError(f"cannot append to {self.path}: it does not exist")
            existing = open_dataset(self.path)  # validates the layout
            if existing.n_particles != self.n_particles or tuple(existing.fields) != self.fields:
                raise DatasetError(
                    f"cannot append to {self.path}: it holds {existing.n_particles} particles with fields "
                    f"{existing.fields}, this writer has {self.n_particles} with {self.fields}"
                )
            self._file = h5py.File(self.path, "a")
        else:
            self._file = h5py.File(self.path, "w")
            self._create(metadata, kind)
        self._n = int(self._file.attrs["n_frames"])

    def _create(self, metadata, kind) -> None:
        f = self._file
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["kind"] = kind
        f.attrs["metadata"] = json.dumps(metadata, sort_keys=True, default=str)
        f.attrs["topology"] = json.dumps(self._topology_data)
        f.attrs["n_frames"] = 0
        n, c = self.n_particles, self._chunk
        for name in self.fields:
            f.create_dataset(name, shape=(0, n, 3), maxshape=(None, n, 3), dtype=self._dtype, chunks=(c, n, 3))
        f.create_dataset("box", shape=(0, 3, 3), maxshape=(None, 3, 3), dtype=np.float64, chunks=(max(c, 64), 3, 3))
        for name in SCALAR_FIELDS:
            f.create_dataset(name, shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(max(c, 256),))
        f.create_dataset("step", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(max(c, 256),))
        f.create_dataset("masses", data=self.masses)
        for name, dset in f.items():
            dset.attrs["units"] = UNITS[name]
        f.flush()

    @property
    def n_frames(self) -> int:
        """Frames written so far, buffered ones included."""
        return self._n + len(self._buffer)

    def append(self, *, positions, box, step: int, time: float, velocities=None, forces=None,
               potential_energy: float = np.nan, kinetic_energy: float = np.nan) -> None:
        """Add one frame (MD units; arrays of shape ``(n_particles, 3)``)."""
        frame = {"positions": positions, "velocities": velocities, "forces": forces}
        record: dict[str, np.ndarray] = {}
        for name in self.fields:
            value = frame[name]
            if value is None:
                raise DatasetError(f"this dataset stores {name}, but the frame has none")
            arr = np.asarray(value, dtype=np.float64)
            if arr.shape != (self.n_particles, 3):
                raise DatasetError(f"{name} must have shape ({self.n_particles}, 3), got {arr.shape}")
            record[name] = arr
        box_arr = np.asarray(box, dtype=np.float64)
        if box_arr.shape == (3,):
            box_arr = np.diag(box_arr)
        if box_arr.shape != (3, 3):
            raise DatasetError(f"box must be 3 box vectors (3, 3) or lengths (3,), got shape {box_arr.shape}")
        record["box"] = box_arr
        record["potential_energy"] = np.float64(potential_energy)
        record["kinetic_energy"] = np.float64(kinetic_energy)
        record["time"] = np.float64(time)
        record["step"] = np.int64(step)
        self._buffer.append(record)
        if len(self._buffer) >= self._chunk:
            self.flush()

    def flush(self) -> None:
        """Write buffered frames and mark them complete (``n_frames``)."""
        if self._buffer:
            start, k = self._n, len(self._buffer)
            for name in (*self.fields, "box", *SCALAR_FIELDS, "step"):
                dset = self._file[name]
                dset.resize(start + k, axis=0)
                dset[start : start + k] = np.stack([rec[name] for rec in self._buffer])
            self._buffer.clear()
            self._n = start + k
            self._file.attrs["n_frames"] = self._n
        self._file.flush()

    def truncate(self, n_frames: int) -> None:
        """Drop every frame after the first ``n_frames`` (used when resuming from a checkpoint)."""
        self.flush()
        if not 0 <= n_frames <= self._n:
            raise DatasetError(f"cannot truncate {self.path} to {n_frames} frames: it has {self._n}")
        for name in (*self.fields, "box", *SCALAR_FIELDS, "step"):
            self._file[name].resize(n_frames, axis=0)
        self._n = n_frames
        self._file.attrs["n_frames"] = n_frames
        self._file.flush()

    def update_metadata(self, **entries) -> None:
        """Merge ``entries`` into the file's metadata."""
        meta = json.loads(self._file.attrs["metadata"])
        meta.update(entries)
        self._file.attrs["metadata"] = json.dumps(meta, sort_keys=True, default=str)

    def close(self) -> None:
        """Flush and close; safe to call twice."""
        if getattr(self, "_file", None) is not None and self._file.id.valid:
            self.flush()
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dataset:
    """A dataset read into memory as NumPy arrays (MD units, see :data:`UNITS`)."""

    path: Path
    kind: str
    metadata: dict[str, Any]
    topology_data: dict[str, Any]
    masses: np.ndarray
    positions: np.ndarray
    box: np.ndarray
    step: np.ndarray
    time: np.ndarray
    potential_energy: np.ndarray
    kinetic_energy: np.ndarray
    velocities: np.ndarray | None = None
    forces: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_particles(self) -> int:
        return int(self.positions.shape[1])

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(f for f in VECTOR_FIELDS if getattr(self, f) is not None)

    @property
    def topology(self):
        """The particles' :class:`openmm.app.Topology`."""
        return topology_from_data(self.topology_data)

    def to_mdtraj(self):
        """The positions as an :class:`mdtraj.Trajectory` (beads get mdtraj's virtual element)."""
        import mdtraj

        top = mdtraj.Topology()
        atoms = []
        for chain_data in self.topology_data["chains"]:
            chain = top.add_chain()
            for res_data in chain_data["residues"]:
                residue = top.add_residue(res_data["name"], chain)
                for atom_data in res_data["atoms"]:
                    symbol = atom_data.get("element")
                    element = (
                        mdtraj.element.get_by_symbol(symbol) if symbol else mdtraj.element.virtual_site
                    )
                    atoms.append(top.add_atom(atom_data["name"], element, residue))
        for i, j in self.topology_data.get("bonds", []):
            top.add_bond(atoms[i], atoms[j])
        traj = mdtraj.Trajectory(self.positions.astype(np.float32), top, time=self.time)
        traj.unitcell_vectors = self.box.astype(np.float32)
        return traj


@contextlib.contextmanager
def open_h5(path) -> Iterator[Any]:
    """Open a dataset file read-only as an ``h5py.File`` after checking that it is one.

    Raises
    ------
    DatasetError
        If the file does not exist.
    CorruptFileError
        If it is not HDF5, not an openmm_cgml dataset, or of an unknown format version.
    """
    h5py = _require_h5py()
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset {path} does not exist")
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise CorruptFileError(f"{path} is not a readable HDF5 file (truncated or corrupt?): {exc}") from exc
    with fh as f:
        if f.attrs.get("format") != FORMAT:
            raise CorruptFileError(
                f"{path} is an HDF5 file but not an openmm_cgml dataset (format attribute "
                f"{f.attrs.get('format')!r}, expected {FORMAT!r})"
            )
        version = int(f.attrs.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise CorruptFileError(f"{path} has dataset format version {version}; this openmm_cgml reads {FORMAT_VERSION}")
        yield f


def open_dataset(path) -> Dataset:
    """Read a dataset file written by :class:`TrajectoryWriter`.

    Raises
    ------
    DatasetError
        If the file does not exist.
    CorruptFileError
        If it is not HDF5, not an openmm_cgml dataset, of an unknown format version, or
        truncated (arrays shorter than the recorded number of frames).
    """
    path = Path(path)
    with open_h5(path) as f:
        try:
            n = int(f.attrs["n_frames"])
            meta = json.loads(f.attrs["metadata"])
            topology_data = json.loads(f.attrs["topology"])
            arrays = {}
            for name in (*VECTOR_FIELDS, "box", *SCALAR_FIELDS, "step"):
                if name not in f:
                    if name in VECTOR_FIELDS and name != "positions":
                        arrays[name] = None
                        continue
                    raise CorruptFileError(f"{path} lacks the required array {name!r}")
                if f[name].shape[0] < n:
                    raise CorruptFileError(
                        f"{path} is truncated: {name} has {f[name].shape[0]} frames, the file records {n}"
                    )
                arrays[name] = f[name][:n]
            masses = f["masses"][:]
            kind = str(f.attrs["kind"])
        except (KeyError, ValueError, OSError) as exc:
            raise CorruptFileError(f"{path} is damaged or incomplete: {exc}") from exc
    return Dataset(path=path, kind=kind, metadata=meta, topology_data=topology_data, masses=masses, **arrays)


def write_dataset(path, dataset: Dataset, *, metadata: Mapping[str, Any] | None = None,
                  precision: str = "single") -> None:
    """Write a whole in-memory :class:`Dataset` to ``path`` atomically."""
    from ._io import atomic_path

    meta = dict(dataset.metadata)
    meta.update(metadata or {})
    with atomic_path(path) as tmp:
        with TrajectoryWriter(tmp, dataset.topology_data, dataset.masses, meta, fields=dataset.fields,
                              kind=dataset.kind, precision=precision) as writer:
            for i in range(dataset.n_frames):
                writer.append(
                    positions=dataset.positions[i],
                    velocities=None if dataset.velocities is None else dataset.velocities[i],
                    forces=None if dataset.forces is None else dataset.forces[i],
                    box=dataset.box[i], step=int(dataset.step[i]), time=float(dataset.time[i]),
                    potential_energy=float(dataset.potential_energy[i]),
                    kinetic_energy=float(dataset.kinetic_energy[i]),
                )
