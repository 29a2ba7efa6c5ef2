"""Trajectory datasets: the HDF5 file format shared by all-atom and coarse-grained data.

Layout of a dataset file (``format = "openmm_cgml.trajectory"``, version 2; version 1, the same
layout without checksums, is still read)::

    /                 attrs: format, format_version, kind ("all-atom" | "coarse-grained"),
                             metadata (JSON: units, force field, molecules, thermodynamic
                             state, timestep, constraints, package versions, configuration),
                             topology (JSON, see :func:`topology_to_data`), n_frames,
                             header_sha256 (SHA-256 of kind, metadata and topology)
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

Integrity: files are written in the HDF5 1.8 format (superblock 2; checksummed object headers
and attribute storage; text attributes are fixed-length UTF-8 strings), every array
with HDF5's Fletcher-32 checksum filter (one checksum per chunk, verified by HDF5 whenever
the chunk is read), and the root attribute ``header_sha256`` is the SHA-256 of ``kind``,
``metadata`` and ``topology``.  Readers
(:func:`open_h5`, :func:`read_array`, :func:`open_dataset`) turn a failed checksum into a
:class:`~openmm_cgml.exceptions.CorruptFileError` naming the file, the array and the frames,
and refuse NaN or infinite positions, velocities, forces, boxes and masses with a
:class:`~openmm_cgml.exceptions.DatasetError` naming the array and the first bad frames.
Files written without checksums (before they were added) are read without those checks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._io import check_writable
from .exceptions import CGMLError, CorruptFileError, DatasetError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "FRAME_FIELDS",
    "UNITS",
    "TrajectoryWriter",
    "Dataset",
    "open_dataset",
    "recorded_temperature",
    "open_h5",
    "read_array",
    "read_header",
    "stored_fields",
    "write_dataset",
    "topology_to_data",
    "topology_from_data",
]

logger = logging.getLogger(__name__)

FORMAT = "openmm_cgml.trajectory"
FORMAT_VERSION = 2
#: Versions :func:`open_dataset` reads: 1 is version 2 without checksums and with variable-length text attributes.
READABLE_VERSIONS = (1, 2)

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
#: Arrays whose every value must be finite (energies may be NaN: "not recorded").
FINITE_FIELDS = (*VECTOR_FIELDS, "box", "masses")
_KINDS = ("all-atom", "coarse-grained")
_EXPECTED = "an openmm_cgml trajectory dataset (HDF5, as written by TrajectoryWriter)"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


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
        The ``.h5`` file.  With ``mode="w"`` it is created (an existing file is replaced at
        once; :func:`write_dataset` replaces a file atomically); with
        ``mode="a"`` an existing dataset is reopened for appending after checking that it
        matches (frames appended to a file written without checksums get none either).
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
            # text attributes keep the file's form (variable-length strings in files from before checksums)
            self._fixed_text = h5py.check_string_dtype(self._file.attrs.get_id("metadata").dtype).length is not None
        else:
            # HDF5 1.8 file format (superblock 2, version-2 object headers and attribute storage: checksummed).
            # Not 1.10's: its superblock 3 marks the file "open for write" until a clean close, so a file whose
            # writer was killed (the case resume exists for) would not open again without h5clear.
            self._file = h5py.File(self.path, "w", libver=("v108", "v108"))
            self._fixed_text = True
            self._create(metadata, kind)
        self._n = int(self._file.attrs["n_frames"])

    def _create(self, metadata, kind) -> None:
        f = self._file
        self._set_text(f, "format", FORMAT)
        f.attrs["format_version"] = FORMAT_VERSION
        self._set_text(f, "kind", kind)
        self._set_text(f, "metadata", json.dumps(metadata, sort_keys=True, default=str))
        self._set_text(f, "topology", json.dumps(self._topology_data))
        f.attrs["n_frames"] = 0
        self._set_text(f, "header_sha256", _header_digest(f))
        n, c = self.n_particles, self._chunk
        # fletcher32: a checksum per chunk, verified by HDF5 on every read (see read_array)
        for name in self.fields:
            f.create_dataset(name, shape=(0, n, 3), maxshape=(None, n, 3), dtype=self._dtype, chunks=(c, n, 3),
                             fletcher32=True)
        f.create_dataset("box", shape=(0, 3, 3), maxshape=(None, 3, 3), dtype=np.float64, chunks=(max(c, 64), 3, 3),
                         fletcher32=True)
        for name in SCALAR_FIELDS:
            f.create_dataset(name, shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(max(c, 256),),
                             fletcher32=True)
        f.create_dataset("step", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(max(c, 256),), fletcher32=True)
        f.create_dataset("masses", data=self.masses, fletcher32=True)
        for name, dset in f.items():
            self._set_text(dset, "units", UNITS[name])
        f.flush()

    def _set_text(self, obj, key: str, text: str) -> None:
        """Store a text attribute: as a fixed-length UTF-8 string in new files.

        Fixed-length strings live in the (checksummed) attribute storage; variable-length ones in HDF5's
        global heap, which has no checksum and where a damaged byte can make HDF5 loop forever.
        """
        if not self._fixed_text:
            obj.attrs[key] = text
            return
        h5py = _require_h5py()
        raw = text.encode()
        size = max(1, len(raw))
        obj.attrs.create(key, np.array(raw, dtype=f"S{size}"), dtype=h5py.string_dtype("utf-8", size))

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
            if not np.isfinite(arr).all():  # a reader refuses them: refuse them before they are written
                raise DatasetError(f"frame {self._n + len(self._buffer)} (step {step}) of {self.path} has non-finite "
                                   f"{name} (NaN or inf) for {int((~np.isfinite(arr).all(axis=1)).sum())} particle(s); "
                                   "expected finite values: the simulation has probably blown up")
            record[name] = arr
        box_arr = np.asarray(box, dtype=np.float64)
        if box_arr.shape == (3,):
            box_arr = np.diag(box_arr)
        if box_arr.shape != (3, 3):
            raise DatasetError(f"box must be 3 box vectors (3, 3) or lengths (3,), got shape {box_arr.shape}")
        if not np.isfinite(box_arr).all():
            raise DatasetError(f"frame {self._n + len(self._buffer)} (step {step}) of {self.path} has a non-finite box "
                               f"{box_arr.tolist()}; expected finite box vectors")
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
        self._set_text(self._file, "metadata", json.dumps(meta, sort_keys=True, default=str))
        self._set_text(self._file, "header_sha256", _header_digest(self._file))

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


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _header_digest(f) -> str:
    """SHA-256 of the root attributes ``kind``, ``metadata`` and ``topology`` (``header_sha256``)."""
    parts = (_text(f.attrs[key]) for key in ("kind", "metadata", "topology"))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _not_hdf5(path: Path, exc: OSError) -> CorruptFileError:
    """The error for a file h5py cannot open: empty, not HDF5 at all, or a damaged/truncated HDF5 file."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            # the HDF5 signature is at 0, or after a user block of 512, 1024, 2048, ... bytes
            offset, signed = 512, head == _HDF5_SIGNATURE
            while not signed and offset + 8 <= size:
                fh.seek(offset)
                signed = fh.read(8) == _HDF5_SIGNATURE
                offset *= 2
    except OSError as err:
        return CorruptFileError(f"cannot read {path}: {err.strerror}; expected {_EXPECTED}")
    if size == 0:
        return CorruptFileError(f"{path} is empty (0 bytes); expected {_EXPECTED}")
    if not signed:
        return CorruptFileError(f"{path} is not an HDF5 file (no HDF5 signature; it starts with {head!r}); "
                                f"expected {_EXPECTED}")
    return CorruptFileError(f"{path} is not a readable HDF5 file: it is truncated or damaged ({size} bytes; {exc}); "
                            f"expected {_EXPECTED}")


