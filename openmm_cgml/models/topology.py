"""The system description a model is bound to, and the mapping fingerprint stored in bundles.

Plain NumPy data only, so the mapping work (``openmm_cgml.mapping``) and the builder can
hand their objects over as arrays: :func:`model_topology` accepts a
:class:`~openmm_cgml.forces.base.CGSystemInfo`, anything with the same attributes, or a
coarse-grained :class:`~openmm_cgml.dataset.Dataset`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..exceptions import ConfigurationError, InvalidMappingError

__all__ = ["ModelTopology", "model_topology", "mapping_fingerprint", "angles_from_bonds"]


def angles_from_bonds(bonds: np.ndarray, n_beads: int) -> np.ndarray:
    """All bonded triplets ``(i, j, k)`` (``j`` the apex, ``i < k``) implied by ``bonds``."""
    neighbours: list[set[int]] = [set() for _ in range(n_beads)]
    for a, b in np.asarray(bonds, dtype=int).reshape(-1, 2):
        neighbours[a].add(int(b))
        neighbours[b].add(int(a))
    angles = [(i, j, k) for j in range(n_beads) for i in sorted(neighbours[j]) for k in sorted(neighbours[j]) if i < k]
    return np.asarray(angles, dtype=int).reshape(-1, 3)


@dataclass(frozen=True)
class ModelTopology:
    """Bead types, molecules and bonded indices of a CG system (what a model needs to be bound).

    Attributes
    ----------
    bead_types : tuple of str
        Type of every bead.
    molecule_index : ndarray of int (n_beads,)
    bonds : ndarray of int (n_bonds, 2)
    angles : ndarray of int (n_angles, 3)
    box_vectors : ndarray (3, 3) or None
        nm.
    masses : ndarray (n_beads,) or None
        dalton.
    """

    bead_types: tuple[str, ...]
    molecule_index: np.ndarray
    bonds: np.ndarray
    angles: np.ndarray
    box_vectors: np.ndarray | None = None
    masses: np.ndarray | None = field(default=None)

    @property
    def n_beads(self) -> int:
        return len(self.bead_types)

    @property
    def type_names(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.bead_types)))

    def molecule_templates(self) -> list[tuple[str, ...]]:
        """The distinct bead-type sequences of the molecules (sorted)."""
        seqs: dict[int, list[str]] = {}
        for t, m in zip(self.bead_types, self.molecule_index):
            seqs.setdefault(int(m), []).append(t)
        return sorted({tuple(s) for s in seqs.values()})

    def molecule_counts(self) -> dict[str, int]:
        seqs: dict[int, list[str]] = {}
        for t, m in zip(self.bead_types, self.molecule_index):
            seqs.setdefault(int(m), []).append(t)
        counts: dict[str, int] = {}
        for s in seqs.values():
            key = " ".join(s)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def fingerprint(self) -> str:
        return mapping_fingerprint(self.type_names, self.molecule_templates())

    def mapping_data(self) -> dict:
        """Plain data describing the mapping, stored in model bundles."""
        return {
            "type_names": list(self.type_names),
            "molecules": [list(t) for t in self.molecule_templates()],
            "molecule_counts": self.molecule_counts(),
            "fingerprint": self.fingerprint(),
        }


def mapping_fingerprint(type_names: Sequence[str], molecule_templates: Sequence[Sequence[str]]) -> str:
    """A short hash of the bead types and the bead-type sequence of each distinct molecule."""
    data = {"types": sorted(type_names), "molecules": sorted([list(m) for m in molecule_templates])}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def model_topology(source) -> ModelTopology:
    """Build a :class:`ModelTopology` from a ``CGSystemInfo``-like object or a coarse-grained dataset.

    For datasets the mapping stored by :func:`openmm_cgml.mapping.map_dataset`
    (``metadata["mapping"]``) is used when present; otherwise the bead types are
    ``metadata["bead_types"]`` or the atom names, molecules the residues, bonds the topology bonds.
    """
    if isinstance(source, ModelTopology):
        return source
    if hasattr(source, "bead_types") and hasattr(source, "molecule_index"):
        bead_types = tuple(str(t) for t in source.bead_types)
        n = len(bead_types)
        bonds = np.asarray(getattr(source, "bonds", np.zeros((0, 2))), dtype=int).reshape(-1, 2)
        angles = getattr(source, "angles", None)
        angles = np.asarray(angles, dtype=int).reshape(-1, 3) if angles is not None and len(angles) else \
            angles_from_bonds(bonds, n)
        box = getattr(source, "box_vectors", None)
        masses = getattr(source, "masses", None)
        return ModelTopology(bead_types, np.asarray(source.molecule_index, dtype=int), bonds, angles,
                             None if box is None else np.asarray(box, dtype=float),
                             None if masses is None else np.asarray(masses, dtype=float))
    if hasattr(source, "topology_data") and hasattr(source, "positions"):
        return _from_dataset(source)
    raise ConfigurationError(
        f"cannot describe a CG system from a {type(source).__name__}; expected a CGSystemInfo, "
        "a ModelTopology or a coarse-grained Dataset"
    )


def _from_dataset(ds) -> ModelTopology:
    if isinstance(ds.metadata.get("mapping"), dict):
        # Written by openmm_cgml.mapping.map_dataset: the mapping itself is the authority.
        from ..mapping import CGMapping

        top = model_topology(CGMapping.from_data(ds.metadata["mapping"]))
        box = ds.box[0] if ds.box is not None and len(ds.box) and np.any(ds.box[0]) else None
        return ModelTopology(top.bead_types, top.molecule_index, top.bonds, top.angles,
                             None if box is None else np.asarray(box, dtype=float), np.asarray(ds.masses, dtype=float))
    data = ds.topology_data
    names, mol = [], []
    res_index = 0
    for chain in data["chains"]:
        for residue in chain["residues"]:
            for atom in residue["atoms"]:
                names.append(atom["name"])
                mol.append(res_index)
            res_index += 1
    bead_types = ds.metadata.get("bead_types", names)
    if len(bead_types) != len(names):
        raise InvalidMappingError(
            f"dataset {ds.path}: metadata lists {len(bead_types)} bead types for {len(names)} particles"
        )
    bonds = np.asarray(data.get("bonds", []), dtype=int).reshape(-1, 2)
    box = ds.box[0] if ds.box is not None and len(ds.box) and np.any(ds.box[0]) else None
    return ModelTopology(tuple(str(t) for t in bead_types), np.asarray(mol, dtype=int), bonds,
                         angles_from_bonds(bonds, len(names)), box, np.asarray(ds.masses, dtype=float))
