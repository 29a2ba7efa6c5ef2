"""A learned mapping of polymer chains with every repeat unit mapped the same way
(:func:`learn_repeat_unit_mapping`).

The chains are tiled with repeat units exactly as :func:`~openmm_cgml.mapping.from_repeat_unit` tiles them (the same
SMARTS, the same walk along the backbone, the same refusals), and the coarse-graining auto-encoder of
:func:`~openmm_cgml.mapping.learn_mapping` then learns one assignment of a repeat unit's heavy atoms (each with its
hydrogens) to ``beads_per_unit`` beads: the encoder's logits are tied, atom ``k`` of the repeat-unit SMARTS has the
same logits in every unit of the chain, so every unit of every chain of a molecule type is split the same way.  The
loss is the auto-encoder's (reconstruction of the whole chain from all its beads, optionally with the mapped-force
regulariser).  End groups (atoms at the chain ends outside the repeat units) follow the hand mapping's
``end_groups``: ``"merge"`` puts every end-group atom on the bead of the unit atom nearest to it along the bonds
(the terminal bead, with one bead per unit exactly :func:`from_repeat_unit`'s), ``"bead"`` gives each end a bead
of its own, ``"error"`` refuses them.  The result is an ordinary :class:`CGMapping` with the beads in chain order
and the hand mapping's bead types (``E``/``M``, numbered when the beads of a unit differ), so it round-trips and
compares with the hand mapping through :func:`~openmm_cgml.mapping.reconstruction_rmsd`.  As a ``cgml map`` method
(``learned_repeat_unit``, learning from the all-atom input)::

    mapping:
      method: learned_repeat_unit
      smiles: ["COCCOCCOCCOCCOC"]
      options: {repeat_smarts: "[O][CH2][CH2]", beads_per_unit: 2, epochs: 400, seed: 0}
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from ..exceptions import ConfigurationError, InvalidMappingError
from ._learned import _connected, _lsq_rmsd, _samples, _train, frames_data
from ._mapping import CGMapping
from ._polymer import (
    _chain_units,
    _ChainUnits,
    _check_options,
    _formula,
    _match_chain,
    _rd_graph,
    _rdkit_molecules,
    _retype,
    from_repeat_unit,
)
from ._schemes import _atom_masses, _select, mapping_from_spec

__all__ = ["learn_repeat_unit_mapping"]

logger = logging.getLogger(__name__)


def learn_repeat_unit_mapping(topology, molecules_info, repeat_smarts, positions, *, beads_per_unit=1, box=None,
                              masses=None, forces=None, force_weight: float = 0.0, end_groups: str = "merge",
                              end_types="auto", weights="com", molecules: str = "bonds", epochs: int = 400,
                              learning_rate: float = 0.05, tau: tuple[float, float] = (1.0, 0.05), restarts: int = 3,
                              max_samples: int = 4000, seed: int = 0) -> CGMapping:
    """Learn one split of the repeat unit into ``beads_per_unit`` beads, shared by all units (module docstring).

    Parameters
    ----------
    topology, molecules_info, repeat_smarts
        As for :func:`~openmm_cgml.mapping.from_repeat_unit` (every molecule type must be a chain of the SMARTS).
    positions : array, shape (n_frames, n_atoms, 3)
        AA frames (nm); molecules are made whole with ``box``.
    beads_per_unit : int or dict
        Beads per repeat unit, 1 <= beads_per_unit <= the unit's heavy atoms (a dict: type index or residue name ->
        int).  With 1 there is nothing to learn: the result is ``from_repeat_unit(..., units_per_bead=1)``.
    box, masses, forces, force_weight, epochs, learning_rate, tau, restarts, max_samples, seed
        As for :func:`~openmm_cgml.mapping.learn_mapping` (restarts: the split with the fewest beads that are not
        connected pieces of the chain wins, then the lowest reconstruction RMSD).
    end_groups : {"merge", "bead", "error"}
        End-group atoms join the bead of the unit atom nearest to them, form one bead per end, or are refused.
    end_types, weights, molecules
        As for :func:`~openmm_cgml.mapping.from_repeat_unit`.

    Raises
    ------
    InvalidMappingError
        ``beads_per_unit`` below 1 or above the repeat unit's heavy atoms; the auto-encoder left a bead of the unit
        empty in every restart; anything :func:`from_repeat_unit` refuses.
    ConfigurationError
        Positions, forces or box of the wrong shape or not finite; bad training settings.
    """
    _check_options(1, end_groups, end_types, "error")
    x_all, f_all, boxes = frames_data(topology, positions, forces, box, force_weight)
    if epochs < 1 or restarts < 1 or max_samples < 1 or learning_rate <= 0 or not 0 < tau[1] <= tau[0]:
        raise ConfigurationError("learn_repeat_unit_mapping needs epochs, restarts, max_samples >= 1, a positive "
                                 f"learning_rate and 0 < tau[1] <= tau[0] (got {epochs}, {restarts}, {max_samples}, "
                                 f"{learning_rate}, {tau})")
    atom_masses = _atom_masses(topology, masses)
    # the hand mapping: the same tiling and refusals, and the molecule types with their instances
    hand = from_repeat_unit(topology, molecules_info, repeat_smarts, units_per_bead=1, end_groups=end_groups,
                            end_types=end_types, weights=weights, masses=atom_masses, molecules=molecules)
    rd_graphs = [(rd, _rd_graph(rd)) for rd in _rdkit_molecules(molecules_info)]
    rng = np.random.default_rng(seed)
    plan: dict[int, list[tuple[str, str, str]]] = {}
    settings = {"epochs": epochs, "lr": learning_rate, "tau": tau, "force_weight": force_weight}

    def spec(t, ref):
        rd, graph, perm, what = _match_chain(rd_graphs, t, ref, "learn_repeat_unit_mapping")
        smarts = str(_select(repeat_smarts, t, ref.residue_name))
        k = _beads_per_unit(_select(beads_per_unit, t, ref.residue_name))
        cu = _chain_units(rd, graph, smarts, perm, what)
        slots = _slots(cu, smarts, what)
        if k > len(slots[0]):
            raise InvalidMappingError(
                f"beads_per_unit={k} but the repeat unit {smarts!r} of {what} has {len(slots[0])} heavy atom"
                f"{'s' if len(slots[0]) != 1 else ''}; expected 1 <= beads_per_unit <= {len(slots[0])} (a bead "
                "holds at least one heavy atom with its hydrogens)")
        problem = _Problem(cu, slots, k, end_groups, perm)
        local_masses = atom_masses[np.asarray(ref.atoms)]
        unit_mass = np.array([local_masses[u].sum() for u in problem.units])
        instances = [atoms for ti, atoms in hand.molecules if ti == t]
        x, f = _samples(x_all, f_all, boxes, instances, problem.units, local_masses, max_samples, rng)
        best = None
        for r in range(restarts if k > 1 else 1):
            if k == 1:  # nothing to learn: one bead per unit
                prob = np.ones((len(slots[0]), 1))
            else:
                prob, _ = _train(x, f, unit_mass, problem.n_beads, seed=seed + r, tie=(problem.rows, problem.cols),
                                 **settings)
            split = prob.argmax(1)   # slot -> bead of the unit
            if len(set(split.tolist())) < k:
                logger.info("restart %d for %s left beads of the repeat unit empty", r, what)
                continue
            assign = problem.assign(split)
            rmsd = _lsq_rmsd(x, assign, unit_mass)
            n_split = sum(not _connected(g, ref.bonds) for g in problem.groups(assign))
            if best is None or (n_split, rmsd) < best[:2]:
                best = (n_split, rmsd, split)
        if best is None:
            raise InvalidMappingError(f"the auto-encoder left some of the {k} beads of the repeat unit of {what} empty "
                                      "in every restart: use fewer beads_per_unit, more epochs or more restarts")
        n_split, rmsd, split = best
        logger.info("learned repeat-unit mapping of %s: %d beads per unit, reconstruction RMSD %.4g nm%s", what, k,
                    rmsd, f", {n_split} beads not connected" if n_split else "")
        groups, plan[t] = problem.chain_beads(split, ref.elements)
        return groups, None

    mapping = mapping_from_spec(topology, spec, masses=atom_masses, molecules=molecules, weights=weights)
    return _retype(mapping, plan, end_types)


def _beads_per_unit(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidMappingError(f"beads_per_unit must be a whole number >= 1 (beads per repeat unit), got {k!r}")
    return int(k)


def _slots(cu: _ChainUnits, smarts, what) -> list[dict[int, int]]:
    """Per unit: heavy atom -> its slot, the rank of its first SMARTS atom (the same pattern atoms in every unit)."""
    out = []
    for unit, order in zip(cu.units, cu.orders):
        first: dict[int, int] = {}
        for i, a in enumerate(order):
            first.setdefault(int(cu.chain.owner[a]), i)
        if set(unit) - set(first):  # pragma: no cover - the unit is the set of the match's heavy atoms
            raise InvalidMappingError(f"{what}: a repeat unit of {smarts!r} has heavy atoms outside its match")
        ranks = {i: r for r, i in enumerate(sorted(first[a] for a in unit))}
        out.append({a: ranks[first[a]] for a in unit})
    if any(sorted(s.values()) != sorted(out[0].values()) for s in out):  # pragma: no cover - one pattern
        raise InvalidMappingError(f"{what}: the repeat units of {smarts!r} do not all match the same pattern atoms")
    return out


class _Problem:
    """One chain as the auto-encoder sees it: its units (heavy atoms with their hydrogens, local indices) in chain
    order, and the tying of each to a slot of the repeat unit and to its unit's beads."""

    def __init__(self, cu: _ChainUnits, slots, k, end_groups, perm):
        self.cu, self.slots, self.k, self.perm = cu, slots, k, perm
        n = len(cu.units)
        self.heavy: list[int] = []            # RDKit heavy atom of every AE unit
        rows, cols = [], []
        where = {}
        for r, unit in enumerate(cu.units):
            for a in sorted(unit, key=slots[r].get):
                where[a] = (slots[r][a], list(range(r * k, (r + 1) * k)))
                self.heavy.append(a)
                rows.append(where[a][0])
                cols.append(where[a][1])
        self.n_beads = n * k
        self.end_beads: list[tuple[int, str]] = []   # (bead, "head" | "tail") of end groups as beads
        for name, group, r in (("head", cu.head, 0), ("tail", cu.tail, n - 1)):
            if not group:
                continue
            if end_groups == "bead":
                self.end_beads.append((self.n_beads, name))
                tied = [(-1, [self.n_beads] * k)] * len(group)
                self.n_beads += 1
            else:  # merge: the bead of the nearest unit atom
                tied = [where[self._nearest(a, group, cu.units[r], slots[r])] for a in sorted(group)]
            for a, (row, col) in zip(sorted(group), tied):
                self.heavy.append(a)
                rows.append(row)
                cols.append(col)
        self.rows, self.cols = np.array(rows), np.array(cols)
        self.units = [[int(perm[i]) for i in cu.with_h[a]] for a in self.heavy]

    def _nearest(self, a, group, unit, slots):
        import networkx as nx

        dist = nx.single_source_shortest_path_length(self.cu.chain.graph.subgraph(set(group) | set(unit)), a)
        return min((dist[b], slots[b], b) for b in unit if b in dist)[2]

    def assign(self, split) -> np.ndarray:
        """AE unit -> bead (training columns) for the split slot -> bead of the unit."""
        return np.array([c[0] if row < 0 else c[split[row]] for row, c in zip(self.rows, self.cols)])

    def groups(self, assign) -> list[list[int]]:
        """Local atoms of every training bead."""
        return [sorted(i for u in np.flatnonzero(assign == b) for i in self.units[u]) for b in range(self.n_beads)]

    def chain_beads(self, split, elements):
        """Groups in chain order (the unit's beads ordered along the walk) and their (role, formula, middle)."""
        cu, k = self.cu, self.k
        chain = cu.chain
        first, last = cu.units[0], cu.units[-1]
        sign = 1 if np.mean([chain.position.get(a, 0) for a in last]) >= np.mean(
            [chain.position.get(a, 0) for a in first]) else -1
        mid = len(cu.units) // 2   # the order of a unit's beads, from a middle unit (an end unit may match oddly)

        def along(a):  # backbone atoms at their position, side atoms just after the stretch they hang from
            if a in chain.position:
                return sign * chain.position[a]
            return min(sign * chain.span[a][0], sign * chain.span[a][1]) + 0.5

        slots = self.slots[mid]
        key = {j: min((along(a), slots[a]) for a in cu.units[mid] if split[slots[a]] == j) for j in range(k)}
        local = sorted(range(k), key=key.get)
        groups = self.groups(self.assign(split))
        n = len(cu.units)
        middle = [Counter(_formula([elements[int(self.perm[i])] for a in unit if split[s[a]] == j
                                    for i in cu.with_h[a]]) for unit, s in zip(cu.units, self.slots))
                  .most_common(1)[0][0] for j in range(k)]
        order = [(r * k + j, middle[j]) for r in range(n) for j in local]
        ends = dict((name, b) for b, name in self.end_beads)
        if "head" in ends:
            order.insert(0, (ends["head"], middle[local[0]]))
        if "tail" in ends:
            order.append((ends["tail"], middle[local[-1]]))
        beads = [groups[b] for b, _ in order]
        plan = [("end" if i in (0, len(order) - 1) else "middle", _formula([elements[a] for a in bead]), mid)
                for i, (bead, (_, mid)) in enumerate(zip(beads, order))]
        return beads, plan
