"""Uncertainties of averages over correlated samples, on top of :mod:`pymbar.timeseries`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..exceptions import TrajectoryError

__all__ = [
    "Estimate",
    "EquilibrationResult",
    "statistical_inefficiency",
    "detect_equilibration",
    "mean_with_error",
    "block_average",
    "bootstrap",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Estimate:
    """A value with its standard error (same units as the data).

    ``n_effective`` is the number of effectively independent samples behind it (NaN if unknown).
    """

    value: float
    error: float
    n_effective: float = float("nan")

    def __format__(self, spec: str) -> str:
        spec = spec or ".4g"
        return f"{self.value:{spec}} ± {self.error:{spec}}"


@dataclass(frozen=True)
class EquilibrationResult:
    """Result of :func:`detect_equilibration`.

    Attributes
    ----------
    t0 : int
        Index of the first sample of the equilibrated (production) region.
    g : float
        Statistical inefficiency of the production region (>= 1; 1 = uncorrelated).
    n_effective : float
        Effective number of uncorrelated samples in the production region.
    """

    t0: int
    g: float
    n_effective: float


def _series(x, name: str = "series", minimum: int = 2) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise TrajectoryError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size < minimum:
        raise TrajectoryError(f"{name} has {arr.size} samples; at least {minimum} are needed")
    if not np.all(np.isfinite(arr)):
        raise TrajectoryError(f"{name} contains NaN or infinite values")
    return arr


def _timeseries():
    """pymbar.timeseries, imported without the banners pymbar logs at import (a generic caution about
    correlation times, which :func:`mean_with_error` handles, and an advertisement for JAX)."""
    import sys

    if "pymbar.timeseries" not in sys.modules:
        quiet = logging.getLogger("pymbar")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            import pymbar.timeseries  # noqa: F401
        finally:
            quiet.setLevel(level)
    return sys.modules["pymbar.timeseries"]


def statistical_inefficiency(x, *, fast: bool = False) -> float:
    """Statistical inefficiency g = 1 + 2 tau of a time series (pymbar), in units of the sample spacing.

    A constant series has g = 1 by convention.
    """
    arr = _series(x)
    if np.ptp(arr) == 0:
        return 1.0
    return float(_timeseries().statistical_inefficiency(arr, fast=fast))


def detect_equilibration(x, *, fast: bool = True, nskip: int = 1) -> EquilibrationResult:
    """Find the start of the equilibrated region maximising the effective sample count (Chodera 2016)."""
    arr = _series(x, minimum=3)
    if np.ptp(arr) == 0:
        return EquilibrationResult(t0=0, g=1.0, n_effective=float(arr.size))
    t0, g, n_eff = _timeseries().detect_equilibration(arr, fast=fast, nskip=nskip)
    return EquilibrationResult(t0=int(t0), g=float(g), n_effective=float(n_eff))


def mean_with_error(x, *, equilibrate: bool = False) -> Estimate:
    """Mean of a correlated series and its standard error sqrt(var * g / n).

    With ``equilibrate=True`` the initial transient found by :func:`detect_equilibration` is discarded.
    """
    arr = _series(x)
    if equilibrate:
        eq = detect_equilibration(arr)
        arr = arr[eq.t0:]
        logger.debug("discarding %d samples as equilibration (g = %.3g)", eq.t0, eq.g)
    if arr.size < 2:
        return Estimate(float(arr.mean()), float("nan"), float(arr.size))
    g = statistical_inefficiency(arr)
    n_eff = arr.size / g
    return Estimate(float(arr.mean()), float(arr.std(ddof=1) * np.sqrt(g / arr.size)), float(n_eff))


def block_average(x, n_blocks: int = 10) -> Estimate:
    """Mean and standard error from ``n_blocks`` contiguous, non-overlapping blocks."""
    arr = _series(x)
    if n_blocks < 2 or n_blocks > arr.size:
        raise TrajectoryError(f"n_blocks must be between 2 and the number of samples ({arr.size}), got {n_blocks}")
    means = np.array([b.mean() for b in np.array_split(arr, n_blocks)])
    return Estimate(float(arr.mean()), float(means.std(ddof=1) / np.sqrt(n_blocks)), float(n_blocks))


def bootstrap(statistic: Callable[[np.ndarray], float], samples, *, n_bootstrap: int = 200,
              seed: int | None = 0) -> Estimate:
    """Bootstrap standard error of ``statistic`` over independent samples (resampled along axis 0).

    Use it over independent units (particles, molecules, blocks), never over correlated time frames.
    """
    data = np.asarray(samples)
    if data.shape[0] < 2:
        raise TrajectoryError(f"bootstrap needs at least 2 independent samples, got {data.shape[0]}")
    rng = np.random.default_rng(seed)
    value = float(statistic(data))
    draws = np.array([statistic(data[rng.integers(0, data.shape[0], data.shape[0])]) for _ in range(n_bootstrap)])
    return Estimate(value, float(draws.std(ddof=1)), float(data.shape[0]))