@contextlib.contextmanager
def open_h5(path) -> Iterator[Any]:
    """Open a dataset file read-only as an ``h5py.File`` after checking that it is one.

    The format, its version and the header checksum (``header_sha256``, when the file has one) are
    checked; read its arrays with :func:`read_array` and its attributes with :func:`read_header`.

    Raises
    ------
    DatasetError
        If the file does not exist.
    CorruptFileError
        If it is empty, not HDF5, truncated or damaged, not an openmm_cgml dataset, of an unknown
        format version, or its header fails its checksum.
    """
    h5py = _require_h5py()
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset {path} does not exist")
    if path.is_dir():
        raise DatasetError(f"dataset {path} is a directory; expected {_EXPECTED}")
    try:
        fh = h5py.File(path, "r")
    except BlockingIOError as exc:  # HDF5's file lock: a writer holds it
        raise DatasetError(f"{path} is open for writing by another process (a run still recording it?): read it "
                           "when that run has stopped") from exc
    except OSError as exc:
        raise _not_hdf5(path, exc) from exc
    with fh as f:
        try:
            # "in" looks the name up only; reading a damaged attribute raises (h5py: KeyError), not None
            fmt = _text(f.attrs["format"]) if "format" in f.attrs else None
            if fmt != FORMAT:
                found = "it has no format attribute" if fmt is None else f"its format attribute is {fmt!r}"
                raise CorruptFileError(f"{path} is an HDF5 file but not an openmm_cgml dataset: {found}; expected "
                                       f"{_EXPECTED}, whose format attribute is {FORMAT!r}")
            version = int(f.attrs["format_version"]) if "format_version" in f.attrs else -1
            if version not in READABLE_VERSIONS:
                raise CorruptFileError(f"{path} has dataset format version {version}; this openmm_cgml reads "
                                       f"versions {' and '.join(map(str, READABLE_VERSIONS))}")
            if "header_sha256" not in f.attrs:
                if version >= 2:
                    raise CorruptFileError(f"{path} is damaged: its header checksum (header_sha256) is missing")
            elif _header_digest(f) != _text(f.attrs["header_sha256"]):
                raise CorruptFileError(
                    f"{path} is damaged: its header (the kind, metadata and topology attributes) fails its checksum; "
                    "restore the file from a copy or regenerate it")
        except CGMLError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise CorruptFileError(f"{path} is damaged: its header attributes cannot be read ({exc}); "
                                   f"expected {_EXPECTED}") from exc
        yield f


