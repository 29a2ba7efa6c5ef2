"""Mapping schemes: how the atoms of every molecule type are grouped into beads.

Each scheme returns an immutable :class:`~openmm_cgml.mapping.CGMapping` (built per molecule type and
replicated over the molecules): explicit groups (:func:`from_groups`), SMARTS patterns
(:func:`from_smarts`), a balanced partition of the molecular graph (:func:`automatic`), or any rule
given as a ``spec`` (:func:`mapping_from_spec`).  Bead types follow graph symmetry unless given.
The learned scheme (the CG auto-encoder) lives in :mod:`._learned`.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping

import numpy as np

from ..exceptions import InvalidMappingError
from ..units import strip, system_masses
from ._mapping import CGMapping, MoleculeType
from ._molecules import MoleculeGraph, atom_symmetry_classes, find_molecules, match_molecule

__all__ = ["mapping_from_spec", "from_groups", "from_smarts", "automatic"]


def _atom_masses(topology, masses) -> np.ndarray:
    n = topology.getNumAtoms()
    if masses is None:
        out = []
        for atom in topology.atoms():
            if atom.element is None:
                raise InvalidMappingError(
                    f"atom {atom.index} ({atom.name}) has no element; pass masses= (an array or the openmm.System)"
                )
            out.append(strip(atom.element.mass, "mass"))
        return np.asarray(out, dtype=float)
    if hasattr(masses, "getParticleMass"):

        if masses.getNumParticles() != n:
            raise InvalidMappingError(f"the System has {masses.getNumParticles()} particles, the topology {n} atoms")
        return system_masses(masses)
    arr = np.asarray(masses, dtype=float)
    if arr.shape != (n,):
        raise InvalidMappingError(f"masses must have shape ({n},) to match the topology, got {arr.shape}")
    return arr


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


def mapping_from_spec(topology, spec: Callable, *, masses=None, molecules: str = "bonds",
                      allow_overlap: bool = False, bead_names=None, bead_types=None, weights="com") -> CGMapping:
    """A mapping from ``spec(t, reference_molecule) -> (groups, bead_names or None)`` per molecule type."""
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
    return CGMapping(molecule_types=tuple(types), molecules=tuple(instances), n_atoms=len(atom_masses))


def from_groups(topology, groups, *, weights="com", bead_names=None, bead_types=None, masses=None,
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

    return mapping_from_spec(topology, spec, masses=masses, molecules=molecules, allow_overlap=allow_overlap,
                             bead_names=bead_names, bead_types=bead_types, weights=weights)


def from_smarts(topology, patterns, molecules_info, *, weights="com", bead_types=None, masses=None,
                molecules: str = "bonds") -> CGMapping:
    """A mapping whose beads are SMARTS matches.

    Parameters
    ----------
    topology : openmm.app.Topology
    patterns : dict or list
        Bead name -> SMARTS (a dict of str, or a list of ``(bead name, SMARTS)`` pairs), tried in order;
        each match not overlapping an earlier bead becomes a bead; hydrogens left out of a pattern join
        their heavy atom.
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

    return mapping_from_spec(topology, spec, masses=masses, molecules=molecules, weights=weights,
                             bead_types=bead_types)


def automatic(topology, n_beads, *, weights="com", masses=None, molecules: str = "bonds") -> CGMapping:
    """Split every molecule type into ``n_beads`` connected beads of balanced mass.

    ``n_beads`` is an int for all types or a dict (type index or residue name -> int).
    Symmetric partitions are preferred and symmetric beads share a type.
    """
    from ._partition import balanced_partition

    atom_masses = _atom_masses(topology, masses)

    def spec(t, ref):
        k = _select(n_beads, t, ref.residue_name)
        return balanced_partition(ref.elements, ref.bonds, atom_masses[np.asarray(ref.atoms)], k), None

    return mapping_from_spec(topology, spec, masses=atom_masses, molecules=molecules, weights=weights)


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
