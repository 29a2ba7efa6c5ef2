"""The immutable atom -> bead map :class:`CGMapping`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._io import package_versions, read_json, write_json
from ..exceptions import CorruptFileError, InvalidMappingError
from ..geometry import minimum_image
from ..topology import CGTopology, MoleculeTemplate, bead_bonds
from ..units import strip

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
    force_weights : tuple of tuple of float, optional
        The force map, one row per bead over all the molecule's atoms (:func:`~openmm_cgml.mapping.optimal_force_map`);
        None: the sum of the bead's own atomic forces.
    """

    name: str
    elements: tuple[str, ...]
    bonds: tuple[tuple[int, int], ...]
    masses: tuple[float, ...]
    beads: tuple[tuple[int, ...], ...]
    weights: tuple[tuple[float, ...], ...]
    bead_names: tuple[str, ...]
    bead_types: tuple[str, ...]
    force_weights: tuple[tuple[float, ...], ...] | None = None

    @property
    def n_atoms(self) -> int:
        return len(self.elements)

    @property
    def n_beads(self) -> int:
        return len(self.beads)

    @property
    def bead_masses(self) -> tuple[float, ...]:
        return tuple(float(sum(self.masses[i] for i in bead)) for bead in self.beads)

    def position_map(self) -> np.ndarray:
        """The position weights as a dense (n_beads, n_atoms) matrix c: bead J at sum_i c_Ji x_i."""
        c = np.zeros((self.n_beads, self.n_atoms))
        for b, (group, ws) in enumerate(zip(self.beads, self.weights)):
            c[b, list(group)] = ws
        return c

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
            **({"force_weights": [list(w) for w in self.force_weights]} if self.force_weights is not None else {}),
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
            force_weights=(None if data.get("force_weights") is None
                           else tuple(tuple(float(w) for w in row) for row in data["force_weights"])),
        )


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
        for mt in self.molecule_types:
            if mt.force_weights is not None:
                _check_force_weights(mt)
        self._build_arrays()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_groups(cls, topology, groups, **options) -> CGMapping:
        """A mapping from explicit atom groups (:func:`openmm_cgml.mapping.from_groups` takes the options)."""
        from ._schemes import from_groups

        return from_groups(topology, groups, **options)

    @classmethod
    def from_smarts(cls, topology, patterns, molecules_info, **options) -> CGMapping:
        """A mapping whose beads are SMARTS matches (:func:`openmm_cgml.mapping.from_smarts`)."""
        from ._schemes import from_smarts

        return from_smarts(topology, patterns, molecules_info, **options)

    @classmethod
    def automatic(cls, topology, n_beads, **options) -> CGMapping:
        """``n_beads`` connected beads of balanced mass per molecule type (:func:`openmm_cgml.mapping.automatic`)."""
        from ._schemes import automatic

        return automatic(topology, n_beads, **options)

    # ------------------------------------------------------------------ derived arrays
    def _build_arrays(self) -> None:
        from scipy.sparse import csr_matrix

        templates = [MoleculeTemplate(name=mt.name, bead_types=mt.bead_types, bead_names=mt.bead_names,
                                      bead_masses=mt.bead_masses, bonds=tuple(bead_bonds(mt.beads, mt.bonds)))
                     for mt in self.molecule_types]
        topology = CGTopology.from_templates(templates, [t for t, _ in self.molecules])
        rows, cols, vals = [], [], []
        offset = 0
        for t, atoms in self.molecules:
            mt = self.molecule_types[t]
            atoms = np.asarray(atoms, dtype=int)
            for b, (group, ws) in enumerate(zip(mt.beads, mt.weights)):
                for i, w in zip(group, ws):
                    rows.append(offset + b)
                    cols.append(int(atoms[i]))
                    vals.append(w)
            offset += mt.n_beads
        n_beads = offset
        rows_a, cols_a, vals_a = np.asarray(rows), np.asarray(cols), np.asarray(vals, dtype=float)
        c = self._cache
        c["topology"] = topology
        c["position_matrix"] = csr_matrix((vals_a, (rows_a, cols_a)), shape=(n_beads, self.n_atoms))
        f_rows, f_cols, f_vals, off = [], [], [], 0
        for t, atoms in self.molecules:
            mt = self.molecule_types[t]
            atoms = np.asarray(atoms, dtype=int)
            if mt.force_weights is None:  # the sum of each bead's own atomic forces
                for b, group in enumerate(mt.beads):
                    f_rows += [off + b] * len(group)
                    f_cols += atoms[list(group)].tolist()
                    f_vals += [1.0] * len(group)
            else:
                for b, row in enumerate(mt.force_weights):
                    nz = [i for i, w in enumerate(row) if w != 0.0]
                    f_rows += [off + b] * len(nz)
                    f_cols += atoms[nz].tolist()
                    f_vals += [row[i] for i in nz]
            off += mt.n_beads
        c["force_matrix"] = csr_matrix((np.asarray(f_vals, float), (np.asarray(f_rows, int), np.asarray(f_cols, int))),
                                       shape=(n_beads, self.n_atoms))
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
        for v in c.values():
            if isinstance(v, np.ndarray):
                v.flags.writeable = False

    @property
    def n_beads(self) -> int:
        return self._cache["topology"].n_beads

    @property
    def n_molecules(self) -> int:
        return len(self.molecules)

    @property
    def bead_types(self) -> tuple[str, ...]:
        """Type of every bead, in bead order."""
        return self._cache["topology"].bead_types

    @property
    def bead_names(self) -> tuple[str, ...]:
        return self._cache["topology"].bead_names

    @property
    def type_names(self) -> tuple[str, ...]:
        """Distinct bead types, sorted."""
        return tuple(sorted(set(self.bead_types)))

    @property
    def bead_masses(self) -> np.ndarray:
        """Bead masses in dalton (sum of the bead's atom masses)."""
        return self._cache["topology"].masses

    @property
    def molecule_index(self) -> np.ndarray:
        """Molecule of every bead."""
        return self._cache["topology"].molecule_index

    @property
    def bonds(self) -> np.ndarray:
        """Bead pairs (i < j) whose atoms are bonded, shape (n_bonds, 2)."""
        return self._cache["topology"].bonds

    @property
    def angles(self) -> np.ndarray:
        """Bead triplets along CG bonds, shape (n, 3)."""
        return self._cache["topology"].angles

    @property
    def dihedrals(self) -> np.ndarray:
        """Bead quadruplets along CG bonds, shape (n, 4)."""
        return self._cache["topology"].dihedrals

    @property
    def position_matrix(self):
        """Sparse (n_beads, n_atoms) matrix of position weights (rows sum to 1)."""
        return self._cache["position_matrix"]

    @property
    def force_matrix(self):
        """Sparse (n_beads, n_atoms) force map: 0/1 (the sum of each bead's atomic forces, the consistent map of a
        non-overlapping mapping) unless the molecule types carry ``force_weights``."""
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
        if any(mt.force_weights is not None for mt in self.molecule_types):
            # a general force map: a constraint force cancels only between atoms the map weighs alike
            columns = self.force_matrix.T.tocsr()
            diff = abs(columns[pairs[:, 0]] - columns[pairs[:, 1]])
            return pairs[np.asarray(diff.max(axis=1).todense()).ravel() > 1e-9]
        bead = self._cache["bead_of_atom"]
        return pairs[bead[pairs[:, 0]] != bead[pairs[:, 1]]]

    def check_force_mapping(self, constraints=None) -> None:
        """Raise :class:`InvalidMappingError` if forces cannot be mapped consistently.

        Refused: overlapping beads (the consistent force map is not a sum), and
        constraints between atoms of different beads (OpenMM's forces exclude
        constraint forces, which then do not cancel inside a bead); with a general force map (``force_weights``),
        constraints between atoms the map weighs differently.
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
    def _frames(self, values, what: str, kind: str = "length"):
        arr = np.asarray(strip(values, kind, name=what), dtype=float)
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
            b = np.asarray(strip(box, "length", name="box"), dtype=float)
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
        arr, single = self._frames(velocities, "velocities", "velocity")
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
        arr, single = self._frames(forces, "forces", "force")
        out = self._apply(self.force_matrix, arr)
        return out[0] if single else out

    # ------------------------------------------------------------------ CG description
    def cg_topology(self, box_vectors=None) -> CGTopology:
        """The :class:`~openmm_cgml.topology.CGTopology` of the mapped system (bead types, names, masses,
        molecules, bonds between beads whose atoms are bonded, angles and dihedrals along them), with the box
        ``box_vectors`` (nm or a Quantity; None: non-periodic)."""
        top = self._cache["topology"]
        return top if box_vectors is None else top.with_box(box_vectors)

    def to_topology(self, box_vectors=None):
        """The CG :class:`openmm.app.Topology` (:meth:`CGTopology.to_openmm <openmm_cgml.topology.CGTopology.to_openmm>`):
        one residue per molecule, beads as element-less atoms with ``bead_type`` and ``mass`` attributes."""
        return self.cg_topology(box_vectors).to_openmm()

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
            "package_versions": package_versions(),
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
        return write_json(self.to_data(), path)

    @classmethod
    def from_json(cls, source) -> CGMapping:
        """Read a mapping from a JSON file path or a JSON string."""
        data = read_json(source, "mapping")
        return cls.from_data(data)


def _check_force_weights(mt: MoleculeType, tolerance: float = 1e-6) -> None:
    """A force map is consistent with the position map when sum_i w_Ii c_Ji = delta_IJ (every bead's mapped force
    then estimates its mean force); refuse one that is not, or has the wrong shape."""
    w = np.asarray(mt.force_weights, dtype=float)
    if w.shape != (mt.n_beads, mt.n_atoms):
        raise InvalidMappingError(f"molecule type {mt.name!r}: force_weights must have one row per bead and one column "
                                  f"per atom, shape ({mt.n_beads}, {mt.n_atoms}); got {w.shape}")
    product = w @ mt.position_map().T
    if not np.allclose(product, np.eye(mt.n_beads), atol=tolerance):
        raise InvalidMappingError(f"molecule type {mt.name!r}: the force map is not consistent with the position map "
                                  f"(sum_i w_Ii c_Ji must be 1 for I = J and 0 otherwise; largest deviation "
                                  f"{np.abs(product - np.eye(mt.n_beads)).max():.3g})")


def as_sequence(x) -> Sequence:
    return x if isinstance(x, (list, tuple)) else [x]
