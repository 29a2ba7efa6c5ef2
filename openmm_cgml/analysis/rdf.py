"""Radial distribution functions per particle-type pair, with periodic (triclinic) boxes.

Pairs within ``r_max`` are found with a k-d tree against the particles and their periodic images near
the box faces, so every distance is the true minimum-image distance in orthorhombic and triclinic boxes
alike (``r_max`` must not exceed half the smallest perpendicular box width).  Pairs in the same molecule
are counted separately, which gives the intermolecular g(r) normalised by the number of intermolecular
pairs (so that it tends to 1 at large r) and the intramolecular contribution.
"""

from __future__ import annotations

import itertools
import logging
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
    pair_codes = {p: used.index(p[0]) * n_types + used.index(p[1]) for p in pairs}
    analysed = np.flatnonzero(type_code >= 0)

    counts_all = {p: np.zeros((n_frames, n_bins)) for p in pairs}
    counts_intra = {p: np.zeros((n_frames, n_bins)) for p in pairs}
    frames = range(n_frames)
    if progress:
        from tqdm.auto import tqdm

        frames = tqdm(frames, desc="RDF", unit="frame")
    width = (r_max - r_min) / n_bins

    def histogram(code, once: bool) -> np.ndarray:
        hist = np.bincount(code, minlength=n_types * n_types * n_bins).reshape(n_types, n_types, n_bins)
        if once:  # each unordered pair counted once: add the (B, A) view to the (A, B) one
            hist = hist + hist.transpose(1, 0, 2)
        return hist.reshape(n_types * n_types, n_bins)

    for f in frames:
        i, j, d, once = _pairs_within(x[f, analysed], boxes[f], r_max)
        i, j = analysed[i], analysed[j]
        # bins follow edges[k] < d <= edges[k + 1] (uniform bins: arithmetic, not a search); pairs at d <= r_min,
        # coincident particles (d = 0) included, fall out
        k = np.ceil((d - r_min) / width).astype(np.int64) - 1
        keep = (k >= 0) & (k < n_bins)
        i, j, k = i[keep], j[keep], k[keep]
        code = (type_code[i] * n_types + type_code[j]) * n_bins + k
        hist = histogram(code, once)
        if mol is not None:
            same = mol[i] == mol[j]
            hist_intra = histogram(code[same], once)
        for p in pairs:
            counts_all[p][f] = hist[pair_codes[p]]
            if mol is not None:
                counts_intra[p][f] = hist_intra[pair_codes[p]]

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
        if kind == "all":
            counts, norm_pairs = counts_all[p], n_all
        elif kind == "intra":
            counts, norm_pairs = counts_intra[p], n_all
        else:
            counts, norm_pairs = counts_all[p] - counts_intra[p], n_all - n_intra
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
