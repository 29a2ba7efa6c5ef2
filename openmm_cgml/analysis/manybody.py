"""Many-body structure that a pair potential need not reproduce even when its g(r) is right: the three-body
angular distribution of intermolecular neighbours and the distribution of local coordination numbers.

For every particle (a bead), its *neighbours* are the particles of other molecules within ``r_cut`` (by default
the first minimum of the intermolecular g(r), :func:`first_minimum`).  The **angular distribution** is the
probability density of the angle j-i-k between every two neighbours j, k of a centre i (radians, [0, pi]); the
**coordination distribution** is the probability of each neighbour count.  Both are averaged over frames, with
standard errors from blocks of frames, and compared by their overlap coefficient (1 = identical), whose error
is a jackknife over the same blocks (:func:`overlap_with_error`).  Two models compared with one reference share
its sampling noise: :func:`overlap_difference_with_error` gives the difference of their overlaps with a paired
jackknife, which is sharper than the two overlaps' errors combined.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exceptions import TrajectoryError
from ..geometry import minimum_image
from ._checks import as_boxes, as_trajectory, box_volumes, perpendicular_widths
from .distributions import Distribution, distribution_overlap
from .rdf import RDFResult, _pairs_within

__all__ = ["LocalStructure", "compute_local_structure", "default_max_coordination", "first_minimum",
           "overlap_difference_with_error", "overlap_with_error"]


@dataclass(frozen=True)
class LocalStructure:
    """The angular and coordination distributions of one run (:func:`compute_local_structure`).

    ``angle_blocks`` / ``coordination_blocks`` are the densities of each block of frames (rows), from which the
    errors and :func:`overlap_with_error`'s jackknife come."""

    r_cut: float
    angles: Distribution
    coordination: Distribution
    angle_blocks: np.ndarray
    coordination_blocks: np.ndarray
    n_frames: int


