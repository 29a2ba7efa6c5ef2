"""The bounded-memory correlator equals explicit all-origin (level 0) and decimated-origin sums."""

import numpy as np
import pytest

from openmm_cgml.analysis import compute_msd, compute_vacf
from openmm_cgml.dynamics import MultiTauCorrelator
from openmm_cgml.exceptions import ConfigurationError, TrajectoryError


def _strided_reference(x, lag, stride):
    origins = np.arange(0, x.shape[0] - lag, stride)
    origins = origins[(origins + lag) % stride == 0]
    return np.mean(np.sum((x[origins + lag] - x[origins]) ** 2, axis=-1)), origins.size


def test_correlator_matches_offline_correlations():
    rng = np.random.default_rng(0)
    n_frames, n = 700, 12
    v = rng.normal(size=(n_frames, n, 3))
    x = np.cumsum(v, axis=0) * 0.1
    corr = MultiTauCorrelator(n, n_lags=16, block_factor=4, n_levels=3)
    for k in range(n_frames):
        corr.add(x[k], v[k])
    res = corr.result()
    assert np.all(np.diff(res.lags) > 0) and res.lags[-1] == corr.max_lag == 15 * 16
    times = np.arange(n_frames, dtype=float)
    offline = compute_msd(x, times, remove_com=False, max_lag=15)
    np.testing.assert_allclose(res.msd[:16], offline.msd, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.vacf[:16], compute_vacf(v, times, max_lag=15).vacf, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(res.n_origins[:16], n_frames - np.arange(16))
    for lag, value, count in zip(res.lags[16:], res.msd[16:], res.n_origins[16:]):
        stride = 4 if lag <= 15 * 4 else 16
        ref, n_orig = _strided_reference(x, lag, stride)
        assert count == n_orig
        assert value == pytest.approx(ref, rel=1e-10)


def test_correlator_memory_is_bounded_and_inputs_checked():
    corr = MultiTauCorrelator(5, n_lags=8, block_factor=2, n_levels=2)
    before = corr.nbytes
    for _ in range(500):
        corr.add(np.zeros((5, 3)), np.zeros((5, 3)))
    assert corr.nbytes == before
    with pytest.raises(TrajectoryError, match=r"shape \(5, 3\)"):
        corr.add(np.zeros((4, 3)), np.zeros((4, 3)))
    with pytest.raises(TrajectoryError, match="velocities"):
        corr.add(np.zeros((5, 3)))
    with pytest.raises(ConfigurationError, match="block_factor"):
        MultiTauCorrelator(5, n_lags=4, block_factor=4)
    with pytest.raises(TrajectoryError, match="no frames"):
        MultiTauCorrelator(3).result()
