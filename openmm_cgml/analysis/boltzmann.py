"""Boltzmann inversion of bonded distributions, with the Jacobian (NumPy only).

P(r) dr of a bond length carries the volume element r^2 (4 pi r^2 dr), P(theta) of an angle
carries sin(theta); dihedrals carry none.  The potential of mean force of the internal
coordinate is U(x) = -kT ln(P(x) / J(x)).  Forgetting J shifts bond minima outwards and
stiffens angles near 180 degrees.

Tabulated potentials come from a Gaussian kernel density estimate of P (binned, Silverman's
bandwidth), not from the raw histogram: -kT ln of a fine histogram is noisy, and a spline through
it has force spikes in sparsely sampled bins, which heat a CG run until its molecules fall apart
(the documentation's results page, "Harmonic or tabulated bonded terms").  The kernel widens P by
its bandwidth h (variance + h^2, about 1 % for the 2,3,4-trimethylpentane bond); the table covers
only where the kernel-weighted sample count is at least ``min_count``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exceptions import ConfigurationError
from ..units import KB

__all__ = ["BondedInversion", "boltzmann_invert", "kde_potential", "bonded_samples"]


@dataclass(frozen=True)
class BondedInversion:
    """Result of a Boltzmann inversion of one internal coordinate.

    Attributes
    ----------
    kind : {"bond", "angle", "dihedral"}
    x : ndarray
        Bin centres (nm or rad).
    histogram : ndarray
        Normalised distribution P(x) (not Jacobian corrected).
    potential : ndarray
        U(x) = -kT ln(P/J) in kJ/mol, minimum 0; NaN in empty bins.
    k, x0 : float
        Harmonic fit U = k/2 (x - x0)^2 of the inverted potential within 4 kT of its minimum,
        weighted by the counts (NaN for dihedrals).
    n_samples : int
    smooth_potential : ndarray
        U(x) from the kernel density estimate, on ``x``, minimum 0; NaN where fewer than ``min_count``
        kernel-weighted samples support it.  :meth:`table` uses it.
    bandwidth : float
        Kernel bandwidth h (nm or rad).
    """

    kind: str
    x: np.ndarray
    histogram: np.ndarray
    potential: np.ndarray
    k: float
    x0: float
    n_samples: int
    smooth_potential: np.ndarray
    bandwidth: float

    def table(self, *, pad: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """A gap-free table (x, U) of the smoothed potential: gaps inside are interpolated; each end is continued
        over at least ``pad`` bins and three bandwidths by its own (restoring) slope plus a harmonic wall, so the
        force has no kink where sampling ends (dihedrals: the full circle, unsupported bins at the highest
        supported value)."""
        ok = np.isfinite(self.smooth_potential)
        if ok.sum() < 4:
            raise ConfigurationError(f"{self.kind} distribution has fewer than 4 well-sampled bins "
                                     f"({self.n_samples} samples): record more frames")
        if self.kind == "dihedral":
            return self.x, np.where(ok, self.smooth_potential, np.nanmax(self.smooth_potential))
        first, last = np.flatnonzero(ok)[[0, -1]]
        x = self.x[first : last + 1]
        u = np.interp(x, self.x[ok], self.smooth_potential[ok])
        dx = x[1] - x[0]
        k = self.k if np.isfinite(self.k) and self.k > 0 else 10 * KB * 300 / dx**2
        n_pad = max(pad, int(np.ceil(3 * self.bandwidth / dx)))
        lo = x[0] - dx * np.arange(n_pad, 0, -1)
        hi = x[-1] + dx * np.arange(1, n_pad + 1)
        if self.kind == "angle":
            lo, hi = lo[lo > 0], hi[hi < np.pi]
        slope_lo = min(0.0, (u[1] - u[0]) / dx)
        slope_hi = max(0.0, (u[-1] - u[-2]) / dx)
        d_lo, d_hi = x[0] - lo, hi - x[-1]
        return (np.concatenate([lo, x, hi]),
                np.concatenate([u[0] - slope_lo * d_lo + 0.5 * k * d_lo**2, u,
                                u[-1] + slope_hi * d_hi + 0.5 * k * d_hi**2]))


def _harmonic_fit(x, u, hist, corrected, kt, width):
    """k, x0 from a weighted quadratic fit of U within 4 kT of its minimum (weights: sqrt of the counts).

    Robust to a distribution cut off by a boundary (angles near pi); falls back to the
    moments of the Jacobian-corrected distribution when the fit is not convex.
    """
    sel = np.isfinite(u) & (u < 4 * kt)
    if sel.sum() >= 5:
        a, b, _ = np.polyfit(x[sel], u[sel], 2, w=np.sqrt(hist[sel]))
        if a > 0:
            return float(2 * a), float(-b / (2 * a))
    w = corrected / corrected.sum()
    x0 = float(np.sum(w * x))
    var = float(np.sum(w * (x - x0) ** 2)) - width**2 / 12  # Sheppard's correction
    return (kt / var if var > 0 else np.nan), x0


def _jacobian(kind: str, x: np.ndarray) -> np.ndarray:
    return x**2 if kind == "bond" else np.sin(x) if kind == "angle" else np.ones_like(x)


def kde_potential(values, kind: str, kt: float, x: np.ndarray, *, bandwidth: float | None = None,
                  bandwidth_scale: float = 1.0, min_count: float = 20.0) -> tuple[np.ndarray, float]:
    """-kT ln(P/J) on ``x`` from a binned Gaussian kernel density estimate of ``values`` (minimum 0), and h.

    h defaults to Silverman's rule, 0.9 min(std, IQR / 1.34) n^(-1/5) (for dihedrals measured with the circle cut
    at its least populated bin, so a trans peak at +-pi is not taken for a spread over the whole circle); like any
    rule of thumb it oversmooths distributions with several narrow modes: pass ``bandwidth``, or a
    ``bandwidth_scale`` < 1 that multiplies the rule's h, for those.
    Dihedrals wrap around the circle.
    Points where the kernel-weighted sample count n P(x) h sqrt(2 pi) is below ``min_count`` are NaN.
    """
    from scipy.ndimage import gaussian_filter1d

    v = np.asarray(values, dtype=float).ravel()
    n = v.size
    if bandwidth is None:
        spread_of = v
        if kind == "dihedral":  # measure the spread with the circle cut where it is emptiest, not at +-pi
            counts, edges = np.histogram(v, bins=36, range=(-np.pi, np.pi))
            cut = edges[np.argmin(counts)]
            spread_of = np.mod(v - cut, 2 * np.pi)
        q75, q25 = np.percentile(spread_of, [75, 25])
        spread = min(np.std(spread_of), (q75 - q25) / 1.34) or np.std(spread_of)
        if not (np.isfinite(bandwidth_scale) and bandwidth_scale > 0):
            raise ConfigurationError(f"bandwidth_scale must be a positive number, got {bandwidth_scale!r}")
        bandwidth = 0.9 * spread * n ** (-0.2) * bandwidth_scale
    h = float(bandwidth)
    if not h > 0:
        raise ConfigurationError(f"{kind} samples have no spread (all {v[0]:.6g}): nothing to invert")
    fine = h / 5
    if kind == "dihedral":
        n_fine = max(int(np.ceil(2 * np.pi / fine)), 8)
        lo, hi, mode = -np.pi, np.pi, "wrap"
    else:
        lo, hi, mode = v.min() - 5 * h, v.max() + 5 * h, "constant"
        n_fine = int(np.ceil((hi - lo) / fine))
    counts, edges = np.histogram(v, bins=n_fine, range=(lo, hi))
    width = edges[1] - edges[0]
    density = gaussian_filter1d(counts.astype(float), h / width, mode=mode) / (n * width)
    centres = 0.5 * (edges[1:] + edges[:-1])
    xq = np.asarray(x, dtype=float)
    if kind == "dihedral":
        p = np.interp(xq, centres, density, period=2 * np.pi)
    else:
        p = np.interp(xq, centres, density, left=0.0, right=0.0)
    jac = _jacobian(kind, xq)
    supported = (n * p * h * np.sqrt(2 * np.pi) >= min_count) & (jac > 0)
    u = np.full(xq.shape, np.nan)
    u[supported] = -kt * np.log(p[supported] / jac[supported])
    if supported.any():
        u -= np.nanmin(u)
    return u, h


def boltzmann_invert(values, kind: str, temperature: float, *, bins: int = 100,
                     value_range: tuple[float, float] | None = None, bandwidth: float | None = None,
                     bandwidth_scale: float = 1.0, min_count: float = 20.0) -> BondedInversion:
    """Boltzmann-invert samples of a bond length (nm), angle or dihedral (rad).

    Parameters
    ----------
    values : array
        Samples (any shape; flattened).
    kind : {"bond", "angle", "dihedral"}
        Selects the Jacobian: r^2, sin(theta), 1.
    temperature : float
        K.
    bins, value_range
        Histogram settings (default range: the data's, [-pi, pi] for dihedrals).
    bandwidth, bandwidth_scale, min_count
        Kernel density estimate behind ``smooth_potential`` and :meth:`BondedInversion.table`
        (:func:`kde_potential`; default h: Silverman's rule times ``bandwidth_scale``).
    """
    if kind not in ("bond", "angle", "dihedral"):
        raise ConfigurationError(f"kind must be 'bond', 'angle' or 'dihedral', got {kind!r}")
    x = np.asarray(values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size < 10:
        raise ConfigurationError(f"Boltzmann inversion of a {kind} needs at least 10 samples, got {x.size}")
    kt = KB * float(temperature)
    if value_range is None:
        value_range = (-np.pi, np.pi) if kind == "dihedral" else (float(x.min()), float(x.max()))
    hist, edges = np.histogram(x, bins=bins, range=value_range, density=True)
    centres = 0.5 * (edges[1:] + edges[:-1])
    jac = _jacobian(kind, centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        corrected = np.where((hist > 0) & (jac > 0), hist / jac, 0.0)
        u = -kt * np.log(corrected)
    u[~np.isfinite(u)] = np.nan
    if np.any(np.isfinite(u)):
        u = u - np.nanmin(u)
    if kind == "dihedral":
        k, x0 = np.nan, np.nan
    else:
        k, x0 = _harmonic_fit(centres, u, hist, corrected, kt, edges[1] - edges[0])
    smooth, h = kde_potential(x, kind, kt, centres, bandwidth=bandwidth, bandwidth_scale=bandwidth_scale,
                              min_count=min_count)
    return BondedInversion(kind, centres, hist, u, float(k), float(x0), int(x.size), smooth, h)


def bonded_samples(positions, topology, *, box=None, dihedrals: bool = False) -> dict[str, dict[tuple, np.ndarray]]:
    """Values of every bond length (nm), angle and dihedral (rad) of ``topology`` over the frames, pooled per
    canonical bead-type key: ``{"bond": {("A", "B"): values}, "angle": {...}, "dihedral": {...}}``.

    ``topology`` is a :class:`~openmm_cgml.topology.CGTopology` (bead types and bonded tuples); ``box`` one box or
    one per frame for minimum-image vectors.  Dihedrals follow OpenMM's sign convention (that of
    ``dihedral()`` in custom forces), so tables inverted from them act on the same angle in OpenMM.
    """
    from ..topology import type_key
    from .distributions import compute_angles, compute_bonds, compute_dihedrals

    x = np.asarray(positions, dtype=float)
    if x.ndim == 2:
        x = x[None]
    boxes = None if box is None else np.broadcast_to(np.asarray(box, float).reshape(-1, 3, 3), (x.shape[0], 3, 3))
    types = topology.bead_types
    kinds = [("bond", topology.bonds, compute_bonds), ("angle", topology.angles, compute_angles)]
    if dihedrals:
        kinds.append(("dihedral", topology.dihedrals, compute_dihedrals))
    groups: dict[str, dict[tuple, list]] = {"bond": {}, "angle": {}, "dihedral": {}}
    for kind, index, compute in kinds:
        index = np.asarray(index, dtype=np.int64)
        if not len(index):
            continue
        values = compute(x, index, boxes)  # (n_frames, n_tuples)
        for col, tup in enumerate(index):
            groups[kind].setdefault(type_key(types[i] for i in tup), []).append(values[:, col])
    return {kind: {key: np.concatenate(v) for key, v in g.items()} for kind, g in groups.items()}
