"""Transfer a CG polymer model fitted on short chains to longer chains of the same bead types.

A CG force field fitted on a melt of short oligomers (IBI pair tables and bonded terms keyed by bead types, or a
neural model bundle) is run for chains 2x or 4x longer.  The building blocks:

:func:`lengthen_chains`
    The CG topology of the longer chains: chain ends kept, the repeating middle pattern repeated ``factor``
    times as often.
:func:`chain_melt_positions`
    Start coordinates of a melt of those chains in a periodic box: each chain grown as a random walk with fixed
    bond lengths, no sharp back-folding and no two non-bonded beads closer than ``min_distance``.
:func:`check_transfer`, :func:`transfer_system`
    Whether the force field has parameters for every bead type and bond/angle/dihedral type key the long chains
    need (the long chains may have keys the short ones lacked, e.g. an ``M-M-M-M`` dihedral), and the long
    chains' System through :class:`~openmm_cgml.potential.CGPotential`, exactly as for the short chains.
:func:`relax_melt`
    A short relaxation of the grown melt: energy minimisation and a few hundred thermostatted steps.

Example::

    long = lengthen_chains(short, 2)
    melt = chain_melt_positions(long, density_beads_per_nm3=8.0, bond_length=mean_bond_lengths(short, xyz, box),
                                seed=1)
    long = long.with_box(melt.box_vectors)
    system = transfer_system("ibi/", short, long)
    relaxed = relax_melt(system, melt.positions, melt.box_vectors, temperature=400.0, timestep=0.01)

Units: nm, ps, K, kJ/mol, dalton.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..analysis.chains import linear_path
from ..exceptions import ConfigurationError, InvalidMappingError, InvalidSystemError, SimulationError
from ..topology import CGTopology, angles_from_bonds, dihedrals_from_bonds, key_from_str, key_to_str, type_key

__all__ = [
    "lengthen_chains",
    "chain_order",
    "MeltPositions",
    "chain_melt_positions",
    "mean_bond_lengths",
    "TransferCheck",
    "check_transfer",
    "transfer_system",
    "RelaxedMelt",
    "relax_melt",
]

logger = logging.getLogger(__name__)

#: Bonded kinds and the number of beads in their keys.
_ARITY = {"bond": 2, "angle": 3, "dihedral": 4}


# ----------------------------------------------------------------------------- chains
def chain_order(topology: CGTopology, *, what: str = "this", allow_single: bool = False) -> list[np.ndarray]:
    """The bead indices of every molecule of ``topology``, end to end along its bonds (molecules in order of their
    first bead; each chain walked from the end with the lower bead index).

    Raises
    ------
    InvalidMappingError
        A bond joins two molecules; a molecule is branched (a bead with three or more bonds), a ring or not
        connected; or (unless ``allow_single``) a molecule has a single bead.
    """
    mol = np.asarray(topology.molecule_index)
    bonds = np.asarray(topology.bonds, dtype=np.int64).reshape(-1, 2)
    if bonds.size:
        cross = np.flatnonzero(mol[bonds[:, 0]] != mol[bonds[:, 1]])
        if cross.size:
            i, j = bonds[cross[0]]
            raise InvalidMappingError(f"{what}: the bond {int(i)}-{int(j)} joins two molecules ({int(mol[i])} and "
                                      f"{int(mol[j])}); a melt of chains needs every bond inside one molecule")
    neighbours: list[list[int]] = [[] for _ in range(topology.n_beads)]
    for i, j in bonds.tolist():
        neighbours[i].append(j)
        neighbours[j].append(i)
    order = np.argsort(mol, kind="stable")
    split = np.split(order, np.flatnonzero(np.diff(mol[order])) + 1)
    members = sorted(split, key=lambda g: int(g[0]))
    chains = []
    for m, beads in enumerate(members):
        n = len(beads)
        seq = " ".join(topology.bead_types[i] for i in beads[:12]) + (" ..." if n > 12 else "")
        label = f"molecule {m} ({n} beads: {seq})"
        if n == 1:
            if not allow_single:
                raise InvalidMappingError(f"{what}: {label} is a single bead, not a chain with ends and a middle")
            chains.append(beads.copy())
            continue
        path, why = linear_path(beads, neighbours)
        if path is None:
            raise InvalidMappingError(f"{what}: {label} is {why.replace('particle', 'bead')}; only linear chains "
                                      "(every bead bonded to at most two others) can be lengthened and grown")
        chains.append(np.asarray(path, dtype=np.int64))
    return chains


def _period(middle: Sequence[str]) -> int:
    """The smallest p for which ``middle`` is a whole number of repeats of its first p entries."""
    m = len(middle)
    for p in range(1, m + 1):
        if m % p == 0 and tuple(middle) == tuple(middle[:p]) * (m // p):
            return p
    return m


def _running_names(types: Sequence[str]) -> tuple[str, ...]:
    """Bead names as :func:`~openmm_cgml.mapping.from_repeat_unit` gives them: the type and a running number per
    type (``E1, M1, M2, ..., E2``; ``E1_1`` for a numbered type)."""
    count: dict[str, int] = {}
    out = []
    for ty in types:
        count[ty] = count.get(ty, 0) + 1
        out.append(f"{ty}{'_' if ty[-1].isdigit() else ''}{count[ty]}")
    return tuple(out)


@dataclass(frozen=True)
class _Chain:
    types: tuple[str, ...]
    names: tuple[str, ...]
    masses: tuple[float, ...] | None
    residue: str | None


def _lengthen(chain: _Chain, factor: float, label: str) -> _Chain:
    types, n = chain.types, len(chain.types)
    if n < 3:
        raise InvalidMappingError(f"lengthen_chains: {label} has {n} beads, no middle between its two ends to "
                                  "repeat; a chain needs two ends and at least one middle bead")
    middle = types[1:-1]
    m = len(middle)
    p = _period(middle)
    if p == m and m > 1:
        raise InvalidMappingError(
            f"lengthen_chains: the middle of {label}, {' '.join(middle)}, has no repeating period (it is not two "
            "or more repeats of one pattern), so there is no repeat unit to add; map the short chains so that "
            "their middle repeats one bead type or one pattern of types at least twice (e.g. E A B A B E)")
    repeats = m // p
    new_repeats = factor * repeats
    if abs(new_repeats - round(new_repeats)) > 1e-9:
        raise ConfigurationError(
            f"lengthen_chains: {label} has {repeats} repeats of its middle pattern {' '.join(middle[:p])}; factor "
            f"{factor:g} would make {new_repeats:g} repeats: use a factor that makes a whole number (a multiple of "
            f"1/{repeats})")
    new_repeats = int(round(new_repeats))
    masses = chain.masses
    if masses is not None:
        mid = np.asarray(masses[1:-1], dtype=float).reshape(repeats, p)
        if not np.allclose(mid, mid[0], rtol=1e-6, atol=0.0):
            raise InvalidMappingError(
                f"lengthen_chains: the middle beads of {label} repeat the types {' '.join(middle[:p])}, but not "
                f"their masses ({np.round(mid, 4).tolist()} Da per repeat); the masses of a repeat unit cannot be "
                "copied")
        masses = (masses[0], *tuple(float(x) for x in mid[0]) * new_repeats, masses[-1])
    new_types = (types[0], *middle[:p] * new_repeats, types[-1])
    if chain.names == types:
        names = new_types
    elif chain.names == _running_names(types):
        names = _running_names(new_types)
    else:
        names = (chain.names[0], *chain.names[1:1 + p] * new_repeats, chain.names[-1])
    return _Chain(new_types, names, masses, chain.residue)


def _bonded_policy(topology: CGTopology, kind: str) -> str:
    """``"derive"`` when the topology's angles (dihedrals) are all those along its bonds, ``"none"`` when it has
    none; a hand-picked set cannot be carried over to other chains."""
    n = topology.n_beads
    derived = (angles_from_bonds if kind == "angle" else dihedrals_from_bonds)(topology.bonds, n)
    given = topology.bonded_tuples(kind)

    def canon(a):
        return {min(tuple(t), tuple(t)[::-1]) for t in np.asarray(a).tolist()}

    if canon(given) == canon(derived):
        return "derive"
    if len(given) == 0:
        return "none"
    raise ConfigurationError(
        f"lengthen_chains: the topology's {kind}s are a hand-picked set ({len(given)} {kind}s; its bonds make "
        f"{len(derived)}), which cannot be carried over to longer chains; lengthen_chains derives them from the "
        f"bonds (all of them, or none when the topology has none)")


def lengthen_chains(topology: CGTopology, factor: int | float, *, n_molecules: int | None = None) -> CGTopology:
    """The CG topology of chains like those of ``topology`` with ``factor`` times as many middle beads.

    Every molecule must be a linear chain (:func:`chain_order`).  Its first and last beads (along the bonds) are
    its ends and are kept, with their types, names and masses; the beads between them, the middle, must be a whole
    number ``r`` of repeats of one pattern of bead types (its smallest period: ``M M M`` is three repeats of
    ``M``, ``A B A B`` two of ``A B``).  The longer chain has ``factor * r`` repeats of that pattern, so a chain
    of ``n`` beads becomes one of ``2 + factor * (n - 2)`` beads: ``E M M M E`` with factor 2 becomes
    ``E`` + 6 ``M`` + ``E``, and ``E A B A B E`` becomes ``E A B A B A B A B E``.

    Middle beads take the masses of their position in the pattern (which must be the same in every repeat);
    bead names follow the short chain's scheme (the types; the type and a running number, as
    :func:`~openmm_cgml.mapping.from_repeat_unit` names them; or else the pattern's names repeated).  Bonds join
    consecutive beads; angles and dihedrals are derived from them as :class:`~openmm_cgml.topology.CGTopology`
    does (none when the short topology has none).  Beads are ordered end to end within each chain, molecules of
    one kind after another (in the order each kind first appears).  The result has no box: set it with
    :meth:`~openmm_cgml.topology.CGTopology.with_box`, e.g. from :func:`chain_melt_positions`.

    Parameters
    ----------
    topology : CGTopology
        The short chains (one or several kinds of chain; every molecule a linear chain of at least 3 beads).
    factor : int or float
        >= 1; the multiplier of the number of middle beads.  ``factor * r`` must be a whole number for every kind
        of chain (1.5 works for a middle of two repeats).  ``factor=1`` gives an equal topology (without box).
    n_molecules : int, optional
        The number of chains of the result.  Default: about as many beads as ``topology``, in fewer, longer chains
        -- ``round(n_beads / mean length of the longer chains)``, at least 1 -- with the kinds of chain in the
        proportions of their numbers in ``topology`` (largest remainders; with several kinds a rare kind may get
        none).

    Raises
    ------
    ConfigurationError
        ``factor`` below 1 or not a number, a ``factor`` that leaves a fraction of a repeat, ``n_molecules``
        below 1, or hand-picked angles or dihedrals.
    InvalidMappingError
        A molecule that is not a linear chain (branched, a ring, a single bead) or has no middle bead, a middle
        with no repeating period (``E A B C E``), or repeats whose masses differ.
    """
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not math.isfinite(float(factor)):
        raise ConfigurationError(f"lengthen_chains: factor must be a number >= 1, got {factor!r}")
    factor = float(factor)
    if factor < 1:
        raise ConfigurationError(f"lengthen_chains: factor must be >= 1 (it multiplies the number of middle beads; "
                                 f"shorter chains are not made), got {factor:g}")
    if n_molecules is not None and (isinstance(n_molecules, bool) or not isinstance(n_molecules, numbers.Integral)
                                    or n_molecules < 1):
        raise ConfigurationError(f"lengthen_chains: n_molecules must be a whole number >= 1, got {n_molecules!r}")
    policies = {kind: _bonded_policy(topology, kind) for kind in ("angle", "dihedral")}
    chains = chain_order(topology, what="lengthen_chains")
    kinds: dict[_Chain, int] = {}
    firsts: dict[_Chain, int] = {}
    for m, beads in enumerate(chains):
        chain = _Chain(tuple(topology.bead_types[i] for i in beads), tuple(topology.bead_names[i] for i in beads),
                       None if topology.masses is None else tuple(float(topology.masses[i]) for i in beads),
                       None if topology.residue_names is None else topology.residue_names[m])
        kinds[chain] = kinds.get(chain, 0) + 1
        firsts.setdefault(chain, m)
    long_chains = {c: _lengthen(c, factor, f"molecule {firsts[c]} ({' '.join(c.types)})") for c in kinds}
    counts = np.array(list(kinds.values()), dtype=float)
    fractions = counts / counts.sum()
    lengths = np.array([len(long_chains[c].types) for c in kinds], dtype=float)
    if n_molecules is None:
        n_molecules = max(1, int(round(topology.n_beads / float(fractions @ lengths))))
    share = fractions * n_molecules
    numbers_ = np.floor(share).astype(int)
    for i in np.argsort(-(share - numbers_), kind="stable")[: n_molecules - int(numbers_.sum())]:
        numbers_[i] += 1
    types, names, masses, mol, bonds, residues = [], [], [], [], [], []
    offset = 0
    for chain, count in zip(kinds, numbers_):
        new = long_chains[chain]
        k = len(new.types)
        for _ in range(int(count)):
            types.extend(new.types)
            names.extend(new.names)
            masses.extend(new.masses or ())
            mol.extend([len(residues)] * k)
            bonds.extend((offset + i, offset + i + 1) for i in range(k - 1))
            residues.append(new.residue)
            offset += k
    return CGTopology(
        tuple(types), np.asarray(mol, dtype=np.int64), np.asarray(bonds, dtype=np.int64).reshape(-1, 2),
        None if topology.masses is None else np.asarray(masses, dtype=float), None,
        angles=np.zeros((0, 3), dtype=np.int64) if policies["angle"] == "none" else None,
        dihedrals=np.zeros((0, 4), dtype=np.int64) if policies["dihedral"] == "none" else None,
        bead_names=tuple(names), residue_names=None if topology.residue_names is None else tuple(residues))


# ----------------------------------------------------------------------------- melt coordinates
class MeltPositions(NamedTuple):
    """Start coordinates of a melt (:func:`chain_melt_positions`): ``positions`` (n_beads, 3) nm, every chain
    whole (not wrapped into the box; its first bead inside), and the periodic ``box_vectors`` (3, 3) nm."""

    positions: np.ndarray
    box_vectors: np.ndarray


def mean_bond_lengths(topology: CGTopology, positions, box=None) -> dict[str, float]:
    """Mean bond length (nm) per bead-type pair (``{"A-B": r}``) over the bonds of ``topology`` in ``positions``
    ((n_beads, 3) or frames (n_frames, n_beads, 3), nm), bonds taken as minimum images in ``box`` (one (3, 3) box
    or one per frame; default the topology's).  What :func:`chain_melt_positions` takes as ``bond_length`` from
    short-chain data."""
    from ..geometry import minimum_image

    x = np.asarray(positions, dtype=float)
    x = x[None] if x.ndim == 2 else x
    if x.ndim != 3 or x.shape[1:] != (topology.n_beads, 3):
        raise ConfigurationError(f"mean_bond_lengths: positions must have shape ({topology.n_beads}, 3) or "
                                 f"(n_frames, {topology.n_beads}, 3), got {np.shape(positions)}")
    bonds = np.asarray(topology.bonds)
    if not len(bonds):
        raise ConfigurationError("mean_bond_lengths: the topology has no bonds")
    v = x[:, bonds[:, 1]] - x[:, bonds[:, 0]]
    box = topology.box_vectors if box is None else np.asarray(box, dtype=float)
    if box is not None:
        v = minimum_image(v, np.broadcast_to(box, (len(x), 3, 3)) if np.ndim(box) == 3 else box)
    r = np.linalg.norm(v, axis=-1).mean(axis=0)
    keys = [key_to_str((topology.bead_types[i], topology.bead_types[j])) for i, j in bonds.tolist()]
    out: dict[str, list[float]] = {}
    for key, value in zip(keys, r.tolist()):
        out.setdefault(key, []).append(value)
    return {k: float(np.mean(v)) for k, v in sorted(out.items())}


def _box_edges(topology: CGTopology, density, box) -> np.ndarray:
    """The edges (3,) nm of an orthorhombic box from ``density`` or ``box`` (or the topology's box)."""
    if density is not None and box is not None:
        raise ConfigurationError("chain_melt_positions: give density_beads_per_nm3 or box, not both")
    if density is not None:
        rho = float(density)
        if not (math.isfinite(rho) and rho > 0):
            raise ConfigurationError(f"chain_melt_positions: density_beads_per_nm3 must be positive, got {density!r}")
        return np.full(3, (topology.n_beads / rho) ** (1.0 / 3.0))
    if box is None:
        if topology.box_vectors is None:
            raise ConfigurationError("chain_melt_positions: give density_beads_per_nm3 or box (the topology has no "
                                     "box)")
        box = topology.box_vectors
    if isinstance(box, numbers.Real):
        edges = np.full(3, float(box))
    else:
        from ..units import strip

        arr = np.asarray(strip(box, "length", name="box"), dtype=float)
        if arr.shape == (3,):
            edges = arr
        elif arr.shape == (3, 3):
            if np.any(np.abs(arr - np.diag(np.diag(arr))) > 1e-12):
                raise ConfigurationError(f"chain_melt_positions: the box must be rectangular (orthorhombic), got "
                                         f"{arr.tolist()}")
            edges = np.diag(arr).copy()
        else:
            raise ConfigurationError(f"chain_melt_positions: box must be an edge length (nm), three edges or (3, 3) "
                                     f"box vectors, got shape {arr.shape}")
    if not np.all(np.isfinite(edges) & (edges > 0)):
        raise ConfigurationError(f"chain_melt_positions: box edges must be positive, got {edges.tolist()}")
    return edges


def _bond_lengths_in(topology: CGTopology, seq: np.ndarray, starts: np.ndarray, bond_length) -> np.ndarray:
    """Per bead (chain order) the length of the bond from its predecessor (0 for first beads)."""
    types = np.asarray(topology.bead_types, dtype=object)[seq]
    first = np.zeros(len(seq), dtype=bool)
    first[starts] = True
    out = np.zeros(len(seq))
    if isinstance(bond_length, Mapping):
        table = {}
        for k, v in bond_length.items():
            table[key_from_str(k, 2)] = float(v)
        for i in np.flatnonzero(~first):
            key = type_key((types[i - 1], types[i]))
            if key not in table:
                raise ConfigurationError(f"chain_melt_positions: bond_length has no entry for the bond type "
                                         f"{key_to_str(key)}; given for {sorted(key_to_str(k) for k in table)}")
            out[i] = table[key]
    else:
        out[~first] = float(bond_length)
    bad = (~first) & ~(np.isfinite(out) & (out > 0))
    if np.any(bad):
        raise ConfigurationError(f"chain_melt_positions: bond lengths must be positive (nm), got "
                                 f"{sorted(set(out[bad].tolist()))}")
    return out


class _CellList:
    """Placed beads in a periodic grid of cells no smaller than the contact distance: insert, remove, and find
    candidates within the distance of a placed bead."""

    _STENCIL = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])

    def __init__(self, edges: np.ndarray, distance: float, n_beads: int):
        self.edges = edges
        self.distance = float(distance)
        spacing = max(self.distance, float(np.prod(edges) / max(8 * n_beads, 1)) ** (1.0 / 3.0))  # <= 8 N cells
        self.n = np.maximum(1, np.floor(edges / spacing)).astype(np.int64)
        self.size = edges / self.n
        self.cells = np.full((int(np.prod(self.n)), 4), -1, dtype=np.int64)
        self.count = np.zeros(len(self.cells), dtype=np.int64)
        self.cell_of = np.full(n_beads, -1, dtype=np.int64)
        self.slot_of = np.full(n_beads, -1, dtype=np.int64)
        self.wrapped = np.zeros((n_beads, 3))

    def _cell(self, wrapped: np.ndarray) -> np.ndarray:
        c = np.minimum(np.floor(wrapped / self.size).astype(np.int64), self.n - 1)
        return (c[..., 0] * self.n[1] + c[..., 1]) * self.n[2] + c[..., 2]

    def wrap(self, x: np.ndarray) -> np.ndarray:
        w = np.mod(x, self.edges)
        return np.where(w >= self.edges, 0.0, w)

    def clashes(self, candidates: np.ndarray, exempt: np.ndarray) -> np.ndarray:
        """Whether each candidate (m, 3) lies closer than the distance to a placed bead other than ``exempt`` (m,)
        (only the beads in the 27 cells around each candidate are looked at)."""
        m = len(candidates)
        out = np.zeros(m, dtype=bool)
        if self.distance <= 0 or not m:
            return out
        w = self.wrap(candidates)
        c = np.minimum(np.floor(w / self.size).astype(np.int64), self.n - 1)
        nb = np.mod(c[:, None, :] + self._STENCIL[None], self.n)
        ids = ((nb[..., 0] * self.n[1] + nb[..., 1]) * self.n[2] + nb[..., 2]).ravel()
        count = self.count[ids]
        total = int(count.sum())
        if not total:
            return out
        row = np.repeat(np.arange(len(ids)), count)
        offset = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
        members = self.cells[ids[row], offset]
        owner = row // len(self._STENCIL)
        d = self.wrapped[members] - w[owner]
        d -= self.edges * np.round(d / self.edges)
        hit = (np.einsum("kx,kx->k", d, d) < self.distance**2) & (members != exempt[owner])
        out[owner[hit]] = True
        return out

    def insert(self, beads: np.ndarray, positions: np.ndarray) -> None:
        w = self.wrap(positions)
        self.wrapped[beads] = w
        cells = self._cell(w)
        order = np.argsort(cells, kind="stable")
        sorted_cells = cells[order]
        start = np.searchsorted(sorted_cells, sorted_cells, side="left")
        rank = np.empty(len(beads), dtype=np.int64)
        rank[order] = np.arange(len(beads)) - start
        slots = self.count[cells] + rank
        if slots.size and slots.max() >= self.cells.shape[1]:
            grow = max(2 * self.cells.shape[1], int(slots.max()) + 1)
            self.cells = np.concatenate(
                [self.cells, np.full((len(self.cells), grow - self.cells.shape[1]), -1, dtype=np.int64)], axis=1)
        self.cells[cells, slots] = beads
        np.add.at(self.count, cells, 1)
        self.cell_of[beads] = cells
        self.slot_of[beads] = slots

    def remove(self, beads) -> None:
        for b in beads:
            cell, slot = self.cell_of[b], self.slot_of[b]
            last = self.count[cell] - 1
            moved = self.cells[cell, last]
            self.cells[cell, slot] = moved
            self.slot_of[moved] = slot
            self.cells[cell, last] = -1
            self.count[cell] -= 1
            self.cell_of[b] = self.slot_of[b] = -1


