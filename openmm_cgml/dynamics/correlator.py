"""On-the-fly MSD and velocity autocorrelation with many time origins and bounded memory.

A multiple-level ring-buffer correlator: level 0 keeps the last ``n_lags`` frames and correlates every
new frame with each of them (every frame is a time origin, so for lags below ``n_lags`` the result
equals the offline all-origins average exactly); level ``l`` keeps every ``block_factor**l``-th frame
(decimated, not averaged, so MSDs stay exact) and adds the lags ``k * block_factor**l`` beyond the
previous level, with every retained frame as an origin.  Memory is
``n_levels * n_lags * n_particles * 6`` floats however long the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..exceptions import ConfigurationError, TrajectoryError

__all__ = ["CorrelatorResult", "MultiTauCorrelator"]


@dataclass(frozen=True)
class CorrelatorResult:
    """Accumulated correlations.

    Attributes
    ----------
    lags : ndarray (n,), int
        Lags in frames (reports), sorted, starting at 0.
    n_origins : ndarray (n,), int
        Time origins averaged at each lag.
    msd, msd_err : ndarray (n,)
        MSD (nm^2) and its standard error over particles.
    vacf, vacf_err : ndarray (n,) or None
        <v(0) . v(t)> (nm^2/ps^2) and its standard error (None without velocities).
    msd_per_particle, vacf_per_particle : ndarray (n, n_particles)
        Per-particle origin averages.
    """

    lags: np.ndarray
    n_origins: np.ndarray
    msd: np.ndarray
    msd_err: np.ndarray
    vacf: np.ndarray | None
    vacf_err: np.ndarray | None
    msd_per_particle: np.ndarray
    vacf_per_particle: np.ndarray | None


class _Level:
    def __init__(self, stride: int, k_min: int, n_lags: int, n: int, velocities: bool):
        self.stride, self.k_min, self.n_lags = stride, k_min, n_lags
        self.x = np.zeros((n_lags, n, 3))
        self.v = np.zeros((n_lags, n, 3)) if velocities else None
        self.filled = 0
        self.head = -1
        n_k = n_lags - k_min
        self.msd = np.zeros((n_k, n))
        self.vacf = np.zeros((n_k, n)) if velocities else None
        self.count = np.zeros(n_k, dtype=np.int64)

    def add(self, x: np.ndarray, v: np.ndarray | None) -> None:
        self.head = (self.head + 1) % self.n_lags
        self.x[self.head] = x
        if self.v is not None:
            self.v[self.head] = v
        self.filled = min(self.filled + 1, self.n_lags)
        k = np.arange(self.k_min, self.filled)
        if k.size == 0:
            return
        idx = (self.head - k) % self.n_lags
        d = self.x[idx] - x[None]
        self.msd[k - self.k_min] += np.einsum("kni,kni->kn", d, d)
        if self.v is not None:
            self.vacf[k - self.k_min] += np.einsum("kni,ni->kn", self.v[idx], v)
        self.count[k - self.k_min] += 1


class MultiTauCorrelator:
    """Accumulate MSD and VACF of ``n_particles`` from frames added one at a time.

    Parameters
    ----------
    n_particles : int
    n_lags : int
        Frames kept per level (lags 0 .. n_lags - 1 at level 0).
    block_factor : int
        Decimation between levels (>= 2, < n_lags).
    n_levels : int
        Levels; the longest lag is (n_lags - 1) * block_factor**(n_levels - 1) frames.
    velocities : bool
        Also correlate velocities.
    """

    def __init__(self, n_particles: int, *, n_lags: int = 64, block_factor: int = 8, n_levels: int = 3,
                 velocities: bool = True):
        if n_particles < 1:
            raise ConfigurationError(f"n_particles must be positive, got {n_particles}")
        if n_lags < 2 or not 2 <= block_factor < n_lags or n_levels < 1:
            raise ConfigurationError(
                f"need n_lags >= 2, 2 <= block_factor < n_lags and n_levels >= 1; got n_lags={n_lags}, "
                f"block_factor={block_factor}, n_levels={n_levels}")
        self.n_particles = n_particles
        self.n_lags, self.block_factor, self.n_levels = n_lags, block_factor, n_levels
        self.velocities = velocities
        k_min = (n_lags - 1) // block_factor + 1
        self._levels = [_Level(block_factor**level, 0 if level == 0 else k_min, n_lags, n_particles, velocities)
                        for level in range(n_levels)]
        self.n_frames = 0

    @property
    def max_lag(self) -> int:
        """Longest lag, in frames."""
        return (self.n_lags - 1) * self.block_factor ** (self.n_levels - 1)

    @property
    def nbytes(self) -> int:
        """Memory held by the buffers and accumulators, bytes."""
        total = 0
        for lvl in self._levels:
            for arr in (lvl.x, lvl.v, lvl.msd, lvl.vacf):
                total += 0 if arr is None else arr.nbytes
        return total

    def add(self, positions, velocities=None) -> None:
        """Add one frame: continuous positions (n_particles, 3) nm and, if enabled, velocities nm/ps."""
        x = np.asarray(positions, dtype=np.float64)
        if x.shape != (self.n_particles, 3):
            raise TrajectoryError(f"positions must have shape ({self.n_particles}, 3), got {x.shape}")
        v = None
        if self.velocities:
            if velocities is None:
                raise TrajectoryError("this correlator also correlates velocities; pass them with every frame")
            v = np.asarray(velocities, dtype=np.float64)
            if v.shape != (self.n_particles, 3):
                raise TrajectoryError(f"velocities must have shape ({self.n_particles}, 3), got {v.shape}")
        for lvl in self._levels:
            if self.n_frames % lvl.stride == 0:
                lvl.add(x, v)
        self.n_frames += 1

    def result(self) -> CorrelatorResult:
        """The correlations accumulated so far (lags with at least one origin)."""
        lags, counts, msd_pp, vacf_pp = [], [], [], []
        for lvl in self._levels:
            ok = lvl.count > 0
            k = np.arange(lvl.k_min, lvl.n_lags)[ok]
            lags.append(k * lvl.stride)
            counts.append(lvl.count[ok])
            msd_pp.append(lvl.msd[ok] / lvl.count[ok, None])
            if lvl.vacf is not None:
                vacf_pp.append(lvl.vacf[ok] / lvl.count[ok, None])
        lags = np.concatenate(lags)
        if lags.size == 0:
            raise TrajectoryError("no frames have been correlated yet")
        counts = np.concatenate(counts)
        msd_pp = np.concatenate(msd_pp)
        n = self.n_particles
        sem = (lambda a: a.std(axis=1, ddof=1) / math.sqrt(n)) if n > 1 else (lambda a: np.full(a.shape[0], np.nan))
        vacf = vacf_err = vacf_all = None
        if self.velocities:
            vacf_all = np.concatenate(vacf_pp)
            vacf, vacf_err = vacf_all.mean(axis=1), sem(vacf_all)
        return CorrelatorResult(lags=lags, n_origins=counts, msd=msd_pp.mean(axis=1), msd_err=sem(msd_pp),
                                vacf=vacf, vacf_err=vacf_err, msd_per_particle=msd_pp, vacf_per_particle=vacf_all)
