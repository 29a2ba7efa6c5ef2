"""The immutable atom -> bead map :class:`CGMapping`."""

from __future__ import annotations

import json
import logging
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_text
from ..exceptions import CorruptFileError, InvalidMappingError
from ._molecules import MoleculeGraph, atom_symmetry_classes, find_molecules, match_molecule

__all__ = ["CGMapping", "MoleculeType", "MAPPING_FORMAT"]

logger = logging.getLogger(__name__)

MAPPING_FORMAT = "openmm_cgml.mapping"
MAPPING_FORMAT_VERSION = 1
_CONSTRAINT_KEYWORDS = ("hbonds", "allbonds", "hangles")


@dataclass(frozen=True)
class MoleculeType:
    """How one kind of molecule is split into beads (atom indices local to the molecule).

    Attributes
    ----------
    name : str
        Molecule (residue) name, used for the CG residues.
    elements : tuple of str
        Element symbol of every atom, in the molecule's atom order.
    bonds : tuple of (int, int)
        Bonds between local atom indices (sorted pairs).
    masses : tuple of float
        Atom masses in dalton.
    beads : tuple of tuple of int
        Local atom indices of every bead.
    weights : tuple of tuple of float
        Position weights of every bead's atoms (sum to 1 per bead).
    bead_names, bead_types : tuple of str
    """

    name: str
    elements: tuple[str, ...]
    bonds: tuple[tuple[int, int], ...]
    masses: tuple[float, ...]
    beads: tuple[tuple[int, ...], ...]
    weights: tuple[tuple[float, ...], ...]
    bead_names: tuple[str, ...]
    bead_types: tuple[str, ...]

    @property
    def n_atoms(self) -> int:
        return len(self.elements)

    @property
    def n_beads(self) -> int:
        return len(self.beads)

    @property
    def bead_masses(self) -> tuple[float, ...]:
        return tuple(float(sum(self.masses[i] for i in bead)) for bead in self.beads)

    def to_data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "elements": list(self.elements),
            "bonds": [list(b) for b in self.bonds],
            "masses": list(self.masses),
            "beads": [list(b) for b in self.beads],
            "weights": [list(w) for w in self.weights],
            "bead_names": list(self.bead_names),
            "bead_types": list(self.bead_types),
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> MoleculeType:
        return cls(
            name=str(data["name"]),
            elements=tuple(data["elements"]),
            bonds=tuple(tuple(int(x) for x in b) for b in data["bonds"]),
            masses=tuple(float(m) for m in data["masses"]),
            beads=tuple(tuple(int(i) for i in b) for b in data["beads"]),
            weights=tuple(tuple(float(w) for w in ws) for ws in data["weights"]),
            bead_names=tuple(data["bead_names"]),
            bead_types=tuple(data["bead_types"]),
        )


def _atom_masses(topology, masses) -> np.ndarray:
    n = topology.getNumAtoms()
    if masses is None:
        out = []
        for atom in topology.atoms():
            if atom.element is None:
                raise InvalidMappingError(
                    f"atom {atom.index} ({atom.name}) has no element; pass masses= (an array or the openmm.System)"
                )
            out.append(atom.element.mass._value)
        return np.asarray(out, dtype=float)
    if hasattr(masses, "getParticleMass"):
        from openmm import unit

        if masses.getNumParticles() != n:
            raise InvalidMappingError(f"the System has {masses.getNumParticles()} particles, the topology {n} atoms")
        return np.array([masses.getParticleMass(i).value_in_unit(unit.dalton) for i in range(n)])
    arr = np.asarray(masses, dtype=float)
    if arr.shape != (n,):
        raise InvalidMappingError(f"masses must have shape ({n},) to match the topology, got {arr.shape}")
    return arr


def _strip(value, unit_name: str = "nanometer") -> np.ndarray:
    if hasattr(value, "value_in_unit"):
        from openmm import unit

        value = value.value_in_unit(getattr(unit, unit_name))
    return np.asarray(value, dtype=float)


