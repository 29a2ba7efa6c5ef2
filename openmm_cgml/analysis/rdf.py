"""Radial distribution functions per particle-type pair, with periodic (triclinic) boxes.

Pairs within ``r_max`` are found with a cell list in array operations: the box is cut into cells along its
fractional coordinates (so triclinic boxes need no special case), the cells are grouped into blocks, and the
particles of each block are compared with every particle, or periodic image, in the cells around the block as
one dense distance matrix (each unordered pair once).  Where particles have few neighbours within ``r_max``, a
k-d tree pair list is used instead; the cell size and block shape (or the tree) are chosen per box from a cost
model of these steps.  Every distance is the true minimum-image distance in orthorhombic and triclinic boxes
alike (``r_max`` must not exceed half the smallest perpendicular box width), and both searches give the same
results.  Pairs in the same molecule are counted separately, which gives the intermolecular g(r) normalised by
the number of intermolecular pairs (so that it tends to 1 at large r) and the intramolecular contribution.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..exceptions import TrajectoryError
from ._checks import as_boxes, as_trajectory, box_volumes, perpendicular_widths, wrap_into_box

__all__ = ["RDFResult", "compute_rdf", "coordination_number", "rdf_difference"]

logger = logging.getLogger(__name__)

_KINDS = ("all", "inter", "intra")
_SHIFTS = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=np.float64)


@dataclass(frozen=True)
class RDFResult:
    """g(r) of one ordered type pair (A, B).

    Attributes
    ----------
    pair : tuple
        The two particle types (A, B).
    kind : str
        ``"all"`` (every pair, normalised by all pairs), ``"inter"`` (pairs in different molecules,
        normalised by the number of intermolecular pairs, so g -> 1 at large r) or ``"intra"`` (pairs in
        the same molecule, normalised like ``"all"``: g_all = g_intra + (n_inter / n_all) g_inter).
    edges : ndarray, shape (n_bins + 1,)
        Bin edges, nm.
    r : ndarray, shape (n_bins,)
        Bin centres, nm.
    g : ndarray, shape (n_bins,)
        g(r) averaged over frames (dimensionless).
    g_err : ndarray, shape (n_bins,)
        Standard error of ``g`` from block averaging over frames (NaN with fewer than 2 frames).
    coordination : ndarray, shape (n_bins,)
        Mean number of B partners (of this kind) of an A particle within the upper edge of each bin.
    n_frames : int
        Frames analysed.
    n_pairs : int
        Number of ordered (A, B) pairs used for the normalisation.
    """

    pair: tuple
    kind: str
    edges: np.ndarray
    r: np.ndarray
    g: np.ndarray
    g_err: np.ndarray
    coordination: np.ndarray
    n_frames: int
    n_pairs: int


def _images(frac: np.ndarray, box: np.ndarray, r_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Points (fractional coordinates in [0, 1)) and their periodic images within r_max of the box.

    Returns the Cartesian image positions and, for each, the index of the point it is an image of.
    """
    margin = r_max / perpendicular_widths(box)
    images = (frac[None, :, :] + _SHIFTS[:, None, :]).reshape(-1, 3)
    origin = np.tile(np.arange(frac.shape[0]), _SHIFTS.shape[0])
    keep = np.all((images >= -margin) & (images < 1.0 + margin), axis=1)
    return images[keep] @ box, origin[keep]


