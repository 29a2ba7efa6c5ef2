"""MSD and diffusion: Brownian and Langevin (Ornstein-Uhlenbeck) trajectories with known D, Green-Kubo."""

import numpy as np
import pytest

from openmm_cgml.analysis import (
    compute_msd,
    compute_vacf,
    diffusion_coefficient,
    fit_diffusion,
    green_kubo_diffusion,
    unwrap_positions,
    yeh_hummer_correction,
)
from openmm_cgml.analysis.msd import YEH_HUMMER_XI, combine_replicas
from openmm_cgml.exceptions import TrajectoryError


def _brownian(n_frames, n, d_true, dt, seed=0):
    rng = np.random.default_rng(seed)
    steps = rng.normal(scale=np.sqrt(2 * d_true * dt), size=(n_frames - 1, n, 3))
    x0 = rng.uniform(0, 3, (1, n, 3))
    return np.concatenate([x0, x0 + np.cumsum(steps, axis=0)])


def _ornstein_uhlenbeck(n_frames, n, gamma, kt_over_m, dt, seed=0):
    """Exact OU velocities; positions integrated with the trapezoid rule (then D_GK = D_MSD exactly)."""
    rng = np.random.default_rng(seed)
    c = np.exp(-gamma * dt)
    v = np.empty((n_frames, n, 3))
    v[0] = rng.normal(scale=np.sqrt(kt_over_m), size=(n, 3))
    noise = rng.normal(scale=np.sqrt(kt_over_m * (1 - c * c)), size=(n_frames - 1, n, 3))
    for k in range(1, n_frames):
        v[k] = c * v[k - 1] + noise[k - 1]
    x = np.concatenate([np.zeros((1, n, 3)), np.cumsum(0.5 * dt * (v[1:] + v[:-1]), axis=0)])
    return x, v


def _msd_direct(x):
    """MDAnalysis-style reference: explicit loop over lags, every time origin."""
    n = x.shape[0]
    return np.array([np.mean(np.sum((x[m:] - x[: n - m]) ** 2, axis=-1)) for m in range(n)])