def read_header(f) -> tuple[str, dict[str, Any], dict[str, Any], int]:
    """``(kind, metadata, topology_data, n_frames)`` of a file opened with :func:`open_h5`.

    Raises
    ------
    CorruptFileError
        If an attribute is missing or not valid JSON.
    """
    try:
        return (_text(f.attrs["kind"]), json.loads(_text(f.attrs["metadata"])), json.loads(_text(f.attrs["topology"])),
                int(f.attrs["n_frames"]))
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise CorruptFileError(f"{f.filename} is damaged or incomplete: its header attributes (kind, metadata, "
                               f"topology, n_frames) cannot be read ({exc}); expected {_EXPECTED}") from exc


def stored_fields(f) -> tuple[str, ...]:
    """Which of positions, velocities, forces a file opened with :func:`open_h5` stores.

    Raises
    ------
    CorruptFileError
        If the file's list of arrays cannot be read, or it has no positions.
    """
    try:
        fields = tuple(name for name in VECTOR_FIELDS if name in f)
    except (OSError, RuntimeError) as exc:
        raise CorruptFileError(f"{f.filename} is damaged: its arrays cannot be listed ({exc}); restore the file "
                               "from a copy or regenerate it") from exc
    if "positions" not in fields:
        raise CorruptFileError(f"{f.filename} lacks the required array 'positions'; expected {_EXPECTED}")
    return fields


