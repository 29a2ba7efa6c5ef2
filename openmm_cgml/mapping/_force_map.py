"""The least-noise force map (Krämer et al., J. Phys. Chem. Lett. 2023: statistically optimal force
aggregation).

A mapped force estimates the mean force of the CG coordinates for any linear force map ``w`` with
sum_i w_Ii c_Ji = delta_IJ (``c`` the position map): the usual sum of a bead's atomic forces is one such map,
not the least noisy.  Among the maps over a molecule's atoms (a bead's force may draw on its neighbours' atoms),
with atoms joined by constraints weighed alike (their constraint forces, absent from OpenMM's forces, then
cancel), the one of least variance of the mapped force over the data is

    W = (C^-1 A^T (A C^-1 A^T)^-1)^T,

with C the second-moment matrix of the constraint groups' summed forces and A[J, g] = sum_{i in g} c_Ji.  The mean
force is the same for every valid map, so less variance is less noise: the same AA frames give better training
targets for force matching at no extra AA cost.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import InvalidMappingError

__all__ = ["optimal_force_map"]


def _groups(n_atoms: int, pairs: np.ndarray) -> np.ndarray:
    """Group index of every atom of a molecule: atoms joined (directly or not) by a constraint share a group."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n_atoms, n_atoms))
    return connected_components(graph, directed=False)[1]


def optimal_force_map(mapping, forces, constraints=None, *, ridge: float = 1e-9):
    """The mapping with its least-noise force map (module docstring) fitted on ``forces``.

    Parameters
    ----------
    mapping : CGMapping
    forces : array (n_frames, n_atoms, 3)
        AA forces (kJ/mol/nm) of frames of the system the mapping is for (a few hundred frames are plenty).
    constraints : array of atom pairs or openmm.System, optional
        The AA constraints (their atoms get equal weights).
    ridge : float
        Added to C's diagonal, relative to its mean diagonal.

    Returns
    -------
    (CGMapping, dict)
        The mapping with ``force_weights`` on every molecule type, and per bead type the variance of its mapped
        force with the fitted map over that with the sum map (``variance_ratio``: below 1 is less noise).
    """
    from dataclasses import replace

    from ._mapping import CGMapping

    f = np.asarray(forces, dtype=np.float64)
    if f.ndim != 3 or f.shape[1:] != (mapping.n_atoms, 3):
        raise InvalidMappingError(f"forces must have shape (n_frames, {mapping.n_atoms}, 3), got {f.shape}")
    if f.shape[0] < 2:
        raise InvalidMappingError("fitting a force map needs forces of at least 2 frames")
    if hasattr(constraints, "getNumConstraints"):
        constraints = [constraints.getConstraintParameters(k)[:2] for k in range(constraints.getNumConstraints())]
    pairs = np.asarray(constraints if constraints is not None else [], dtype=int).reshape(-1, 2)
    # every atom's molecule and index within it: constraints inside a molecule, in local atom indices
    molecule_of, local_of = np.full(mapping.n_atoms, -1), np.zeros(mapping.n_atoms, dtype=int)
    for m, (_, atoms) in enumerate(mapping.molecules):
        molecule_of[list(atoms)], local_of[list(atoms)] = m, np.arange(len(atoms))
    inside = pairs[molecule_of[pairs[:, 0]] == molecule_of[pairs[:, 1]]]
    kind = np.array([t for t, _ in mapping.molecules])
    types, report = [], {}
    for t, mt in enumerate(mapping.molecule_types):
        molecules = [np.asarray(atoms, dtype=int) for tt, atoms in mapping.molecules if tt == t]
        mine = inside[kind[molecule_of[inside[:, 0]]] == t]
        group = _groups(mt.n_atoms, local_of[mine])
        n_groups = int(group.max()) + 1
        c = mt.position_map()
        a = np.zeros((mt.n_beads, n_groups))
        np.add.at(a.T, group, c.T)
        summed = np.zeros((f.shape[0] * len(molecules), n_groups, 3))
        x = np.concatenate([f[:, atoms] for atoms in molecules])  # (samples, atoms, 3)
        np.add.at(summed.transpose(1, 0, 2), group, x.transpose(1, 0, 2))
        second = np.einsum("sgk,shk->gh", summed, summed) / summed.shape[0]
        second += ridge * np.trace(second) / n_groups * np.eye(n_groups)
        inv = np.linalg.inv(second)
        w_groups = (inv @ a.T @ np.linalg.inv(a @ inv @ a.T)).T  # (beads, groups)
        weights = w_groups[:, group]
        types.append(replace(mt, force_weights=tuple(tuple(float(v) for v in row) for row in weights)))
        standard = np.zeros((mt.n_beads, n_groups))
        for b, atoms_b in enumerate(mt.beads):
            standard[b, np.unique(group[list(atoms_b)])] = 1.0
        for b in range(mt.n_beads):
            var = [float(np.einsum("g,gh,h->", w, second, w)) for w in (w_groups[b], standard[b])]
            report[f"{mt.name}:{mt.bead_names[b]}"] = {"bead_type": mt.bead_types[b], "variance_ratio": var[0] / var[1],
                                                       "constraint_groups": n_groups}
    return CGMapping(tuple(types), mapping.molecules, mapping.n_atoms), report
