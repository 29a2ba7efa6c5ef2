"""How much of a mapped force is noise: the part of the instantaneous CG force that no CG force field can fit.

A mapped AA force is the mean force (a function of the CG configuration, what force matching can learn) plus a
fluctuation from the atomistic degrees of freedom inside the beads.  The fluctuation decorrelates within the
fast atomistic motions; the mean force only as fast as the CG configuration changes.  So the force
autocorrelation C(t) = <F(0) . F(t)> / <F . F>, read at the first few recorded lags (the report interval and its
multiples) and extrapolated back to t = 0 by a quadratic in t, is the mean force's share of the force variance,
and one minus it the noise fraction (:func:`force_noise_fraction`).

It is an estimate, and a lower bound of the noise where part of the fluctuation outlives the report interval
(that part counts as signal); it is meaningful only for frames recorded close together (a report interval short
against the time the CG configuration takes to change).
"""

from __future__ import annotations

import numpy as np

from ..exceptions import TrajectoryError

__all__ = ["force_noise_fraction"]


def _extrapolated(forces: np.ndarray, n_lags: int) -> tuple[float, float]:
    f = forces.reshape(forces.shape[0], -1)
    c0 = float(np.mean(np.einsum("ij,ij->i", f, f)))
    lags = np.arange(1, n_lags + 1)
    c = np.array([np.mean(np.einsum("ij,ij->i", f[:-k], f[k:])) for k in lags]) / c0
    coeffs = np.polyfit(lags.astype(np.float64), c, 2)
    return float(np.clip(1.0 - np.polyval(coeffs, 0.0), 0.0, 1.0)), c0


def force_noise_fraction(forces, *, n_lags: int = 4, n_blocks: int = 5) -> dict[str, float]:
    """The noise fraction of mapped forces ``(n_frames, n_beads, 3)`` from consecutive frames (module docstring),
    with a standard error from ``n_blocks`` blocks of frames.

    Returns ``{"noise_fraction", "noise_fraction_err", "force_variance", "n_lags", "n_frames"}`` (the variance
    per bead and component summed over components, (kJ/mol/nm)**2).
    """
    f = np.asarray(forces, dtype=np.float64)
    if f.ndim != 3 or f.shape[2] != 3:
        raise TrajectoryError(f"forces must have shape (n_frames, n_beads, 3), got {f.shape}")
    if n_lags < 3:
        raise TrajectoryError(f"n_lags must be at least 3 (a quadratic through the lags), got {n_lags}")
    if f.shape[0] < 4 * n_lags:
        raise TrajectoryError(f"{f.shape[0]} frames are too few to read the force autocorrelation at {n_lags} lags "
                              f"(need at least {4 * n_lags})")
    f = f - f.mean(axis=(0, 1), keepdims=True)  # a net force (none in a periodic liquid) is not a correlation
    value, c0 = _extrapolated(f, n_lags)
    blocks = [b for b in np.array_split(f, n_blocks) if b.shape[0] >= 4 * n_lags]
    err = float(np.std([_extrapolated(b, n_lags)[0] for b in blocks], ddof=1) / np.sqrt(len(blocks))) \
        if len(blocks) >= 2 else float("nan")
    return {"noise_fraction": value, "noise_fraction_err": err, "force_variance": c0 / f.shape[1],
            "n_lags": int(n_lags), "n_frames": int(f.shape[0])}
