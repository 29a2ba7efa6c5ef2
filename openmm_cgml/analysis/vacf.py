"""Velocity autocorrelation function and the Green-Kubo self-diffusion coefficient."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..exceptions import TrajectoryError
from ._checks import as_times, as_trajectory
from .msd import _CHUNK_ELEMENTS, _fft_size, autocorrelation_fft, remove_com_drift

__all__ = ["VACFResult", "GreenKuboResult", "compute_vacf", "green_kubo_diffusion"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VACFResult:
    """Velocity autocorrelation C(t) = <v(0) . v(t)>, averaged over all time origins and particles.

    Attributes
    ----------
    lag_times : ndarray, shape (n_lags,)
        ps, starting at 0.
    vacf : ndarray, shape (n_lags,)
        nm^2/ps^2 (summed over x, y, z).
    vacf_err : ndarray, shape (n_lags,)
        Standard error over particles, nm^2/ps^2.
    per_particle : ndarray, shape (n_lags, n_particles) or None
    n_particles : int
    dimensions : int
    """

    lag_times: np.ndarray
    vacf: np.ndarray
    vacf_err: np.ndarray
    per_particle: np.ndarray | None
    n_particles: int
    dimensions: int = 3

    @property
    def normalized(self) -> np.ndarray:
        """C(t) / C(0)."""
        return self.vacf / self.vacf[0]


@dataclass(frozen=True)
class GreenKuboResult:
    """D = (1/d) int_0^t_max C(t) dt.

    Attributes
    ----------
    D, D_err : float
        nm^2/ps; the error is the standard error over particles.
    t_max : float
        Upper integration limit, ps.
    running_integral : ndarray, shape (n_lags,)
        (1/d) int_0^t C dt for every lag, nm^2/ps.
    plateau_detected : bool
        Whether t_max came from the decay of C(t) into its noise (False: the longest lag, or given).
    """

    D: float
    D_err: float
    t_max: float
    running_integral: np.ndarray
    plateau_detected: bool


def compute_vacf(velocities, times, *, masses=None, remove_com: bool = False, max_lag: int | None = None,
                 keep_per_particle: bool = True) -> VACFResult:
    """Velocity autocorrelation over all time origins (FFT).

    Parameters
    ----------
    velocities : array, shape (n_frames, n_particles, 3)
        Velocities, nm/ps.
    times : array, shape (n_frames,)
        ps, strictly increasing and evenly spaced.
    masses : array (n_particles,), optional
        Da, for ``remove_com``.
    remove_com : bool
        Subtract the centre-of-mass velocity of each frame.
    max_lag : int, optional
        Largest lag in frames (default half the trajectory).
    keep_per_particle : bool
        Keep each particle's VACF (for the error of the Green-Kubo D).
    """
    v = as_trajectory(velocities, "velocities")
    n_frames, n = v.shape[:2]
    t = as_times(times, n_frames)
    if n_frames < 2:
        raise TrajectoryError("a VACF needs at least 2 frames")
    if remove_com:
        v = remove_com_drift(v, masses)
    max_lag = max(1, n_frames // 2) if max_lag is None else int(max_lag)
    if not 1 <= max_lag < n_frames:
        raise TrajectoryError(f"max_lag must be between 1 and n_frames - 1 = {n_frames - 1}, got {max_lag}")
    chunk = max(1, _CHUNK_ELEMENTS // (_fft_size(n_frames) * 3))
    per_particle = np.empty((max_lag + 1, n))
    for s in range(0, n, chunk):
        per_particle[:, s:s + chunk] = autocorrelation_fft(v[:, s:s + chunk])[: max_lag + 1]
    c = per_particle.mean(axis=1)
    err = per_particle.std(axis=1, ddof=1) / np.sqrt(n) if n > 1 else np.full_like(c, np.nan)
    return VACFResult(lag_times=t[: max_lag + 1] - t[0], vacf=c, vacf_err=err,
                      per_particle=per_particle if keep_per_particle else None, n_particles=n)


def _cumulative_trapezoid(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    dt = np.diff(t).reshape((-1,) + (1,) * (y.ndim - 1))
    return np.concatenate([np.zeros((1,) + y.shape[1:]), np.cumsum(0.5 * (y[1:] + y[:-1]) * dt, axis=0)])


def green_kubo_diffusion(vacf: VACFResult, *, t_max: float | None = None, noise_sigmas: float = 2.0,
                         quiet_lags: int = 10) -> GreenKuboResult:
    """Green-Kubo self-diffusion coefficient D = (1/d) int_0^t_max <v(0) . v(t)> dt (trapezoid rule).

    If ``t_max`` is not given, it is the first lag from which ``|C(t)|`` stays below ``noise_sigmas`` standard
    errors for ``quiet_lags`` consecutive lags (the correlation has decayed into its noise); beyond it the
    integral only accumulates noise.
    """
    t, c = vacf.lag_times, vacf.vacf
    running = _cumulative_trapezoid(c, t) / vacf.dimensions
    detected = False
    if t_max is None:
        quiet = np.abs(c) < noise_sigmas * vacf.vacf_err
        k = None
        if np.all(np.isfinite(vacf.vacf_err)):
            window = np.convolve(quiet.astype(int), np.ones(quiet_lags, dtype=int), mode="valid")
            hits = np.flatnonzero(window == quiet_lags)
            k = int(hits[0]) if hits.size else None
        if k is None:
            logger.warning("the VACF does not decay into its noise within %.4g ps; integrating to the longest lag",
                           t[-1])
            k = t.size - 1
        else:
            detected = True
        t_max = float(t[k])
    else:
        if not 0 < t_max <= t[-1]:
            raise TrajectoryError(f"t_max must be in (0, {t[-1]}] ps, got {t_max}")
        k = int(np.searchsorted(t, t_max - 1e-12))
    if vacf.per_particle is not None and vacf.n_particles >= 2:
        per = _cumulative_trapezoid(vacf.per_particle[: k + 1], t[: k + 1])[-1] / vacf.dimensions
        err = float(per.std(ddof=1) / np.sqrt(per.size))
    else:
        err = float("nan")
    return GreenKuboResult(D=float(running[k]), D_err=err, t_max=float(t_max), running_integral=running,
                           plateau_detected=detected)
