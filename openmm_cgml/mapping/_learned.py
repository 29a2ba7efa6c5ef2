"""A mapping learned from data: the coarse-graining auto-encoder of Wang and Gomez-Bombarelli (npj Comput. Mater.
5, 125, 2019), as Ruza et al. (J. Chem. Phys. 153, 164501, 2020) use it for an ionic liquid.

Per molecule type, the encoder is a soft assignment of the molecule's units (heavy atoms, each with its
hydrogens, so no X-H constraint is ever split between beads) to ``n_beads`` beads, drawn by Gumbel-softmax
from learnable logits at a temperature tau annealed towards a hard choice.  Bead positions are the
mass-weighted means of their (softly) assigned units, and a linear decoder reconstructs every unit's position
from the bead positions.  The loss is the reconstruction error, relative to the molecule's own spread,
plus, optionally, ``force_weight`` times the mean squared mapped force per bead relative to the mean squared
unit force (the "instantaneous mean force" regulariser: it favours beads whose internal forces cancel).
The result is a hard :class:`CGMapping` (each unit to its most likely bead), so everything downstream
(force mapping, IBI, neural force fields) works unchanged.  Reported per type: the reconstruction RMSD of the
hard mapping with its least-squares decoder, which :func:`reconstruction_rmsd` also gives for any mapping
(the automatic one, say) on the same data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..exceptions import ConfigurationError, InvalidMappingError
from ..geometry import minimum_image
from ..units import strip
from ._mapping import CGMapping

__all__ = ["LearnedMapping", "learn_mapping", "reconstruction_rmsd"]

logger = logging.getLogger(__name__)


@dataclass
class LearnedMapping:
    """Outcome of :func:`learn_mapping`.

    Attributes
    ----------
    mapping : CGMapping
    rmsd_nm : dict
        Per molecule-type name: reconstruction RMSD (nm) of the hard mapping with its least-squares linear decoder.
    probabilities : dict
        Per molecule-type name: (n_atoms, n_beads) assignment probabilities at the end of training (hydrogens
        carry their heavy atom's row).
    history : dict
        Per molecule-type name: the loss of every epoch of the best restart.
    disconnected : dict
        Per molecule-type name: indices of beads whose atoms are not one connected piece of the molecule.
    """

    mapping: CGMapping
    rmsd_nm: dict = field(default_factory=dict)
    probabilities: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    disconnected: dict = field(default_factory=dict)


def _units(elements, bonds) -> list[list[int]]:
    """Heavy atoms with their hydrogens (a molecule of hydrogens only: each atom its own unit)."""
    heavy = [i for i, e in enumerate(elements) if e != "H"]
    if not heavy:
        return [[i] for i in range(len(elements))]
    unit_of = {h: k for k, h in enumerate(heavy)}
    units = [[h] for h in heavy]
    for a, b in bonds:
        for h, x in ((a, b), (b, a)):
            if elements[h] == "H" and x in unit_of:
                units[unit_of[x]].append(h)
    lone = [i for i, e in enumerate(elements) if e == "H" and not any(i in u for u in units)]
    return units + [[i] for i in lone]


def _samples(positions, forces, boxes, instances, units, masses, max_samples: int, rng):
    """Unit positions (centred per molecule) and forces, (S, n_units, 3), from frames x molecules of one type."""
    n_frames = positions.shape[0]
    pairs = [(f, m) for f in range(n_frames) for m in range(len(instances))]
    if len(pairs) > max_samples:
        pairs = [pairs[i] for i in np.sort(rng.choice(len(pairs), max_samples, replace=False))]
    idx = np.asarray(instances)  # (n_molecules, n_atoms) global atom indices in the type's local order
    unit_w = [masses[u] / masses[u].sum() for u in units]
    total = np.array([masses[u].sum() for u in units])
    x_out, f_out = [], []
    for f, m in pairs:
        x = np.asarray(positions[f][idx[m]], dtype=float)
        if boxes is not None and np.any(boxes[f]):  # whole molecule: every atom nearest the first one
            x = x[0] + minimum_image((x - x[0])[None], boxes[f][None])[0]
        xu = np.stack([w @ x[u] for u, w in zip(units, unit_w)])
        x_out.append(xu - (total[:, None] * xu).sum(0) / total.sum())
        if forces is not None:
            fa = np.asarray(forces[f][idx[m]], dtype=float)
            f_out.append(np.stack([fa[u].sum(0) for u in units]))
    return np.array(x_out), (np.array(f_out) if forces is not None else None)


def _lsq_rmsd(x: np.ndarray, assign: np.ndarray, unit_mass: np.ndarray) -> float:
    """RMSD (nm) of the best linear decoder x ~ D z for the hard bead assignment ``assign`` (unit -> bead)."""
    n_beads = int(assign.max()) + 1
    w = np.zeros((len(assign), n_beads))
    w[np.arange(len(assign)), assign] = unit_mass
    w /= w.sum(0, keepdims=True)
    z = np.einsum("ub,sud->sbd", w, x)  # (S, n_beads, 3)
    zz = np.einsum("sbd,scd->bc", z, z)
    xz = np.einsum("sud,sbd->ub", x, z)
    d = xz @ np.linalg.pinv(zz)
    resid = x - np.einsum("ub,sbd->sud", d, z)
    return float(np.sqrt(np.mean(np.sum(resid**2, axis=-1))))


def _train(x, f, unit_mass, n_beads, *, epochs, lr, tau, force_weight, seed, tie=None):
    """Train the encoder's logits and the linear decoder; returns the final assignment probabilities and the loss
    per epoch.  ``tie=(rows, cols)`` shares logits between units: unit ``u`` takes the softmax of logit row
    ``rows[u]`` and spreads its ``m`` entries over the beads ``cols[u]`` (an (n_units, m) array; ``rows[u] = -1``: the
    unit sits wholly on bead ``cols[u, 0]``), so the logits are (max(rows) + 1, m) and so are the probabilities
    returned."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    xt = torch.as_tensor(x, dtype=torch.float64)
    ft = None if f is None else torch.as_tensor(f, dtype=torch.float64)
    m = torch.as_tensor(unit_mass, dtype=torch.float64)
    n_units = x.shape[1]
    shape = (n_units, n_beads)
    if tie is not None:
        rows, cols = (torch.as_tensor(np.asarray(a, dtype=np.int64)) for a in tie)
        shape = (int(rows.max()) + 1, cols.shape[1])
        fixed = torch.zeros(1, shape[1], dtype=torch.float64)
        fixed[0, 0] = 1.0
    logits = (0.01 * torch.randn(*shape, generator=gen, dtype=torch.float64)).requires_grad_()
    decoder = (torch.full((n_units, n_beads), 1.0 / n_beads, dtype=torch.float64)).requires_grad_()
    opt = torch.optim.Adam([logits, decoder], lr=lr)
    x_scale = torch.mean(torch.sum(xt**2, -1))
    f_scale = None if ft is None else torch.mean(torch.sum(ft**2, -1))
    taus = tau[0] * (tau[1] / tau[0]) ** (np.arange(epochs) / max(epochs - 1, 1))
    history = []
    for t in taus:
        gumbel = -torch.log(-torch.log(torch.rand(*shape, generator=gen, dtype=torch.float64)
                                       .clamp_min(1e-12)))
        e = torch.softmax((logits + gumbel) / float(t), dim=1)  # (units, beads)
        if tie is not None:  # tied rows spread over each unit's own beads (row -1: the fixed one-hot row)
            e = torch.zeros(n_units, n_beads, dtype=torch.float64).scatter_add(1, cols, torch.cat([e, fixed])[rows])
        w = e * m[:, None]
        w = w / w.sum(0, keepdim=True).clamp_min(1e-12)
        z = torch.einsum("ub,sud->sbd", w, xt)
        x_hat = torch.einsum("ub,sbd->sud", decoder, z)
        loss = torch.mean(torch.sum((x_hat - xt) ** 2, -1)) / x_scale
        if ft is not None and force_weight > 0:
            f_cg = torch.einsum("ub,sud->sbd", e, ft)
            loss = loss + force_weight * torch.mean(torch.sum(f_cg**2, -1)) / f_scale
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    return torch.softmax(logits.detach(), dim=1).numpy(), history


def frames_data(topology, positions, forces, box, force_weight):
    """Positions, forces (for force_weight > 0) and boxes as (n_frames, ...) float arrays, checked."""
    x = np.asarray(strip(positions, "length", name="positions"), dtype=float)
    x = x[None] if x.ndim == 2 else x
    if x.ndim != 3 or x.shape[1:] != (topology.getNumAtoms(), 3):
        raise ConfigurationError(f"positions must have shape (n_frames, {topology.getNumAtoms()}, 3), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ConfigurationError("positions contain NaN or infinite values")
    if force_weight < 0:
        raise ConfigurationError(f"force_weight must be >= 0, got {force_weight}")
    f = None
    if force_weight > 0:
        if forces is None:
            raise ConfigurationError("force_weight > 0 needs the AA forces (a dataset recorded with forces)")
        f = np.asarray(strip(forces, "force", name="forces"), dtype=float)
        f = f[None] if f.ndim == 2 else f
        if f.shape != x.shape or not np.all(np.isfinite(f)):
            raise ConfigurationError(f"forces must be finite with the positions' shape {x.shape}")
    boxes = None
    if box is not None:
        boxes = np.broadcast_to(np.asarray(strip(box, "length", name="box"), float).reshape(-1, 3, 3),
                                (x.shape[0], 3, 3))
    return x, f, boxes


def _connected(group, bonds) -> bool:
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(group)
    g.add_edges_from((a, b) for a, b in bonds if a in group and b in group)
    return nx.is_connected(g)


def learn_mapping(topology, positions, n_beads, *, forces=None, box=None, masses=None, molecules: str = "bonds",
                  weights="com", force_weight: float = 0.0, epochs: int = 400, learning_rate: float = 0.05,
                  tau: tuple[float, float] = (1.0, 0.05), restarts: int = 3, max_samples: int = 4000,
                  seed: int = 0, progress: bool = False) -> LearnedMapping:
    """Learn a mapping with the coarse-graining auto-encoder (see the module docstring).

    Parameters
    ----------
    topology : openmm.app.Topology
        The all-atom topology (bonds define molecules and molecule types).
    positions : array, shape (n_frames, n_atoms, 3)
        AA frames (nm); molecules are made whole with ``box``.
    n_beads : int or dict
        Beads per molecule type (a dict: type index or residue name -> int).
    forces : array, shape (n_frames, n_atoms, 3), optional
        AA forces (kJ/mol/nm), for ``force_weight`` > 0.
    box : array, shape (n_frames, 3, 3) or (3, 3), optional
    masses : array or openmm.System, optional
        Atom masses (default: element masses).
    molecules, weights
        As for :meth:`CGMapping.from_groups` (the learned groups become one; the encoder always weights by mass).
    force_weight : float
        Weight of the mapped-force regulariser (0: reconstruction only).
    epochs, learning_rate, tau
        Adam steps on all samples at once, its step size, and the Gumbel-softmax temperature, annealed
        geometrically from ``tau[0]`` to ``tau[1]``.
    restarts : int
        Independent starts (seeds ``seed``, ``seed + 1``, ...); the hard mapping with the fewest beads that are not
        connected pieces of the molecule wins, then the lowest reconstruction RMSD.
    max_samples : int
        At most this many (frame, molecule) samples per molecule type, drawn at random (seeded).
    """
    from tqdm.auto import tqdm

    from ._schemes import _atom_masses, _select

    x_all, f_all, boxes = frames_data(topology, positions, forces, box, force_weight)
    if epochs < 1 or restarts < 1 or max_samples < 1 or learning_rate <= 0 or not 0 < tau[1] <= tau[0]:
        raise ConfigurationError("learn_mapping needs epochs, restarts, max_samples >= 1, a positive learning_rate "
                                 f"and 0 < tau[1] <= tau[0] (got {epochs}, {restarts}, {max_samples}, "
                                 f"{learning_rate}, {tau})")
    atom_masses = _atom_masses(topology, masses)
    skeleton = CGMapping.automatic(topology, 1, masses=atom_masses, molecules=molecules)  # molecule types, order
    rng = np.random.default_rng(seed)
    groups, result = {}, LearnedMapping(mapping=skeleton)
    for t, mt in enumerate(tqdm(skeleton.molecule_types, desc="learning mappings", disable=not progress)):
        k = int(_select(n_beads, t, mt.name))
        units = _units(mt.elements, mt.bonds)
        if not 1 <= k <= len(units):
            raise ConfigurationError(f"molecule type {mt.name!r} has {len(units)} heavy atoms (units): it cannot be "
                                     f"split into {k} beads")
        local_masses = np.asarray(mt.masses)
        unit_mass = np.array([local_masses[u].sum() for u in units])
        instances = [atoms for ti, atoms in skeleton.molecules if ti == t]
        x, f = _samples(x_all, f_all, boxes, instances, units, local_masses, max_samples, rng)
        best = None
        for r in range(restarts if k > 1 else 1):
            if k == 1:  # nothing to learn: one bead of the whole molecule
                prob, history = np.ones((len(units), 1)), []
            else:
                prob, history = _train(x, f, unit_mass, k, epochs=epochs, lr=learning_rate, tau=tau,
                                       force_weight=force_weight, seed=seed + r)
            assign = prob.argmax(1)
            if len(set(assign.tolist())) < k:
                logger.info("restart %d for %s left beads empty", r, mt.name)
                continue
            rmsd = _lsq_rmsd(x, assign, unit_mass)
            n_split = sum(not _connected([a for u in np.flatnonzero(assign == b) for a in units[u]], mt.bonds)
                          for b in range(k))
            if best is None or (n_split, rmsd) < (best[4], best[0]):
                best = (rmsd, prob, assign, history, n_split)
        if best is None:
            raise InvalidMappingError(f"the auto-encoder left some of the {k} beads of {mt.name!r} empty in every "
                                      f"restart: use fewer beads, more epochs or more restarts")
        rmsd, prob, assign, history, _ = best
        order = np.argsort([min(units[u][0] for u in np.flatnonzero(assign == b)) for b in range(k)])
        rank = np.empty(k, int)
        rank[order] = np.arange(k)
        bead_groups = [sorted(a for u in np.flatnonzero(assign == b) for a in units[u]) for b in order]
        groups[t] = bead_groups
        atom_prob = np.zeros((mt.n_atoms, k))
        for u, atoms in enumerate(units):
            atom_prob[atoms] = prob[u][order]
        result.rmsd_nm[mt.name] = rmsd
        result.probabilities[mt.name] = atom_prob
        result.history[mt.name] = history
        result.disconnected[mt.name] = [b for b, g in enumerate(bead_groups) if not _connected(g, mt.bonds)]
        if result.disconnected[mt.name]:
            logger.warning("learned mapping of %s: beads %s are not connected pieces of the molecule", mt.name,
                           result.disconnected[mt.name])
    result.mapping = CGMapping.from_groups(topology, groups, masses=atom_masses, molecules=molecules, weights=weights)
    return result


def reconstruction_rmsd(mapping: CGMapping, positions, box=None) -> dict[str, float]:
    """Per molecule type: RMSD (nm) of the best linear reconstruction of the atoms' units from the bead positions of
    ``mapping`` (hard, mass-weighted), on ``positions`` -- the auto-encoder's measure, for any mapping."""
    x_all = np.asarray(strip(positions, "length", name="positions"), dtype=float)
    if x_all.ndim == 2:
        x_all = x_all[None]
    boxes = None if box is None else np.broadcast_to(np.asarray(box, float).reshape(-1, 3, 3), (x_all.shape[0], 3, 3))
    out = {}
    rng = np.random.default_rng(0)
    for t, mt in enumerate(mapping.molecule_types):
        units = _units(mt.elements, mt.bonds)
        unit_of = {a: k for k, u in enumerate(units) for a in u}
        assign = np.empty(len(units), int)
        for b, bead in enumerate(mt.beads):
            for a in bead:
                assign[unit_of[a]] = b
        masses = np.asarray(mt.masses)
        instances = [atoms for ti, atoms in mapping.molecules if ti == t]
        x, _ = _samples(x_all, None, boxes, instances, units, masses, 4000, rng)
        out[mt.name] = _lsq_rmsd(x, assign, np.array([masses[u].sum() for u in units]))
    return out
