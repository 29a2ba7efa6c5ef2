"""The coarse-grained topology: the one description of a CG system that every layer receives.

:class:`CGTopology` holds what mapping, IBI, models, training, force terms, analysis and the
System assembler need to know about a CG system, in MD units: bead types, bead names, masses
(dalton), molecules, bonds, angles and dihedrals along the bonds, and the periodic box (nm).
It is built in one place for each source:

- from a mapping: :meth:`openmm_cgml.mapping.CGMapping.cg_topology`;
- from a CG dataset (a mapped AA run or a CG run): :meth:`CGTopology.from_dataset`;
- from an OpenMM CG topology: :meth:`CGTopology.from_openmm` (the inverse of :meth:`CGTopology.to_openmm`).

This module is on the package's ground floor: it imports NumPy only (OpenMM's ``app`` layer
inside the two conversion methods), so every layer can use it.

Bead-type keys
--------------
Type pairs, triplets and quadruplets are keyed by :func:`type_key` (the smaller of the tuple and
its reverse: ``("A", "B") == type_key(("B", "A"))``) and written ``"A-B"`` (:func:`key_to_str`,
:func:`key_from_str`) wherever a key is stored as text (YAML, JSON, bundles).  Bead-type names
therefore may not contain ``-`` or whitespace.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .exceptions import ConfigurationError, InvalidMappingError

__all__ = [
    "CGTopology",
    "MoleculeTemplate",
    "type_key",
    "key_to_str",
    "key_from_str",
    "type_pairs",
    "angles_from_bonds",
    "dihedrals_from_bonds",
    "bead_bonds",
    "mapping_fingerprint",
    "CG_TOPOLOGY_FORMAT",
]

CG_TOPOLOGY_FORMAT = "openmm_cgml.cg_topology"
_FORMAT_VERSION = 1


# ----------------------------------------------------------------------------- keys
def type_key(types: Iterable[str]) -> tuple[str, ...]:
    """Canonical key of a bead-type pair, triplet (apex in the middle) or quadruplet: the smaller of the tuple
    and its reverse, so ``(A, B) = (B, A)``, ``(A, B, C) = (C, B, A)`` and ``(A, B, C, D) = (D, C, B, A)``."""
    t = tuple(str(x) for x in types)
    return min(t, t[::-1])


def key_to_str(key: Iterable[str]) -> str:
    """The text form of a key, ``"A-B"`` (canonicalised)."""
    return "-".join(type_key(key))


def key_from_str(key, arity: int | None = None) -> tuple[str, ...]:
    """Parse ``"A-B"`` (or accept a tuple) into a canonical key with ``arity`` types (if given)."""
    parts = tuple(p.strip() for p in key.split("-")) if isinstance(key, str) else tuple(str(p) for p in key)
    if arity is not None and len(parts) != arity:
        raise ConfigurationError(f"expected {arity} bead types in the key {key!r} (written 'A-B' for a pair), "
                                 f"got {len(parts)}")
    if any(not p for p in parts):
        raise ConfigurationError(f"the key {key!r} has an empty bead type")
    return type_key(parts)


def type_pairs(type_names: Sequence[str]) -> list[tuple[str, str]]:
    """Every unordered pair of the (sorted) ``type_names``, each once, as canonical keys."""
    names = sorted(set(type_names))
    return [(a, b) for i, a in enumerate(names) for b in names[i:]]


# ----------------------------------------------------------------------------- bonded tuples
def _neighbours(bonds, n: int) -> list[list[int]]:
    nbrs: list[set[int]] = [set() for _ in range(n)]
    for i, j in np.asarray(bonds, dtype=np.int64).reshape(-1, 2):
        nbrs[int(i)].add(int(j))
        nbrs[int(j)].add(int(i))
    return [sorted(s) for s in nbrs]


def angles_from_bonds(bonds, n_beads: int) -> np.ndarray:
    """All bonded triplets ``(i, j, k)`` with apex ``j`` and ``i < k``, ordered by apex, shape (n, 3)."""
    nbrs = _neighbours(bonds, n_beads)
    out = [(nb[a], j, nb[b]) for j, nb in enumerate(nbrs) for a in range(len(nb)) for b in range(a + 1, len(nb))]
    return np.asarray(out, dtype=np.int64).reshape(-1, 3)


def dihedrals_from_bonds(bonds, n_beads: int) -> np.ndarray:
    """All proper dihedral quadruplets ``(i, j, k, l)`` along bonds ``j-k``, each once (the smaller of the
    quadruplet and its reverse), sorted, shape (n, 4)."""
    nbrs = _neighbours(bonds, n_beads)
    out = set()
    for j, k in np.asarray(bonds, dtype=np.int64).reshape(-1, 2):
        j, k = int(j), int(k)
        for i in nbrs[j]:
            if i == k:
                continue
            for m in nbrs[k]:
                if m not in (j, i):
                    q = (i, j, k, m)
                    out.add(min(q, q[::-1]))
    return np.asarray(sorted(out), dtype=np.int64).reshape(-1, 4)


def bead_bonds(beads: Sequence[Sequence[int]], atom_bonds: Iterable[Sequence[int]]) -> list[tuple[int, int]]:
    """Bonds between beads (local bead indices, sorted pairs) implied by bonds between their atoms."""
    owner: dict[int, list[int]] = {}
    for b, group in enumerate(beads):
        for i in group:
            owner.setdefault(int(i), []).append(b)
    out = set()
    for i, j in atom_bonds:
        for bi in owner.get(int(i), ()):
            for bj in owner.get(int(j), ()):
                if bi != bj:
                    out.add((min(bi, bj), max(bi, bj)))
    return sorted(out)


def mapping_fingerprint(type_names: Sequence[str], molecule_templates: Sequence[Sequence[str]]) -> str:
    """A short hash of the bead types and the bead-type sequence of each distinct molecule (what model bundles
    are checked against)."""
    data = {"types": sorted(type_names), "molecules": sorted([list(m) for m in molecule_templates])}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- molecule templates
@dataclass(frozen=True)
class MoleculeTemplate:
    """One kind of CG molecule: its beads and the bonds between them (local bead indices)."""

    name: str
    bead_types: tuple[str, ...]
    bead_names: tuple[str, ...]
    bead_masses: tuple[float, ...]
    bonds: tuple[tuple[int, int], ...] = ()

    @property
    def n_beads(self) -> int:
        return len(self.bead_types)


def _check_type_name(name: str) -> None:
    if not isinstance(name, str) or not name or "-" in name or any(c.isspace() for c in name):
        raise InvalidMappingError(f"bead type names must be non-empty and contain neither '-' nor whitespace "
                                  f"('-' joins types in keys such as 'A-B'); got {name!r}")


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a


# ----------------------------------------------------------------------------- the topology
@dataclass(frozen=True, eq=False)
class CGTopology:
    """A coarse-grained system: beads, molecules, bonded tuples and box (MD units; immutable).

    Parameters
    ----------
    bead_types : sequence of str
        Type of every bead, in particle order.
    molecule_index : array of int, shape (n_beads,)
        Molecule of every bead (intra- vs intermolecular interactions).
    bonds : array of int, shape (n_bonds, 2)
        Bonded bead pairs.
    masses : array, shape (n_beads,), optional
        Bead masses in dalton; needed to build a System (a model may be bound to a topology without them).
    box_vectors : array, shape (3, 3), optional
        Periodic box vectors (rows, nm); None for a non-periodic system.
    angles, dihedrals : arrays of int, optional
        Bonded triplets and quadruplets; by default every one along the bonds
        (:func:`angles_from_bonds`, :func:`dihedrals_from_bonds`).
    bead_names : sequence of str, optional
        Per-bead names (default: the types).
    residue_names : sequence of str, optional
        Per-molecule names (default ``"CG"``).
    """

    bead_types: tuple[str, ...]
    molecule_index: np.ndarray
    bonds: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    masses: np.ndarray | None = None
    box_vectors: np.ndarray | None = None
    angles: np.ndarray | None = None
    dihedrals: np.ndarray | None = None
    bead_names: tuple[str, ...] | None = None
    residue_names: tuple[str, ...] | None = None

    def __post_init__(self):
        types = tuple(str(t) for t in self.bead_types)
        n = len(types)
        if n == 0:
            raise InvalidMappingError("a CG topology needs at least one bead")
        for name in set(types):
            _check_type_name(name)
        mol = np.asarray(self.molecule_index, dtype=np.int64).reshape(-1)
        if mol.shape != (n,):
            raise InvalidMappingError(f"molecule_index must have one entry per bead ({n}), got shape {mol.shape}")
        bonds = np.asarray(self.bonds, dtype=np.int64).reshape(-1, 2)
        if bonds.size and (bonds.min() < 0 or bonds.max() >= n or np.any(bonds[:, 0] == bonds[:, 1])):
            raise InvalidMappingError(f"bonds must join two different beads among 0..{n - 1}")
        angles = angles_from_bonds(bonds, n) if self.angles is None else \
            np.asarray(self.angles, dtype=np.int64).reshape(-1, 3)
        dihedrals = dihedrals_from_bonds(bonds, n) if self.dihedrals is None else \
            np.asarray(self.dihedrals, dtype=np.int64).reshape(-1, 4)
        masses = None
        if self.masses is not None:
            masses = np.asarray(self.masses, dtype=float).reshape(-1)
            if masses.shape != (n,):
                raise InvalidMappingError(f"masses must have one entry per bead ({n}), got shape {masses.shape}")
            if not np.all(np.isfinite(masses)) or np.any(masses <= 0):
                bad = np.flatnonzero(~(np.isfinite(masses) & (masses > 0)))[:5].tolist()
                raise InvalidMappingError(f"bead masses must be positive (dalton); beads {bad} have "
                                          f"{masses[bad].tolist()}")
        box = None
        if self.box_vectors is not None:
            from .geometry import as_box

            box = as_box(self.box_vectors, name="box_vectors")
            if abs(np.linalg.det(box)) <= 0:
                raise InvalidMappingError(f"the box vectors {box.tolist()} span no volume")
        names = types if self.bead_names is None else tuple(str(x) for x in self.bead_names)
        if len(names) != n:
            raise InvalidMappingError(f"bead_names must have one entry per bead ({n}), got {len(names)}")
        n_mol = len(np.unique(mol))
        residues = None if self.residue_names is None else tuple(str(x) for x in self.residue_names)
        if residues is not None and len(residues) != n_mol:
            raise InvalidMappingError(f"residue_names must have one entry per molecule ({n_mol}), got {len(residues)}")
        set_ = object.__setattr__
        set_(self, "bead_types", types)
        set_(self, "molecule_index", _readonly(mol))
        set_(self, "bonds", _readonly(bonds))
        set_(self, "angles", _readonly(angles))
        set_(self, "dihedrals", _readonly(dihedrals))
        set_(self, "masses", None if masses is None else _readonly(masses))
        set_(self, "box_vectors", None if box is None else _readonly(box))
        set_(self, "bead_names", names)
        set_(self, "residue_names", residues)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_templates(cls, templates: Sequence[MoleculeTemplate], molecule_types: Sequence[int],
                       box_vectors=None) -> CGTopology:
        """Molecules ``molecule_types`` (template index per molecule, in bead order) replicated from ``templates``."""
        types, names, masses, mol, bonds, residues = [], [], [], [], [], []
        offset = 0
        for m, t in enumerate(molecule_types):
            tpl = templates[int(t)]
            types.extend(tpl.bead_types)
            names.extend(tpl.bead_names)
            masses.extend(tpl.bead_masses)
            mol.extend([m] * tpl.n_beads)
            bonds.extend((offset + i, offset + j) for i, j in tpl.bonds)
            residues.append(tpl.name)
            offset += tpl.n_beads
        return cls(tuple(types), np.asarray(mol, dtype=np.int64), np.asarray(sorted(bonds), dtype=np.int64),
                   np.asarray(masses, dtype=float), box_vectors, bead_names=tuple(names), residue_names=tuple(residues))

    @classmethod
    def from_mapping_data(cls, data: Mapping[str, Any], box_vectors=None) -> CGTopology:
        """The CG topology of a mapping stored as plain data (:meth:`openmm_cgml.mapping.CGMapping.to_data`)."""
        try:
            templates = []
            for mt in data["molecule_types"]:
                beads = [[int(i) for i in b] for b in mt["beads"]]
                atom_mass = [float(x) for x in mt["masses"]]
                templates.append(MoleculeTemplate(
                    name=str(mt["name"]), bead_types=tuple(mt["bead_types"]), bead_names=tuple(mt["bead_names"]),
                    bead_masses=tuple(float(sum(atom_mass[i] for i in b)) for b in beads),
                    bonds=tuple(bead_bonds(beads, mt["bonds"]))))
            order = [int(m["type"]) for m in data["molecules"]]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InvalidMappingError(f"the mapping data is incomplete or malformed: {exc!r}") from exc
        return cls.from_templates(templates, order, box_vectors)

    @classmethod
    def from_dataset(cls, dataset, frame: int | None = -1) -> CGTopology:
        """The CG topology of a coarse-grained dataset (an :class:`~openmm_cgml.dataset.Dataset` or its path).

        The box is that of ``frame`` (None: no box).  The description comes from, in this order: the dataset's
        stored CG topology (``metadata["cg_topology"]``, written by ``map_dataset`` and ``run_simulation``);
        its mapping (``metadata["mapping"]``, older mapped datasets); else its OpenMM topology (atom names as
        bead types, unless ``metadata["bead_types"]`` lists them; residues as molecules).
        """
        from .dataset import Dataset, open_dataset
        from .exceptions import DatasetError

        ds = dataset if isinstance(dataset, Dataset) else open_dataset(dataset)
        box = None
        if frame is not None and ds.box is not None and ds.n_frames:
            try:
                b = np.asarray(ds.box[frame], dtype=float)
            except IndexError:
                raise DatasetError(f"{ds.path} has {ds.n_frames} frames; frame {frame} does not exist") from None
            box = b if np.any(b) else None
        meta = ds.metadata if isinstance(ds.metadata, Mapping) else {}
        if isinstance(meta.get("cg_topology"), Mapping):
            top = cls.from_data(meta["cg_topology"])
        elif isinstance(meta.get("mapping"), Mapping):
            top = cls.from_mapping_data(meta["mapping"])
        else:
            top = cls._from_topology_data(ds.topology_data, meta.get("bead_types"), ds.masses, str(ds.path))
        if top.n_beads != ds.n_particles:
            raise DatasetError(f"{ds.path}: its CG description has {top.n_beads} beads, the dataset "
                               f"{ds.n_particles} particles")
        masses = np.asarray(ds.masses, dtype=float) if ds.masses is not None else top.masses
        return top.replace(masses=masses, box_vectors=box)

    @classmethod
    def _from_topology_data(cls, data, bead_types, masses, where: str) -> CGTopology:
        names, mol, residues = [], [], []
        k = 0
        for chain in data["chains"]:
            for residue in chain["residues"]:
                for atom in residue["atoms"]:
                    names.append(atom["name"])
                    mol.append(k)
                residues.append(residue.get("name", "CG"))
                k += 1
        types = list(bead_types) if bead_types is not None else names
        if len(types) != len(names):
            raise InvalidMappingError(f"{where}: metadata lists {len(types)} bead types for {len(names)} particles")
        bonds = np.asarray(data.get("bonds", []), dtype=np.int64).reshape(-1, 2)
        return cls(tuple(types), np.asarray(mol), bonds, masses, None, bead_names=tuple(names),
                   residue_names=tuple(residues))

    @classmethod
    def from_openmm(cls, topology, masses=None) -> CGTopology:
        """A CG topology from an OpenMM :class:`~openmm.app.Topology` of beads.

        Bead types are the atoms' ``bead_type`` attributes (set by :meth:`to_openmm`) or, without them, the atom
        names; masses the atoms' ``mass`` attributes (dalton), or ``masses`` (an array or an
        :class:`openmm.System`), or the elements' masses; one molecule per residue; bonds and box from the
        topology.
        """
        from .units import strip, system_masses

        atoms = list(topology.atoms())
        if not atoms:
            raise InvalidMappingError("the topology has no atoms")
        types = [str(getattr(a, "bead_type", None) or a.name) for a in atoms]
        if masses is not None and hasattr(masses, "getParticleMass"):
            if masses.getNumParticles() != len(atoms):
                raise InvalidMappingError(f"the System has {masses.getNumParticles()} particles, the topology "
                                          f"{len(atoms)} atoms")
            masses = system_masses(masses).tolist()
        elif masses is None:
            found = []
            for a in atoms:
                m = getattr(a, "mass", None)
                if m is None and a.element is not None:
                    m = a.element.mass
                found.append(None if m is None else strip(m, "mass"))
            masses = None if any(m is None for m in found) else found
        residue_ids = {}
        mol = [residue_ids.setdefault(a.residue.index, len(residue_ids)) for a in atoms]
        residues = [r.name for r in topology.residues() if len(r) > 0]
        bonds = [(b[0].index, b[1].index) for b in topology.bonds()]
        box = topology.getPeriodicBoxVectors()
        return cls(tuple(types), np.asarray(mol), np.asarray(bonds, dtype=np.int64).reshape(-1, 2), masses,
                   None if box is None else strip(box, "length"), bead_names=tuple(a.name for a in atoms),
                   residue_names=tuple(residues))

    def replace(self, **changes) -> CGTopology:
        """A copy with some fields changed (``box_vectors=``, ``masses=``, ...)."""
        data = {k: getattr(self, k) for k in ("bead_types", "molecule_index", "bonds", "masses", "box_vectors",
                                              "angles", "dihedrals", "bead_names", "residue_names")}
        if "bonds" in changes:  # derived tuples follow new bonds unless given
            data["angles"] = data["dihedrals"] = None
        data.update(changes)
        return CGTopology(**data)

    def with_box(self, box_vectors) -> CGTopology:
        """A copy with another periodic box (nm, or a Quantity; None: non-periodic)."""
        return self.replace(box_vectors=box_vectors)

    # ------------------------------------------------------------------ properties
    @property
    def n_beads(self) -> int:
        return len(self.bead_types)

    @property
    def n_molecules(self) -> int:
        return len(np.unique(self.molecule_index))

    @property
    def type_names(self) -> tuple[str, ...]:
        """Distinct bead types, sorted."""
        return tuple(sorted(set(self.bead_types)))

    @property
    def periodic(self) -> bool:
        return self.box_vectors is not None

    def type_pairs(self) -> list[tuple[str, str]]:
        """Every unordered pair of bead types, as canonical keys."""
        return type_pairs(self.type_names)

    def require_masses(self, what: str = "building a System") -> np.ndarray:
        """The masses, or a clear error if the topology has none."""
        if self.masses is None:
            raise InvalidMappingError(f"{what} needs bead masses, and this CG topology has none; build it from a "
                                      "mapping or a dataset, or pass masses")
        return self.masses

    def _molecule_sequences(self) -> list[tuple[str, ...]]:
        seqs: dict[int, list[str]] = {}
        for t, m in zip(self.bead_types, self.molecule_index):
            seqs.setdefault(int(m), []).append(t)
        return [tuple(s) for s in seqs.values()]

    def molecule_templates(self) -> list[tuple[str, ...]]:
        """The distinct bead-type sequences of the molecules (sorted)."""
        return sorted(set(self._molecule_sequences()))

    def molecule_counts(self) -> dict[str, int]:
        """How many molecules of each bead-type sequence (``"A B A"``) the system holds."""
        counts: dict[str, int] = {}
        for seq in self._molecule_sequences():
            key = " ".join(seq)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def fingerprint(self) -> str:
        """The mapping fingerprint (:func:`mapping_fingerprint`) model bundles are checked against."""
        return mapping_fingerprint(self.type_names, self.molecule_templates())

    def mapping_data(self) -> dict:
        """Plain data describing the bead types and molecules, stored in model bundles."""
        return {
            "type_names": list(self.type_names),
            "molecules": [list(t) for t in self.molecule_templates()],
            "molecule_counts": self.molecule_counts(),
            "fingerprint": self.fingerprint(),
        }

    def bonded_tuples(self, kind: str) -> np.ndarray:
        """``"bond"``, ``"angle"`` or ``"dihedral"`` index tuples."""
        try:
            return {"bond": self.bonds, "angle": self.angles, "dihedral": self.dihedrals}[kind]
        except KeyError:
            raise ConfigurationError(f"kind must be 'bond', 'angle' or 'dihedral', got {kind!r}") from None

    def __repr__(self) -> str:
        box = "non-periodic" if self.box_vectors is None else f"box {np.round(np.diag(self.box_vectors), 4).tolist()} nm"
        return (f"CGTopology({self.n_beads} beads, {self.n_molecules} molecules, types {list(self.type_names)}, "
                f"{len(self.bonds)} bonds, {box})")

    # ------------------------------------------------------------------ conversion and serialisation
    def to_openmm(self):
        """The CG :class:`openmm.app.Topology`: one residue per molecule, beads as element-less atoms that carry
        ``bead_type`` and ``mass`` (dalton) attributes, the CG bonds and the box."""
        from openmm import Vec3, app, unit

        top = app.Topology()
        chain = top.addChain("A")
        atoms = []
        residue = None
        current = None
        k = 0
        for i, m in enumerate(self.molecule_index):
            if m != current:
                name = self.residue_names[k] if self.residue_names is not None else "CG"
                residue = top.addResidue(name, chain, str(k + 1))
                current = m
                k += 1
            atom = top.addAtom(self.bead_names[i], None, residue)
            atom.bead_type = self.bead_types[i]
            atom.mass = None if self.masses is None else float(self.masses[i])
            atoms.append(atom)
        for i, j in self.bonds:
            top.addBond(atoms[i], atoms[j])
        if self.box_vectors is not None:
            top.setPeriodicBoxVectors([Vec3(*row) for row in self.box_vectors] * unit.nanometer)
        return top

    def to_data(self) -> dict[str, Any]:
        """Plain JSON-ready data (read back by :meth:`from_data`)."""
        return {
            "format": CG_TOPOLOGY_FORMAT, "format_version": _FORMAT_VERSION,
            "bead_types": list(self.bead_types), "bead_names": list(self.bead_names),
            "residue_names": None if self.residue_names is None else list(self.residue_names),
            "molecule_index": self.molecule_index.tolist(), "bonds": self.bonds.tolist(),
            "angles": self.angles.tolist(), "dihedrals": self.dihedrals.tolist(),
            "masses": None if self.masses is None else self.masses.tolist(),
            "box_vectors": None if self.box_vectors is None else self.box_vectors.tolist(),
        }

    def to_json(self, path=None) -> str:
        """JSON text of :meth:`to_data`; written atomically to ``path`` if given."""
        from ._io import write_json

        return write_json(self.to_data(), path)

    @classmethod
    def from_json(cls, source) -> CGTopology:
        """Read a CG topology from a JSON file path or a JSON string (:meth:`to_json`)."""
        from ._io import read_json

        return cls.from_data(read_json(source, "CG topology"))

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> CGTopology:
        """Inverse of :meth:`to_data`."""
        from .exceptions import CorruptFileError

        if data.get("format") != CG_TOPOLOGY_FORMAT:
            raise CorruptFileError(f"not an openmm_cgml CG topology (format {data.get('format')!r}, expected "
                                   f"{CG_TOPOLOGY_FORMAT!r})")
        try:
            return cls(tuple(data["bead_types"]), np.asarray(data["molecule_index"]),
                       np.asarray(data["bonds"], dtype=np.int64).reshape(-1, 2), data.get("masses"),
                       data.get("box_vectors"), np.asarray(data["angles"], dtype=np.int64).reshape(-1, 3),
                       np.asarray(data["dihedrals"], dtype=np.int64).reshape(-1, 4),
                       tuple(data.get("bead_names") or data["bead_types"]),
                       None if data.get("residue_names") is None else tuple(data["residue_names"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(f"the CG topology data is incomplete or malformed: {exc!r}") from exc
