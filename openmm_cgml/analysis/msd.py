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
from dataclasses import dataclass, field, replace

import numpy as np

from ..exceptions import TrajectoryError
from ._checks import as_boxes, as_times, as_trajectory, box_volumes, check_constant_box_shape, minimum_image

__all__ = [
    "MSDResult",
    "DiffusiveRegime",
    "DiffusionResult",
    "unwrap_positions",
    "remove_com_drift",
    "compute_msd",
    "detect_linear_regime",
    "diffusive_regime",
    "fit_diffusion",
    "diffusion_coefficient",
    "yeh_hummer_correction",
    "apply_finite_size_correction",
    "combine_replicas",
    "autocorrelation_fft",
    "msd_fft",
]

logger = logging.getLogger(__name__)

#: Boltzmann constant, J/K.
_KB_SI = 1.380649e-23
#: Yeh-Hummer constant for a cubic lattice.
YEH_HUMMER_XI = 2.837297
#: Fewest blocks behind a block error of D (two give a standard error with one degree of freedom).
MIN_BLOCKS = 3
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
        Each particle's MSD (all origins), nm^2; used for the standard error of D over particles.
    n_particles : int
    dimensions : int
        Number of Cartesian dimensions summed (3).
    block_msd : ndarray, shape (n_block_lags, n_blocks) or None
        The MSD (mean over particles, all origins inside the block) of each of ``n_blocks`` contiguous,
        non-overlapping blocks of the trajectory, at ``lag_times[:n_block_lags]`` (up to half a block);
        used for the block standard error of D.
    block_msds : dict of int to ndarray
        The same for every block count from ``n_blocks`` down to :data:`MIN_BLOCKS` (keyed by the count), so that
        a fit window too long for ``n_blocks`` blocks can still get a block error from fewer, longer ones.
    """

    lag_times: np.ndarray
    msd: np.ndarray
    msd_err: np.ndarray
    per_particle: np.ndarray | None
    n_particles: int
    dimensions: int = 3
    block_msd: np.ndarray | None = None
    block_msds: dict = field(default_factory=dict)

    @property
    def n_blocks(self) -> int:
        return 0 if self.block_msd is None else int(self.block_msd.shape[1])


@dataclass(frozen=True)
class DiffusiveRegime:
    """Where the MSD is diffusive (MSD proportional to t): the local slope d ln MSD / d ln t over lag time.

    Attributes
    ----------
    lag_times, local_slope : ndarray
        Log-spaced lag times (ps) and the local slope there (smoothed over neighbours); 1 where diffusive,
        2 while ballistic, below 1 while caged (sub-diffusive).
    window : (float, float)
        The detected diffusive window (ps) or, if none was found, the fallback: the last ``min_span`` of lags.
    found : bool
        Whether a window with abs(slope - 1) < ``tolerance`` over at least a factor ``min_span`` in time exists.
    tolerance, min_span : float
        The criterion.
    """

    lag_times: np.ndarray
    local_slope: np.ndarray
    window: tuple[float, float]
    found: bool
    tolerance: float
    min_span: float

    def slope_range(self, window: tuple[float, float]) -> tuple[float, float]:
        """Smallest and largest local slope inside ``window`` (NaN if no slope point lies inside)."""
        inside = (self.lag_times >= window[0] * (1 - 1e-9)) & (self.lag_times <= window[1] * (1 + 1e-9))
        if not inside.any():
            return float("nan"), float("nan")
        return float(self.local_slope[inside].min()), float(self.local_slope[inside].max())

    def judge(self, window: tuple[float, float]) -> tuple[bool, str]:
        """Whether D fitted over ``window`` is from a diffusive regime, and why (the text printed beside D)."""
        lo, hi = self.slope_range(window)
        span = window[1] / window[0] if window[0] > 0 else float("inf")
        slopes = f"local slope {lo:.2f}-{hi:.2f}" if np.isfinite(lo) else "local slope unknown"
        where = f"over {window[0]:.3g}-{window[1]:.3g} ps"
        ok = np.isfinite(lo) and max(abs(lo - 1), abs(hi - 1)) < self.tolerance and span >= self.min_span * (1 - 1e-9)
        if ok:
            return True, f"converged: {slopes} {where}"
        why = [] if np.isfinite(lo) and max(abs(lo - 1), abs(hi - 1)) < self.tolerance else \
            [f"|slope - 1| >= {self.tolerance:g}"]
        if span < self.min_span * (1 - 1e-9):
            why.append(f"window spans a factor {span:.2g} < {self.min_span:g}")
        return False, f"not converged: {slopes} {where} ({'; '.join(why)})"


@dataclass(frozen=True)
class DiffusionResult:
    """Self-diffusion coefficient from a linear fit MSD = 2 d D t + c, with the diagnostics that say whether
    to trust it.

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
        ``"blocks"`` (standard error over blocks of the trajectory), ``"particles"`` (standard error over
        particles), ``"ols"`` (fit residuals) or ``"replicas"`` (over independent runs); the larger of the
        block and particle errors is taken when both exist.
    finite_size_correction : float
        Yeh-Hummer correction added to D, nm^2/ps (0 if not applied).
    regime : DiffusiveRegime or None
        The local slope over lag time and the detected window.
    converged : bool
        Whether the fit window is diffusive (abs(local slope - 1) < tolerance over at least the stated span).
    reason : str
        Why (``"converged: local slope 0.97-1.03 over 2-20 ps"``, ``"not converged: ..."``).
    D_err_blocks, D_err_particles : float
        The block and particle standard errors (NaN when not available).
    n_blocks : int
        Blocks behind ``D_err_blocks`` (0: none).
    n_replicas : int
        Independent runs averaged (:func:`combine_replicas`).
    """

    D: float
    D_err: float
    fit_range: tuple[float, float]
    intercept: float
    linear_regime_detected: bool
    error_method: str
    finite_size_correction: float = 0.0
    regime: DiffusiveRegime | None = None
    converged: bool = False
    reason: str = ""
    D_err_blocks: float = float("nan")
    D_err_particles: float = float("nan")
    n_blocks: int = 0
    n_replicas: int = 1

    @property
    def D_si(self) -> float:
        """D in m^2/s."""
        return self.D * 1e-6

    @property
    def D_uncorrected(self) -> float:
        """D of the simulated box, before the finite-size correction, nm^2/ps."""
        return self.D - self.finite_size_correction

    def label(self) -> str:
        """``"D ± err s.e. (not converged: ...)"``-style text for summaries, nm^2/ps."""
        text = f"{self.D:.4g} ± {self.D_err:.2g} nm^2/ps (s.e., {self.error_method})"
        return text if self.converged else f"{text} ({self.reason})"


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
                keep_per_particle: bool = True, n_blocks: int = 5, progress: bool = False) -> MSDResult:
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
    n_blocks : int
        Contiguous blocks of the trajectory whose MSDs are kept for the block error of D (0: none; skipped
        when the blocks would have fewer than 8 frames).  The MSDs of every count from ``n_blocks`` down to
        :data:`MIN_BLOCKS` are kept too (:attr:`MSDResult.block_msds`), for fit windows too long for the
        shorter blocks.
    progress : bool
        Show a progress bar over particle chunks.
    """
    x = as_trajectory(positions)
    n_frames, n = x.shape[:2]
    t = as_times(times, n_frames)
    if n_frames < 2:
        raise TrajectoryError("an MSD needs at least 2 frames")
    if n_blocks < 0 or n_blocks == 1:
        raise TrajectoryError(f"n_blocks must be 0 (no blocks) or at least 2, got {n_blocks}")
    if box is not None:
        x = unwrap_positions(x, box)
    if remove_com:
        x = remove_com_drift(x, masses)
    max_lag = max(1, n_frames // 2) if max_lag is None else int(max_lag)
    if not 1 <= max_lag < n_frames:
        raise TrajectoryError(f"max_lag must be between 1 and n_frames - 1 = {n_frames - 1}, got {max_lag}")
    per_particle = _msd_chunked(x, max_lag, progress=progress)
    msd = per_particle.mean(axis=1)
    err = per_particle.std(axis=1, ddof=1) / np.sqrt(n) if n > 1 else np.full_like(msd, np.nan)
    block_sets = {}
    for count in range(n_blocks, min(n_blocks, MIN_BLOCKS) - 1, -1) if n_blocks else ():
        block_frames = n_frames // count
        if block_frames >= 8:
            block_lag = min(block_frames // 2, max_lag)
            block_sets[count] = np.stack([_msd_chunked(x[b * block_frames:(b + 1) * block_frames], block_lag)
                                          .mean(axis=1) for b in range(count)], axis=1)
    return MSDResult(lag_times=t[: max_lag + 1] - t[0], msd=msd, msd_err=err,
                     per_particle=per_particle if keep_per_particle else None, n_particles=n,
                     block_msd=block_sets.get(n_blocks), block_msds=block_sets)


def _msd_chunked(x: np.ndarray, max_lag: int, *, progress: bool = False) -> np.ndarray:
    """Per-particle all-origins MSD (max_lag + 1, n) of continuous positions, FFTs in bounded chunks."""
    n_frames, n = x.shape[:2]
    chunk = max(1, _CHUNK_ELEMENTS // (_fft_size(n_frames) * 3))
    out = np.empty((max_lag + 1, n))
    starts = range(0, n, chunk)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="MSD", unit="chunk")
    for s in starts:
        out[:, s:s + chunk] = msd_fft(x[:, s:s + chunk])[: max_lag + 1]
    out[0] = 0.0
    return out


# --------------------------------------------------------------------------------------
# Diffusion coefficient
# --------------------------------------------------------------------------------------
def diffusive_regime(lag_times, msd, *, tolerance: float = 0.1, min_span: float = 3.0,
                     n_points: int = 40) -> DiffusiveRegime:
    """Find the diffusive regime, where the local slope d ln MSD / d ln t is within ``tolerance`` of 1.

    The slope is evaluated on ``n_points`` log-spaced lags (smoothed over neighbours); the longest
    contiguous run (in log time) of slopes near 1 spanning at least a factor ``min_span`` in time is taken.
    The ballistic start (slope 2) and caging (slope below 1) fail the tolerance and are excluded.  If no such
    run exists, the window is the last factor ``min_span`` before the longest lag and ``found`` is False.
    """
    if not tolerance > 0 or not min_span > 1:
        raise TrajectoryError(f"tolerance must be > 0 and min_span > 1, got {tolerance} and {min_span}")
    t = np.asarray(lag_times, dtype=np.float64)
    y = np.asarray(msd, dtype=np.float64)
    good = (t > 0) & (y > 0)
    t, y = t[good], y[good]
    if t.size < 3:
        raise TrajectoryError(f"need at least 3 positive lags with positive MSD to find the linear regime, got {t.size}")
    idx = np.unique(np.geomspace(1, t.size, n_points).astype(int) - 1)
    if idx.size < 3:
        return DiffusiveRegime(t[idx], np.full(idx.size, np.nan), (float(t[0]), float(t[-1])), False, tolerance,
                               min_span)
    lt, ly = np.log(t[idx]), np.log(y[idx])
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
            span = lt[i - 1] - lt[start]
            if i - start >= 3 and span > best_span:
                best, best_span = (start, i - 1), span
            start = None
    if best is not None and best_span >= np.log(min_span) * (1 - 1e-9):
        window = (float(t[idx[best[0]]]), float(t[idx[best[1]]]))
        return DiffusiveRegime(t[idx], beta, window, True, tolerance, min_span)
    return DiffusiveRegime(t[idx], beta, (float(t[-1] / min_span), float(t[-1])), False, tolerance, min_span)


def detect_linear_regime(lag_times, msd, *, tolerance: float = 0.1, n_points: int = 40,
                         min_decades: float = float(np.log10(3.0))) -> tuple[tuple[float, float], bool]:
    """The diffusive window and whether it was found (:func:`diffusive_regime` with ``min_span = 10**min_decades``).

    Returns
    -------
    (t_start, t_end), detected : tuple of float (ps), bool
        If no such run exists, the last ``min_decades`` decades before the longest lag and False.
    """
    regime = diffusive_regime(lag_times, msd, tolerance=tolerance, min_span=10 ** min_decades, n_points=n_points)
    if not regime.found:
        logger.warning("no diffusive (linear) regime found in the MSD (local slopes %s); fitting the last %.2g decades",
                       np.round(regime.local_slope, 2).tolist(), min_decades)
    return regime.window, regime.found


def _linear_fit(t: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    a = np.vstack([t, np.ones_like(t)]).T
    (slope, intercept), *_ = np.linalg.lstsq(a, y, rcond=None)
    return float(slope), float(intercept)


def _window_indices(t: np.ndarray, lo: float, hi: float, max_points: int) -> np.ndarray:
    sel = np.flatnonzero((t >= lo - 1e-12) & (t <= hi + 1e-12))
    if sel.size > max_points:
        sel = sel[np.linspace(0, sel.size - 1, max_points).astype(int)]
    return sel


def _slope_weights(ts: np.ndarray) -> np.ndarray:
    """OLS slope = weights @ y (the slope is linear in the data)."""
    return (ts - ts.mean()) / np.sum((ts - ts.mean()) ** 2)


def fit_diffusion(lag_times, msd, *, per_particle=None, block_msd=None, fit_range: tuple[float, float] | None = None,
                  dimensions: int = 3, tolerance: float = 0.1, min_span: float = 3.0,
                  max_fit_points: int = 200) -> DiffusionResult:
    """Fit D from an MSD curve: MSD = 2 * dimensions * D * t + c over the diffusive regime.

    Parameters
    ----------
    lag_times : array (n_lags,), ps
    msd : array (n_lags,), nm^2
    per_particle : array (n_lags, n_particles), optional
        Per-particle MSDs; with at least 8 particles the standard error of D over particles is computed.
    block_msd : array (n_block_lags, n_blocks), or a dict of such arrays keyed by block count, optional
        MSDs of contiguous blocks of the trajectory at ``lag_times[:n_block_lags]``
        (:attr:`MSDResult.block_msds`).  D is fitted in each block over the same window and the standard
        error of the block mean is taken; the window is then capped at the blocks' longest lag (half a block),
        so that the error describes the D reported.  Of several block counts the largest is used whose capped
        window still spans the diffusive criterion's ``min_span`` (or the uncapped window's span, if shorter,
        and at least a factor 2); with none, blocks are skipped (the reason is in the log).
    fit_range : (t_start, t_end), ps, optional
        Fit window; the detected diffusive regime (:func:`diffusive_regime`) if omitted.
    tolerance, min_span : float
        The diffusive criterion: abs(d ln MSD / d ln t - 1) < ``tolerance`` over a factor ``min_span`` in time;
        ``converged`` and ``reason`` of the result say whether the fit window meets it.

    The error is the larger of the block and particle standard errors (fit residuals if neither exists, which
    ignores time correlation and is flagged ``"ols"``).

    The particle error treats particles as independent.  Over lags that approach the run length their
    displacements are correlated (collective motion), so when the window does not fit into blocks the spread
    between independent runs can exceed it, as measured on the demo liquid (the documentation's results page).
    Independent replicas (``combine_replicas``) or a run long enough for blocks give an error that covers it.
    """
    t = np.asarray(lag_times, dtype=np.float64)
    y = np.asarray(msd, dtype=np.float64)
    if t.shape != y.shape or t.ndim != 1:
        raise TrajectoryError(f"lag_times and msd must be 1-D of equal length, got {t.shape} and {y.shape}")
    regime = diffusive_regime(t, y, tolerance=tolerance, min_span=min_span)
    detected = fit_range is None and regime.found
    if fit_range is None:
        fit_range = regime.window
    lo, hi = float(fit_range[0]), float(fit_range[1])
    scale = 1.0 / (2.0 * dimensions)
    err_blocks, n_blocks = float("nan"), 0
    block_sets = block_msd if isinstance(block_msd, dict) else ({} if block_msd is None else
                                                                {np.shape(block_msd)[1]: block_msd})
    need = max(2.0, min(min_span, hi / lo)) if lo > 0 else float("inf")
    for count in sorted(block_sets, reverse=True):
        blocks = np.asarray(block_sets[count], dtype=np.float64)
        t_block = t[: blocks.shape[0]]
        hi_b = min(hi, float(t_block[-1]))
        sel_b = _window_indices(t_block, lo, hi_b, max_fit_points)
        if hi_b >= need * lo * (1 - 1e-9) and sel_b.size >= 3 and blocks.shape[1] >= 2:
            d_blocks = (_slope_weights(t_block[sel_b]) @ blocks[sel_b]) * scale
            err_blocks, n_blocks = float(d_blocks.std(ddof=1) / np.sqrt(d_blocks.size)), int(d_blocks.size)
            hi = hi_b
            break
    if block_sets and not n_blocks:
        longest = max(float(t[np.shape(b)[0] - 1]) for b in block_sets.values())
        logger.info("no block error of D: the fit window %.3g-%.3g ps does not fit (a factor %.3g wide) into blocks "
                    "of lags up to %.3g ps (%d or fewer blocks)", lo, hi, need, longest, max(block_sets))
    sel = _window_indices(t, lo, hi, max_fit_points)
    if sel.size < 2:
        raise TrajectoryError(f"the fit window {fit_range} ps holds fewer than 2 lags")
    slope, intercept = _linear_fit(t[sel], y[sel])
    err_particles = float("nan")
    if per_particle is not None and np.shape(per_particle)[1] >= 8:
        # The least-squares slope is linear in the data, so the slope of the mean MSD is the mean of the
        # per-particle slopes and its standard error is their standard error (particles independent).
        slopes = _slope_weights(t[sel]) @ np.asarray(per_particle)[sel]
        err_particles = float(slopes.std(ddof=1) / np.sqrt(slopes.size)) * scale
    if np.isfinite(err_blocks) or np.isfinite(err_particles):
        err = float(np.nanmax([err_blocks, err_particles]))
        method = "blocks" if np.isfinite(err_blocks) and err == err_blocks else "particles"
    else:
        resid = y[sel] - (slope * t[sel] + intercept)
        dof = max(sel.size - 2, 1)
        sxx = np.sum((t[sel] - t[sel].mean()) ** 2)
        err, method = float(np.sqrt(np.sum(resid**2) / dof / sxx)) * scale, "ols"
        logger.warning("D error from the fit residuals only (no per-particle or block data): it ignores time "
                       "correlation")
    converged, reason = regime.judge((lo, hi))
    if not converged:
        logger.warning("D = %.4g nm^2/ps is not from a diffusive regime: %s", slope * scale, reason)
    return DiffusionResult(D=slope * scale, D_err=err, fit_range=(lo, hi), intercept=intercept,
                           linear_regime_detected=detected, error_method=method, regime=regime, converged=converged,
                           reason=reason, D_err_blocks=err_blocks, D_err_particles=err_particles, n_blocks=n_blocks)


def _viscosity_pa_s(viscosity) -> float:
    """A viscosity in Pa s from a number (Pa s) or a unit string such as ``"0.5 mPa*s"``."""
    if isinstance(viscosity, str):
        from ..units import _registry

        try:
            return float(_registry().Quantity(viscosity.replace("mPa s", "mPa*s").replace("Pa s", "Pa*s"))
                         .to("pascal * second").magnitude)
        except Exception as exc:
            raise TrajectoryError(f"cannot read the viscosity {viscosity!r} (expected e.g. '0.5 mPa*s'): {exc}") from exc
    return float(viscosity)


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
    eta = _viscosity_pa_s(viscosity)
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
                          min_span: float = 3.0, temperature=None, viscosity=None, box=None) -> DiffusionResult:
    """Self-diffusion coefficient from an :class:`MSDResult` (block and particle errors, regime diagnostics),
    optionally Yeh-Hummer corrected.

    Pass ``temperature``, ``viscosity`` and ``box`` together to add the finite-size correction.
    """
    result = fit_diffusion(msd.lag_times, msd.msd, per_particle=msd.per_particle,
                           block_msd=msd.block_msds or msd.block_msd,
                           fit_range=fit_range, dimensions=msd.dimensions, tolerance=tolerance, min_span=min_span)
    if viscosity is None:
        return result
    if temperature is None or box is None:
        raise TrajectoryError("the Yeh-Hummer correction needs temperature, viscosity and box together")
    return apply_finite_size_correction(result, yeh_hummer_correction(temperature, viscosity, box))


def apply_finite_size_correction(result: DiffusionResult, correction: float) -> DiffusionResult:
    """``result`` with ``correction`` (nm^2/ps, e.g. from :func:`yeh_hummer_correction`) added to D."""
    return replace(result, D=result.D_uncorrected + correction, finite_size_correction=float(correction))


def combine_replicas(results) -> DiffusionResult:
    """D over independent replicas (runs from independent starts): the mean, with the larger of the standard
    error over replicas and the pooled per-run error sqrt(sum err_i^2) / n.

    Converged only if every replica is; the fit windows and finite-size corrections are averaged.
    """
    results = list(results)
    if not results:
        raise TrajectoryError("combine_replicas needs at least one DiffusionResult")
    if len(results) == 1:
        return results[0]
    d = np.array([r.D for r in results])
    pooled = float(np.sqrt(np.sum(np.square([r.D_err for r in results]))) / d.size)
    spread = float(d.std(ddof=1) / np.sqrt(d.size))
    bad = [f"replica {i + 1}: {r.reason}" for i, r in enumerate(results) if not r.converged]
    converged = not bad
    reason = (f"converged in all {d.size} replicas ({results[0].reason})" if converged else "; ".join(bad))
    return replace(results[0], D=float(d.mean()), D_err=max(spread, pooled),
                   fit_range=tuple(float(v) for v in np.mean([r.fit_range for r in results], axis=0)),
                   intercept=float(np.mean([r.intercept for r in results])),
                   linear_regime_detected=all(r.linear_regime_detected for r in results),
                   error_method="replicas" if spread >= pooled else results[0].error_method,
                   finite_size_correction=float(np.mean([r.finite_size_correction for r in results])),
                   converged=converged, reason=reason, n_replicas=d.size)
