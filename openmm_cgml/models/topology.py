"""The system description a model is bound to, and the mapping fingerprint stored in bundles.

Plain NumPy data only, so the mapping work (``openmm_cgml.mapping``) and the builder can
hand their objects over as arrays: :func:`model_topology` accepts a
:class:`~openmm_cgml.forces.base.CGSystemInfo`, anything with the same attributes, or a
coarse-grained :class:`~openmm_cgml.dataset.Dataset`.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import ConfigurationError, InvalidMappingError
from ..forces.base import CGSystemInfo, mapping_fingerprint

__all__ = ["ModelTopology", "model_topology", "mapping_fingerprint", "angles_from_bonds"]


def angles_from_bonds(bonds: np.ndarray, n_beads: int) -> np.ndarray:
    """All bonded triplets ``(i, j, k)`` (``j`` the apex, ``i < k``) implied by ``bonds``."""
    neighbours: list[set[int]] = [set() for _ in range(n_beads)]
    for a, b in np.asarray(bonds, dtype=int).reshape(-1, 2):
        neighbours[a].add(int(b))
        neighbours[b].add(int(a))
    angles = [(i, j, k) for j in range(n_beads) for i in sorted(neighbours[j]) for k in sorted(neighbours[j]) if i < k]
    return np.asarray(angles, dtype=int).reshape(-1, 3)


#: The system description a model is bound to: the builder's :class:`CGSystemInfo` (one class for both).
ModelTopology = CGSystemInfo


def model_topology(source) -> ModelTopology:
    """Build a :class:`ModelTopology` from a ``CGSystemInfo``-like object or a coarse-grained dataset.

    For datasets the mapping stored by :func:`openmm_cgml.mapping.map_dataset`
    (``metadata["mapping"]``) is used when present; otherwise the bead types are
    ``metadata["bead_types"]`` or the atom names, molecules the residues, bonds the topology bonds.
    """
    if hasattr(source, "bead_types") and hasattr(source, "molecule_index"):
        bead_types = tuple(str(t) for t in source.bead_types)
        n = len(bead_types)
        bonds = np.asarray(getattr(source, "bonds", np.zeros((0, 2))), dtype=int).reshape(-1, 2)
        angles = getattr(source, "angles", None)
        angles = np.asarray(angles, dtype=int).reshape(-1, 3) if angles is not None and len(angles) else \
            angles_from_bonds(bonds, n)
        box = getattr(source, "box_vectors", None)
        masses = getattr(source, "masses", None)
        return CGSystemInfo(bead_types, np.asarray(source.molecule_index, dtype=int), bonds,
                            None if masses is None else np.asarray(masses, dtype=float),
                            None if box is None else np.asarray(box, dtype=float), angles,
                            np.asarray(getattr(source, "dihedrals", np.zeros((0, 4))), dtype=int).reshape(-1, 4))
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
        return CGSystemInfo(top.bead_types, top.molecule_index, top.bonds, np.asarray(ds.masses, dtype=float),
                            None if box is None else np.asarray(box, dtype=float), top.angles)
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
    return CGSystemInfo(tuple(str(t) for t in bead_types), np.asarray(mol, dtype=int), bonds,
                        np.asarray(ds.masses, dtype=float), box, angles_from_bonds(bonds, len(names)))
