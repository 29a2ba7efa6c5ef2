"""Polymer chains mapped by repeat unit (:func:`from_repeat_unit`), and a check that chains fit their periodic box
(:func:`check_chain_box`).

A repeat unit is given as a SMARTS of one unit of the chain (``[CH2][CH2]`` for polyethylene, ``[O][CH2][CH2]``
for poly(ethylene oxide)).  The units are found by walking the chain's backbone from one end and placing a unit
wherever one starts, so the tiling is the same all along the chain (RDKit's unique substructure matches alone
overlap and may tile a chain inconsistently).  The result is an ordinary :class:`~openmm_cgml.mapping.CGMapping`
whose beads follow the chain, end to end.  As a ``cgml map`` method (``repeat_unit``)::

    mapping:
      method: repeat_unit
      smiles: ["COCCOCCOCCOCCOC"]          # one per molecule type
      options: {repeat_smarts: "[O][CH2][CH2]", units_per_bead: 2, end_groups: merge, end_types: auto,
                remainder: error}
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import networkx as nx
import numpy as np

from ..exceptions import InvalidMappingError, InvalidMoleculeError, InvalidSystemError, MissingDependencyError
from ..geometry import as_box, minimum_image, perpendicular_widths
from ..units import strip
from ._mapping import CGMapping
from ._molecules import MoleculeGraph, find_molecules, longest_path, match_molecule
from ._schemes import _select, mapping_from_spec

__all__ = ["from_repeat_unit", "check_chain_box", "ChainBoxCheck", "END_GROUPS", "REMAINDERS"]

logger = logging.getLogger(__name__)

#: Values of ``end_groups``: atoms at the chain ends outside the repeat units join the terminal bead, form a
#: bead of their own, or are refused.
END_GROUPS = ("merge", "bead", "error")
#: Values of ``remainder``: repeat units left over when ``units_per_bead`` does not divide their number are refused,
#: or join the chain's last bead of repeat units.
REMAINDERS = ("error", "join")

_EXAMPLES = "e.g. [CH2][CH2] for polyethylene or [O][CH2][CH2] for poly(ethylene oxide)"


# ----------------------------------------------------------------------------- the mapping
def from_repeat_unit(topology, molecules_info, repeat_smarts, *, units_per_bead: int = 1, end_groups: str = "merge",
                     end_types="auto", remainder: str = "error", weights="com", masses=None,
                     molecules: str = "bonds") -> CGMapping:
    """A mapping of polymer chains with one bead per ``units_per_bead`` consecutive repeat units.

    The chain's backbone is the longest path through its heavy atoms (rings count as one step); side groups may
    hang off it.  The backbone is walked from one end, and a repeat unit is placed wherever a match of
    ``repeat_smarts`` starts that covers a contiguous stretch of the backbone (with its side groups) and no atom
    of an earlier unit; the walk goes both ways and keeps the one with more units (on a tie, the one that starts
    from the end with the lower atom index).  All units must be joined the same way (head to tail), each
    matching the SMARTS the same way.  Hydrogens join their heavy atom, as in
    :func:`~openmm_cgml.mapping.from_smarts`.

    Parameters
    ----------
    topology : openmm.app.Topology
        The all-atom topology (bonds define molecules; identical molecules are mapped identically).
    molecules_info : OpenFF Molecule, RDKit Mol, SMILES string, or a list of them
        One per molecule type, matched to the topology's molecules by graph (elements and bonds), so their atom
        order may differ from the topology's.
    repeat_smarts : str, or dict
        SMARTS of one repeat unit (heavy atoms; side groups included where the unit has them, e.g.
        ``[CH2][CH]([CH3])`` for polypropylene); a dict maps a molecule-type index or residue name to its SMARTS.
        It must cover one unit exactly: ``[O][CH2][CH2][O]`` (two oxygens) makes neighbouring units overlap.
    units_per_bead : int
        Consecutive repeat units per bead, 1 <= units_per_bead <= the number of units of every chain.
    end_groups : {"merge", "bead", "error"}
        Atoms at the chain ends outside the repeat units (terminal CH3, OH, OCH3, ...): joined to the terminal
        bead at their end, made one bead per end, or refused.
    end_types : "auto", True or False
        Bead types: ``"auto"`` gives the first and last bead of a chain an end type when their atom composition
        differs from that of ``units_per_bead`` repeat units (the middle beads'); True always; False gives every
        bead one type.  Types are ``"M"`` (middle) and ``"E"`` (ends); beads of different composition get
        numbered types (``"E1"``, ``"E2"``, ...; ``"M1"``, ``"M2"``, ...) in chain order, shared over the whole
        mapping, so chains of different lengths share their bead types.
    remainder : {"error", "join"}
        What to do when ``units_per_bead`` does not divide a chain's number of units: refuse (the default: the
        message says how many units are left over), or join the left-over units to the chain's last bead of
        units (which is then heavier; ``end_types="auto"`` types it apart when it is a chain end).
    weights, masses, molecules
        As for :func:`~openmm_cgml.mapping.from_groups`.

    Returns
    -------
    CGMapping
        Beads in chain order within every molecule; bead names are the type and a running number (``E1, M1, M2,
        ..., E2``; ``E1_1`` for a numbered type).

    Raises
    ------
    InvalidMappingError
        The SMARTS matches nothing or only off the backbone; neighbouring matches overlap; atoms are left over in
        the middle of a chain (a defect, a comonomer or a side group missing from the SMARTS: their number and
        elements are named); units are joined in different orientations (head to head); the backbone of a
        branched molecule is ambiguous; ``units_per_bead`` is below 1, above the number of units, or leaves a
        remainder with ``remainder="error"``; end groups with ``end_groups="error"``.
    """
    k = _check_options(units_per_bead, end_groups, end_types, remainder)
    rd_graphs = [(rd, _rd_graph(rd)) for rd in _rdkit_molecules(molecules_info)]
    plan: dict[int, list[tuple[str, str, str]]] = {}   # molecule type -> (role, composition, middle's) per bead

    def spec(t, ref: MoleculeGraph):
        rd, graph, perm, what = _match_chain(rd_graphs, t, ref, "from_repeat_unit")
        smarts = _select(repeat_smarts, t, ref.residue_name)
        beads, roles, middle = _chain_beads(rd, graph, str(smarts), k, end_groups, remainder, perm, what)
        groups = [sorted(int(perm[i]) for i in bead) for bead in beads]
        plan[t] = [(role, _formula([ref.elements[i] for i in g]), middle) for role, g in zip(roles, groups)]
        return groups, None

    mapping = mapping_from_spec(topology, spec, masses=masses, molecules=molecules, weights=weights)
    return _retype(mapping, plan, end_types)


def _check_options(units_per_bead, end_groups, end_types, remainder) -> int:
    if isinstance(units_per_bead, bool) or not isinstance(units_per_bead, (int, np.integer)) or units_per_bead < 1:
        raise InvalidMappingError(f"units_per_bead must be a whole number >= 1 (repeat units per bead), "
                                  f"got {units_per_bead!r}")
    if end_groups not in END_GROUPS:
        raise InvalidMappingError(f"end_groups must be one of {list(END_GROUPS)}, got {end_groups!r}")
    if not (end_types == "auto" or isinstance(end_types, bool)):
        raise InvalidMappingError(f"end_types must be 'auto', True or False, got {end_types!r}")
    if remainder not in REMAINDERS:
        raise InvalidMappingError(f"remainder must be one of {list(REMAINDERS)}, got {remainder!r}")
    return int(units_per_bead)


def _match_chain(rd_graphs, t, ref: MoleculeGraph, caller: str):
    """The RDKit molecule (of ``rd_graphs``: (molecule, graph) pairs) matching molecule type ``t``: the molecule, its
    graph, ``perm`` (RDKit index -> index in the type's local order) and the type described for messages."""
    what = f"molecule type {t} ({ref.residue_name}, {len(ref.elements)} atoms)"
    found = next(((rd, graph, perm) for rd, graph in rd_graphs
                  if (perm := match_molecule(graph, ref)) is not None), None)
    if found is None:
        raise InvalidMappingError(
            f"no molecule given to {caller} matches {what}; pass one OpenFF/RDKit molecule or SMILES "
            "per molecule type")
    rd, graph, perm = found
    return rd, graph, perm, what


def _rdkit_molecules(molecules_info) -> list:
    from ._partition import rdkit_molecule

    items = molecules_info if isinstance(molecules_info, (list, tuple)) else [molecules_info]
    out = []
    for m in items:
        if isinstance(m, str):
            try:
                from rdkit import Chem
            except ImportError as exc:  # pragma: no cover - rdkit comes with the openff extra
                raise MissingDependencyError("repeat-unit mappings need RDKit: pip install rdkit") from exc
            mol = Chem.MolFromSmiles(m)
            if mol is None:
                raise InvalidMoleculeError(f"cannot parse the SMILES {m!r}")
            out.append(Chem.AddHs(mol))
        else:
            out.append(rdkit_molecule(m))
    return out


def _rd_graph(rd) -> MoleculeGraph:
    elements = tuple(a.GetSymbol() for a in rd.GetAtoms())
    bonds = tuple(sorted(tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in rd.GetBonds()))
    return MoleculeGraph(tuple(range(len(elements))), elements, bonds, "")


def _formula(elements) -> str:
    """Hill formula (C, H, then the other elements alphabetically)."""
    counts = Counter(elements)
    first = ["C", "H"] if "C" in counts else []
    order = first + sorted(e for e in counts if e not in first)
    return "".join(f"{e}{counts[e] if counts[e] > 1 else ''}" for e in order if counts[e])


def _heavy(heavy, perm) -> str:
    """'heavy atoms [3, 4]' (indices in the topology's molecule)."""
    idx = sorted(int(perm[i]) for i in heavy)
    return f"heavy atom{'s' if len(idx) != 1 else ''} {idx[:12]}{' ...' if len(idx) > 12 else ''}"


def _describe(atoms, elements, perm) -> str:
    """'4 atoms (CH3; heavy atom [0] of the molecule)'."""
    heavy = [i for i in atoms if elements[i] != "H"]
    return (f"{len(atoms)} atom{'s' if len(atoms) != 1 else ''} ({_formula([elements[i] for i in atoms])}; "
            f"{_heavy(heavy, perm)} of the molecule)")


# ----------------------------------------------------------------------------- one chain
@dataclass
class _Chain:
    """The heavy-atom graph of a molecule and its backbone (positions along it)."""

    graph: nx.Graph            # heavy atoms; hydrogens folded into their heavy atom
    owner: np.ndarray          # heavy atom of every atom
    position: dict             # backbone heavy atom -> position (ring systems: one position)
    span: dict                 # side heavy atom -> (lowest, highest) backbone position it hangs from
    length: int                # backbone positions


def _chain(elements, bonds, perm, what) -> _Chain:
    from ._partition import _heavy_graph

    g, owner = _heavy_graph(elements, bonds, np.zeros(len(elements)))
    if not nx.is_connected(g):
        raise InvalidMappingError(f"{what} is not one connected molecule; from_repeat_unit maps connected chains "
                                  "(find molecules by bonds)")
    # ring systems (fused or spiro) count as one step of the chain: the condensed graph is a tree
    node = {a: a for a in g.nodes}
    rings = [set(c) for c in nx.biconnected_components(g) if len(c) > 2]
    merged: list[set] = []
    for ring in rings:
        for other in [m for m in merged if m & ring]:
            merged.remove(other)
            ring |= other
        merged.append(ring)
    for ring in merged:
        for a in ring:
            node[a] = min(ring)
    tree = nx.Graph()
    tree.add_nodes_from(set(node.values()))
    tree.add_edges_from((node[a], node[b]) for a, b in g.edges if node[a] != node[b])
    path = _backbone(tree, g, elements, perm, what)
    members: dict[int, list[int]] = {}
    for a, n in node.items():
        members.setdefault(n, []).append(a)
    if min(int(perm[a]) for a in members[path[-1]]) < min(int(perm[a]) for a in members[path[0]]):
        path = path[::-1]   # the forward walk starts from the end with the lower atom index
    position = {a: p for p, n in enumerate(path) for a in members[n]}
    span = {}
    side = g.subgraph([a for a in g.nodes if a not in position])
    for comp in nx.connected_components(side):
        anchors = [position[b] for a in comp for b in g[a] if b in position]
        for a in comp:
            span[a] = (min(anchors), max(anchors))
    return _Chain(g, owner, position, span, len(path))


def _backbone(tree: nx.Graph, g, elements, perm, what) -> list[int]:
    """The longest path of the condensed (tree) graph; refused when branches make it ambiguous."""
    if tree.number_of_nodes() == 1:
        return list(tree.nodes)

    def farthest(source):
        dist = nx.single_source_shortest_path_length(tree, source)
        far = max(dist.values())
        return min(n for n, d in dist.items() if d == far), dist

    u, _ = farthest(min(tree.nodes))
    v, du = farthest(u)
    dv = nx.single_source_shortest_path_length(tree, v)
    diameter = du[v]
    path = nx.shortest_path(tree, u, v)
    if diameter >= 2:
        # every node is farthest from u or from v; all longest paths share their interior exactly when every
        # end of a longest path hangs from the second or the second-to-last node of this one
        ends = sorted(w for w in tree.nodes if max(du[w], dv[w]) == diameter)
        inner = {path[1], path[-2]}
        if any(not (set(tree[w]) & inner) for w in ends):
            names = [f"{elements[w]} {int(perm[w])}" for w in ends]
            raise InvalidMappingError(
                f"{what} is branched and its backbone is ambiguous: {len(ends)} chain ends ({', '.join(names)}; "
                f"element and atom index) lie {diameter} steps apart in different branches; from_repeat_unit maps "
                "linear chains (side groups allowed) whose longest path through the heavy atoms is unique")
    return path


def _units(rd, chain: _Chain, smarts: str, elements, perm, what):
    """The repeat units along the chain (heavy-atom sets, walk order), the orderings of each, and the end groups."""
    try:
        from rdkit import Chem
    except ImportError as exc:  # pragma: no cover - rdkit comes with the openff extra
        raise MissingDependencyError("repeat-unit mappings need RDKit: pip install rdkit") from exc
    query = Chem.MolFromSmarts(smarts)
    if query is None or query.GetNumAtoms() == 0:
        raise InvalidMappingError(f"cannot parse the repeat-unit SMARTS {smarts!r}; expected the SMARTS of one "
                                  f"repeat unit, {_EXAMPLES}")
    matches = rd.GetSubstructMatches(query, uniquify=False, maxMatches=10_000_000)
    smiles = Chem.MolToSmiles(Chem.RemoveHs(rd))
    if not matches:
        raise InvalidMappingError(
            f"the repeat-unit SMARTS {smarts!r} matches nothing in {what} ({smiles}); expected the SMARTS of one "
            f"repeat unit of its chain, {_EXAMPLES}")
    orderings: dict[frozenset, list[tuple]] = {}
    for m in matches:
        atoms = frozenset(int(chain.owner[i]) for i in m)
        orderings.setdefault(atoms, []).append(tuple(int(i) for i in m))
    # a candidate unit covers a contiguous stretch of the backbone, with side groups hanging from that stretch
    candidates = []
    for atoms in orderings:
        on = {chain.position[a] for a in atoms if a in chain.position}
        if not on:
            continue
        lo, hi = min(on), max(on)
        if len(on) != hi - lo + 1:
            continue
        if any(not (lo <= chain.span[a][0] and chain.span[a][1] <= hi) for a in atoms if a not in chain.position):
            continue
        candidates.append((lo, hi, atoms))
    if not candidates:
        raise InvalidMappingError(
            f"the repeat-unit SMARTS {smarts!r} matches {what} ({smiles}) only off its backbone (the longest path "
            f"through its heavy atoms) or across it; expected the SMARTS of one repeat unit of the chain, {_EXAMPLES}")
    walks = [_walk(candidates, chain, forward) for forward in (True, False)]
    units = max(walks, key=len)  # a tie keeps the forward walk
    return units, orderings, candidates, smiles


def _walk(candidates, chain: _Chain, forward: bool) -> list[frozenset]:
    """Walk the backbone from one end, placing a unit wherever one starts (the longest stretch first)."""
    n = chain.length
    starts: dict[int, list] = {}
    for lo, hi, atoms in candidates:
        s, e = (lo, hi) if forward else (n - 1 - hi, n - 1 - lo)
        starts.setdefault(s, []).append((e, atoms))
    units, used, p = [], set(), 0
    while p < n:
        free = [(e, atoms) for e, atoms in starts.get(p, ()) if not atoms & used]
        if free:
            e, atoms = max(free, key=lambda c: (c[0], len(c[1]), [-a for a in sorted(c[1])]))
            units.append(atoms)
            used |= atoms
            p = e + 1
        else:
            p += 1
    return units


@dataclass
class _ChainUnits:
    """The repeat units of one chain (RDKit indices): what :func:`from_repeat_unit` tiles it with."""

    chain: _Chain
    units: list                # heavy-atom sets of the repeat units, in walk order
    orders: list               # per unit: its SMARTS match (pattern order), one choice consistent along the chain
    head: set                  # end-group heavy atoms before the first unit
    tail: set                  # end-group heavy atoms after the last unit
    with_h: dict               # heavy atom -> it and its hydrogens
    smiles: str

    def atoms_of(self, heavy) -> list[int]:
        """The atoms (hydrogens included) of the heavy atoms ``heavy``, sorted."""
        return sorted(i for a in heavy for i in self.with_h[a])


def _chain_units(rd, graph: MoleculeGraph, smarts, perm, what) -> _ChainUnits:
    """Tile one chain with its repeat units; atoms between units (a defect) and head-to-head junctions are refused."""
    elements = graph.elements
    chain = _chain(elements, graph.bonds, perm, what)
    units, orderings, candidates, smiles = _units(rd, chain, smarts, elements, perm, what)
    n = len(units)
    with_h: dict[int, list[int]] = {}
    for i, o in enumerate(chain.owner):
        with_h.setdefault(int(o), []).append(i)

    def atoms_of(heavy):
        return sorted(i for a in heavy for i in with_h[a])

    unit_of = {a: u for u, atoms in enumerate(units) for a in atoms}
    left = [a for a in chain.graph.nodes if a not in unit_of]
    head: set = set()
    tail: set = set()
    middle: list[tuple[set, list[int]]] = []
    for comp in nx.connected_components(chain.graph.subgraph(left)):
        touching = sorted({unit_of[b] for a in comp for b in chain.graph[a] if b in unit_of})
        if len(touching) == 1 and touching[0] in (0, n - 1):
            if n > 1:
                (head if touching[0] == 0 else tail).update(comp)
            else:  # one unit: the side of the chain the group lies on
                where = np.mean([chain.position.get(a, chain.span.get(a, (0, 0))[0]) for a in comp])
                start = np.mean([chain.position[a] for a in units[0] if a in chain.position])
                (head if where < start else tail).update(comp)
        else:
            middle.append((comp, touching))
    if middle:
        _refuse_middle(middle, units, candidates, smarts, elements, perm, what, atoms_of)
    orders = _check_orientation(units, orderings, chain.graph, smarts, what)
    return _ChainUnits(chain, units, orders, head, tail, with_h, smiles)


def _chain_beads(rd, graph: MoleculeGraph, smarts, k, end_groups, remainder, perm, what):
    """Atom groups (RDKit indices, hydrogens included) of one chain's beads in chain order, and their roles."""
    elements = graph.elements
    cu = _chain_units(rd, graph, smarts, perm, what)
    units, head, tail, smiles, atoms_of = cu.units, cu.head, cu.tail, cu.smiles, cu.atoms_of
    n = len(units)
    if k > n:
        raise InvalidMappingError(
            f"units_per_bead={k} but {what} has only {n} repeat unit{'s' if n != 1 else ''} of {smarts!r} "
            f"({smiles}); expected 1 <= units_per_bead <= {n}")
    n_beads, extra = divmod(n, k)
    if extra and remainder == "error":
        raise InvalidMappingError(
            f"{what} has {n} repeat units of {smarts!r}, not a multiple of units_per_bead={k}: {extra} unit"
            f"{'s' if extra != 1 else ''} would be left over; use a units_per_bead that divides {n}, or "
            "remainder='join' to add them to the chain's last bead")
    blocks = [set().union(*units[b * k:(b + 1) * k]) for b in range(n_beads)]
    # the composition of a bead of repeat units: the most common one (generic SMARTS may match ends differently)
    middle_formula = Counter(_formula([elements[i] for i in atoms_of(b)]) for b in blocks).most_common(1)[0][0]
    blocks[-1] |= set().union(*units[n_beads * k:])
    if (head or tail) and end_groups == "error":
        found = [f"{name}: {_describe(atoms_of(g), elements, perm)}" for name, g in (("one end", head),
                                                                                   ("the other", tail)) if g]
        raise InvalidMappingError(
            f"{what}: atoms at the chain ends are in no repeat unit of {smarts!r} ({'; '.join(found)}) and "
            "end_groups='error' refuses them; use end_groups='merge' (join the terminal bead) or 'bead'")
    if end_groups == "merge":
        blocks[0] |= head
        blocks[-1] |= tail
    else:
        blocks = ([head] if head else []) + blocks + ([tail] if tail else [])
    roles = ["end" if b in (0, len(blocks) - 1) else "middle" for b in range(len(blocks))]
    return [atoms_of(b) for b in blocks], roles, middle_formula


def _refuse_middle(middle, units, candidates, smarts, elements, perm, what, atoms_of):
    """Atoms between repeat units: overlapping matches, or a defect / side group / comonomer."""
    for _, touching in middle:
        for a, b in zip(touching, touching[1:]):
            for _, _, atoms in candidates:
                if atoms & units[a] and atoms & units[b]:
                    shared = sorted(atoms & (units[a] | units[b]))
                    raise InvalidMappingError(
                        f"the matches of the repeat-unit SMARTS {smarts!r} overlap along the chain of {what}: the "
                        f"match {sorted(int(perm[i]) for i in atoms)} shares atoms "
                        f"{[int(perm[i]) for i in shared]} with its neighbours (units {a + 1} and {b + 1}), so the "
                        "units cannot tile the chain; the SMARTS must cover exactly one repeat unit, without the "
                        "first atom of the next (e.g. [O][CH2][CH2], not [O][CH2][CH2][O])")
    total = sorted(i for comp, _ in middle for i in atoms_of(comp))
    where = "; ".join(
        f"{_heavy(comp, perm)} ({_formula([elements[i] for i in atoms_of(comp)])}) " + (
            f"next to repeat unit{'s' if len(t) != 1 else ''} {' and '.join(str(u + 1) for u in t)}" if t
            else "joined to no repeat unit") for comp, t in middle)
    raise InvalidMappingError(
        f"{what}: {len(total)} atom{'s' if len(total) != 1 else ''} ({_formula([elements[i] for i in total])}) "
        f"{'are' if len(total) != 1 else 'is'} left over in the middle of the chain, not at its ends, by the "
        f"repeat-unit SMARTS {smarts!r} (of {len(units)} units): {where}. Every atom between the chain ends must "
        "be in a repeat unit: a defect, a comonomer or a side group missing from the SMARTS?")


def _check_orientation(units, orderings, g: nx.Graph, smarts, what) -> list[tuple]:
    """All neighbouring units joined through the same pattern atoms (head to tail): each unit may be matched in any
    of its orderings (symmetric patterns have several), but one choice must fit the whole chain.  Returns the first
    such choice, one ordering per unit."""
    n = len(units)
    if n < 2:
        return [orderings[u][0] for u in units]
    links = [[(a, b) for a in units[u] for b in g[a] if b in units[u + 1]] for u in range(n - 1)]

    def link(u, o1, o2):
        return frozenset((o1.index(a) if a in o1 else -1, o2.index(b) if b in o2 else -1) for a, b in links[u])

    best = (0, None, None)
    for o0 in orderings[units[0]]:
        for o1 in orderings[units[1]]:
            target = link(0, o0, o1)
            states = {o1: o0}   # ordering of unit u -> an ordering of unit u - 1 it follows
            back = [states]
            for u in range(1, n - 1):
                nxt = {}
                for o in states:
                    for o2 in orderings[units[u + 1]]:
                        if o2 not in nxt and link(u, o, o2) == target:
                            nxt[o2] = o
                if not nxt:
                    if u > best[0]:
                        best = (u, target, {link(u, o, o2) for o in states for o2 in orderings[units[u + 1]]})
                    break
                states = nxt
                back.append(states)
            else:
                chosen = [next(iter(states))]
                for step in reversed(back):
                    chosen.append(step[chosen[-1]])
                return chosen[::-1]
    u, target, found = best
    pairs = sorted(target)
    seen = sorted(sorted(p) for p in found)
    raise InvalidMappingError(
        f"{what}: the repeat units of {smarts!r} are not all oriented the same way along the chain: units 1 and 2 "
        f"are bonded through pattern atoms {pairs} (atom numbers in the SMARTS), but units {u + 1} and {u + 2} "
        f"through {seen[0] if len(seen) == 1 else seen}; every unit must follow the previous head to tail (a "
        "head-to-head junction?)")


def _retype(mapping: CGMapping, plan, end_types) -> CGMapping:
    """Bead types shared over the mapping: ``M``/``E`` (numbered when several compositions), names along chains."""
    roles: dict[int, list[tuple[str, str]]] = {}
    for t, beads in plan.items():
        out = []
        for role, formula, middle in beads:
            end = role == "end" and (end_types is True or (end_types == "auto" and formula != middle))
            out.append(("E" if end else "M", formula))
        roles[t] = out
    names: dict[tuple[str, str], str] = {}
    for kind in ("M", "E"):
        seen = list(dict.fromkeys(f for t in sorted(roles) for r, f in roles[t] if r == kind))
        for i, f in enumerate(seen):
            names[(kind, f)] = kind if len(seen) == 1 or (kind == "M" and end_types is False) else f"{kind}{i + 1}"
    types = []
    for t, mt in enumerate(mapping.molecule_types):
        bead_types = tuple(names[r] for r in roles[t])
        count: Counter = Counter()
        bead_names = []
        for ty in bead_types:
            count[ty] += 1
            bead_names.append(f"{ty}{'_' if ty[-1].isdigit() else ''}{count[ty]}")
        types.append(replace(mt, bead_types=bead_types, bead_names=tuple(bead_names)))
    return CGMapping(molecule_types=tuple(types), molecules=mapping.molecules, n_atoms=mapping.n_atoms)


# ----------------------------------------------------------------------------- chains and their box
@dataclass(frozen=True)
class ChainBoxCheck:
    """What :func:`check_chain_box` found.

    Attributes
    ----------
    extents : ndarray
        Per molecule (topology order): its largest atom-atom distance (``method="extent"``, nm), or its contour
        length, the longest bond path times ``bond_length`` (``method="contour"``, nm).
    limit : float
        ``fraction`` times the smallest perpendicular box width (nm).
    widths : ndarray
        The box's perpendicular widths (nm).
    method : str
        ``"extent"`` (from positions) or ``"contour"`` (from bonds alone: a fully extended chain).
    too_long : tuple of int
        Molecules whose extent reaches the limit.
    """

    extents: np.ndarray
    limit: float
    widths: np.ndarray
    method: str
    too_long: tuple[int, ...]

    @property
    def ok(self) -> bool:
        return not self.too_long


def check_chain_box(topology, box=None, positions=None, *, molecules: str = "bonds", fraction: float = 0.5,
                    bond_length: float = 0.154, on_problem: str = "warn") -> ChainBoxCheck:
    """Whether every molecule (chain) is short enough not to meet its own periodic image.

    A chain whose extent reaches half the box width can interact with its own image (and a minimum-image map of
    its beads breaks); the check compares each molecule's extent with ``fraction`` times the smallest
    perpendicular box width.

    Parameters
    ----------
    topology : openmm.app.Topology
        All-atom or CG (bonds define the molecules).
    box : array (3, 3) or Quantity, optional
        Box vectors (rows, nm); default the topology's periodic box.
    positions : array (n_atoms, 3) or Quantity, optional
        With positions, a molecule's extent is its largest atom-atom distance after unwrapping it along its bonds
        (so molecules split by the boundary count whole).  Without, it is its contour length: the longest path
        through its heavy atoms (all atoms if none is heavy) times ``bond_length`` -- a fully extended chain,
        an upper bound that a coiled chain in a melt rarely reaches.
    molecules : {"bonds", "residues"}
    fraction : float
        The limit as a fraction of the smallest box width (0.5: the minimum-image limit).
    bond_length : float
        nm per bond for the contour length (0.154: a C-C bond).
    on_problem : {"warn", "raise", "ignore"}
        For chains at or over the limit: log a warning (logger ``openmm_cgml.mapping._polymer``), raise
        :class:`~openmm_cgml.exceptions.InvalidSystemError`, or only report them in the result.

    Returns
    -------
    ChainBoxCheck
    """
    if on_problem not in ("warn", "raise", "ignore"):
        raise InvalidSystemError(f"on_problem must be 'warn', 'raise' or 'ignore', got {on_problem!r}")
    if not 0 < float(fraction) <= 1:
        raise InvalidSystemError(f"fraction must be in (0, 1], got {fraction!r}")
    if box is None:
        box = topology.getPeriodicBoxVectors()
        if box is None:
            raise InvalidSystemError("check_chain_box needs a box: the topology has no periodic box, pass box=")
    box = as_box(box)
    widths = perpendicular_widths(box)
    limit = float(fraction) * float(widths.min())
    mols = find_molecules(topology, by=molecules)
    n_atoms = topology.getNumAtoms()
    if positions is None:
        method = "contour"
        extents = np.array([_contour(m) * float(bond_length) for m in mols])
    else:
        method = "extent"
        x = np.asarray(strip(positions, "length", name="positions"), dtype=float)
        if x.shape != (n_atoms, 3):
            raise InvalidSystemError(f"positions must have shape ({n_atoms}, 3) to match the topology, got {x.shape}")
        x = _unwrap(x, topology, box, mols)
        extents = np.array([_extent(x[list(m.atoms)]) for m in mols])
    too_long = tuple(int(i) for i in np.flatnonzero(extents >= limit))
    result = ChainBoxCheck(extents, limit, widths, method, too_long)
    if too_long and on_problem != "ignore":
        worst = int(np.argmax(extents))
        m = mols[worst]
        how = ("its largest atom-atom distance" if method == "extent" else
               f"fully extended: its contour length, {extents[worst] / bond_length:.0f} bonds x {bond_length:g} nm")
        message = (
            f"{len(too_long)} of {len(mols)} molecules are too long for the box: molecule {worst} "
            f"({m.residue_name}, {len(m.atoms)} atoms) spans {extents[worst]:.3g} nm ({how}), at or over "
            f"{fraction:g} x the smallest box width = {limit:.3g} nm (box widths {np.round(widths, 4).tolist()} nm), "
            "so it can meet its own periodic image; use a box wider than "
            f"{extents[worst] / float(fraction):.3g} nm or shorter chains")
        if method == "contour":
            message += " (a coiled chain may fit: pass positions= to check its actual extent)"
        if on_problem == "raise":
            raise InvalidSystemError(message)
        logger.warning("%s", message)
    return result


def _contour(mol: MoleculeGraph) -> int:
    """Bonds along the longest path of the molecule's heavy atoms (all atoms if none is heavy)."""
    heavy = [i for i, e in enumerate(mol.elements) if e != "H"] or list(range(len(mol.elements)))
    keep = set(heavy)
    return max(len(longest_path(heavy, [(a, b) for a, b in mol.bonds if a in keep and b in keep])) - 1, 0)


def _unwrap(x: np.ndarray, topology, box: np.ndarray, mols: Sequence[MoleculeGraph]) -> np.ndarray:
    """Positions with every molecule made whole: each atom at the minimum image of its parent along a bond tree."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import breadth_first_order

    n = len(x)
    pairs = [(a.index, b.index) for a, b in topology.bonds()]
    pairs += [(n, m.atoms[0]) for m in mols]   # a virtual root joined to one atom of every molecule
    rows, cols = np.array(pairs, dtype=int).T
    adj = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n + 1, n + 1)).tocsr()
    order, parent = breadth_first_order(adj, n, directed=False, return_predecessors=True)
    depth = np.zeros(n + 1, dtype=int)
    for i in order[1:]:
        depth[i] = depth[parent[i]] + 1
    out = x.copy()
    for d in range(2, int(depth.max()) + 1):
        idx = np.flatnonzero(depth[:n] == d)
        up = parent[idx]
        out[idx] = out[up] + minimum_image(x[idx] - out[up], box)
    return out


def _extent(x: np.ndarray) -> float:
    """Largest distance between two of the points."""
    if len(x) < 2:
        return 0.0
    from scipy.spatial.distance import pdist

    if len(x) > 1000:
        from scipy.spatial import ConvexHull, QhullError

        try:
            x = x[ConvexHull(x).vertices]
        except QhullError:  # flat or collinear: all points
            pass
    return float(pdist(x).max())


