"""Automatic partition of a molecular graph into connected beads of balanced mass, and SMARTS beads."""

from __future__ import annotations

import itertools
import logging
import math

import networkx as nx
import numpy as np

from ..exceptions import InvalidMappingError, InvalidMoleculeError, MissingDependencyError
from ._molecules import atom_symmetry_classes

__all__ = ["balanced_partition", "smarts_groups"]

logger = logging.getLogger(__name__)

_MAX_ENUMERATION = 50_000


def _heavy_graph(elements, bonds, masses):
    """Heavy-atom graph; each hydrogen is folded into its (single) bonded heavy atom."""
    n = len(elements)
    owner = np.arange(n)
    nbrs: list[list[int]] = [[] for _ in range(n)]
    for i, j in bonds:
        nbrs[i].append(j)
        nbrs[j].append(i)
    for i in range(n):
        if elements[i] == "H" and nbrs[i] and any(elements[j] != "H" for j in nbrs[i]):
            owner[i] = next(j for j in nbrs[i] if elements[j] != "H")
    heavy = sorted(set(owner.tolist()))
    g = nx.Graph()
    for h in heavy:
        g.add_node(h, mass=0.0)
    for i in range(n):
        g.nodes[int(owner[i])]["mass"] += float(masses[i])
    for i, j in bonds:
        a, b = int(owner[i]), int(owner[j])
        if a != b:
            g.add_edge(a, b)
    return g, owner


def _score(parts, g, classes):
    masses = np.array([sum(g.nodes[v]["mass"] for v in p) for p in parts])
    imbalance = float(np.var(masses) / max(np.mean(masses), 1e-12) ** 2)
    signatures = {tuple(sorted(classes[v] for v in p)) for p in parts}
    return (round(imbalance, 9), len(signatures))


def balanced_partition(elements, bonds, masses, n_beads: int) -> list[list[int]]:
    """Partition a molecule into ``n_beads`` connected groups of balanced mass.

    Hydrogens stay with their heavy atom.  For small graphs every way of cutting
    ``n_beads - 1`` bonds is scored (mass variance first, then the number of distinct
    bead signatures under graph symmetry, so symmetric partitions win ties); larger
    graphs use greedy region growing from far-apart seeds.

    Returns
    -------
    list of list of int
        Local atom indices of each bead, beads ordered by their lowest atom index.
    """
    n_beads = int(n_beads)
    g, owner = _heavy_graph(elements, bonds, masses)
    if not nx.is_connected(g):
        raise InvalidMappingError("automatic mapping needs a connected molecule (one molecule per partition)")
    if not 1 <= n_beads <= g.number_of_nodes():
        raise InvalidMappingError(
            f"cannot split a molecule with {g.number_of_nodes()} heavy atoms into {n_beads} beads "
            f"(expected 1 <= n_beads <= {g.number_of_nodes()})"
        )
    classes = atom_symmetry_classes(elements, bonds)
    best_parts = None
    edges = list(g.edges())
    if n_beads == 1:
        best_parts = [list(g.nodes())]
    elif math.comb(len(edges), n_beads - 1) <= _MAX_ENUMERATION:
        best = None
        for cut in itertools.combinations(edges, n_beads - 1):
            h = g.copy()
            h.remove_edges_from(cut)
            parts = [sorted(c) for c in nx.connected_components(h)]
            if len(parts) != n_beads:
                continue
            score = _score(parts, g, classes)
            if best is None or score < best:
                best, best_parts = score, parts
    if best_parts is None:
        best_parts = _greedy(g, n_beads)
    groups = [sorted(int(i) for i in np.flatnonzero(np.isin(owner, p))) for p in best_parts]
    return sorted(groups, key=min)


def _greedy(g: nx.Graph, n_beads: int) -> list[list[int]]:
    dist = dict(nx.all_pairs_shortest_path_length(g))
    nodes = sorted(g.nodes())
    seeds = [max(nodes, key=lambda v: sum(dist[v].values()))]
    while len(seeds) < n_beads:
        seeds.append(max((v for v in nodes if v not in seeds), key=lambda v: min(dist[v][s] for s in seeds)))
    assign = {s: k for k, s in enumerate(seeds)}
    mass = [g.nodes[s]["mass"] for s in seeds]
    while len(assign) < len(nodes):
        frontier = [(mass[assign[u]], u, v) for u in assign for v in g.neighbors(u) if v not in assign]
        _, u, v = min(frontier)
        assign[v] = assign[u]
        mass[assign[u]] += g.nodes[v]["mass"]
    return [sorted(v for v in nodes if assign[v] == k) for k in range(n_beads)]


def smarts_groups(rdmol, patterns) -> tuple[list[list[int]], list[str]]:
    """Beads from SMARTS patterns matched on an RDKit molecule.

    Parameters
    ----------
    rdmol : rdkit.Chem.Mol
        With explicit hydrogens, atoms in the topology's order.
    patterns : sequence of (bead_name, smarts)
        Tried in order; each non-overlapping match becomes a bead.  Hydrogens not
        named in a pattern join the bead of their heavy atom.

    Returns
    -------
    groups, names
    """
    try:
        from rdkit import Chem
    except ImportError as exc:  # pragma: no cover - rdkit is part of the openff extra
        raise MissingDependencyError("SMARTS mappings need RDKit: pip install rdkit") from exc
    n = rdmol.GetNumAtoms()
    bead_of = np.full(n, -1, dtype=int)
    groups: list[list[int]] = []
    names: list[str] = []
    for name, smarts in patterns:
        query = Chem.MolFromSmarts(smarts)
        if query is None:
            raise InvalidMappingError(f"bead {name!r}: cannot parse the SMARTS pattern {smarts!r}")
        for match in rdmol.GetSubstructMatches(query, uniquify=True, maxMatches=100000):
            if np.any(bead_of[list(match)] >= 0):
                continue
            bead_of[list(match)] = len(groups)
            groups.append(list(match))
            names.append(name)
    for atom in rdmol.GetAtoms():
        i = atom.GetIdx()
        if bead_of[i] < 0 and atom.GetAtomicNum() == 1:
            heavy = [nb.GetIdx() for nb in atom.GetNeighbors()]
            if heavy and bead_of[heavy[0]] >= 0:
                bead_of[i] = bead_of[heavy[0]]
                groups[bead_of[i]].append(i)
    missing = np.flatnonzero(bead_of < 0)
    if missing.size:
        raise InvalidMappingError(
            f"the SMARTS patterns {[p for _, p in patterns]} leave atoms {missing.tolist()} of "
            f"{Chem.MolToSmiles(Chem.RemoveHs(rdmol))} in no bead; every atom must be in exactly one bead"
        )
    return [sorted(g) for g in groups], names


def rdkit_molecule(molecule):
    """An RDKit molecule from an OpenFF Molecule or an RDKit Mol (hydrogens explicit)."""
    if hasattr(molecule, "to_rdkit"):
        return molecule.to_rdkit()
    if hasattr(molecule, "GetNumAtoms"):
        return molecule
    raise InvalidMoleculeError(
        f"expected an OpenFF Molecule or an RDKit Mol for a SMARTS mapping, got {type(molecule).__name__}"
    )
