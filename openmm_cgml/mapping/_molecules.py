"""Molecules of an all-atom topology: detection, graph identity, symmetry classes.

NumPy/networkx only (no torch, no OpenMM app import at module level).
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from ..exceptions import InvalidMappingError

__all__ = ["MoleculeGraph", "find_molecules", "atom_symmetry_classes", "match_molecule", "longest_path"]


@dataclass(frozen=True)
class MoleculeGraph:
    """One molecule of a topology: its global atom indices and its graph (local indices)."""

    atoms: tuple[int, ...]
    elements: tuple[str, ...]
    bonds: tuple[tuple[int, int], ...]
    residue_name: str

    @property
    def key(self) -> tuple:
        """Identity of the molecule in its own atom order (elements + sorted bonds)."""
        return (self.elements, self.bonds)

    def graph(self) -> nx.Graph:
        g = nx.Graph()
        for i, el in enumerate(self.elements):
            g.add_node(i, element=el)
        g.add_edges_from(self.bonds)
        return g


def _element_symbol(atom) -> str:
    return atom.element.symbol if atom.element is not None else f"?{atom.name}"


def find_molecules(topology, by: str = "bonds") -> list[MoleculeGraph]:
    """Split an :class:`openmm.app.Topology` into molecules.

    Parameters
    ----------
    topology : openmm.app.Topology
    by : {"bonds", "residues"}
        ``"bonds"``: connected components of the bond graph (atoms without bonds are
        single-atom molecules); ``"residues"``: one molecule per residue.

    Returns
    -------
    list of MoleculeGraph
        Ordered by their lowest atom index.
    """
    atoms = list(topology.atoms())
    n = len(atoms)
    if n == 0:
        raise InvalidMappingError("the topology has no atoms")
    bonds = np.array([[a.index, b.index] for a, b in topology.bonds()], dtype=int).reshape(-1, 2)
    if by == "bonds":
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        adj = coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(n, n))
        _, labels = connected_components(adj, directed=False)
    elif by == "residues":
        labels = np.array([a.residue.index for a in atoms])
    else:
        raise InvalidMappingError(f"molecules are found by 'bonds' or 'residues', got {by!r}")
    order = np.argsort(labels, kind="stable")
    split = np.flatnonzero(np.diff(labels[order])) + 1
    groups = sorted(np.split(order, split), key=lambda g: int(g.min()))
    local = np.full(n, -1, dtype=int)
    owner = np.full(n, -1, dtype=int)
    for m, g in enumerate(groups):
        local[g] = np.arange(len(g))
        owner[g] = m
    mol_bonds: list[list[tuple[int, int]]] = [[] for _ in groups]
    for i, j in bonds:
        if owner[i] != owner[j]:
            raise InvalidMappingError(
                f"atoms {i} and {j} are bonded but belong to different residues; use by='bonds'"
            )
        a, b = sorted((int(local[i]), int(local[j])))
        mol_bonds[owner[i]].append((a, b))
    result = []
    for m, g in enumerate(groups):
        result.append(
            MoleculeGraph(
                atoms=tuple(int(i) for i in g),
                elements=tuple(_element_symbol(atoms[i]) for i in g),
                bonds=tuple(sorted(set(mol_bonds[m]))),
                residue_name=atoms[int(g[0])].residue.name,
            )
        )
    return result


def match_molecule(reference: MoleculeGraph, other: MoleculeGraph) -> np.ndarray | None:
    """Map ``reference``'s local atom order onto ``other``'s (``perm[i]`` = local index in other).

    Returns None when the graphs (elements + bonds) are not isomorphic.
    """
    if len(reference.elements) != len(other.elements) or len(reference.bonds) != len(other.bonds):
        return None
    if reference.key == other.key:
        return np.arange(len(reference.elements))
    if sorted(reference.elements) != sorted(other.elements):
        return None
    matcher = nx.algorithms.isomorphism.GraphMatcher(
        reference.graph(), other.graph(), node_match=lambda a, b: a["element"] == b["element"]
    )
    try:
        iso = next(matcher.isomorphisms_iter())
    except StopIteration:
        return None
    return np.array([iso[i] for i in range(len(reference.elements))], dtype=int)


def atom_symmetry_classes(elements, bonds) -> np.ndarray:
    """Chemical-equivalence classes of atoms from graph symmetry.

    Atoms related by an automorphism of the element-labelled molecular graph get the
    same class.  Computed by colour refinement (1-WL) seeded with elements; for the
    small organic graphs used here this equals the automorphism orbits, and it never
    splits atoms that are symmetric.

    Returns
    -------
    ndarray of int, shape (n_atoms,)
        Class labels 0, 1, ... in order of first appearance.
    """
    n = len(elements)
    nbrs: list[list[int]] = [[] for _ in range(n)]
    for i, j in bonds:
        nbrs[i].append(j)
        nbrs[j].append(i)
    colours = [str(e) for e in elements]
    for _ in range(n):
        signatures = [(colours[i], tuple(sorted(colours[j] for j in nbrs[i]))) for i in range(n)]
        ranking = {s: k for k, s in enumerate(sorted(set(signatures)))}
        new = [str(ranking[s]) for s in signatures]
        if len(set(new)) == len(set(colours)):
            colours = new
            break
        colours = new
    first: dict[str, int] = {}
    return np.array([first.setdefault(c, len(first)) for c in colours], dtype=int)


def longest_path(nodes, edges) -> list[int]:
    """The nodes, in order, of the longest shortest path of the graph (double breadth-first search: exact for
    trees such as alkane backbones; through rings the shortest way round); over several components, the longest."""
    g = nx.Graph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    best: list[int] = []
    for comp in nx.connected_components(g):
        dist = nx.single_source_shortest_path_length(g, min(comp))
        far = max(sorted(dist), key=dist.get)
        paths = nx.single_source_shortest_path(g, far)
        end = max(sorted(paths), key=lambda k: len(paths[k]))
        if len(paths[end]) > len(best):
            best = [int(i) for i in paths[end]]
    return best