def _pairs_within(x: np.ndarray, box: np.ndarray, r_max: float, *,
                  periodic_tree: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Pairs (i, j) of ``x`` (n, 3) within ``r_max`` (minimum image), their distances, and whether each pair is
    listed once (i < j, ``True``) or in both orders (``False``).

    Orthorhombic boxes use scipy's periodic k-d tree (each pair once); triclinic boxes search the particles
    against their periodic images near the box faces (every ordered pair; ``periodic_tree=False`` forces that
    path for any box).
    """
    if periodic_tree and np.count_nonzero(box - np.diag(np.diag(box))) == 0:
        lengths = np.diag(box).copy()
        wrapped = np.mod(x, lengths)
        wrapped[wrapped >= lengths] = 0.0  # np.mod can round up to the box length itself
        pairs = cKDTree(wrapped, boxsize=lengths).query_pairs(r_max, output_type="ndarray")
        a, b = pairs[:, 0], pairs[:, 1]
        delta = wrapped[b] - wrapped[a]
        delta -= lengths * np.round(delta / lengths)
        return a, b, np.sqrt(np.einsum("ij,ij->i", delta, delta)), True
    wrapped, frac = wrap_into_box(x, box)
    images, origin = _images(frac, box, r_max)
    found = cKDTree(wrapped).sparse_distance_matrix(cKDTree(images), r_max, output_type="ndarray")
    i, j = found["i"], origin[found["j"]]
    keep = i != j  # a particle's own periodic images (only in boxes narrower than 2 r_max, which are refused)
    return i[keep], j[keep], found["v"][keep], False


# ---- the cell-list pair histogram used by compute_rdf -------------------------------------------------------------

_CHUNK = 1 << 16  # candidate pairs per dense distance matrix (small enough to stay in the CPU cache)
_BATCH = 1 << 18  # distances binned at a time
# Rough relative costs (seconds) of the steps, for choosing the cell size and block shape: one dense distance
# matrix (a dozen NumPy calls), one candidate pair in it, one particle gathered into a block's neighbourhood, and
# one (block, neighbour cell) entry of the geometry.
_COST_MATRIX = 2.0e-5
_COST_CANDIDATE = 1.6e-9
_COST_GATHERED = 8.0e-9
_COST_ENTRY = 5.0e-8
_COST_SETUP = (4.0e-4, 2.0e-4, 3.0e-7)  # per frame, per type pair, per particle (sorting, neighbour lists)
# The k-d tree pair list (:func:`_pairs_within`) wins when particles have few neighbours: its costs per particle and
# per pair found (orthorhombic boxes; the image search of triclinic boxes lists every pair twice and costs more).
_COST_TREE_SETUP = 1.5e-4
_COST_TREE_PARTICLE = 1.1e-6
_COST_TREE_PAIR = 1.3e-7
_COST_TREE_PAIR_TRICLINIC = 3.2e-7
_TREE = "k-d tree"
_MAX_ENTRIES = 4_000_000  # (block, neighbour cell) entries a geometry may have (memory)
_BLOCK_SHAPES = ((1, 1, 1), (1, 1, 2), (2, 2, 1), (2, 2, 2), (2, 2, 4), (3, 3, 3), (4, 4, 4), (6, 6, 6), (8, 8, 8))


@dataclass(frozen=True)
class _Geometry:
    """Blocks of cells and, for each block, the cells (and periodic images of cells) within reach of it.

    The extended grid has ``reach`` more cells on either side of the box in each direction; its cell ``e`` is the
    image of cell ``ext_cell[e]`` shifted by ``ext_shift[e]`` box vectors.  ``entry_block`` and ``entry_ext`` list
    (block, extended cell within reach) entries, grouped by block.  ``full`` takes all of them (pairs of two
    different types: every ordered pair).  ``half`` keeps each unordered pair once (pairs of one type): a block's own
    cells come first, in the order of its particles (pairs among them are kept for a later partner only), followed
    by the cells of later blocks and the images of its own cells shifted forwards.
    """

    n_blocks: int
    block_of_cell: np.ndarray
    ext_cell: np.ndarray
    ext_shift: np.ndarray
    entry_block: np.ndarray
    entry_ext: np.ndarray
    full: np.ndarray
    half: np.ndarray


def _grids(box: np.ndarray, r_max: float, n_particles: int):
    """Candidate cell grids ``(cells per box vector, reach in cells)``: cells of r_max / 3, / 2 and / 1 (and coarser
    ones when that would leave most cells empty); a pair within r_max is at most ``reach`` cells apart."""
    widths = perpendicular_widths(box)
    volume = float(abs(np.linalg.det(box)))
    sizes = [r_max / 3, r_max / 2, r_max]
    sparse = np.cbrt(volume / max(n_particles, 1))  # cell edge holding one particle on average
    sizes += [sparse * f for f in (1.0, 2.0, 4.0) if sparse * f > r_max]
    grids = {}
    for size in sizes:
        n = np.maximum(1, np.floor(widths / (size * (1 + 1e-9)))).astype(np.int64)
        reach = np.maximum(1, np.ceil(r_max * n / widths * (1 + 1e-9))).astype(np.int64)
        grids[tuple(n.tolist())] = tuple(reach.tolist())
    return grids


@functools.lru_cache(maxsize=64)
def _plan(box_vectors: tuple, r_max: float, sizes: tuple, type_pairs: tuple) -> tuple | str:
    """The (cells, reach, block shape) with the lowest estimated cost for these type pairs, or ``_TREE`` where the
    k-d tree pair list is expected to be cheaper; ``box_vectors`` are the 9 entries of the box, ``sizes`` the
    numbers of particles of each type code."""
    box = np.array(box_vectors, dtype=np.float64).reshape(3, 3)
    n_particles = float(sum(sizes))
    pairs = 0.5 * n_particles**2 * (4.0 / 3.0 * np.pi * r_max**3) / abs(np.linalg.det(box))
    orthorhombic = np.count_nonzero(box - np.diag(np.diag(box))) == 0
    best = _TREE
    best_cost = _COST_TREE_SETUP + _COST_TREE_PARTICLE * n_particles + pairs * (
        _COST_TREE_PAIR if orthorhombic else _COST_TREE_PAIR_TRICLINIC)
    setup = _COST_SETUP[0] + _COST_SETUP[1] * len(type_pairs) + _COST_SETUP[2] * n_particles
    for n, reach in _grids(box, r_max, int(n_particles)).items():
        n_arr, reach_arr = np.array(n), np.array(reach)
        n_total = int(np.prod(n_arr))
        seen = set()
        for shape in _BLOCK_SHAPES:
            b = np.minimum(shape, n_arr)
            if tuple(b) in seen:
                continue
            seen.add(tuple(b))
            n_blocks = int(np.prod(-(-n_arr // b)))
            span = int(np.prod(b + 2 * reach_arr))
            entries = n_blocks * span
            if entries > _MAX_ENTRIES:
                continue
            cost = setup + _COST_ENTRY * entries
            for ca, cb in type_pairs:
                n_i, n_j = float(sizes[ca]), float(sizes[cb])
                per_block = n_i / n_blocks
                filled = n_blocks * -math.expm1(-per_block)  # blocks holding a particle
                gathered = n_j * span / n_total  # particles in a block's neighbourhood
                if ca == cb:
                    gathered = 0.5 * (gathered + per_block)
                rows = n_i / max(filled, 1e-300)
                matrices = filled * max(1.0, math.ceil(rows * gathered / _CHUNK))
                cost += (_COST_MATRIX * matrices + _COST_CANDIDATE * n_i * gathered
                         + _COST_GATHERED * n_blocks * gathered)
            if cost < best_cost:
                best, best_cost = (n, reach, tuple(b.tolist())), cost
    return best


@functools.lru_cache(maxsize=8)
def _geometry(n_cells: tuple, reach: tuple, block: tuple) -> _Geometry:
    """The blocks of a grid of ``n_cells`` cells and their neighbour cells (see :class:`_Geometry`)."""
    n, reach_arr, b = np.array(n_cells), np.array(reach), np.array(block)
    blocks_per_dim = -(-n // b)
    n_blocks = int(np.prod(blocks_per_dim))
    cell3 = np.indices(n_cells).reshape(3, -1).T
    block_of_cell = np.ravel_multi_index((cell3 // b).T, blocks_per_dim)
    ext_dims = tuple((n + 2 * reach_arr).tolist())
    ext3 = np.indices(ext_dims).reshape(3, -1).T - reach_arr
    ext_shift = np.floor_divide(ext3, n)
    ext_cell = np.ravel_multi_index((ext3 - ext_shift * n).T, n_cells)
    lo = np.indices(tuple(blocks_per_dim)).reshape(3, -1).T * b
    hi = np.minimum(lo + b, n)
    span = b + 2 * reach_arr
    around = lo[:, None, :] + np.indices(tuple(span)).reshape(3, -1).T[None]  # extended-grid coordinates
    entry_block, which = np.nonzero(np.all(around < (hi + 2 * reach_arr)[:, None, :], axis=2))
    entry_ext = np.ravel_multi_index(around[entry_block, which].T, ext_dims)
    shift = ext_shift[entry_ext]
    owner = block_of_cell[ext_cell[entry_ext]]
    own = owner == entry_block
    forward = (shift[:, 0] > 0) | ((shift[:, 0] == 0) & ((shift[:, 1] > 0) | ((shift[:, 1] == 0) & (shift[:, 2] > 0))))
    first = own & ~np.any(shift, axis=1)
    keep = np.flatnonzero(first | (owner > entry_block) | (own & forward))
    half = keep[np.argsort(2 * entry_block[keep] + ~first[keep], kind="stable")]
    geometry = _Geometry(n_blocks=n_blocks, block_of_cell=block_of_cell, ext_cell=ext_cell,
                         ext_shift=ext_shift.astype(np.float64), entry_block=entry_block, entry_ext=entry_ext,
                         full=np.arange(entry_block.size), half=half)
    for a in (geometry.block_of_cell, geometry.ext_cell, geometry.ext_shift, geometry.entry_block,
              geometry.entry_ext, geometry.full, geometry.half):
        a.flags.writeable = False
    return geometry


def _ragged_range(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])`` without the loop."""
    ends = np.cumsum(counts)
    return np.arange(int(ends[-1]) if ends.size else 0) - np.repeat(ends - counts - starts, counts)


def _frame_counts(wrapped: np.ndarray, frac: np.ndarray, box: np.ndarray, code: np.ndarray, n_types: int,
                  mol: np.ndarray | None, kind: str, type_pairs: list, plan: tuple, r_min: float, r_max: float,
                  n_bins: int) -> dict:
    """Histograms of one frame: ``{(a, b): counts}`` (``a <= b`` type codes) of the ordered pairs of particles of
    types a and b of this ``kind`` at minimum-image distance ``edges[k] < d <= edges[k + 1]``.

    ``wrapped`` (n, 3) are the positions in the box and ``frac`` their fractional coordinates in [0, 1]; particles
    with ``code < 0`` are left out.
    """
    n_cells, reach, block = plan
    geo = _geometry(n_cells, reach, block)
    n = np.array(n_cells)
    total_cells, n_blocks = int(np.prod(n)), geo.n_blocks
    sel = np.flatnonzero(code >= 0)
    cell = np.ravel_multi_index(np.minimum((frac[sel] * n).astype(np.int64), n - 1).T, n_cells)
    # sort the particles by (type, block, cell): a block's particles of one type are contiguous, and so are a cell's
    key = (code[sel] * n_blocks + geo.block_of_cell[cell]) * total_cells + cell
    order = np.argsort(key, kind="stable")
    key, idx = key[order], sel[order]
    xyz = [np.ascontiguousarray(wrapped[idx, d]) for d in range(3)]
    mol_sorted = None if kind == "all" else mol[idx]
    types = np.arange(n_types)[:, None]
    cell_key = (types * n_blocks + geo.block_of_cell) * total_cells + np.arange(total_cells)
    cell_start = np.searchsorted(key, cell_key)
    cell_count = np.searchsorted(key, cell_key, side="right") - cell_start
    block_key = (types * n_blocks + np.arange(n_blocks)) * total_cells
    block_start, block_stop = np.searchsorted(key, block_key), np.searchsorted(key, block_key + total_cells)
    ext_shift = geo.ext_shift @ box
    extended = {}
    counts = {}
    for ca, cb in type_pairs:
        if cb not in extended:  # particles of type cb in every cell of the extended grid, shifted
            per_cell = cell_count[cb, geo.ext_cell]
            src = _ragged_range(cell_start[cb, geo.ext_cell], per_cell)
            extended[cb] = (np.cumsum(per_cell) - per_cell, per_cell,
                            [xyz[d][src] + np.repeat(ext_shift[:, d], per_cell) for d in range(3)],
                            None if mol_sorted is None else mol_sorted[src])
        start, per_cell, ext_xyz, ext_mol = extended[cb]
        entries = geo.half if ca == cb else geo.full
        cells = geo.entry_ext[entries]
        per_entry = per_cell[cells]
        j = _ragged_range(start[cells], per_entry)
        per_block = np.bincount(geo.entry_block[entries], weights=per_entry, minlength=n_blocks)
        j_stop = np.cumsum(per_block).astype(np.int64)
        j_start = j_stop - per_block.astype(np.int64)
        mol_j = None if ext_mol is None else ext_mol[j]
        counts[(ca, cb)] = _block_histogram(xyz, [c[j] for c in ext_xyz], mol_sorted, mol_j, kind, ca == cb,
                                            block_start[ca], block_stop[ca], j_start, j_stop, r_min, r_max, n_bins)
    return counts


def _frame_counts_tree(x: np.ndarray, box: np.ndarray, code: np.ndarray, n_types: int, mol: np.ndarray | None,
                       kind: str, type_pairs: list, r_min: float, r_max: float, n_bins: int) -> dict:
    """:func:`_frame_counts` from the k-d tree pair list (for particles with few neighbours)."""
    sel = np.flatnonzero(code >= 0)
    i, j, d, once = _pairs_within(x[sel], box, r_max)
    i, j = sel[i], sel[j]
    k = np.ceil((d - r_min) / ((r_max - r_min) / n_bins)).astype(np.int64) - 1
    keep = (k >= 0) & (k < n_bins)
    if kind != "all":
        same = mol[i] == mol[j]
        keep &= same if kind == "intra" else ~same
    i, j, k = i[keep], j[keep], k[keep]
    hist = np.bincount((code[i] * n_types + code[j]) * n_bins + k, minlength=n_types * n_types * n_bins)
    hist = hist.reshape(n_types, n_types, n_bins)
    if once:  # each unordered pair listed once: add the (B, A) view to the (A, B) one
        hist = hist + hist.transpose(1, 0, 2)
    return {(a, b): hist[a, b].astype(np.float64) for a, b in type_pairs}


def _block_histogram(xyz, neighbours, mol_i, mol_j, kind, same, i_start, i_stop, j_start, j_stop,
                     r_min, r_max, n_bins) -> np.ndarray:
    """Distance histogram (ordered pairs) of the blocks' particles ``xyz[:, i_start:i_stop]`` against their
    neighbours ``neighbours[:, j_start:j_stop]``; with ``same`` the first ``i_stop - i_start`` neighbours of a block
    are its own particles, paired only with later ones (and the result is doubled)."""
    width = (r_max - r_min) / n_bins
    cut2 = (r_max * (1 + 1e-12)) ** 2  # generous: the bins below decide exactly as before
    longest = int(max(np.max(j_stop - j_start, initial=0), 1))
    size = max(_CHUNK, longest)
    work, square, mask = np.empty(size), np.empty(size), np.empty(size, dtype=bool)
    own = np.arange(int(np.max(i_stop - i_start, initial=0)) if same else 0)
    batch = np.empty(max(_BATCH, size))
    hist = np.zeros(n_bins + 2, dtype=np.int64)
    filled = 0
    x, y, z = xyz
    nx, ny, nz = neighbours
    exclude = None if mol_i is None else (np.equal if kind == "inter" else np.not_equal)

    def flush(v):
        # bin index as before: k = ceil((d - r_min) / width) - 1, kept for 0 <= k < n_bins
        np.sqrt(v, out=v)
        if r_min:
            np.subtract(v, r_min, out=v)
        np.divide(v, width, out=v)
        np.ceil(v, out=v)
        if r_min:
            np.maximum(v, 0, out=v)
        np.minimum(v, n_bins + 1, out=v)
        return np.bincount(v.astype(np.intp), minlength=n_bins + 2)

    for i0, i1, j0, j1 in zip(i_start.tolist(), i_stop.tolist(), j_start.tolist(), j_stop.tolist(), strict=True):
        k = j1 - j0
        if i1 == i0 or k == 0:
            continue
        m_own = i1 - i0
        rows = max(1, _CHUNK // k)
        for r0 in range(i0, i1, rows):
            r1 = min(i1, r0 + rows)
            cnt = (r1 - r0) * k
            d2 = work[:cnt].reshape(r1 - r0, k)
            sq = square[:cnt].reshape(r1 - r0, k)
            np.subtract(x[r0:r1, None], nx[j0:j1], out=d2)
            np.multiply(d2, d2, out=d2)
            np.subtract(y[r0:r1, None], ny[j0:j1], out=sq)
            np.multiply(sq, sq, out=sq)
            np.add(d2, sq, out=d2)
            np.subtract(z[r0:r1, None], nz[j0:j1], out=sq)
            np.multiply(sq, sq, out=sq)
            np.add(d2, sq, out=d2)
            if same:  # a block's own particles: only pairs (i, j) with j after i
                tri = mask[:(r1 - r0) * m_own].reshape(r1 - r0, m_own)
                np.greater_equal(own[r0 - i0:r1 - i0, None], own[None, :m_own], out=tri)
                np.copyto(d2[:, :m_own], np.inf, where=tri)
            flags = mask[:cnt].reshape(r1 - r0, k)
            if exclude is not None:
                exclude(mol_i[r0:r1, None], mol_j[j0:j1], out=flags)
                np.copyto(d2, np.inf, where=flags)
            np.less_equal(d2, cut2, out=flags)
            kept = int(np.count_nonzero(mask[:cnt]))
            if filled + kept > batch.size:
                hist += flush(batch[:filled])
                filled = 0
            np.compress(mask[:cnt], work[:cnt], out=batch[filled:filled + kept])
            filled += kept
    if filled:
        hist += flush(batch[:filled])
    counts = hist[1:n_bins + 1].astype(np.float64)
    return 2.0 * counts if same else counts


def compute_rdf(positions, box, types=None, *, molecule_index=None, pairs=None, r_max: float = 1.5,
                n_bins: int = 150, r_min: float = 0.0, kind: str = "all", n_blocks: int = 5,
                progress: bool = False) -> dict[tuple, RDFResult]:
    """Radial distribution functions g_AB(r) for type pairs.

    Parameters
    ----------
    positions : array, shape (n_frames, n_particles, 3)
        Positions, nm (wrapped or not).
    box : array
        Box vectors, nm: (3,), (3, 3), (n_frames, 3) or (n_frames, 3, 3) (rows are vectors; triclinic
        boxes are supported; the volume may change between frames).
    types : sequence, shape (n_particles,), optional
        Type label of each particle (bead or atom type); all particles share one type if omitted.
    molecule_index : sequence of int, shape (n_particles,), optional
        Molecule of each particle; required for ``kind="inter"`` and ``kind="intra"``.
    pairs : sequence of (A, B), optional
        Type pairs to compute; default every unordered pair of the types present (A <= B).
    r_max, r_min : float
        Range of distances, nm.  ``r_max`` must not exceed half the smallest perpendicular box width.
    n_bins : int
        Number of histogram bins.
    kind : {"all", "inter", "intra"}
        Which pairs to count (see :class:`RDFResult`).
    n_blocks : int
        Blocks of frames for the standard errors.
    progress : bool
        Show a progress bar over frames.

    Returns
    -------
    dict
        ``{(A, B): RDFResult}``.
    """
    x = as_trajectory(positions)
    n_frames, n = x.shape[:2]
    boxes = as_boxes(box, n_frames)
    if kind not in _KINDS:
        raise TrajectoryError(f"kind must be one of {_KINDS}, got {kind!r}")
    types = np.zeros(n, dtype=np.int64) if types is None else np.asarray(types)
    if types.shape != (n,):
        raise TrajectoryError(f"types must have one entry per particle ({n}), got shape {types.shape}")
    if kind != "all" and molecule_index is None:
        raise TrajectoryError(f"kind={kind!r} needs molecule_index (the molecule of each particle)")
    if not (0.0 <= r_min < r_max):
        raise TrajectoryError(f"need 0 <= r_min < r_max, got r_min={r_min}, r_max={r_max}")
    if n_bins < 1:
        raise TrajectoryError(f"n_bins must be positive, got {n_bins}")
    half_width = min(perpendicular_widths(b).min() for b in boxes) / 2.0
    if r_max > half_width * (1 + 1e-9):
        raise TrajectoryError(
            f"r_max = {r_max:.4g} nm exceeds half the smallest perpendicular box width ({half_width:.4g} nm); "
            "minimum-image distances are undefined beyond it"
        )
    unique = list(dict.fromkeys(sorted(types.tolist()))) if types.dtype != object else list(dict.fromkeys(types))
    if pairs is None:
        pairs = [(a, b) for i, a in enumerate(unique) for b in unique[i:]]
    pairs = [tuple(p) for p in pairs]
    members = {t: np.flatnonzero(types == t) for t in {t for p in pairs for t in p}}
    for t, idx in members.items():
        if idx.size == 0:
            raise TrajectoryError(f"no particle has type {t!r}; types present: {unique}")

    edges = np.linspace(r_min, r_max, n_bins + 1)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    if molecule_index is not None:
        mol = np.asarray(molecule_index)
        if mol.shape != (n,):
            raise TrajectoryError(f"molecule_index must have one entry per particle ({n}), got shape {mol.shape}")
        mol = np.unique(mol, return_inverse=True)[1]
    else:
        mol = None
    used = sorted(members, key=str)
    type_code = np.full(n, -1, dtype=np.int64)
    for c, t in enumerate(used):
        type_code[members[t]] = c
    n_types = len(used)
    pair_code = {p: tuple(sorted((used.index(p[0]), used.index(p[1])))) for p in pairs}
    type_pairs = sorted(set(pair_code.values()))
    sizes = tuple(np.bincount(type_code[type_code >= 0], minlength=n_types).tolist())

    counts_kind = {p: np.zeros((n_frames, n_bins)) for p in pairs}
    frames = range(n_frames)
    if progress:
        from tqdm.auto import tqdm

        frames = tqdm(frames, desc="RDF", unit="frame")
    plan, plan_box = None, None
    for f in frames:
        box_f = boxes[f]
        if plan is None or not np.array_equal(box_f, plan_box):
            plan, plan_box = _plan(tuple(box_f.ravel().tolist()), r_max, sizes, tuple(type_pairs)), box_f
        # bins follow edges[k] < d <= edges[k + 1] (uniform bins: arithmetic, not a search); pairs at d <= r_min,
        # coincident particles (d = 0) included, fall out; each type pair's counts are of ordered pairs
        if plan == _TREE:
            hist = _frame_counts_tree(x[f], box_f, type_code, n_types, mol, kind, type_pairs, r_min, r_max, n_bins)
        else:
            if np.count_nonzero(box_f - np.diag(np.diag(box_f))) == 0:
                lengths = np.diag(box_f).copy()
                wrapped = np.mod(x[f], lengths)
                wrapped[wrapped >= lengths] = 0.0  # np.mod can round up to the box length itself
                frac = wrapped / lengths
            else:
                wrapped, frac = wrap_into_box(x[f], box_f)
            hist = _frame_counts(wrapped, frac, box_f, type_code, n_types, mol, kind, type_pairs, plan, r_min, r_max,
                                 n_bins)
        for p in pairs:
            counts_kind[p][f] = hist[pair_code[p]]

    volumes = box_volumes(boxes)
    results = {}
    for p in pairs:
        n_a, n_b = members[p[0]].size, members[p[1]].size
        n_all = n_a * (n_b - 1) if p[0] == p[1] else n_a * n_b
        if mol is not None:
            per_mol_a = np.bincount(mol[members[p[0]]], minlength=mol.max() + 1)
            per_mol_b = np.bincount(mol[members[p[1]]], minlength=mol.max() + 1)
            same = per_mol_a * (per_mol_b - 1) if p[0] == p[1] else per_mol_a * per_mol_b
            n_intra = int(same.sum())
        else:
            n_intra = 0
        counts = counts_kind[p]  # pairs of this kind only
        norm_pairs = n_all - n_intra if kind == "inter" else n_all
        if norm_pairs <= 0:
            raise TrajectoryError(f"type pair {p} has no {kind} pairs to normalise by")
        g_frames = counts * volumes[:, None] / (norm_pairs * shell[None, :])
        g = g_frames.mean(axis=0)
        g_err = _block_error(g_frames, n_blocks)
        coordination = np.cumsum(counts.mean(axis=0)) / n_a
        results[p] = RDFResult(pair=p, kind=kind, edges=edges, r=0.5 * (edges[1:] + edges[:-1]), g=g, g_err=g_err,
                               coordination=coordination, n_frames=n_frames, n_pairs=int(norm_pairs))
    return results


def _block_error(values: np.ndarray, n_blocks: int) -> np.ndarray:
    """Standard error of the mean over axis 0 from ``n_blocks`` contiguous blocks."""
    n = values.shape[0]
    n_blocks = min(n_blocks, n)
    if n_blocks < 2:
        return np.full(values.shape[1:], np.nan)
    blocks = np.array([b.mean(axis=0) for b in np.array_split(values, n_blocks)])
    return blocks.std(axis=0, ddof=1) / np.sqrt(n_blocks)


def coordination_number(result: RDFResult, r_cut: float) -> float:
    """Mean number of partners within ``r_cut`` (nm), interpolated on the cumulative counts."""
    if not result.edges[0] <= r_cut <= result.edges[-1]:
        raise TrajectoryError(f"r_cut = {r_cut} nm is outside the RDF range [{result.edges[0]}, {result.edges[-1]}] nm")
    return float(np.interp(r_cut, result.edges, np.r_[0.0, result.coordination]))


def rdf_difference(reference: RDFResult, other: RDFResult) -> float:
    """Root-mean-square difference of two g(r) on the same bins: sqrt(int (g1 - g2)^2 dr / int dr).

    This is the metric reported by :func:`openmm_cgml.analysis.compare.compare_runs` (dimensionless).
    """
    if reference.edges.shape != other.edges.shape or not np.allclose(reference.edges, other.edges):
        raise TrajectoryError("the two RDFs must use the same bins to be compared")
    width = np.diff(reference.edges)
    return float(np.sqrt(np.sum((reference.g - other.g) ** 2 * width) / width.sum()))