def test_fft_msd_equals_direct_all_origins_average():
    x = _brownian(300, 20, 0.1, 0.1, seed=5)
    res = compute_msd(x, np.arange(300) * 0.1, remove_com=False, max_lag=299)
    np.testing.assert_allclose(res.msd, _msd_direct(x), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("triclinic", [False, True])
def test_unwrapping_recovers_continuous_trajectory(triclinic):
    x = _brownian(200, 30, 0.05, 0.2, seed=1)
    box = np.array([[2.0, 0, 0], [0.5, 2.2, 0], [-0.3, 0.6, 1.9]]) if triclinic else np.diag([2.0, 2.2, 1.9])
    frac = x @ np.linalg.inv(box)
    wrapped = (frac - np.floor(frac)) @ box
    unwrapped = unwrap_positions(wrapped, box)
    np.testing.assert_allclose(unwrapped - unwrapped[0], x - x[0], atol=1e-10)


def test_brownian_diffusion_recovered_within_error_bars():
    d_true, dt, L = 0.05, 0.1, 3.0
    x = _brownian(2000, 200, d_true, dt, seed=2)
    times = np.arange(2000) * dt
    res = compute_msd(x % L, times, box=[L, L, L])
    fit = diffusion_coefficient(res)
    assert fit.linear_regime_detected
    assert fit.error_method in ("blocks", "particles") and fit.n_blocks == 5
    assert fit.converged and fit.reason.startswith("converged: local slope ")
    assert fit.regime.found and fit.fit_range[1] <= res.lag_times[res.block_msd.shape[0] - 1]
    assert abs(fit.D - d_true) < 3 * fit.D_err, (fit.D, fit.D_err)
    assert fit.D_err < 0.05 * d_true
    # a uniform drift of the whole system is removed with the centre of mass
    drifted = x + 0.3 * times[:, None, None]
    fit_drift = diffusion_coefficient(compute_msd(drifted, times))
    assert fit_drift.D == pytest.approx(fit.D, rel=1e-9)


def test_langevin_msd_and_green_kubo_agree_with_known_d():
    gamma, kt_over_m, dt = 5.0, 1.0, 0.01
    d_true = kt_over_m / gamma
    x, v = _ornstein_uhlenbeck(4000, 100, gamma, kt_over_m, dt, seed=3)
    times = np.arange(4000) * dt
    msd_fit = diffusion_coefficient(compute_msd(x, times, remove_com=False))
    vacf = compute_vacf(v, times, max_lag=400)
    gk = green_kubo_diffusion(vacf)
    assert vacf.vacf[0] == pytest.approx(3 * kt_over_m, rel=0.03)
    np.testing.assert_allclose(vacf.normalized[:50], np.exp(-gamma * vacf.lag_times[:50]), atol=0.03)
    assert gk.plateau_detected and gk.t_max > 3 / gamma
    # the ballistic start (t < a few 1/gamma) is excluded by the detected fit window
    assert msd_fit.linear_regime_detected and msd_fit.fit_range[0] > 1.0 / gamma
    for est in (msd_fit, gk):
        assert abs(est.D - d_true) < 3 * est.D_err, (type(est).__name__, est.D, est.D_err)
    assert abs(msd_fit.D - gk.D) < 3 * np.hypot(msd_fit.D_err, gk.D_err)


def test_yeh_hummer_correction_value_and_box_checks():
    from scipy import constants

    corr = yeh_hummer_correction(300.0, 0.89e-3, [3.0, 3.0, 3.0])
    expected_si = constants.k * 300.0 * YEH_HUMMER_XI / (6 * np.pi * 0.89e-3 * 3e-9)
    assert corr == pytest.approx(expected_si * 1e6, rel=1e-9)  # m^2/s -> nm^2/ps
    assert yeh_hummer_correction("300 K", "0.89 mPa*s", np.eye(3) * 6.0) == pytest.approx(corr / 2)
    with pytest.raises(TrajectoryError, match="cubic"):
        yeh_hummer_correction(300.0, 1e-3, [3.0, 3.0, 4.0])
    boxes = np.stack([np.eye(3) * 3.0, np.diag([3.0, 3.1, 2.9])])
    with pytest.raises(TrajectoryError, match="changes shape"):
        yeh_hummer_correction(300.0, 1e-3, boxes)
    # isotropic NPT fluctuations of a cubic box are fine
    assert yeh_hummer_correction(300.0, 1e-3, np.stack([np.eye(3) * 3.0, np.eye(3) * 3.03])) > 0
    x = _brownian(200, 20, 0.05, 0.1)
    msd = compute_msd(x, np.arange(200) * 0.1)
    plain = diffusion_coefficient(msd)
    corrected = diffusion_coefficient(msd, temperature=300.0, viscosity=1e-3, box=[3.0] * 3)
    assert corrected.D == pytest.approx(plain.D + corrected.finite_size_correction)


def test_msd_bad_input():
    x = _brownian(10, 4, 0.1, 0.1)
    t = np.arange(10) * 0.1
    with pytest.raises(TrajectoryError, match="zero frames"):
        compute_msd(np.zeros((0, 4, 3)), [])
    with pytest.raises(TrajectoryError, match="9 entries but the trajectory has 10"):
        compute_msd(x, t[:9])
    with pytest.raises(TrajectoryError, match="increase strictly"):
        compute_msd(x, t[::-1])
    with pytest.raises(TrajectoryError, match="evenly spaced"):
        compute_msd(x, t**2 + t)
    with pytest.raises(TrajectoryError, match="5 frames but the trajectory has 10"):
        compute_msd(x, t, box=np.tile(np.eye(3), (5, 1, 1)))
    with pytest.raises(TrajectoryError, match=r"shape \(n_frames, n_particles, 3\)"):
        compute_msd(x[..., :2], t)
    with pytest.raises(TrajectoryError, match="times has 10 entries but the trajectory has 9 frames"):
        compute_vacf(x[:9], t)
    with pytest.raises(TrajectoryError, match="fewer than 2 lags"):
        fit_diffusion(t, t, fit_range=(0.05, 0.06))


def test_error_covers_the_spread_of_independent_runs_at_the_stated_rate():
    """40 independent Brownian runs: the stated standard error matches the spread of D over runs, and
    |D - D_true| < 2 s.e. in about 95 % of them (at least 80 % asked, for a test that cannot flake)."""
    d_true, dt = 0.05, 0.1
    fits = [diffusion_coefficient(compute_msd(_brownian(1000, 30, d_true, dt, seed=100 + k), np.arange(1000) * dt))
            for k in range(40)]
    d = np.array([f.D for f in fits])
    err = np.array([f.D_err for f in fits])
    assert all(f.converged for f in fits)
    assert 0.7 < np.mean(err) / d.std(ddof=1) < 1.5, (np.mean(err), d.std(ddof=1))
    assert np.mean(np.abs(d - d_true) < 2 * err) >= 0.8
    # replicas: the mean, with an error that covers their spread
    combined = combine_replicas(fits[:4])
    assert combined.n_replicas == 4 and combined.D == pytest.approx(d[:4].mean())
    assert combined.D_err >= d[:4].std(ddof=1) / 2 - 1e-15 and combined.converged


def test_block_error_sees_correlations_that_the_particle_error_misses():
    """All particles share a common random walk on top of their own (a collective mode, as hydrodynamics gives
    in a small box) that the COM removal cannot see because it is not a uniform drift: here half the particles
    share one walk, half another.  The particle error assumes independent particles and is far too small;
    the block error is not, and D_err takes the larger."""
    d_true, dt, n = 0.05, 0.1, 40
    rng = np.random.default_rng(7)
    own = _brownian(2000, n, d_true, dt, seed=8)
    shared = np.cumsum(rng.normal(scale=np.sqrt(2 * d_true * dt), size=(2000, 2, 3)), axis=0)
    x = own + np.repeat(shared, n // 2, axis=1)
    fit = diffusion_coefficient(compute_msd(x, np.arange(2000) * dt, remove_com=False))
    assert fit.D_err_blocks > 3 * fit.D_err_particles and fit.error_method == "blocks"
    assert abs(fit.D - 2 * d_true) < 3 * fit.D_err


def test_caged_subdiffusive_msd_is_flagged_unconverged():
    """MSD ~ t^0.75 over the whole run (caging, as the demo's 30 ps AA reference): no diffusive window."""
    t = np.arange(0, 30.0, 0.05)
    msd = 0.01 * t**0.75
    fit = fit_diffusion(t, msd)
    assert not fit.converged and not fit.linear_regime_detected and not fit.regime.found
    assert fit.reason.startswith("not converged: local slope 0.75-0.75")
    assert "(not converged" in fit.label()
    # ballistic then caged then diffusive: the window excludes the ballistic and caged parts
    t = np.arange(0, 2e4, 0.1)
    msd = (1 - np.exp(-(t**2))) + 0.01 * t  # slope 2, a plateau (cage) up to t ~ 100, slope 1 beyond ~ 1000
    regime = fit_diffusion(t, msd).regime
    assert regime.found and regime.window[0] > 500 and regime.slope_range(regime.window)[0] > 0.9
    # a given window is judged by the same criterion
    assert not fit_diffusion(t, msd, fit_range=(1.0, 100.0)).converged


def test_yeh_hummer_correction_against_a_hand_value():
    # 300 K, water's 0.89 mPa s, L = 3 nm: 1.380649e-23 * 300 * 2.837297 / (6 pi 0.89e-3 3e-9) m^2/s
    # = 1.17521e-20 / 5.0328e-11 = 2.3351e-10 m^2/s = 2.3351e-4 nm^2/ps (10 % of water's D = 2.3e-9 m^2/s)
    assert yeh_hummer_correction(300.0, "0.89 mPa s", [3.0] * 3) == pytest.approx(2.3351e-4, rel=1e-3)
    with pytest.raises(TrajectoryError, match="cannot read the viscosity"):
        yeh_hummer_correction(300.0, "0.89 furlongs", [3.0] * 3)


def test_blocks_never_cut_the_window_below_the_diffusive_span():
    """A diffusive window that starts late (8 ps) fits into 4 blocks of a 200 ps run but not 5: the block error comes
    from the largest count whose capped window still spans the criterion's factor 3, and with 5 blocks alone the
    window is left whole (no block error) rather than cut into a window that fails the criterion."""
    dt, d_true, tau = 0.1, 0.01, 2.0
    t = np.arange(0, 100.0 + dt / 2, dt)
    msd = 6 * d_true * t * (1 - np.exp(-t / np.maximum(tau, 1e-12)))
    rng = np.random.default_rng(3)
    blocks = {count: msd[: int(200.0 / count / 2 / dt) + 1, None] * (1 + 0.02 * rng.standard_normal(count))
              for count in (5, 4, 3)}
    fit = fit_diffusion(t, msd, block_msd=blocks)
    assert fit.converged and fit.n_blocks == 4 and fit.error_method == "blocks"
    assert fit.fit_range[1] == pytest.approx(25.0) and fit.fit_range[1] / fit.fit_range[0] >= 3
    assert fit.D == pytest.approx(d_true, rel=0.02)
    five = fit_diffusion(t, msd, block_msd={5: blocks[5]})
    assert five.converged and five.n_blocks == 0 and five.fit_range[1] == pytest.approx(100.0)
    # compute_msd keeps the MSDs of 5, 4 and 3 blocks
    res = compute_msd(_brownian(600, 20, 0.05, 0.1, seed=4), np.arange(600) * 0.1)
    assert sorted(res.block_msds) == [3, 4, 5] and res.block_msd is res.block_msds[5]
    assert [res.block_msds[c].shape[0] for c in (5, 4, 3)] == [61, 76, 101]