def first_minimum(rdf: RDFResult, *, smooth: int = 3) -> float:
    """The first minimum of g(r) after its highest peak (nm): the minimum of the g(r), smoothed over ``smooth``
    bins, between the peak and twice its distance (or the end of the range)."""
    g = np.asarray(rdf.g, dtype=np.float64)
    if smooth > 1:  # a running mean, the ends padded with their own values (zeros would make a minimum there)
        g = np.convolve(np.pad(g, smooth // 2, mode="edge"), np.ones(smooth) / smooth, mode="valid")[:rdf.g.size]
    peak = int(np.argmax(g))
    if g[peak] <= 1.0:
        raise TrajectoryError("g(r) has no peak above 1: no first coordination shell to cut at")
    end = int(np.searchsorted(rdf.r, 2 * rdf.r[peak]))
    if end - peak < 3:
        raise TrajectoryError(f"g(r) peaks at {rdf.r[peak]:.3f} nm, too close to its range's end ({rdf.edges[-1]} nm) "
                              "to find the first minimum; compute it to a larger r_max")
    return float(rdf.r[peak + int(np.argmin(g[peak:end]))])


def _densities(counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Probability densities of histogram ``counts`` (rows)."""
    total = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, total * np.diff(edges), out=np.zeros_like(counts, dtype=np.float64), where=total > 0)


def _distribution(frame_counts: np.ndarray, frame_sums: np.ndarray, frame_sq: np.ndarray, edges: np.ndarray,
                  n_blocks: int) -> tuple[Distribution, np.ndarray]:
    counts = frame_counts.sum(axis=0)
    n = counts.sum()
    if n == 0:
        raise TrajectoryError("no neighbour within the cutoff in any frame: nothing to histogram")
    density = _densities(counts[None].astype(np.float64), edges)[0]
    n_blocks = min(n_blocks, frame_counts.shape[0])
    blocks = np.array([_densities(b.sum(axis=0)[None].astype(np.float64), edges)[0]
                       for b in np.array_split(frame_counts, n_blocks)]) if n_blocks >= 2 else np.empty((0, density.size))
    err = blocks.std(axis=0, ddof=1) / np.sqrt(n_blocks) if n_blocks >= 2 else np.full(density.size, np.nan)
    mean = frame_sums.sum() / n
    std = float(np.sqrt(max(frame_sq.sum() / n - mean**2, 0.0)))
    return Distribution(edges=edges, centers=0.5 * (edges[1:] + edges[:-1]), density=density, density_err=err,
                        mean=float(mean), std=std, n_samples=int(n)), blocks


def default_max_coordination(n_particles: int, volume: float, r_cut: float) -> int:
    """A neighbour-count range wide enough for a liquid: 2.5 times the ideal-gas mean within ``r_cut``, plus 10."""
    return int(np.ceil(2.5 * n_particles / volume * 4 / 3 * np.pi * r_cut**3)) + 10


def compute_local_structure(positions, box, molecule_index, r_cut: float, *, angle_bins: int = 36,
                            max_coordination: int | None = None, n_blocks: int = 5, max_frames: int | None = 400
                            ) -> LocalStructure:
    """Angular and coordination distributions of intermolecular neighbours within ``r_cut`` (module docstring).

    Parameters
    ----------
    positions : array (n_frames, n_particles, 3)
        nm.
    box : array
        Box vectors (as for :func:`~openmm_cgml.analysis.compute_rdf`); ``r_cut`` at most half the smallest
        perpendicular width.
    molecule_index : array (n_particles,)
        Molecule of each particle: neighbours are in other molecules.
    r_cut : float
        Neighbour cutoff, nm.
    angle_bins, max_coordination : int
        Bins of the angle histogram over [0, pi]; the largest neighbour count histogrammed (larger counts are an
        error: raise it; default :func:`default_max_coordination` of the first frame).
    n_blocks : int
        Blocks of frames for the errors.
    max_frames : int, optional
        Use at most this many frames, evenly strided (None: all).
    """
    x = as_trajectory(positions)
    boxes = as_boxes(box, x.shape[0])
    mol = np.asarray(molecule_index)
    if mol.shape != (x.shape[1],):
        raise TrajectoryError(f"molecule_index has shape {mol.shape}, expected ({x.shape[1]},)")
    if not r_cut > 0:
        raise TrajectoryError(f"r_cut must be positive, got {r_cut}")
    width = float(perpendicular_widths(boxes[0]).min())
    if r_cut > width / 2:
        raise TrajectoryError(f"r_cut = {r_cut} nm exceeds half the smallest box width ({width / 2:.3f} nm)")
    if max_coordination is None:
        max_coordination = default_max_coordination(x.shape[1], float(box_volumes(boxes[:1])[0]), r_cut)
    frames = np.arange(x.shape[0])
    if max_frames is not None and frames.size > max_frames:
        frames = frames[np.linspace(0, frames.size - 1, max_frames).round().astype(int)]
    a_edges = np.linspace(0.0, np.pi, angle_bins + 1)
    c_edges = np.arange(max_coordination + 2) - 0.5
    n = x.shape[1]
    a_counts = np.zeros((frames.size, angle_bins), dtype=np.int64)
    c_counts = np.zeros((frames.size, max_coordination + 1), dtype=np.int64)
    a_sum, a_sq, c_sum, c_sq = (np.zeros(frames.size) for _ in range(4))
    for f_i, f in enumerate(frames):
        i, j, _, once = _pairs_within(x[f], boxes[f], r_cut)
        inter = mol[i] != mol[j]
        i, j = i[inter], j[inter]
        if once:
            i, j = np.r_[i, j], np.r_[j, i]
        coordination = np.bincount(i, minlength=n)
        if coordination.max(initial=0) > max_coordination:
            raise TrajectoryError(f"a particle has {coordination.max()} neighbours within {r_cut} nm, more than "
                                  f"max_coordination = {max_coordination}")
        c_counts[f_i] = np.bincount(coordination, minlength=max_coordination + 1)
        c_sum[f_i], c_sq[f_i] = coordination.sum(), (coordination.astype(np.float64) ** 2).sum()
        if i.size == 0:
            continue
        # neighbour vectors grouped by centre, padded to the largest count
        order = np.argsort(i, kind="stable")
        i, j = i[order], j[order]
        vec = minimum_image(x[f, j] - x[f, i], boxes[f])
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)
        start = np.r_[0, np.cumsum(coordination)[:-1]]
        slot = np.arange(i.size) - start[i]
        width_max = int(coordination.max())
        padded = np.zeros((n, width_max, 3))
        valid = np.zeros((n, width_max), dtype=bool)
        padded[i, slot] = vec
        valid[i, slot] = True
        p, q = np.triu_indices(width_max, k=1)
        both = valid[:, p] & valid[:, q]
        cos = np.einsum("npk,npk->np", padded[:, p], padded[:, q])[both]
        theta = np.arccos(np.clip(cos, -1.0, 1.0))
        a_counts[f_i] = np.histogram(theta, bins=a_edges)[0]
        a_sum[f_i], a_sq[f_i] = theta.sum(), (theta**2).sum()
    angles, a_blocks = _distribution(a_counts, a_sum, a_sq, a_edges, n_blocks)
    coordination, c_blocks = _distribution(c_counts, c_sum, c_sq, c_edges, n_blocks)
    return LocalStructure(r_cut=float(r_cut), angles=angles, coordination=coordination, angle_blocks=a_blocks,
                          coordination_blocks=c_blocks, n_frames=int(frames.size))


def overlap_with_error(p: Distribution, q: Distribution, p_blocks: np.ndarray, q_blocks: np.ndarray
                       ) -> tuple[float, float]:
    """The overlap coefficient int min(p, q) dx of two densities on the same bins and its jackknife standard
    error over their blocks (block k of both left out in turn; NaN with fewer than 2 blocks each)."""
    value = distribution_overlap(p, q)  # checks the bins
    width = np.diff(p.edges)
    k = min(len(p_blocks), len(q_blocks))
    if k < 2:
        return value, float("nan")
    pb, qb = np.asarray(p_blocks[:k]), np.asarray(q_blocks[:k])
    loo = []
    for m in range(k):
        keep = np.arange(k) != m
        loo.append(np.sum(np.minimum(pb[keep].mean(axis=0), qb[keep].mean(axis=0)) * width))
    loo = np.asarray(loo)
    return value, float(np.sqrt((k - 1) / k * np.sum((loo - loo.mean()) ** 2)))


def overlap_difference_with_error(p: Distribution, q1: Distribution, q2: Distribution, p_blocks: np.ndarray,
                                  q1_blocks: np.ndarray, q2_blocks: np.ndarray) -> tuple[float, float]:
    """overlap(p, q1) - overlap(p, q2) (positive: q1 is closer to the reference p) and its paired jackknife
    standard error: block k of all three left out in turn, so the reference's noise, common to both overlaps,
    cancels from the error as it does from the difference (NaN with fewer than 2 blocks each).  The overlap of
    sampled histograms is biased low, the more so the closer the two densities, so the difference is biased
    towards 0: a conservative test of which model is closer."""
    value = distribution_overlap(p, q1) - distribution_overlap(p, q2)  # checks the bins
    if not np.array_equal(np.asarray(q1.edges), np.asarray(q2.edges)):
        raise TrajectoryError("the two models' distributions must use the same bins to be compared")
    width = np.diff(p.edges)
    k = min(len(p_blocks), len(q1_blocks), len(q2_blocks))
    if k < 2:
        return value, float("nan")
    pb, ab, bb = (np.asarray(b[:k]) for b in (p_blocks, q1_blocks, q2_blocks))
    loo = []
    for m in range(k):
        keep = np.arange(k) != m
        ref = pb[keep].mean(axis=0)
        loo.append(np.sum((np.minimum(ref, ab[keep].mean(axis=0)) - np.minimum(ref, bb[keep].mean(axis=0))) * width))
    loo = np.asarray(loo)
    return value, float(np.sqrt((k - 1) / k * np.sum((loo - loo.mean()) ** 2)))
