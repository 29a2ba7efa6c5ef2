"""Mean-square displacement and self-diffusion coefficients.

Positions are unwrapped with the "toroidal-view-preserving" scheme (each step's displacement is
taken as its minimum image in the box of that frame; von Bülow, Bullerjahn and Hummer,
J. Chem. Phys. 153, 021101 (2020)), which stays correct when the volume fluctuates at constant pressure.
The MSD averages over all time origins with the FFT algorithm (Kneller et al., nMoldyn), per particle,
so that errors can be taken over particles.  The diffusive regime is detected from the local
log-log slope of the MSD instead of being hard-coded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..exceptions import TrajectoryError
from ._checks import as_boxes, as_times, as_trajectory, box_volumes, check_constant_box_shape, minimum_image

__all__ = [
    "MSDResult",
    "DiffusionResult",
    "unwrap_positions",
    "remove_com_drift",
    "compute_msd",
    "detect_linear_regime",
    "fit_diffusion",
    "diffusion_coefficient",
    "yeh_hummer_correction",
    "autocorrelation_fft",
    "msd_fft",
]

logger = logging.getLogger(__name__)

#: Boltzmann constant, J/K.
_KB_SI = 1.380649e-23
#: Yeh-Hummer constant for a cubic lattice.
YEH_HUMMER_XI = 2.837297
#: Elements of a chunk for the FFTs (bounds memory to a few hundred MB).
_CHUNK_ELEMENTS = 8_000_000


@dataclass(frozen=True)
class MSDResult:
    """Mean-square displacement averaged over all time origins and particles.

    Attributes
    ----------
    lag_times : ndarray, shape (n_lags,)
        Lag times, ps (starting at 0).
    msd : ndarray, shape (n_lags,)
        MSD, nm^2 (summed over x, y, z).
    msd_err : ndarray, shape (n_lags,)
        Standard error of ``msd`` over particles, nm^2.
    per_particle : ndarray, shape (n_lags, n_particles) or None
        Each particle's MSD (all origins), nm^2; used for the standard error of D.
    n_particles : int
    dimensions : int
        Number of Cartesian dimensions summed (3).
    """

    lag_times: np.ndarray
    msd: np.ndarray
    msd_err: np.ndarray
    per_particle: np.ndarray | None
    n_particles: int
    dimensions: int = 3


@dataclass(frozen=True)
class DiffusionResult:
    """Self-diffusion coefficient from a linear fit MSD = 2 d D t + c.

    Attributes
    ----------
    D, D_err : float
        Diffusion coefficient and its standard error, nm^2/ps (Yeh-Hummer correction included if asked).
    fit_range : tuple of float
        Lag-time window of the fit, ps.
    intercept : float
        Fitted intercept, nm^2.
    linear_regime_detected : bool
        Whether the window came from the detected diffusive regime (False: fallback window or given).
    error_method : str
        ``"particles"`` (standard error over particles) or ``"ols"`` (fit residuals).
    finite_size_correction : float
        Yeh-Hummer correction added to D, nm^2/ps (0 if not applied).
    """

    D: float
    D_err: float
    fit_range: tuple[float, float]
    intercept: float
    linear_regime_detected: bool
    error_method: str
    finite_size_correction: float = 0.0

    @property
    def D_si(self) -> float:
        """D in m^2/s."""
        return self.D * 1e-6


# --------------------------------------------------------------------------------------
# Unwrapping and drift
# --------------------------------------------------------------------------------------
def unwrap_positions(positions, box) -> np.ndarray:
    """Unwrap a trajectory across periodic boundaries.

    Parameters
    ----------
    positions : array, shape (n_frames, n_particles, 3)
        Positions, nm (wrapped into the box or not).
    box : array
        Box vectors, nm: (3,), (3, 3), (n_frames, 3) or (n_frames, 3, 3).

    Returns
    -------
    ndarray, shape (n_frames, n_particles, 3)
        Continuous positions, nm.  Exact if no particle moves more than half the smallest box width
        between consecutive frames.
    """
    x = as_trajectory(positions)
    boxes = as_boxes(box, x.shape[0])
    if x.shape[0] == 1:
        return x.copy()
    steps = minimum_image(np.diff(x, axis=0), boxes[1:])
    out = np.empty_like(x)
    out[0] = x[0]
    np.cumsum(steps, axis=0, out=out[1:])
    out[1:] += x[0]
    return out


def remove_com_drift(positions, masses=None) -> np.ndarray:
    """Subtract the (mass-weighted) centre of mass of each frame from unwrapped positions ``(n_frames, n, 3)``."""
    x = as_trajectory(positions)
    w = np.ones(x.shape[1]) if masses is None else np.asarray(masses, dtype=np.float64)
    if w.shape != (x.shape[1],):
        raise TrajectoryError(f"masses must have one entry per particle ({x.shape[1]}), got shape {w.shape}")
    if w.sum() <= 0:
        raise TrajectoryError("the masses sum to zero; cannot compute a centre of mass")
    com = np.einsum("fni,n->fi", x, w) / w.sum()
    return x - com[:, None, :]


# --------------------------------------------------------------------------------------
# FFT correlations
# --------------------------------------------------------------------------------------
def _fft_size(n: int) -> int:
    return 1 << int(np.ceil(np.log2(2 * n)))


def autocorrelation_fft(x: np.ndarray) -> np.ndarray:
    """All-origins autocorrelation along axis 0, summed over the last axis.

    ``x`` has shape (n_frames, ..., d); returns (n_frames, ...) with entry m equal to
    mean_k sum_d x[k, ..., d] x[k + m, ..., d] over the n_frames - m origins.
    """
    n = x.shape[0]
    f = np.fft.rfft(x, n=_fft_size(n), axis=0)
    acf = np.fft.irfft((f * f.conj()).real, n=_fft_size(n), axis=0)[:n].sum(axis=-1)
    return acf / (n - np.arange(n)).reshape((n,) + (1,) * (acf.ndim - 1))


def msd_fft(x: np.ndarray) -> np.ndarray:
    """Per-particle MSD over all origins for continuous positions ``(n_frames, n, 3)``; returns (n_frames, n)."""
    n = x.shape[0]
    d = np.sum(x * x, axis=-1)
    c = np.concatenate([np.zeros((1,) + d.shape[1:]), np.cumsum(d, axis=0)])
    m = np.arange(n)
    s1 = (c[n - m] + c[n] - c[m]) / (n - m)[:, None]
    return s1 - 2.0 * autocorrelation_fft(x)


def compute_msd(positions, times, *, box=None, masses=None, remove_com: bool = True, max_lag: int | None = None,
                keep_per_particle: bool = True, progress: bool = False) -> MSDResult:
    """Mean-square displacement over all time origins.

    Parameters
    ----------
    positions : array, shape (n_frames, n_particles, 3)
        Positions, nm.  Wrapped positions need ``box`` to be unwrapped.
    times : array, shape (n_frames,)
        Frame times, ps; strictly increasing and evenly spaced.
    box : array, optional
        Box vectors, nm ((3,), (3, 3), (n_frames, 3) or (n_frames, 3, 3)); if given the positions are
        unwrapped first.  Omit it only for positions that are already continuous.
    masses : array, shape (n_particles,), optional
        Masses, Da, for the centre-of-mass drift removal (equal weights if omitted).
    remove_com : bool
        Subtract the centre-of-mass motion of the analysed particles.
    max_lag : int, optional
        Largest lag in frames (default: half the trajectory, beyond which few origins remain).
    keep_per_particle : bool
        Keep each particle's MSD (needed for the error of D over particles).
    progress : bool
        Show a progress bar over particle chunks.
    """
    x = as_trajectory(positions)
    n_frames, n = x.shape[:2]
    t = as_times(times, n_frames)
    if n_frames < 2:
        raise TrajectoryError("an MSD needs at least 2 frames")
    if box is not None:
        x = unwrap_positions(x, box)
    if remove_com:
        x = remove_com_drift(x, masses)
    max_lag = max(1, n_frames // 2) if max_lag is None else int(max_lag)
    if not 1 <= max_lag < n_frames:
        raise TrajectoryError(f"max_lag must be between 1 and n_frames - 1 = {n_frames - 1}, got {max_lag}")
    chunk = max(1, _CHUNK_ELEMENTS // (_fft_size(n_frames) * 3))
    per_particle = np.empty((max_lag + 1, n))
    starts = range(0, n, chunk)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="MSD", unit="chunk")
    for s in starts:
        per_particle[:, s:s + chunk] = msd_fft(x[:, s:s + chunk])[: max_lag + 1]
    per_particle[0] = 0.0
    msd = per_particle.mean(axis=1)
    err = per_particle.std(axis=1, ddof=1) / np.sqrt(n) if n > 1 else np.full_like(msd, np.nan)
    return MSDResult(lag_times=t[: max_lag + 1] - t[0], msd=msd, msd_err=err,
                     per_particle=per_particle if keep_per_particle else None, n_particles=n)


# --------------------------------------------------------------------------------------
# Diffusion coefficient
# --------------------------------------------------------------------------------------
def detect_linear_regime(lag_times, msd, *, tolerance: float = 0.1, n_points: int = 40,
                         min_decades: float = 0.3) -> tuple[tuple[float, float], bool]:
    """Find the diffusive regime, where the local slope d ln MSD / d ln t is within ``tolerance`` of 1.

    The slope is evaluated on ``n_points`` log-spaced lags (smoothed over neighbours); the longest
    contiguous run (in log time) of slopes near 1 spanning at least ``min_decades`` decades is taken.

    Returns
    -------
    (t_start, t_end), detected : tuple of float (ps), bool
        If no such run exists, the last ``min_decades`` decades before the longest lag and False.
    """
    t = np.asarray(lag_times, dtype=np.float64)
    y = np.asarray(msd, dtype=np.float64)
    good = (t > 0) & (y > 0)
    t, y = t[good], y[good]
    if t.size < 3:
        raise TrajectoryError(f"need at least 3 positive lags with positive MSD to find the linear regime, got {t.size}")
    idx = np.unique(np.geomspace(1, t.size, n_points).astype(int) - 1)
    lt, ly = np.log(t[idx]), np.log(y[idx])
    if idx.size < 3:
        return (float(t[0]), float(t[-1])), False
    beta = np.gradient(ly, lt)
    if beta.size >= 3:
        beta = np.convolve(np.pad(beta, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    ok = np.abs(beta - 1.0) < tolerance
    best, best_span = None, 0.0
    start = None
    for i, flag in enumerate(np.r_[ok, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            span = (lt[i - 1] - lt[start]) / np.log(10)
            if i - start >= 3 and span > best_span:
                best, best_span = (start, i - 1), span
            start = None
    if best is not None and best_span >= min_decades:
        return (float(t[idx[best[0]]]), float(t[idx[best[1]]])), True
    logger.warning("no diffusive (linear) regime found in the MSD (local slopes %s); fitting the last %.2g decades",
                   np.round(beta, 2).tolist(), min_decades)
    return (float(t[-1] / 10 ** min_decades), float(t[-1])), False


def _linear_fit(t: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    a = np.vstack([t, np.ones_like(t)]).T
    (slope, intercept), *_ = np.linalg.lstsq(a, y, rcond=None)
    return float(slope), float(intercept)


def fit_diffusion(lag_times, msd, *, per_particle=None, fit_range: tuple[float, float] | None = None,
                  dimensions: int = 3, tolerance: float = 0.1, max_fit_points: int = 200) -> DiffusionResult:
    """Fit D from an MSD curve: MSD = 2 * dimensions * D * t + c over the diffusive regime.

    Parameters
    ----------
    lag_times : array (n_lags,), ps
    msd : array (n_lags,), nm^2
    per_particle : array (n_lags, n_particles), optional
        Per-particle MSDs; with at least 8 particles the standard error of D is taken over particles
        (otherwise from the fit residuals, which ignores time correlation and is flagged ``"ols"``).
    fit_range : (t_start, t_end), ps, optional
        Fit window; detected with :func:`detect_linear_regime` if omitted.
    """
    t = np.asarray(lag_times, dtype=np.float64)
    y = np.asarray(msd, dtype=np.float64)
    if t.shape != y.shape or t.ndim != 1:
        raise TrajectoryError(f"lag_times and msd must be 1-D of equal length, got {t.shape} and {y.shape}")
    detected = False
    if fit_range is None:
        fit_range, detected = detect_linear_regime(t, y, tolerance=tolerance)
    lo, hi = fit_range
    sel = np.flatnonzero((t >= lo - 1e-12) & (t <= hi + 1e-12))
    if sel.size < 2:
        raise TrajectoryError(f"the fit window {fit_range} ps holds fewer than 2 lags")
    if sel.size > max_fit_points:
        sel = sel[np.linspace(0, sel.size - 1, max_fit_points).astype(int)]
    slope, intercept = _linear_fit(t[sel], y[sel])
    scale = 1.0 / (2.0 * dimensions)
    if per_particle is not None and np.shape(per_particle)[1] >= 8:
        # The least-squares slope is linear in the data, so the slope of the mean MSD is the mean of the
        # per-particle slopes and its standard error is their standard error (particles independent).
        pp = np.asarray(per_particle)[sel]
        ts = t[sel]
        weights = (ts - ts.mean()) / np.sum((ts - ts.mean()) ** 2)
        slopes = weights @ pp
        err, method = float(slopes.std(ddof=1) / np.sqrt(slopes.size)) * scale, "particles"
    else:
        resid = y[sel] - (slope * t[sel] + intercept)
        dof = max(sel.size - 2, 1)
        sxx = np.sum((t[sel] - t[sel].mean()) ** 2)
        err, method = float(np.sqrt(np.sum(resid**2) / dof / sxx)) * scale, "ols"
        logger.warning("D error from the fit residuals only (no per-particle data): it ignores time correlation")
    return DiffusionResult(D=slope * scale, D_err=err, fit_range=(float(lo), float(hi)), intercept=intercept,
                           linear_regime_detected=detected, error_method=method)


def yeh_hummer_correction(temperature, viscosity, box) -> float:
    """Yeh-Hummer finite-size correction k_B T xi / (6 pi eta L), nm^2/ps, for a cubic periodic box.

    Parameters
    ----------
    temperature : float (K) or quantity/string
    viscosity : float (Pa s) or a unit string such as ``"0.5 mPa*s"``
    box : array
        Box vectors (any form accepted by the analysis functions); must be cubic and of constant shape
        (the volume may fluctuate; the mean edge length is used).
    """
    from ..units import to_md

    temp = to_md(temperature, "temperature", name="temperature")
    if isinstance(viscosity, str):
        from ..units import _registry

        eta = float(_registry().Quantity(viscosity).to("pascal * second").magnitude)
    else:
        eta = float(viscosity)
    if temp <= 0 or eta <= 0:
        raise TrajectoryError(f"temperature and viscosity must be positive, got {temp} K and {eta} Pa s")
    arr = np.asarray(box, dtype=np.float64)
    n_frames = 1 if arr.shape in ((3,), (3, 3)) else arr.shape[0]
    boxes = as_boxes(arr, n_frames)
    check_constant_box_shape(boxes, require_cubic=True, what="the Yeh-Hummer correction")
    length_m = float(np.cbrt(box_volumes(boxes)).mean()) * 1e-9
    d_si = _KB_SI * temp * YEH_HUMMER_XI / (6.0 * np.pi * eta * length_m)
    return d_si * 1e6


def diffusion_coefficient(msd: MSDResult, *, fit_range: tuple[float, float] | None = None, tolerance: float = 0.1,
                          temperature=None, viscosity=None, box=None) -> DiffusionResult:
    """Self-diffusion coefficient from an :class:`MSDResult`, optionally Yeh-Hummer corrected.

    Pass ``temperature``, ``viscosity`` and ``box`` together to add the finite-size correction.
    """
    result = fit_diffusion(msd.lag_times, msd.msd, per_particle=msd.per_particle, fit_range=fit_range,
                           dimensions=msd.dimensions, tolerance=tolerance)
    if viscosity is None:
        return result
    if temperature is None or box is None:
        raise TrajectoryError("the Yeh-Hummer correction needs temperature, viscosity and box together")
    corr = yeh_hummer_correction(temperature, viscosity, box)
    return DiffusionResult(D=result.D + corr, D_err=result.D_err, fit_range=result.fit_range,
                           intercept=result.intercept, linear_regime_detected=result.linear_regime_detected,
                           error_method=result.error_method, finite_size_correction=corr)