def _letters(k: int) -> str:
    s = ""
    k += 1
    while k:
        k, r = divmod(k - 1, 26)
        s = string.ascii_uppercase[r] + s
    return s


def _weights(spec, groups, masses) -> list[list[float]]:
    out = []
    for b, group in enumerate(groups):
        if isinstance(spec, str):
            if spec == "com":
                w = np.asarray([masses[i] for i in group], dtype=float)
            elif spec == "centroid":
                w = np.ones(len(group))
            else:
                raise InvalidMappingError(f"weights must be 'com', 'centroid' or explicit lists, got {spec!r}")
        else:
            w = np.asarray(spec[b], dtype=float)
            if w.shape != (len(group),):
                raise InvalidMappingError(f"bead {b}: {len(group)} atoms but {w.shape[0]} weights")
        if np.any(w < 0) or w.sum() <= 0:
            raise InvalidMappingError(f"bead {b}: weights must be non-negative with a positive sum, got {w.tolist()}")
        out.append((w / w.sum()).tolist())
    return out


def _check_groups(groups, n_atoms: int, allow_overlap: bool, what: str) -> None:
    if len(groups) == 0:
        raise InvalidMappingError(f"{what}: a mapping needs at least one bead")
    counts = np.zeros(n_atoms, dtype=int)
    for b, group in enumerate(groups):
        if len(group) == 0:
            raise InvalidMappingError(f"{what}: bead {b} has no atoms")
        arr = np.asarray(group, dtype=int)
        if arr.min() < 0 or arr.max() >= n_atoms:
            raise InvalidMappingError(
                f"{what}: bead {b} names atom {int(arr.max())}, but the molecule has atoms 0..{n_atoms - 1}"
            )
        if len(set(arr.tolist())) != len(arr):
            raise InvalidMappingError(f"{what}: bead {b} lists an atom twice: {list(group)}")
        counts[arr] += 1
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        raise InvalidMappingError(
            f"{what}: atoms {missing.tolist()} are in no bead; every atom must be in exactly one bead"
        )
    repeated = np.flatnonzero(counts > 1)
    if repeated.size and not allow_overlap:
        raise InvalidMappingError(
            f"{what}: atoms {repeated.tolist()} are in more than one bead; every atom must be in exactly one "
            "bead (pass allow_overlap=True for an overlapping position map; such a map cannot map forces)"
        )


def _symmetry_types(mol: MoleculeGraph, groups, weights) -> list[int]:
    """Bead classes: beads with the same multiset of (atom symmetry class, weight) are equivalent."""
    classes = atom_symmetry_classes(mol.elements, mol.bonds)
    signatures = [
        tuple(sorted((int(classes[i]), round(w, 9)) for i, w in zip(g, ws))) for g, ws in zip(groups, weights)
    ]
    first: dict[tuple, int] = {}
    return [first.setdefault(s, len(first)) for s in signatures]