def _unit_vectors(rng, shape) -> np.ndarray:
    v = rng.normal(size=(*shape, 3))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _cone_vectors(rng, axis: np.ndarray, n_trials: int, cos_max: float) -> np.ndarray:
    """Unit vectors (m, n_trials, 3) uniform on the cap of the sphere within ``acos(cos_max)`` of ``axis`` (m, 3)."""
    m = len(axis)
    helper = np.zeros((m, 3))
    use_y = np.abs(axis[:, 0]) > 0.9
    helper[~use_y, 0] = 1.0
    helper[use_y, 1] = 1.0
    e1 = helper - np.sum(helper * axis, axis=1, keepdims=True) * axis
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(axis, e1)
    cz = cos_max + (1.0 - cos_max) * rng.random((m, n_trials))
    sz = np.sqrt(np.maximum(0.0, 1.0 - cz * cz))
    phi = 2.0 * np.pi * rng.random((m, n_trials))
    u = (cz[..., None] * axis[:, None, :] + (sz * np.cos(phi))[..., None] * e1[:, None, :]
         + (sz * np.sin(phi))[..., None] * e2[:, None, :])
    return u / np.linalg.norm(u, axis=-1, keepdims=True)


def chain_melt_positions(topology: CGTopology, *, bond_length, density_beads_per_nm3: float | None = None,
                         box=None, seed: int = 0, min_distance: float | None = None, min_angle: float = 90.0,
                         max_restarts: int = 20) -> MeltPositions:
    """Start coordinates for a melt of the chains of ``topology`` in a periodic box.

    Every chain is grown bead by bead as a random walk (all chains at once, vectorised): the first bead uniformly
    in the box, each next one at exactly its bond length from the previous, in a random direction that makes a
    bond angle of at least ``min_angle`` with the previous bond (uniform on that cap of the sphere: no sharp
    back-folding).  A placement closer than ``min_distance`` to any placed bead other than the one it is bonded
    to (minimum image; a periodic cell list) is rejected and tried again, 8 trials at a time; a chain that stays
    stuck backs up by 1, 2, 4, ... beads, and is grown anew from another start when it backs up to nothing, at
    most ``max_restarts`` times.  So no two beads that are not bonded are closer than ``min_distance``, every
    bond has its length (to rounding), and the result depends on ``seed`` alone.

    Parameters
    ----------
    topology : CGTopology
        Linear chains (single-bead molecules are placed as free beads).
    bond_length : float or mapping
        nm: one length for all bonds, or per bead-type pair (``{"E-M": 0.33, "M-M": 0.36}``, e.g. from
        :func:`mean_bond_lengths` of the short-chain data or a force field's ``r0``).
    density_beads_per_nm3 : float, optional
        Number density; the box is the cube of volume ``n_beads / density``.  Or give ``box``.
    box : float, 3 floats or (3, 3) array, optional
        A cubic box edge, or the edges (or diagonal box vectors) of a rectangular box (nm); default the
        topology's box when no density is given.
    seed : int
    min_distance : float, optional
        nm; default 0.8 times the shortest bond.  0 switches the check off.
    min_angle : float
        Degrees, the smallest bond angle of the walk (90: no bond folds back by more than a right angle; 0: a
        free walk).
    max_restarts : int
        Restarts per chain before giving up.

    Returns
    -------
    MeltPositions
        ``positions`` (n_beads, 3) nm, chains whole (unwrapped), and ``box_vectors`` (3, 3) nm.

    Raises
    ------
    ConfigurationError
        Bad arguments (both or neither of density and box, a missing bond type, a triclinic box).
    InvalidSystemError
        ``min_distance`` or a bond reaches half the box; the density is beyond what beads ``min_distance`` apart
        can fill; or a chain could not be grown within ``max_restarts`` restarts (too dense for random growth:
        the message gives the bead packing fraction and what to change).
    """
    from scipy.spatial import cKDTree

    edges = _box_edges(topology, density_beads_per_nm3, box)
    chains = chain_order(topology, what="chain_melt_positions", allow_single=True)
    lengths = np.array([len(c) for c in chains], dtype=np.int64)
    seq = np.concatenate(chains)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    b_in = _bond_lengths_in(topology, seq, starts, bond_length)
    bonded = b_in > 0
    shortest = float(b_in[bonded].min()) if bonded.any() else 0.0
    longest = float(b_in[bonded].max()) if bonded.any() else 0.0
    d = 0.8 * shortest if min_distance is None else float(min_distance)
    if not (math.isfinite(d) and d >= 0):
        raise ConfigurationError(f"chain_melt_positions: min_distance must be >= 0 nm, got {min_distance!r}")
    if not 0.0 <= float(min_angle) < 180.0:
        raise ConfigurationError(f"chain_melt_positions: min_angle must be in [0, 180) degrees, got {min_angle!r}")
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, numbers.Integral) or max_restarts < 0:
        raise ConfigurationError(f"chain_melt_positions: max_restarts must be a whole number >= 0, got "
                                 f"{max_restarts!r}")
    half = 0.5 * float(edges.min())
    if d >= half or longest >= half:
        raise InvalidSystemError(f"chain_melt_positions: the box ({np.round(edges, 4).tolist()} nm) is too small: "
                                 f"min_distance {d:g} nm and the longest bond {longest:g} nm must stay below half its "
                                 f"smallest edge ({half:.4g} nm)")
    volume = float(np.prod(edges))
    rho = topology.n_beads / volume
    phi = rho * np.pi * d**3 / 6.0
    limit = 0.7405 if shortest >= d else 1.481  # close packing (beads bonded closer than d: half of them cannot)
    if phi > limit:
        raise InvalidSystemError(
            f"chain_melt_positions: {topology.n_beads} beads in {volume:.4g} nm^3 ({rho:.4g} beads/nm^3) cannot all "
            f"be {d:g} nm apart: their packing fraction rho*pi*d^3/6 = {phi:.3g} exceeds close packing ({limit:.4g});"
            " lower the density or min_distance")
    cos_max = -math.cos(math.radians(float(min_angle)))  # cos of the largest turn between consecutive bonds
    rng = np.random.default_rng(seed)
    n = len(seq)
    n_trials, patience = 8, 4
    grid = _CellList(edges, d, n)
    pos = np.zeros((n, 3))
    length = np.zeros(len(chains), dtype=np.int64)
    fails = np.zeros_like(length)
    backs = np.zeros_like(length)
    high = np.zeros_like(length)
    restarts = np.zeros_like(length)
    max_iterations = 200 * (int(lengths.max()) + patience * (max_restarts + 1)) + 1000
    iteration = 0

    def give_up(c: int, why: str) -> InvalidSystemError:
        return InvalidSystemError(
            f"chain_melt_positions: cannot pack {len(chains)} chains ({n} beads) at {rho:.4g} beads/nm^3 in a box of "
            f"{np.round(edges, 4).tolist()} nm with min_distance {d:g} nm: {why} (chain {c}, {lengths[c]} beads). "
            f"The bead packing fraction rho*pi*d^3/6 is {phi:.3g}; random growth jams near 0.3. Lower the density or "
            "min_distance (and relax the melt afterwards, relax_melt), or raise max_restarts")

    def propose(k: np.ndarray, n_placed: np.ndarray, trials: int) -> np.ndarray:
        """``trials`` candidate places (len(k), trials, 3) for the beads ``k``, of chains with ``n_placed`` beads."""
        cand = np.empty((len(k), trials, 3))
        at0, at1, at2 = n_placed == 0, n_placed == 1, n_placed >= 2
        if at0.any():
            cand[at0] = rng.random((int(at0.sum()), trials, 3)) * edges
        if at1.any():
            kk = k[at1]
            cand[at1] = pos[kk - 1][:, None, :] + b_in[kk][:, None, None] * _unit_vectors(rng, (len(kk), trials))
        if at2.any():
            kk = k[at2]
            axis = pos[kk - 1] - pos[kk - 2]
            axis /= np.linalg.norm(axis, axis=1, keepdims=True)
            cand[at2] = pos[kk - 1][:, None, :] + b_in[kk][:, None, None] * _cone_vectors(rng, axis, trials, cos_max)
        return cand

    while True:
        active = np.flatnonzero(length < lengths)
        if not active.size:
            break
        iteration += 1
        if iteration > max_iterations:
            raise give_up(int(active[0]), f"no complete melt after {max_iterations} growth rounds")
        k = starts[active] + length[active]
        # one trial per chain first; the chains whose trial clashed get n_trials more
        chosen = np.empty((len(active), 3))
        found = np.zeros(len(active), dtype=bool)
        todo = np.arange(len(active))
        for trials in (1, n_trials):
            cand = propose(k[todo], length[active[todo]], trials)
            exempt = np.repeat(np.where(length[active[todo]] > 0, k[todo] - 1, -1), trials)
            ok = ~grid.clashes(cand.reshape(-1, 3), exempt).reshape(len(todo), trials)
            hit = ok.any(axis=1)
            chosen[todo[hit]] = cand[np.flatnonzero(hit), ok[hit].argmax(axis=1)]
            found[todo[hit]] = True
            todo = todo[~hit]
            if not todo.size:
                break
        idx = np.flatnonzero(found)
        if idx.size > 1 and d > 0:  # two chains may pick places close to each other in the same round
            pairs = cKDTree(grid.wrap(chosen[idx]), boxsize=edges).query_pairs(d, output_type="ndarray")
            if len(pairs):
                found[idx[np.unique(pairs.max(axis=1))]] = False
        good = np.flatnonzero(found)
        if good.size:
            c, kk = active[good], k[good]
            pos[kk] = chosen[good]
            grid.insert(kk, chosen[good])
            length[c] += 1
            fails[c] = 0
            ahead = length[c] > high[c]
            high[c[ahead]] = length[c[ahead]]
            backs[c[ahead]] = 0
        bad = active[~found]
        fails[bad] += 1
        for c in bad[fails[bad] >= patience].tolist():
            depth = int(min(2 ** (backs[c] // 2), length[c]))
            grid.remove(range(starts[c] + length[c] - depth, starts[c] + length[c]))
            length[c] -= depth
            fails[c] = 0
            backs[c] += 1
            if length[c] == 0:
                restarts[c] += 1
                backs[c] = high[c] = 0
                if restarts[c] > max_restarts:
                    raise give_up(c, f"a chain found no room after {max_restarts} restarts")
    out = np.empty((n, 3))
    out[seq] = pos
    return MeltPositions(out, np.diag(edges))


# ----------------------------------------------------------------------------- the force field
@dataclass(frozen=True)
class TransferCheck:
    """What :func:`check_transfer` found.

    Attributes
    ----------
    needed : dict
        Per kind (``"type"``, ``"pair"``, ``"bond"``, ``"angle"``, ``"dihedral"``) the keys the long topology has
        (``"A-B"``, sorted).
    missing : tuple of (term, kind, key)
        Keys a term of the force field needs and has no parameters for (the term's name; ``kind`` as above).
    unseen : dict
        Per kind, keys of the long topology that the short one lacks: their parameters (if any) were never fitted
        to the short chains' data (e.g. an ``M-M-M-M`` dihedral of chains whose short version had three middle
        beads).  Empty without a short topology.
    notes : tuple of str
        Warnings that do not stop the transfer.
    """

    needed: dict
    missing: tuple
    unseen: dict = field(default_factory=dict)
    notes: tuple = ()

    @property
    def ok(self) -> bool:
        return not self.missing

    def describe(self) -> str:
        """One line per missing key, naming its term, and whether the short chains had it."""
        lines = []
        for term, kind, key in self.missing:
            where = (" (not in the short chains: never fitted)" if key in self.unseen.get(kind, ())
                     else "")
            lines.append(f"{kind} {key} in term {term!r}{where}")
        return "; ".join(lines)


def _needed(topology: CGTopology) -> dict[str, list[str]]:
    out = {"type": list(topology.type_names), "pair": [key_to_str(p) for p in topology.type_pairs()]}
    for kind in _ARITY:
        tuples = topology.bonded_tuples(kind)
        out[kind] = sorted({key_to_str(topology.bead_types[i] for i in t) for t in tuples.tolist()})
    return out


def _provided(term) -> list[tuple[str, set[str] | None, bool]]:
    """(kind, keys, required) of what ``term`` parameterises; keys None: could not be read."""
    from ..forces.neural import NeuralForceTerm
    from ..forces.tabulated import AnalyticPairPotential, TabulatedPairPotential

    if isinstance(term, TabulatedPairPotential):
        return [("pair", {key_to_str(k) for k in term.tables}, term.missing == "error")]
    if isinstance(term, AnalyticPairPotential):
        return [("pair", {key_to_str(k) for k in term.coefficients}, True)]
    if isinstance(term, NeuralForceTerm):
        from ..models.priors import PRIORS

        out = [("type", set(term.bundle.type_names), True)]
        for prior in term.bundle.model_config.get("args", {}).get("priors", []) or []:
            kind = getattr(PRIORS.get(prior["name"]), "kind", None)
            params = prior.get("args", {}).get("parameters")
            if kind in _ARITY and isinstance(params, Mapping):
                out.append((kind, {key_to_str(key_from_str(k, _ARITY[kind])) for k in params}, True))
        return out
    kind = getattr(term, "bonded", None)
    if kind in _ARITY:
        table = getattr(term, "parameters", None)
        if table is None:
            table = getattr(term, "tables", None)
        if isinstance(table, Mapping):
            return [(kind, {key_to_str(key_from_str(k, _ARITY[kind])) for k in table}, True)]
    return [("?", None, False)]


def _as_potential(source, options: dict):
    """A CGPotential of ``source``; neural terms built here check bead types only (not the fingerprint, which
    includes each molecule's length)."""
    from pathlib import Path

    from ..forces.neural import NeuralForceTerm
    from ..models.bundle import ModelBundle
    from ..potential import CGPotential

    if isinstance(source, CGPotential):
        if options:
            raise ConfigurationError(f"options {sorted(options)} apply when the force field is built here, not to a "
                                     "CGPotential")
        return source
    is_bundle = isinstance(source, ModelBundle) or (
        isinstance(source, (str, Path)) and Path(source).is_file() and Path(source).suffix != ".json")
    if is_bundle:
        options = {"strict_mapping": False, **options}
    potential = CGPotential(source, **options)
    if not is_bundle and isinstance(source, (str, Path)):
        for term in potential.terms:  # e.g. an IBI directory's base_model.cgml
            if isinstance(term, NeuralForceTerm):
                term.strict_mapping = False
    return potential


def check_transfer(force_field, long_topology: CGTopology, short_topology: CGTopology | None = None,
                   **options) -> TransferCheck:
    """Whether ``force_field`` has parameters for everything ``long_topology`` needs.

    ``force_field`` is what :class:`~openmm_cgml.potential.CGPotential` takes (an IBI output directory, a model
    bundle, a force-field JSON file, terms) or a CGPotential; ``options`` go to CGPotential (bundles).  Checked
    per term: tabulated and analytic pair terms need a table for every pair of the long topology's bead types
    (unless a table term has ``missing="zero"``); bonded terms (harmonic or tabulated bonds, angles, dihedrals)
    every bond, angle or dihedral type key of the long topology of their kind (a kind the force field has no
    term for is not needed); neural terms every bead type among the bundle's types, and their harmonic bond and
    angle priors every key of their kind.  Terms of other kinds are not checked here (a note says so);
    ``createSystem`` refuses them if they lack parameters.
    """
    potential = _as_potential(force_field, options)
    needed = _needed(long_topology)
    unseen: dict[str, list[str]] = {}
    notes: list[str] = []
    if short_topology is not None:
        short = _needed(short_topology)
        unseen = {k: [x for x in v if x not in set(short[k])] for k, v in needed.items()}
        unseen = {k: v for k, v in unseen.items() if v}
    missing = []
    for term in potential.terms:
        for kind, keys, required in _provided(term):
            if keys is None:
                notes.append(f"term {term.name!r} ({getattr(term, 'kind', type(term).__name__)}) was not checked; "
                             "createSystem checks its parameters")
                continue
            lacking = [k for k in needed[kind] if k not in keys]
            if lacking and not required:
                notes.append(f"term {term.name!r} has no table for the pairs {lacking} (missing='zero': they do not "
                             "interact)")
            elif lacking:
                missing.extend((term.name, kind, k) for k in lacking)
        if getattr(term, "exclusions", None) == "molecule" and short_topology is not None and \
                _longest(long_topology) > _longest(short_topology):
            notes.append(
                f"term {term.name!r} excludes every pair inside a molecule (exclusions='molecule', as IBI fits): "
                f"beads of one chain interact only through the bonded terms, so the longer chains "
                f"({_longest(long_topology)} beads, the short ones {_longest(short_topology)}) have no excluded "
                "volume between their distant segments")
        bundle = getattr(term, "bundle", None)
        if bundle is not None and short_topology is not None and bundle.fingerprint != short_topology.fingerprint():
            notes.append(f"the model of term {term.name!r} was trained on the molecules "
                         f"{bundle.mapping.get('molecules')}, not those of the short topology "
                         f"{[list(t) for t in short_topology.molecule_templates()]}")
    return TransferCheck(needed, tuple(missing), unseen, tuple(notes))


def _longest(topology: CGTopology) -> int:
    return int(np.bincount(np.unique(topology.molecule_index, return_inverse=True)[1]).max())


def transfer_system(force_field, short_topology: CGTopology, long_topology: CGTopology, *, box_vectors=None,
                    removeCMMotion: bool = True, **options):
    """The OpenMM System of ``long_topology`` from the force field fitted on ``short_topology``.

    The System comes from ``CGPotential(force_field, **options).createSystem(long_topology)``, the same assembler
    as for the short chains, after :func:`check_transfer` has found parameters for every key the long chains
    need.  A model bundle is used with ``strict_mapping=False`` (its mapping fingerprint includes each molecule's
    bead sequence, which the longer chains necessarily change; the per-key check takes its place), also for an
    IBI directory's ``base_model.cgml``; a CGPotential passed in is used as it is.  Notes of the check are logged
    as warnings.

    Parameters
    ----------
    force_field : path, ModelBundle, ForceTerm(s) or CGPotential
        An IBI output directory, a model bundle (``.cgml``), a force-field JSON file, ...
    short_topology : CGTopology
        The chains the force field was fitted on (for the check; the long topology's bead types must be its).
    long_topology : CGTopology
        With masses, and its box (or ``box_vectors``).
    box_vectors : optional
        The periodic box (nm), e.g. :func:`chain_melt_positions`' ``box_vectors``; default the topology's.
    removeCMMotion : bool
    **options
        For bundles: :class:`~openmm_cgml.forces.neural.NeuralForceTerm` options (``backend``, ``dtype``, ...).

    Raises
    ------
    ConfigurationError
        The force field lacks parameters: the message names every missing key, its term, and whether the short
        chains had it.
    InvalidMappingError
        The long topology has bead types the short one lacks.
    """
    new_types = sorted(set(long_topology.type_names) - set(short_topology.type_names))
    if new_types:
        raise InvalidMappingError(f"transfer_system: the long topology has bead types {new_types} that the short "
                                  f"one ({list(short_topology.type_names)}) lacks; a force field transfers to chains "
                                  "of the same bead types")
    potential = _as_potential(force_field, options)
    check = check_transfer(potential, long_topology, short_topology)
    if not check.ok:
        raise ConfigurationError(f"transfer_system: the force field {force_field} has no parameters for "
                                 f"{check.describe()}; the long chains need them")
    for note in check.notes:
        logger.warning("transfer_system: %s", note)
    top = long_topology if box_vectors is None else long_topology.with_box(box_vectors)
    if top.box_vectors is None:
        logger.warning("transfer_system: the long topology has no box; the System is not periodic (give "
                       "box_vectors, e.g. chain_melt_positions(...).box_vectors)")
    return potential.createSystem(top, removeCMMotion=removeCMMotion)


# ----------------------------------------------------------------------------- relaxation
@dataclass(frozen=True)
class RelaxedMelt:
    """What :func:`relax_melt` ends with: ``positions`` (nm, not wrapped) and ``velocities`` (nm/ps), and the
    potential energies (kJ/mol) at the start, after minimisation and at the end."""

    positions: np.ndarray
    velocities: np.ndarray
    energy_initial: float
    energy_minimized: float
    energy_final: float


def relax_melt(system, positions, box_vectors=None, *, temperature=298.15, timestep=0.01, steps: int = 500,
               thermostat=None, tolerance: float = 10.0, max_iterations: int = 1000, platform: str = "auto",
               seed: int = 0) -> RelaxedMelt:
    """Relax a grown melt: energy minimisation (OpenMM's L-BFGS, ``tolerance`` kJ/mol/nm, at most
    ``max_iterations``), then ``steps`` steps at ``temperature`` (K or a quantity) with ``timestep`` (ps or a
    quantity) under ``thermostat`` (:class:`~openmm_cgml.thermostat.Thermostat`; default Langevin at 10 /ps, a
    strong coupling that takes up the heat of the relaxation).  ``box_vectors`` default to the System's.

    Raises
    ------
    SimulationError
        The energy is not finite at the start, after minimisation or after a block of 100 steps (naming it).
    """
    import openmm
    from openmm import unit

    from ..reference.run import choose_platform
    from ..thermostat import Thermostat, as_thermostat, make_integrator
    from ..units import to_md

    temperature = to_md(temperature, "temperature", name="temperature")
    dt = to_md(timestep, "time", name="timestep")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ConfigurationError(f"relax_melt: steps must be a whole number >= 0, got {steps!r}")
    x = np.asarray(positions, dtype=float)
    if x.shape != (system.getNumParticles(), 3) or not np.all(np.isfinite(x)):
        raise ConfigurationError(f"relax_melt: positions must be finite, shape ({system.getNumParticles()}, 3), "
                                 f"got {x.shape}")
    thermostat = as_thermostat(thermostat, default=Thermostat(kind="langevin", friction="10 /ps"))
    integrator = make_integrator(thermostat, temperature, dt, seed, system=system)
    context = openmm.Context(system, integrator, choose_platform(platform))
    if box_vectors is not None:
        context.setPeriodicBoxVectors(*(openmm.Vec3(*row) for row in np.asarray(box_vectors, dtype=float)))
    context.setPositions(x)

    def energy(stage: str) -> float:
        e = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        if not math.isfinite(e):
            raise SimulationError(f"relax_melt: the potential energy is {e} {stage}; check the start positions "
                                  "(overlaps?) and the force field, or use a smaller timestep")
        return e

    e0 = energy("at the start")
    openmm.LocalEnergyMinimizer.minimize(context, float(tolerance), int(max_iterations))
    e1 = energy("after the energy minimisation")
    context.setVelocitiesToTemperature(temperature * unit.kelvin, int(seed) + 1)
    done = 0
    while done < steps:
        n = min(100, steps - done)
        try:
            integrator.step(n)
        except openmm.OpenMMException as exc:
            raise SimulationError(f"relax_melt: the run failed between steps {done} and {done + n}: {exc}") from exc
        done += n
        e2 = energy(f"after step {done}")
    if steps == 0:
        e2 = e1
    state = context.getState(getPositions=True, getVelocities=True)
    return RelaxedMelt(np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)),
                       np.asarray(state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)),
                       e0, e1, e2)
