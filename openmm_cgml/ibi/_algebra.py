"""The potential algebra of IBI and IMC: initial guess, updates, core extrapolation, tail, pressure correction.

U_0(r) = -kT ln g_t(r);  U_{i+1}(r) = U_i(r) + a kT ln(g_i(r) / g_t(r))  (smoothed, damped by a),
with the repulsive core (g_t below ``g_min``) extrapolated, the tail shifted and tapered to zero at
the cutoff, and an optional pressure correction dU = A (1 - r / r_c) ramped in over iterations.
Inverse Monte Carlo (Lyubartsev and Laaksonen, Phys. Rev. E 52, 3730 (1995)) replaces the IBI formula
by a Newton step over all pairs and bins (:func:`imc_update`).
"""

from __future__ import annotations

import numpy as np

from ..exceptions import ConfigurationError

__all__ = ["extrapolate_core", "finalize", "pmf_potential", "ibi_update", "imc_update", "pressure_correction",
           "rdf_error"]


#: Smallest curvature (kJ/mol/nm^2) of the repulsive wall :func:`extrapolate_core` puts below the first valid point.
CORE_CURVATURE = 1e3


def extrapolate_core(r: np.ndarray, u: np.ndarray, valid: np.ndarray, *,
                     min_curvature: float = CORE_CURVATURE) -> np.ndarray:
    """Replace ``u`` below the first valid point by a repulsive wall continuing it smoothly.

    The wall keeps the value and the (repulsive) force at the first valid point and adds a
    curvature (at least ``min_curvature``, kJ/mol/nm^2), so the force keeps growing inwards.
    """
    u = np.array(u, dtype=float)
    idx = np.flatnonzero(valid)
    if idx.size < 3:
        raise ConfigurationError("fewer than 3 grid points where g(r) is above g_min: cannot build a potential")
    c = idx[0]
    dr = r[1] - r[0]
    force = max(-(u[c + 1] - u[c]) / dr, 0.0)
    curvature = max(force / max(r[c], dr), min_curvature)
    d = r[c] - r[:c]
    u[:c] = u[c] + force * d + 0.5 * curvature * d**2
    return u


def _first_run(mask: np.ndarray) -> np.ndarray:
    """Mask from the first True onwards (a contiguous valid region after the core)."""
    out = np.zeros_like(mask)
    idx = np.flatnonzero(mask)
    if idx.size:
        out[idx[0] :] = True
    return out


def _taper(r: np.ndarray, cutoff: float, width: float) -> np.ndarray:
    if width <= 0:
        return np.ones_like(r)
    x = np.clip((r - (cutoff - width)) / width, 0.0, 1.0)
    return 0.5 * (1 + np.cos(np.pi * x))


def _tail_mean(r, u, cutoff: float, tail_width: float) -> float:
    """Mean of ``u`` over the tail window (at least the last 5 bins): a low-noise anchor for U(cutoff)."""
    sel = r >= cutoff - max(tail_width, 5 * (r[1] - r[0]))
    return float(np.mean(u[sel]))


def finalize(r, u, cutoff: float, tail_width: float) -> np.ndarray:
    """Shift so that U -> 0 at the cutoff (tail-window mean as anchor) and taper the tail."""
    return (u - _tail_mean(r, u, cutoff, tail_width)) * _taper(r, cutoff, tail_width)


def pmf_potential(r, g_target, kt: float, *, g_min: float = 1e-3, cutoff: float | None = None,
                  tail_width: float = 0.1) -> np.ndarray:
    """Initial guess U_0 = -kT ln g_t, with core extrapolation, shift and tail taper."""
    g = np.asarray(g_target, dtype=float)
    valid = _first_run(g > g_min)
    with np.errstate(divide="ignore"):
        u = np.where(valid, -kt * np.log(np.maximum(g, g_min)), 0.0)
    u = extrapolate_core(r, u, valid)
    return finalize(r, u, cutoff if cutoff is not None else r[-1] + 0.5 * (r[1] - r[0]), tail_width)


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return x
    kernel = np.ones(width) / width
    pad = width // 2
    xp = np.pad(x, (pad, width - 1 - pad), mode="edge")
    return np.convolve(xp, kernel, mode="valid")


def ibi_update(g, g_target, kt: float, *, damping: float = 1.0, g_min: float = 1e-3, smoothing: int = 1) -> np.ndarray:
    """dU = a kT ln(g / g_t) where both are above ``g_min`` (zero elsewhere), smoothed."""
    g = np.asarray(g, float)
    gt = np.asarray(g_target, float)
    ok = (g > g_min) & (gt > g_min)
    du = np.zeros_like(gt)
    du[ok] = damping * kt * np.log(g[ok] / gt[ok])
    return _smooth(du, smoothing) * ok


def imc_update(frame_counts, target_counts, valid, kt: float, *, damping: float = 1.0,
               regularization: float = 0.1) -> np.ndarray:
    """Inverse Monte Carlo (Newton) update of tabulated pair potentials, all pairs and bins at once.

    With S the per-frame pair counts of every (pair, bin) and U the potentials on the same bins, to first order
    <S_a>(U + dU) = <S_a>(U) - (1/kT) sum_b A_ab dU_b, with A the covariance of S over the sampled frames.
    Asking for the target counts S* gives dU = kT A^-1 (<S> - S*); here, regularised as in Levenberg-Marquardt,
    dU = a kT (A + lambda diag(A))^-1 (<S> - S*), over the ``valid`` bins only (zero elsewhere).  Too many pairs
    in a bin (<S> > S*) raise U there.  For uncorrelated Poisson counts (A diagonal, A_aa = <S_a>) this is
    a kT (<S> - S*) / <S>: IBI's a kT ln(g / g*) to first order; large lambda gives a damped IBI.

    Parameters
    ----------
    frame_counts : array, shape (n_frames, n_bins_total)
    target_counts : array, shape (n_bins_total,)
        S* per frame (g_target times the ideal-gas counts).
    valid : bool array, shape (n_bins_total,)
    kt : float
    damping, regularization : float
    """
    counts = np.asarray(frame_counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] < 2:
        raise ConfigurationError("IMC needs the pair counts of at least 2 frames")
    idx = np.flatnonzero(np.asarray(valid, bool))
    du = np.zeros(counts.shape[1])
    if idx.size == 0:
        return du
    s = counts[:, idx]
    mean = s.mean(0)
    dev = s - mean
    cov = dev.T @ dev / (len(s) - 1)
    diag = np.maximum(np.diag(cov), 1e-12)
    rhs = mean - np.asarray(target_counts, dtype=float)[idx]
    du[idx] = damping * kt * np.linalg.solve(cov + regularization * np.diag(diag), rhs)
    return du


def pressure_correction(r, cutoff: float, pressure: float, target: float, kt: float, *, factor: float = 3e-4,
                        scale: float = 1.0) -> np.ndarray:
    """dU(r) = A (1 - r / r_c), ``A = -sign(dP) 0.1 kT min(1, factor |dP|) * scale`` (VOTCA's simple scheme).

    Too high a pressure (dP > 0) gives A < 0: more attraction.
    """
    dp = pressure - target
    a = -np.sign(dp) * 0.1 * kt * min(1.0, factor * abs(dp)) * scale
    return a * np.clip(1 - np.asarray(r) / cutoff, 0.0, None)


def rdf_error(g, g_target) -> float:
    """RMS deviation of g from the target over the grid."""
    return float(np.sqrt(np.mean((np.asarray(g) - np.asarray(g_target)) ** 2)))
