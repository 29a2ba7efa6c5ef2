"""Bonded distributions (bonds, angles, dihedrals), densities and molecular centres.

Geometry uses minimum-image vectors, so molecules broken across the periodic boundary are handled.
Lengths in nm, angles in radians, densities in g/cm^3, masses in Da.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exceptions import TrajectoryError
from ..topology import angles_from_bonds, dihedrals_from_bonds
from ._checks import as_boxes, as_times, as_trajectory, box_volumes, minimum_image
from .statistics import Estimate, mean_with_error

__all__ = [
    "Distribution",
    "DensityResult",
    "compute_bonds",
    "compute_angles",
    "compute_dihedrals",
    "enumerate_angles",
    "enumerate_dihedrals",
    "compute_distribution",
    "distribution_overlap",
    "compute_density",
    "density_timeseries",
    "molecule_centers",
]

#: g/cm^3 per Da/nm^3.
DA_PER_NM3_TO_G_PER_CM3 = 1.66053906660e-3


@dataclass(frozen=True)
class Distribution:
    """A normalised histogram (probability density) with block-averaged errors.

    Attributes
    ----------
    edges : ndarray (n_bins + 1,)
    centers : ndarray (n_bins,)
    density : ndarray (n_bins,)
        Probability density (integrates to 1 over the range), in 1/unit of the values.
    density_err : ndarray (n_bins,)
        Standard error from blocks of frames (NaN with fewer than 2 frames).
    mean, std : float
        Of the values.
    n_samples : int
    """

    edges: np.ndarray
    centers: np.ndarray
    density: np.ndarray
    density_err: np.ndarray
    mean: float
    std: float
    n_samples: int


@dataclass(frozen=True)
class DensityResult:
    """Mass density time series.

    Attributes
    ----------
    times : ndarray (n_frames,), ps
    density : ndarray (n_frames,), g/cm^3
    average : Estimate
        Mean over the equilibrated part with its standard error (pymbar statistical inefficiency).
    t0 : int
        First frame of the equilibrated part.
    """

    times: np.ndarray
    density: np.ndarray
    average: Estimate
    t0: int


def _indices(indices, width: int, n_particles: int, name: str) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64)
    if idx.ndim != 2 or idx.shape[1] != width:
        raise TrajectoryError(f"{name} must have shape (n, {width}), got {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= n_particles):
        raise TrajectoryError(f"{name} refer to particles outside 0..{n_particles - 1}")
    return idx


def _vectors(x, boxes, i, j):
    return minimum_image(x[:, j] - x[:, i], boxes) if boxes is not None else x[:, j] - x[:, i]


def compute_bonds(positions, pairs, box=None) -> np.ndarray:
    """Distances (n_frames, n_pairs), nm, between particle pairs ``(n_pairs, 2)`` (minimum image if ``box``)."""
    x = as_trajectory(positions)
    idx = _indices(pairs, 2, x.shape[1], "pairs")
    boxes = None if box is None else as_boxes(box, x.shape[0])
    return np.linalg.norm(_vectors(x, boxes, idx[:, 0], idx[:, 1]), axis=-1)


def compute_angles(positions, triples, box=None) -> np.ndarray:
    """Angles (n_frames, n_triples), radians in [0, pi], at the middle particle of each triple."""
    x = as_trajectory(positions)
    idx = _indices(triples, 3, x.shape[1], "triples")
    boxes = None if box is None else as_boxes(box, x.shape[0])
    a = _vectors(x, boxes, idx[:, 1], idx[:, 0])
    b = _vectors(x, boxes, idx[:, 1], idx[:, 2])
    cos = np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.arccos(np.clip(cos, -1.0, 1.0))


def compute_dihedrals(positions, quadruples, box=None) -> np.ndarray:
    """Dihedral angles (n_frames, n_quadruples), radians in (-pi, pi] (IUPAC sign convention)."""
    x = as_trajectory(positions)
    idx = _indices(quadruples, 4, x.shape[1], "quadruples")
    boxes = None if box is None else as_boxes(box, x.shape[0])
    b1 = _vectors(x, boxes, idx[:, 0], idx[:, 1])
    b2 = _vectors(x, boxes, idx[:, 1], idx[:, 2])
    b3 = _vectors(x, boxes, idx[:, 2], idx[:, 3])
    n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
    y = np.linalg.norm(b2, axis=-1) * np.sum(b1 * n2, axis=-1)
    return np.arctan2(y, np.sum(n1 * n2, axis=-1))


def enumerate_angles(bonds) -> np.ndarray:
    """All angle triples (i, j, k), i < k, from a bond list ``(n_bonds, 2)`` (:func:`openmm_cgml.topology.angles_from_bonds`)."""
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    return angles_from_bonds(bonds, int(bonds.max()) + 1 if bonds.size else 0)


def enumerate_dihedrals(bonds) -> np.ndarray:
    """All proper dihedral quadruples (i, j, k, l) along bonds j-k, each once (:func:`openmm_cgml.topology.dihedrals_from_bonds`)."""
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    return dihedrals_from_bonds(bonds, int(bonds.max()) + 1 if bonds.size else 0)


def compute_distribution(values, *, bins: int = 100, value_range: tuple[float, float] | None = None,
                         n_blocks: int = 5) -> Distribution:
    """Probability density of ``values`` (n_frames, n_items) (or 1-D), errors from blocks of frames."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if v.size == 0:
        raise TrajectoryError("no values to histogram (zero frames or zero items)")
    if value_range is None:
        value_range = (float(v.min()), float(v.max()) + 1e-12)
    edges = np.linspace(value_range[0], value_range[1], bins + 1)
    width = np.diff(edges)

    def _pdf(chunk):
        h = np.histogram(chunk, bins=edges)[0].astype(np.float64)
        return h / (chunk.size * width)

    density = _pdf(v)
    n_blocks = min(n_blocks, v.shape[0])
    if n_blocks >= 2:
        blocks = np.array([_pdf(b) for b in np.array_split(v, n_blocks)])
        err = blocks.std(axis=0, ddof=1) / np.sqrt(n_blocks)
    else:
        err = np.full(bins, np.nan)
    return Distribution(edges=edges, centers=0.5 * (edges[1:] + edges[:-1]), density=density, density_err=err,
                        mean=float(v.mean()), std=float(v.std()), n_samples=int(v.size))