def read_array(f, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Rows ``start:stop`` (frames; particles for ``masses``) of the array ``name`` of a file opened with
    :func:`open_h5`, checked.

    HDF5 verifies each chunk's Fletcher-32 checksum as it is read; values of :data:`FINITE_FIELDS` must be
    finite (one vectorised pass over what was read, no second read).

    Raises
    ------
    CorruptFileError
        If the array is missing, shorter than ``stop`` (a truncated file), or a chunk fails its checksum (the
        message names the file, the array and the damaged frames).
    DatasetError
        If positions, velocities, forces, box or masses hold NaN or inf (the message names the array and the
        first bad frames).
    """
    path = Path(f.filename)
    try:
        dset = f[name]
        length = int(dset.shape[0])
    except KeyError as exc:
        raise CorruptFileError(f"{path} lacks the required array {name!r}; expected {_EXPECTED}") from exc
    except (OSError, RuntimeError, ValueError) as exc:
        raise CorruptFileError(f"{path} is damaged: the array {name!r} cannot be opened ({exc}); restore the file "
                               "from a copy or regenerate it") from exc
    stop = length if stop is None else int(stop)
    if stop > length:
        raise CorruptFileError(f"{path} is truncated: {name} has {length} frames, the file records {stop}")
    try:
        data = dset[start:stop]
    except (OSError, RuntimeError) as exc:
        raise _damaged(path, dset, name, start, stop, exc) from exc
    if name in FINITE_FIELDS:
        total = length if name == "masses" else int(f.attrs.get("n_frames", length))
        _check_finite(path, name, data, start, start == 0 and stop >= total)
    return data


def _rows(name: str) -> str:
    return "particles" if name == "masses" else "frames"


def _span(lo: int, hi: int) -> str:
    return f"{lo}-{hi - 1}" if hi - lo > 1 else str(lo)


def _damaged(path: Path, dset, name: str, start: int, stop: int, exc: Exception) -> CorruptFileError:
    """The error for an array that HDF5 cannot read: finds the bad chunks by reading them one by one."""
    step = dset.chunks[0] if dset.chunks else max(1, stop - start)
    bad = []
    for chunk_start in range(start - start % step, stop, step):
        lo, hi = max(chunk_start, start), min(chunk_start + step, stop)
        try:
            dset[lo:hi]
        except (OSError, RuntimeError):
            bad.append(_span(lo, hi))
    where = f"{_rows(name)} {', '.join(bad or [_span(start, stop)])}"
    if dset.fletcher32:
        what = f"fails its checksum in {where}"
    else:
        what = f"cannot be read in {where} ({exc}; this file predates dataset checksums)"
    return CorruptFileError(f"{path} is damaged: the array {name!r} {what}; restore the file from a copy or "
                            "regenerate it")


def _check_finite(path: Path, name: str, data: np.ndarray, offset: int, whole: bool) -> None:
    if data.size == 0 or data.dtype.kind != "f":
        return
    if np.isfinite(data.min()) and np.isfinite(data.max()):  # NaN propagates, inf is an extreme: no temporaries
        return
    bad = np.flatnonzero(~np.isfinite(data.reshape(len(data), -1)).all(axis=1)) + offset
    rows = _rows(name)
    scope = "" if whole else f" of {rows} {_span(offset, offset + len(data))}"
    raise DatasetError(
        f"{path} has non-finite {name} (NaN or inf) in {len(bad)} {rows[:-1]}(s){scope}, first {bad[:5].tolist()}; "
        f"expected finite {name} (the run that wrote them probably blew up): remove those {rows} or regenerate "
        "the data"
    )


def recorded_temperature(dataset) -> float | None:
    """The temperature (K) a dataset (path or :class:`Dataset`) records: ``metadata["temperature_K"]`` (written by
    the reference and CG runs, kept by mapping), else its recorded thermostat's; None when it records none."""
    from .thermostat import recorded_thermostat

    ds = dataset if isinstance(dataset, Dataset) else open_dataset(dataset)
    for value in (ds.metadata.get("temperature_K"), (recorded_thermostat(ds.metadata) or {}).get("temperature_K")):
        if value is not None:
            return float(value)
    return None


def open_dataset(path) -> Dataset:
    """Read a dataset file written by :class:`TrajectoryWriter`.

    Every array is read once: HDF5 verifies its checksums as it reads, and positions, velocities,
    forces, box and masses are checked to be finite (see :func:`read_array`).

    Raises
    ------
    DatasetError
        If the file does not exist, or holds NaN or inf positions, velocities, forces, box or masses.
    CorruptFileError
        If it is empty, not HDF5, not an openmm_cgml dataset, of an unknown format version,
        truncated (arrays shorter than the recorded number of frames), or damaged (a failed checksum).
    """
    path = Path(path)
    with open_h5(path) as f:
        kind, meta, topology_data, n = read_header(f)
        fields = stored_fields(f)
        arrays = {name: read_array(f, name, 0, n) if name in fields else None for name in VECTOR_FIELDS}
        for name in ("box", *SCALAR_FIELDS, "step"):
            arrays[name] = read_array(f, name, 0, n)
        masses = read_array(f, "masses")
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