@dataclass(frozen=True, eq=False)
class CGMapping:
    """An immutable linear map from atoms to coarse-grained beads.

    Built per molecule type and replicated over every molecule of that type in the
    all-atom topology.  Beads are ordered molecule by molecule (molecules by their
    lowest atom index), and within a molecule in the molecule type's bead order.

    Use the constructors :meth:`from_groups`, :meth:`from_smarts`, :meth:`automatic`
    or :meth:`from_json`.

    Attributes
    ----------
    molecule_types : tuple of MoleculeType
    molecules : tuple of (int, tuple of int)
        For every molecule: its type index and the global index of each of the type's
        local atoms.
    n_atoms : int
        Atoms in the all-atom system.
    """

    molecule_types: tuple[MoleculeType, ...]
    molecules: tuple[tuple[int, tuple[int, ...]], ...]
    n_atoms: int
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        covered = np.zeros(self.n_atoms, dtype=int)
        for t, atoms in self.molecules:
            if len(atoms) != self.molecule_types[t].n_atoms:
                raise InvalidMappingError(
                    f"a molecule of type {self.molecule_types[t].name!r} lists {len(atoms)} atoms, "
                    f"expected {self.molecule_types[t].n_atoms}"
                )
            covered[np.asarray(atoms, dtype=int)] += 1
        if np.any(covered != 1):
            bad = np.flatnonzero(covered != 1)[:10].tolist()
            raise InvalidMappingError(f"atoms {bad} are not in exactly one molecule of the mapping")
        self._build_arrays()

    # ------------------------------------------------------------------ construction
    @classmethod
    def _from_spec(cls, topology, spec: Callable, *, masses=None, molecules: str = "bonds",
                   allow_overlap: bool = False, bead_names=None, bead_types=None, weights="com") -> CGMapping:
        atom_masses = _atom_masses(topology, masses)
        mols = find_molecules(topology, by=molecules)
        references: list[MoleculeGraph] = []
        instances: list[tuple[int, tuple[int, ...]]] = []
        for mol in mols:
            for t, ref in enumerate(references):
                perm = match_molecule(ref, mol)
                if perm is not None:
                    instances.append((t, tuple(int(mol.atoms[p]) for p in perm)))
                    break
            else:
                references.append(mol)
                instances.append((len(references) - 1, mol.atoms))
        names = [ref.residue_name for ref in references]
        types = []
        for t, ref in enumerate(references):
            mol_name = names[t] if names.count(names[t]) == 1 else f"{names[t]}{t}"
            groups, gnames = spec(t, ref)
            what = f"molecule type {t} ({mol_name}, {len(ref.elements)} atoms)"
            _check_groups(groups, len(ref.elements), allow_overlap, what)
            local_masses = atom_masses[np.asarray(ref.atoms)]
            w_spec = _select(weights, t, mol_name)
            ws = _weights(w_spec, groups, local_masses)
            user_names = _select(bead_names, t, mol_name) if bead_names is not None else gnames
            user_types = _select(bead_types, t, mol_name) if bead_types is not None else None
            classes = _symmetry_types(ref, groups, ws)
            if user_types is None:
                if user_names is not None and all(
                    len({user_names[b] for b in range(len(groups)) if classes[b] == c}) == 1 for c in set(classes)
                ) and len(set(user_names)) == len(set(classes)):
                    user_types = list(user_names)
                else:
                    user_types = [f"{mol_name}_{_letters(c)}" for c in classes]
            if user_names is None:
                seen: dict[str, int] = {}
                user_names = []
                for ty in user_types:
                    seen[ty] = seen.get(ty, 0) + 1
                    user_names.append(f"{ty.split('_')[-1]}{seen[ty]}")
            for label, values in (("bead_names", user_names), ("bead_types", user_types)):
                if len(values) != len(groups):
                    raise InvalidMappingError(f"{what}: {len(groups)} beads but {len(values)} {label}")
            types.append(
                MoleculeType(
                    name=mol_name,
                    elements=ref.elements,
                    bonds=ref.bonds,
                    masses=tuple(float(m) for m in local_masses),
                    beads=tuple(tuple(int(i) for i in g) for g in groups),
                    weights=tuple(tuple(float(x) for x in w) for w in ws),
                    bead_names=tuple(str(x) for x in user_names),
                    bead_types=tuple(str(x) for x in user_types),
                )
            )
        return cls(molecule_types=tuple(types), molecules=tuple(instances), n_atoms=len(atom_masses))

    @classmethod
    def from_groups(cls, topology, groups, *, weights="com", bead_names=None, bead_types=None, masses=None,
                    molecules: str = "bonds", allow_overlap: bool = False) -> CGMapping:
        """A mapping from explicit atom groups.

        Parameters
        ----------
        topology : openmm.app.Topology
            The all-atom topology (bonds define molecules and molecule types).
        groups : list of list of int, or dict
            Local atom indices of each bead of a molecule.  A list applies to the only
            molecule type; a dict maps a molecule-type index or residue name to its list.
        weights : {"com", "centroid"} or list of list of float, or dict
            Position weights (normalised per bead).  Explicit weights may be zero for
            atoms that only contribute their force (water mapped to its oxygen).
        bead_names, bead_types : list of str or dict, optional
            Default types follow graph symmetry: symmetric groups share a type.
        masses : array or openmm.System, optional
            Atom masses (default: element masses from the topology).
        molecules : {"bonds", "residues"}
            How molecules are found in the topology.
        allow_overlap : bool
            Allow an atom in several beads (positions only; force mapping is refused).
        """

        def spec(t, ref):
            return [list(g) for g in _select(groups, t, ref.residue_name)], None

        return cls._from_spec(topology, spec, masses=masses, molecules=molecules, allow_overlap=allow_overlap,
                              bead_names=bead_names, bead_types=bead_types, weights=weights)

    @classmethod
    def from_smarts(cls, topology, patterns, molecules_info, *, weights="com", bead_types=None, masses=None,
                    molecules: str = "bonds") -> CGMapping:
        """A mapping whose beads are SMARTS matches.

        Parameters
        ----------
        topology : openmm.app.Topology
        patterns : dict of str to str, or list of (name, smarts)
            Bead name -> SMARTS, tried in order; each match not overlapping an earlier
            bead becomes a bead; hydrogens left out of a pattern join their heavy atom.
        molecules_info : OpenFF Molecule, RDKit Mol, or a list of them
            One per molecule type, matched to the topology's molecules by graph
            (elements and bonds), so their atom order may differ from the topology's.
        """
        from ._partition import rdkit_molecule, smarts_groups

        pats = list(patterns.items()) if isinstance(patterns, Mapping) else [tuple(p) for p in patterns]
        mols = molecules_info if isinstance(molecules_info, (list, tuple)) else [molecules_info]
        rd_graphs = []
        for m in mols:
            rd = rdkit_molecule(m)
            elements = tuple(a.GetSymbol() for a in rd.GetAtoms())
            bonds = tuple(sorted(tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in rd.GetBonds()))
            rd_graphs.append((rd, MoleculeGraph(tuple(range(len(elements))), elements, bonds, "")))

        def spec(t, ref):
            for rd, graph in rd_graphs:
                perm = match_molecule(graph, ref)
                if perm is not None:
                    groups, names = smarts_groups(rd, pats)
                    return [sorted(int(perm[i]) for i in g) for g in groups], names
            raise InvalidMappingError(
                f"no molecule given to from_smarts matches molecule type {t} ({ref.residue_name}, "
                f"{len(ref.elements)} atoms); pass one OpenFF/RDKit molecule per molecule type"
            )

        return cls._from_spec(topology, spec, masses=masses, molecules=molecules, weights=weights,
                              bead_types=bead_types)

    @classmethod
    def automatic(cls, topology, n_beads, *, weights="com", masses=None, molecules: str = "bonds") -> CGMapping:
        """Split every molecule type into ``n_beads`` connected beads of balanced mass.

        ``n_beads`` is an int for all types or a dict (type index or residue name -> int).
        Symmetric partitions are preferred and symmetric beads share a type.
        """
        from ._partition import balanced_partition

        atom_masses = _atom_masses(topology, masses)

        def spec(t, ref):
            k = _select(n_beads, t, ref.residue_name)
            return balanced_partition(ref.elements, ref.bonds, atom_masses[np.asarray(ref.atoms)], k), None

        return cls._from_spec(topology, spec, masses=atom_masses, molecules=molecules, weights=weights)

    # ------------------------------------------------------------------ derived arrays
    def _build_arrays(self) -> None:
        from scipy.sparse import csr_matrix

        bead_type, bead_name, bead_mol, bead_mass, res_names = [], [], [], [], []
        rows, cols, vals = [], [], []
        bonds = []
        offset = 0
        first_bead = []
        for m, (t, atoms) in enumerate(self.molecules):
            mt = self.molecule_types[t]
            atoms = np.asarray(atoms, dtype=int)
            first_bead.append(offset)
            local_bead: dict[int, list[int]] = {}
            for b, (group, ws) in enumerate(zip(mt.beads, mt.weights)):
                for i, w in zip(group, ws):
                    rows.append(offset + b)
                    cols.append(int(atoms[i]))
                    vals.append(w)
                    local_bead.setdefault(i, []).append(b)
            for i, j in mt.bonds:
                for bi in local_bead[i]:
                    for bj in local_bead[j]:
                        if bi != bj:
                            bonds.append(tuple(sorted((offset + bi, offset + bj))))
            bead_type.extend(mt.bead_types)
            bead_name.extend(mt.bead_names)
            bead_mol.extend([m] * mt.n_beads)
            bead_mass.extend(mt.bead_masses)
            res_names.append(mt.name)
            offset += mt.n_beads
        n_beads = offset
        rows_a, cols_a, vals_a = np.asarray(rows), np.asarray(cols), np.asarray(vals, dtype=float)
        c = self._cache
        c["position_matrix"] = csr_matrix((vals_a, (rows_a, cols_a)), shape=(n_beads, self.n_atoms))
        c["force_matrix"] = csr_matrix((np.ones_like(vals_a), (rows_a, cols_a)), shape=(n_beads, self.n_atoms))
        c["entries"] = (rows_a, cols_a, vals_a)
        membership = np.bincount(cols_a, minlength=self.n_atoms)
        c["overlap_atoms"] = np.flatnonzero(membership > 1)
        # reference atom of each bead (first atom with the largest weight) for periodic unwrapping
        ref = np.zeros(n_beads, dtype=int)
        best = np.full(n_beads, -1.0)
        for r, col, v in zip(rows, cols, vals):
            if v > best[r]:
                best[r], ref[r] = v, col
        c["reference_atom"] = ref
        c["bead_of_atom"] = np.full(self.n_atoms, -1, dtype=int)
        c["bead_of_atom"][cols_a] = rows_a
        c["bead_types"] = tuple(bead_type)
        c["bead_names"] = tuple(bead_name)
        c["molecule_index"] = np.asarray(bead_mol, dtype=int)
        c["bead_masses"] = np.asarray(bead_mass, dtype=float)
        c["bonds"] = np.asarray(sorted(set(bonds)), dtype=int).reshape(-1, 2)
        c["residue_names"] = tuple(res_names)
        for v in c.values():
            if isinstance(v, np.ndarray):
                v.flags.writeable = False

    @property
    def n_beads(self) -> int:
        return len(self._cache["bead_types"])

    @property
    def n_molecules(self) -> int:
        return len(self.molecules)

    @property
    def bead_types(self) -> tuple[str, ...]:
        """Type of every bead, in bead order."""
        return self._cache["bead_types"]

    @property
    def bead_names(self) -> tuple[str, ...]:
        return self._cache["bead_names"]

    @property
    def type_names(self) -> tuple[str, ...]:
        """Distinct bead types, sorted."""
        return tuple(sorted(set(self.bead_types)))

    @property
    def bead_masses(self) -> np.ndarray:
        """Bead masses in dalton (sum of the bead's atom masses)."""
        return self._cache["bead_masses"]

    @property
    def molecule_index(self) -> np.ndarray:
        """Molecule of every bead."""
        return self._cache["molecule_index"]

    @property
    def bonds(self) -> np.ndarray:
        """Bead pairs (i < j) whose atoms are bonded, shape (n_bonds, 2)."""
        return self._cache["bonds"]

    @property
    def angles(self) -> np.ndarray:
        """Bead triplets along CG bonds, shape (n, 3)."""
        return _angles(self.bonds, self.n_beads)

    @property
    def dihedrals(self) -> np.ndarray:
        """Bead quadruplets along CG bonds, shape (n, 4)."""
        return _dihedrals(self.bonds, self.n_beads)

    @property
    def position_matrix(self):
        """Sparse (n_beads, n_atoms) matrix of position weights (rows sum to 1)."""
        return self._cache["position_matrix"]

    @property
    def force_matrix(self):
        """Sparse (n_beads, n_atoms) 0/1 matrix: the consistent force map of a non-overlapping mapping."""
        return self._cache["force_matrix"]

    @property
    def overlapping(self) -> bool:
        return bool(self._cache["overlap_atoms"].size)

    def __eq__(self, other) -> bool:
        if not isinstance(other, CGMapping):
            return NotImplemented
        return (self.molecule_types, self.molecules, self.n_atoms) == (
            other.molecule_types, other.molecules, other.n_atoms)

    def __hash__(self) -> int:
        return hash((self.molecule_types, self.n_atoms, len(self.molecules)))

    def __repr__(self) -> str:
        return (f"CGMapping({self.n_atoms} atoms -> {self.n_beads} beads, {self.n_molecules} molecules, "
                f"types {list(self.type_names)})")

    # ------------------------------------------------------------------ checks
    def constraint_violations(self, constraints) -> np.ndarray:
        """Constraints whose atoms lie in different beads, shape (n, 2).

        ``constraints`` is an :class:`openmm.System` or an array of atom pairs.
        """
        if hasattr(constraints, "getNumConstraints"):
            pairs = np.array([constraints.getConstraintParameters(k)[:2]
                              for k in range(constraints.getNumConstraints())], dtype=int).reshape(-1, 2)
        else:
            pairs = np.asarray(constraints, dtype=int).reshape(-1, 2)
        if pairs.size == 0:
            return pairs
        bead = self._cache["bead_of_atom"]
        return pairs[bead[pairs[:, 0]] != bead[pairs[:, 1]]]

    def check_force_mapping(self, constraints=None) -> None:
        """Raise :class:`InvalidMappingError` if forces cannot be mapped consistently.

        Refused: overlapping beads (the consistent force map is not a sum), and
        constraints between atoms of different beads (OpenMM's forces exclude
        constraint forces, which then do not cancel inside a bead).
        """
        over = self._cache["overlap_atoms"]
        if over.size:
            raise InvalidMappingError(
                f"cannot map forces: atoms {over[:10].tolist()} are in more than one bead (overlapping mapping); "
                "the sum-of-forces map needs every atom in exactly one bead"
            )
        if constraints is not None:
            bad = self.constraint_violations(constraints)
            if bad.size:
                raise InvalidMappingError(
                    f"cannot map forces: {len(bad)} constraints join atoms of different beads (first: atoms "
                    f"{bad[0].tolist()}); constraint forces are missing from OpenMM's forces and would not cancel. "
                    "Put constrained atoms in the same bead or run the reference without those constraints"
                )

    # ------------------------------------------------------------------ maps
    def _frames(self, values, what: str):
        arr = _strip(values)
        single = arr.ndim == 2
        if single:
            arr = arr[None]
        if arr.ndim != 3 or arr.shape[1:] != (self.n_atoms, 3):
            raise InvalidMappingError(
                f"{what} must have shape (n_frames, {self.n_atoms}, 3) or ({self.n_atoms}, 3), got {arr.shape}"
            )
        return arr, single

    def _apply(self, matrix, arr):
        f = arr.shape[0]
        flat = np.ascontiguousarray(arr.transpose(1, 0, 2)).reshape(self.n_atoms, f * 3)
        out = np.asarray(matrix @ flat).reshape(matrix.shape[0], f, 3).transpose(1, 0, 2)
        return np.ascontiguousarray(out)

    def map_positions(self, positions, box=None) -> np.ndarray:
        """Bead positions (nm) from atom positions.

        Parameters
        ----------
        positions : array, shape (n_frames, n_atoms, 3) or (n_atoms, 3)
            nm (or an openmm Quantity).
        box : array, shape (n_frames, 3, 3) or (3, 3), optional
            Box vectors (rows, nm).  When given, every atom is first placed at the
            minimum image of its bead's reference atom, so beads split by the periodic
            boundary map correctly.

        Returns
        -------
        ndarray, shape like ``positions`` with n_beads particles.
        """
        arr, single = self._frames(positions, "positions")
        if box is None:
            out = self._apply(self.position_matrix, arr)
        else:
            rows, cols, vals = self._cache["entries"]
            b = _strip(box)
            b = np.broadcast_to(b if b.ndim == 3 else b[None], (arr.shape[0], 3, 3))
            ref = self._cache["reference_atom"]
            d = arr[:, cols] - arr[:, ref[rows]]
            if np.all(b == b[:, np.arange(3), np.arange(3)][:, :, None] * np.eye(3)):  # rectangular: one rounding
                lengths = b[:, np.arange(3), np.arange(3)][:, None, :]
                d -= lengths * np.round(d / lengths)
            else:
                d = minimum_image(d, b)
            if "entry_matrix" not in self._cache:
                from scipy.sparse import csr_matrix

                self._cache["entry_matrix"] = csr_matrix((vals, (rows, np.arange(len(rows)))),
                                                         shape=(self.n_beads, len(rows)))
            f = arr.shape[0]
            flat = np.ascontiguousarray(d.transpose(1, 0, 2)).reshape(len(rows), f * 3)
            delta = np.asarray(self._cache["entry_matrix"] @ flat).reshape(self.n_beads, f, 3).transpose(1, 0, 2)
            out = arr[:, ref] + delta
        return out[0] if single else out

    def map_velocities(self, velocities) -> np.ndarray:
        """Bead velocities (nm/ps): the time derivative of the position map."""
        arr, single = self._frames(velocities, "velocities")
        out = self._apply(self.position_matrix, arr)
        return out[0] if single else out

    def map_forces(self, forces, constraints=None) -> np.ndarray:
        """Bead forces (kJ/mol/nm): the sum of the atomic forces of each bead.

        Parameters
        ----------
        forces : array, shape (n_frames, n_atoms, 3) or (n_atoms, 3)
        constraints : openmm.System or array of atom pairs, optional
            Checked with :meth:`check_force_mapping` (overlaps are always refused).
        """
        self.check_force_mapping(constraints)
        arr, single = self._frames(forces, "forces")
        out = self._apply(self.force_matrix, arr)
        return out[0] if single else out

    # ------------------------------------------------------------------ CG description
    def to_topology(self, box_vectors=None):
        """The CG :class:`openmm.app.Topology`: one residue per molecule, beads as element-less atoms.

        Every bead atom carries ``bead_type`` and ``mass`` (dalton) attributes; CG bonds join
        beads whose atoms are bonded.
        """
        from openmm import Vec3, app, unit

        top = app.Topology()
        chain = top.addChain("A")
        atoms = []
        k = 0
        for m, (t, _) in enumerate(self.molecules):
            mt = self.molecule_types[t]
            residue = top.addResidue(mt.name, chain, str(m + 1))
            for name, btype, mass in zip(mt.bead_names, mt.bead_types, mt.bead_masses):
                atom = top.addAtom(name, None, residue)
                atom.bead_type = btype
                atom.mass = mass
                atoms.append(atom)
                k += 1
        for i, j in self.bonds:
            top.addBond(atoms[i], atoms[j])
        if box_vectors is not None:
            b = _strip(box_vectors)
            top.setPeriodicBoxVectors([Vec3(*row) for row in b] * unit.nanometer)
        return top

    def system_info(self, box_vectors=None):
        """The :class:`~openmm_cgml.forces.base.CGSystemInfo` of the CG system."""
        from ..forces.base import CGSystemInfo

        box = None if box_vectors is None else np.array(_strip(box_vectors), dtype=float).reshape(3, 3)
        return CGSystemInfo(
            bead_types=self.bead_types,
            molecule_index=np.array(self.molecule_index),
            bonds=np.array(self.bonds),
            masses=np.array(self.bead_masses),
            box_vectors=box,
            angles=self.angles,
            dihedrals=self.dihedrals,
        )

    # ------------------------------------------------------------------ serialisation
    def to_data(self) -> dict[str, Any]:
        """Plain JSON-ready data; molecules with contiguous atoms are stored as ``start``."""
        mols = []
        for t, atoms in self.molecules:
            a = np.asarray(atoms)
            if np.array_equal(a, np.arange(a[0], a[0] + len(a))):
                mols.append({"type": t, "start": int(a[0])})
            else:
                mols.append({"type": t, "atoms": [int(x) for x in a]})
        return {
            "format": MAPPING_FORMAT,
            "format_version": MAPPING_FORMAT_VERSION,
            "n_atoms": self.n_atoms,
            "molecule_types": [mt.to_data() for mt in self.molecule_types],
            "molecules": mols,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> CGMapping:
        if data.get("format") != MAPPING_FORMAT:
            raise CorruptFileError(f"not an openmm_cgml mapping (format {data.get('format')!r}, "
                                   f"expected {MAPPING_FORMAT!r})")
        if int(data.get("format_version", -1)) != MAPPING_FORMAT_VERSION:
            raise CorruptFileError(f"mapping format version {data.get('format_version')} is not "
                                   f"{MAPPING_FORMAT_VERSION}")
        types = tuple(MoleculeType.from_data(d) for d in data["molecule_types"])
        mols = []
        for m in data["molecules"]:
            t = int(m["type"])
            if "start" in m:
                atoms = tuple(range(int(m["start"]), int(m["start"]) + types[t].n_atoms))
            else:
                atoms = tuple(int(x) for x in m["atoms"])
            mols.append((t, atoms))
        return cls(molecule_types=types, molecules=tuple(mols), n_atoms=int(data["n_atoms"]))

    def to_json(self, path=None) -> str:
        """JSON text of the mapping; written atomically to ``path`` if given."""
        text = json.dumps(self.to_data(), indent=1)
        if path is not None:
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_json(cls, source) -> CGMapping:
        """Read a mapping from a JSON file path or a JSON string."""
        text = str(source)
        if not text.lstrip().startswith("{"):
            path = Path(source)
            try:
                text = path.read_text()
            except OSError as exc:
                raise CorruptFileError(f"cannot read mapping file {path}: {exc.strerror}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CorruptFileError(f"mapping JSON is invalid: {exc}") from exc
        return cls.from_data(data)


def _select(value, t: int, name: str):
    """Pick the entry of a per-molecule-type option (dict by index or residue name, else shared)."""
    if isinstance(value, Mapping):
        for key in (t, name, str(t)):
            if key in value:
                return value[key]
        raise InvalidMappingError(
            f"no entry for molecule type {t} ({name!r}); given keys: {sorted(map(str, value))}"
        )
    return value


def minimum_image(d: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Minimum-image displacement vectors ``d`` (F, n, 3) for reduced triclinic boxes (F, 3, 3)."""
    d = np.array(d, dtype=float, copy=True)
    for k in (2, 1, 0):
        vec = box[:, k][:, None, :]
        shift = np.floor(d[..., k] / vec[..., k] + 0.5)
        d -= shift[..., None] * vec
    return d


def _angles(bonds: np.ndarray, n: int) -> np.ndarray:
    nbrs: list[set[int]] = [set() for _ in range(n)]
    for i, j in bonds:
        nbrs[i].add(int(j))
        nbrs[j].add(int(i))
    out = []
    for j in range(n):
        nb = sorted(nbrs[j])
        for a in range(len(nb)):
            for b in range(a + 1, len(nb)):
                out.append((nb[a], j, nb[b]))
    return np.asarray(out, dtype=int).reshape(-1, 3)


def _dihedrals(bonds: np.ndarray, n: int) -> np.ndarray:
    nbrs: list[set[int]] = [set() for _ in range(n)]
    for i, j in bonds:
        nbrs[i].add(int(j))
        nbrs[j].add(int(i))
    out = set()
    for j, k in bonds:
        for i in nbrs[j] - {k}:
            for m in nbrs[k] - {j}:
                if i != m:
                    q = (i, int(j), int(k), m)
                    out.add(min(q, q[::-1]))
    return np.asarray(sorted(out), dtype=int).reshape(-1, 4)


def as_sequence(x) -> Sequence:
    return x if isinstance(x, (list, tuple)) else [x]