def distribution_overlap(p: Distribution, q: Distribution) -> float:
    """Overlap coefficient int min(p, q) dx in [0, 1] of two densities on the same bins (1 = identical)."""
    if p.edges.shape != q.edges.shape or not np.allclose(p.edges, q.edges):
        raise TrajectoryError("the two distributions must use the same bins to be compared")
    return float(np.sum(np.minimum(p.density, q.density) * np.diff(p.edges)))


def compute_density(box, masses, n_frames: int | None = None) -> np.ndarray:
    """Mass density per frame, g/cm^3, from box vectors (nm) and particle masses (Da)."""
    arr = np.asarray(box, dtype=np.float64)
    if n_frames is None:
        n_frames = 1 if arr.shape in ((3,), (3, 3)) else arr.shape[0]
    boxes = as_boxes(arr, n_frames)
    m = np.asarray(masses, dtype=np.float64)
    if m.ndim != 1 or m.size == 0:
        raise TrajectoryError(f"masses must be a non-empty 1-D array, got shape {m.shape}")
    return m.sum() / box_volumes(boxes) * DA_PER_NM3_TO_G_PER_CM3


def density_timeseries(box, masses, times, *, equilibrate: bool = True) -> DensityResult:
    """Density time series and its equilibrated mean with a correlation-aware error."""
    arr = np.asarray(box, dtype=np.float64)
    if arr.ndim != 3:
        raise TrajectoryError(f"a density time series needs per-frame boxes (n_frames, 3, 3), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise TrajectoryError("the box array has zero frames")
    t = as_times(times, arr.shape[0], uniform=False)
    rho = compute_density(arr, masses)
    if rho.size < 3:
        return DensityResult(t, rho, Estimate(float(rho.mean()), float("nan"), float(rho.size)), 0)
    t0 = 0
    if equilibrate:
        from .statistics import detect_equilibration

        t0 = detect_equilibration(rho).t0
    return DensityResult(times=t, density=rho, average=mean_with_error(rho[t0:]), t0=t0)


def molecule_centers(positions, molecule_index, masses=None, box=None) -> np.ndarray:
    """Centre of mass of each molecule per frame, (n_frames, n_molecules, 3), nm.

    With ``box``, molecules split by the periodic boundary are made whole first (each particle is placed
    at the minimum image relative to the first particle of its molecule).  Molecules are ordered by the
    sorted values of ``molecule_index``.
    """
    x = as_trajectory(positions)
    mol = np.asarray(molecule_index)
    if mol.shape != (x.shape[1],):
        raise TrajectoryError(f"molecule_index must have one entry per particle ({x.shape[1]}), got {mol.shape}")
    w = np.ones(x.shape[1]) if masses is None else np.asarray(masses, dtype=np.float64)
    if w.shape != (x.shape[1],):
        raise TrajectoryError(f"masses must have one entry per particle ({x.shape[1]}), got shape {w.shape}")
    _, inv = np.unique(mol, return_inverse=True)
    n_mol = inv.max() + 1
    first = np.full(n_mol, -1)
    for i in range(x.shape[1] - 1, -1, -1):
        first[inv[i]] = i
    anchor = x[:, first[inv]]
    rel = x - anchor
    if box is not None:
        rel = minimum_image(rel, as_boxes(box, x.shape[0]))
    total = np.bincount(inv, weights=w, minlength=n_mol)
    if np.any(total <= 0):
        raise TrajectoryError("a molecule has zero total mass")
    order = np.argsort(inv, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(inv[order]) != 0])
    com = np.add.reduceat((rel * w[None, :, None])[:, order], starts, axis=1)
    return com / total[None, :, None] + x[:, first]
