"""Polymer chain analysis against analytic ground truths: random walks, rods, Ornstein-Uhlenbeck bonds,
Brownian-dynamics Rouse chains, Brownian and fractional-Brownian centres of mass."""

import math

import numpy as np
import pytest

from openmm_cgml.analysis import (
    along_chain,
    bond_autocorrelation,
    chain_com_msd,
    chain_dimensions,
    classify_msd,
    end_to_end_autocorrelation,
    fit_scaling_exponent,
    internal_distances,
    intra_chain_distribution,
    rouse_modes,
    rouse_theory,
    scaling_with_length,
)
from openmm_cgml.exceptions import TrajectoryError

B = 0.38  # bond length, nm


# --------------------------------------------------------------------------------------
# Generators
# --------------------------------------------------------------------------------------
def _random_walks(n_frames, n_chains, n_bonds, b=B, seed=0):
    """Freely jointed chains (fixed bond length b, random directions), independent in every frame."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(n_frames, n_chains, n_bonds, 3))
    steps *= b / np.linalg.norm(steps, axis=-1, keepdims=True)
    start = rng.uniform(0, 3, (n_frames, n_chains, 1, 3))
    x = np.concatenate([start, start + np.cumsum(steps, axis=2)], axis=2)
    return x.reshape(n_frames, -1, 3), np.arange(n_chains * (n_bonds + 1)).reshape(n_chains, n_bonds + 1)


def _gaussian_chains(n_frames, n_chains, n_bonds, b=B, seed=0):
    """Chains of Gaussian bond vectors with <b^2> = b^2."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(scale=b / np.sqrt(3), size=(n_frames, n_chains, n_bonds, 3))
    x = np.concatenate([np.zeros((n_frames, n_chains, 1, 3)), np.cumsum(steps, axis=2)], axis=2)
    return x.reshape(n_frames, -1, 3), np.arange(n_chains * (n_bonds + 1)).reshape(n_chains, n_bonds + 1)


def _random_rotations(rng, shape):
    q = rng.normal(size=shape + (4,))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def _rods(n_frames, n_chains, n_beads, b=B, seed=0):
    """Straight chains of n_beads equally spaced by b, random orientation and position."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_frames, n_chains, 1, 3))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    x = rng.uniform(0, 5, (n_frames, n_chains, 1, 3)) + b * np.arange(n_beads)[None, None, :, None] * u
    return x.reshape(n_frames, -1, 3), np.arange(n_chains * n_beads).reshape(n_chains, n_beads)


def _wrap(x, box):
    frac = x @ np.linalg.inv(box)
    return (frac - np.floor(frac)) @ box


def _from_internal(lengths, angles, torsions):
    """Chain from internal coordinates (NeRF): bond i has lengths[i], the angle at bead i + 1 is angles[i], the
    torsion of beads i..i+3 is torsions[i] (IUPAC: bead i + 3 at (cos t, sin t) seen along bead i+1 -> i+2)."""
    n = len(lengths) + 1
    r = np.zeros((n, 3))
    r[1] = [lengths[0], 0, 0]
    th = angles[0]
    r[2] = r[1] + lengths[1] * np.array([-np.cos(th), np.sin(th), 0.0])
    for i in range(3, n):
        a, b, c = r[i - 3], r[i - 2], r[i - 1]
        bc = (c - b) / np.linalg.norm(c - b)
        nrm = np.cross(b - a, bc)
        nrm /= np.linalg.norm(nrm)
        m = np.cross(nrm, bc)
        ln, th, tor = lengths[i - 1], angles[i - 2], torsions[i - 3]
        r[i] = c + ln * (-np.cos(th) * bc + np.sin(th) * np.cos(tor) * m + np.sin(th) * np.sin(tor) * nrm)
    return r


def _ornstein_uhlenbeck_bonds(n_frames, n_chains, tau, dt, b=B, seed=0):
    """Two-bead chains whose bond vector is an exact (AR(1)) Ornstein-Uhlenbeck process, <b(t).b(0)> ~ exp(-t/tau)."""
    rng = np.random.default_rng(seed)
    phi = np.exp(-dt / tau)
    sigma = b / np.sqrt(3)
    noise = rng.normal(scale=sigma * np.sqrt(1 - phi**2), size=(n_frames, n_chains, 3))
    bond = np.empty((n_frames, n_chains, 3))
    bond[0] = rng.normal(scale=sigma, size=(n_chains, 3))
    for k in range(1, n_frames):
        bond[k] = phi * bond[k - 1] + noise[k]
    first = rng.uniform(0, 3, (n_frames, n_chains, 3))
    x = np.stack([first, first + bond], axis=2).reshape(n_frames, 2 * n_chains, 3)
    return x, np.arange(2 * n_chains).reshape(n_chains, 2), np.arange(n_frames) * dt


ROUSE = {"n_beads": 8, "k": 1.0, "zeta": 1.0, "kT": 1.0}


@pytest.fixture(scope="module")
def rouse_trajectory():
    """Overdamped Brownian dynamics (Euler-Maruyama) of free Rouse chains, started in equilibrium.

    zeta dr_n = -k (2 r_n - r_{n+1} - r_{n-1}) dt + sqrt(2 zeta kT) dW_n, free ends.  The time step is a fifth of
    the fastest mode's time (its Euler bias on <X_p^2> is ~ dt / (2 tau_p): 0.4 % for p = 1, 3 % for p = 3).
    """
    n, k, zeta, kt = ROUSE["n_beads"], ROUSE["k"], ROUSE["zeta"], ROUSE["kT"]
    n_chains, n_frames, stride = 256, 750, 10
    rng = np.random.default_rng(2024)
    tau_fast = rouse_theory(n, k, zeta, kt, modes=[n - 1])[0][0]
    dt = 0.2 * tau_fast
    r = np.concatenate([np.zeros((n_chains, 1, 3)),
                        np.cumsum(rng.normal(scale=np.sqrt(kt / k), size=(n_chains, n - 1, 3)), axis=1)], axis=1)
    out = np.empty((n_frames, n_chains, n, 3))
    force = np.empty_like(r)
    for i in range(n_frames):
        out[i] = r
        noise = rng.standard_normal((stride, n_chains, n, 3)) * np.sqrt(2 * kt * dt / zeta)
        for s in range(stride):
            d = np.diff(r, axis=1)
            force[:, :-1] = d
            force[:, -1] = 0.0
            force[:, 1:] -= d
            r = r + (k * dt / zeta) * force + noise[s]
    x = out.reshape(n_frames, n_chains * n, 3)
    return x, np.arange(n_chains * n).reshape(n_chains, n), np.arange(n_frames) * dt * stride


# --------------------------------------------------------------------------------------
# Size: random walks, rods, periodic boundaries, invariances
# --------------------------------------------------------------------------------------
def test_random_walk_sizes_match_the_exact_freely_jointed_chain():
    n_bonds = 20
    x, chains = _random_walks(10, 400, n_bonds, seed=1)
    res = chain_dimensions(x, chains)
    ree2_true = n_bonds * B**2
    rg2_true = B**2 * n_bonds * (n_bonds + 2) / (6 * (n_bonds + 1))     # exact for N + 1 beads
    assert res.rg.shape == res.ree.shape == (10, 400) and res.ree_vectors.shape == (10, 400, 3)
    assert abs(res.ree2.value - ree2_true) < 4 * res.ree2.error and res.ree2.value == pytest.approx(ree2_true, rel=0.05)
    assert abs(res.rg2.value - rg2_true) < 4 * res.rg2.error and res.rg2.value == pytest.approx(rg2_true, rel=0.05)
    # the error is that of 4000 independent chains: Var(Ree^2) <= (2/3) <Ree^2>^2 for a freely jointed chain
    assert 0.5 < res.ree2.error / (np.sqrt(2 / 3) * ree2_true / np.sqrt(4000)) < 2.2    # the larger of two estimates
    assert res.error_method in {"blocks", "chains"}
    assert abs(res.ratio.value - ree2_true / rg2_true) < 4 * res.ratio.error
    # distributions are normalised probability densities of Rg and Ree
    for dist, vals in ((res.rg_distribution, res.rg), (res.ree_distribution, res.ree)):
        assert np.sum(dist.density * np.diff(dist.edges)) == pytest.approx(1.0)
        assert dist.mean == pytest.approx(vals.mean())


@pytest.mark.parametrize("n_beads", [2, 5, 12])
def test_rigid_rod_sizes_are_exact(n_beads):
    x, chains = _rods(3, 7, n_beads, seed=n_beads)
    res = chain_dimensions(x, chains)
    # n equally spaced beads: Rg^2 = b^2 Var{0..n-1} = b^2 (n^2 - 1) / 12, Ree = (n - 1) b
    np.testing.assert_allclose(res.rg**2, B**2 * (n_beads**2 - 1) / 12, rtol=1e-12)
    np.testing.assert_allclose(res.ree, (n_beads - 1) * B, rtol=1e-12)
    assert res.ratio.value == pytest.approx(12 * (n_beads - 1) / (n_beads + 1), rel=1e-12)
    assert res.rg2.error == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("triclinic", [False, True])
def test_chains_across_the_periodic_boundary_are_made_whole(triclinic):
    x, chains = _random_walks(3, 30, 30, b=0.4, seed=3)
    box = np.array([[3.0, 0, 0], [0.6, 3.2, 0], [-0.4, 0.5, 3.1]]) if triclinic else np.diag([3.0, 3.2, 3.1])
    wrapped = _wrap(x, box)
    assert not np.allclose(wrapped, x)                                     # chains really are cut by the box
    ref, got = chain_dimensions(x, chains), chain_dimensions(wrapped, chains, box)
    np.testing.assert_allclose(got.rg, ref.rg, rtol=1e-10)
    np.testing.assert_allclose(got.ree_vectors, ref.ree_vectors, atol=1e-10)
    np.testing.assert_allclose(internal_distances(wrapped, chains, box).r2, internal_distances(x, chains).r2,
                               rtol=1e-10)
    np.testing.assert_allclose(along_chain(wrapped, chains, box, kind="angle").values,
                               along_chain(x, chains, kind="angle").values, atol=1e-9)
    pair_ref = intra_chain_distribution(x, chains, bins=20, r_max=6.0)
    pair_got = intra_chain_distribution(wrapped, chains, box, bins=20, r_max=6.0)
    np.testing.assert_allclose(pair_got.pairs_per_chain, pair_ref.pairs_per_chain)
    times = np.arange(3.0)
    np.testing.assert_allclose(rouse_modes(wrapped, chains, times, box=box, modes=[1, 2], fit=False).amplitude2,
                               rouse_modes(x, chains, times, modes=[1, 2], fit=False).amplitude2, rtol=1e-10)


def test_radius_of_gyration_is_translation_and_rotation_invariant_and_mass_weighted():
    rng = np.random.default_rng(4)
    x, chains = _random_walks(4, 6, 9, seed=4)
    ref = chain_dimensions(x, chains)
    rot = _random_rotations(rng, ())
    moved = x @ rot.T + np.array([10.0, -3.0, 7.5])
    got = chain_dimensions(moved, chains)
    np.testing.assert_allclose(got.rg, ref.rg, rtol=1e-10)
    np.testing.assert_allclose(got.ree, ref.ree, rtol=1e-10)
    np.testing.assert_allclose(got.ree_vectors, ref.ree_vectors @ rot.T, atol=1e-10)
    # two beads of masses 1 and 3, distance d: Rg^2 = (1 (3d/4)^2 + 3 (d/4)^2) / 4 = 3 d^2 / 16
    pair = np.array([[[0.0, 0, 0], [0.5, 0, 0]]])
    assert chain_dimensions(pair, [[0, 1]], masses=[1.0, 3.0]).rg[0, 0] ** 2 == pytest.approx(3 * 0.25 / 16)


def test_chains_of_different_lengths_and_list_input():
    x, _ = _rods(2, 1, 12, seed=5)
    chains = [np.arange(0, 4), np.arange(4, 12)]                          # a 4-bead and an 8-bead piece of a rod
    res = chain_dimensions(x, chains)
    np.testing.assert_array_equal(res.n_beads, [4, 8])
    np.testing.assert_allclose(res.ree, np.array([[3, 7], [3, 7]]) * B, rtol=1e-12)
    dist = internal_distances(x, chains)
    np.testing.assert_allclose(dist.r2, (np.arange(1, 8) * B) ** 2, rtol=1e-12)
    np.testing.assert_array_equal(dist.n_segments, [3 + 7, 2 + 6, 1 + 5, 4, 3, 2, 1])


# --------------------------------------------------------------------------------------
# Scaling and internal distances
# --------------------------------------------------------------------------------------
def test_internal_distances_of_a_random_walk_are_b_squared_per_bond():
    x, chains = _random_walks(5, 300, 24, seed=6)
    res = internal_distances(x, chains)
    np.testing.assert_array_equal(res.n, np.arange(1, 25))
    # <R^2(n)> = n b^2 exactly (n = 1 has no spread at all for fixed bond lengths)
    assert res.r2_per_n[0] == pytest.approx(B**2, rel=1e-12)
    assert np.all(np.abs(res.r2_per_n - B**2) < 5 * res.r2_per_n_err + 1e-12)
    np.testing.assert_allclose(res.r2_per_n, B**2, rtol=0.05)
    assert res.fit.nu.value == pytest.approx(0.5, abs=max(0.02, 4 * res.fit.nu.error))
    rods = internal_distances(*_rods(2, 3, 15, seed=6))
    np.testing.assert_allclose(rods.r2_per_n, rods.n * B**2, rtol=1e-12)
    assert rods.fit.nu.value == pytest.approx(1.0, abs=1e-9)


def test_scaling_with_length_gives_nu_one_half_for_random_walks_and_one_for_rods():
    lengths = [8, 16, 32, 64]
    walks = [chain_dimensions(*_random_walks(2, 500, n, seed=n)) for n in lengths]
    sc = scaling_with_length(walks[::-1])                                   # any order
    np.testing.assert_array_equal(sc.n_bonds, lengths)
    assert np.all(np.abs(sc.ree2_per_bond - B**2) < 4 * sc.ree2_err / sc.n_bonds)
    np.testing.assert_allclose(sc.ree2_per_bond, B**2, rtol=0.1)
    assert sc.nu_ree.nu.value == pytest.approx(0.5, abs=max(0.03, 4 * sc.nu_ree.nu.error))
    # <Rg^2> = b^2 N (N + 2) / (6 (N + 1)) approaches N / 6 from below: the log-log slope is a little under 1
    rg_exact = np.array([n * (n + 2) / (6 * (n + 1)) for n in lengths]) * B**2
    assert fit_scaling_exponent(lengths, rg_exact).nu.value == pytest.approx(sc.nu_rg.nu.value, abs=0.03)
    assert 0.45 < sc.nu_rg.nu.value < 0.52
    rods = scaling_with_length([chain_dimensions(*_rods(2, 3, n + 1, seed=n)) for n in lengths])
    assert rods.nu_ree.nu.value == pytest.approx(1.0, abs=1e-9)
    # rods: <Rg^2> = b^2 N (N + 2) / 12, again a slope a little under the asymptotic one
    rod_rg = np.array([n * (n + 2) / 12 for n in lengths]) * B**2
    assert rods.nu_rg.nu.value == pytest.approx(fit_scaling_exponent(lengths, rod_rg).nu.value, abs=1e-9)
    assert 0.93 < rods.nu_rg.nu.value < 1.0
    np.testing.assert_allclose(rods.ratio, [12 * n / (n + 2) for n in lengths], rtol=1e-10)


# --------------------------------------------------------------------------------------
# Along the chain and intra-chain pairs
# --------------------------------------------------------------------------------------
def test_bonds_angles_and_torsions_along_the_chain_recover_the_built_geometry():
    rng = np.random.default_rng(7)
    n_beads, n_chains, n_frames = 9, 5, 4
    lengths = 0.30 + 0.02 * np.arange(n_beads - 1)                          # the ends differ from the middle
    angles = np.linspace(1.7, 2.6, n_beads - 2)
    torsions = np.linspace(-2.8, 3.0, n_beads - 3)
    chain = _from_internal(lengths, angles, torsions)
    rot = _random_rotations(rng, (n_frames, n_chains))
    x = np.einsum("fcij,nj->fcni", rot, chain) + rng.uniform(0, 4, (n_frames, n_chains, 1, 3))
    x = x.reshape(n_frames, -1, 3)
    chains = np.arange(n_beads * n_chains).reshape(n_chains, n_beads)
    bonds = along_chain(x, chains, kind="bond")
    np.testing.assert_array_equal(bonds.position, np.arange(n_beads - 1))
    assert bonds.values.shape == (n_frames, n_chains, n_beads - 1) and bonds.unit == "nm"
    np.testing.assert_allclose(bonds.mean, lengths, rtol=1e-10)
    np.testing.assert_allclose(along_chain(x, chains, kind="angle").mean, angles, rtol=1e-10)
    tors = along_chain(x, chains, kind="torsion")
    np.testing.assert_allclose(np.angle(np.exp(1j * (tors.values - torsions))), 0, atol=1e-9)
    np.testing.assert_allclose(np.angle(np.exp(1j * (tors.mean - torsions))), 0, atol=1e-9)
    np.testing.assert_allclose(tors.std, 0, atol=1e-6)
    dist = tors.distribution(0, bins=36)
    assert dist.edges[0] == pytest.approx(-np.pi) and dist.n_samples == n_frames * n_chains


def test_intra_chain_pairs_of_a_rod_are_counted_per_chain():
    n, b = 10, 0.23
    x, chains = _rods(3, 4, n, b=b, seed=8)
    res = intra_chain_distribution(x, chains, bins=30, r_max=3.0)           # default min_separation = 3
    counts = res.pairs_per_chain * np.diff(res.edges)                       # pairs per chain in each bin
    expected = np.zeros(30)
    for s in range(3, n):
        expected[int(s * b / 0.1)] += n - s                                 # n - s pairs s bonds apart at s b
    np.testing.assert_allclose(counts, expected, atol=1e-9)
    assert res.n_pairs_per_chain == (n - 3) * (n - 2) / 2 and res.n_pairs_outside == 0
    assert np.sum(res.probability * np.diff(res.edges)) == pytest.approx(1.0)
    closer = intra_chain_distribution(x, chains, min_separation=1, bins=30, r_max=3.0)
    assert closer.n_pairs_per_chain == n * (n - 1) / 2


def test_intra_chain_distribution_of_gaussian_chains_matches_the_analytic_sum():
    n_bonds = 10
    x, chains = _gaussian_chains(5, 2000, n_bonds, seed=9)
    res = intra_chain_distribution(x, chains, bins=30, r_max=4.0, min_separation=3)

    def cdf(r, s):  # distance of two beads s bonds apart: 3-D Gaussian with variance s b^2 / 3 per component
        q = r / np.sqrt(s * B**2 / 3)
        return math.erf(q / np.sqrt(2)) - np.sqrt(2 / np.pi) * q * np.exp(-q * q / 2)

    expected = np.array([sum((n_bonds + 1 - s) * (cdf(hi, s) - cdf(lo, s)) for s in range(3, n_bonds + 1))
                         for lo, hi in zip(res.edges[:-1], res.edges[1:])])
    observed = res.pairs_per_chain * np.diff(res.edges)
    big = expected > 0.01 * expected.sum()
    np.testing.assert_allclose(observed[big], expected[big], rtol=0.06)
    # <r^2> over pairs: b^2 sum_s (N + 1 - s) s / sum_s (N + 1 - s) = 192 / 36 b^2
    assert res.mean_square_distance == pytest.approx(192 / 36 * B**2, rel=0.02)
    # shell density: partners per bead per nm^3, so 4 pi r^2 dr of it summed is 2 n_pairs / n_beads
    shell = 4 / 3 * np.pi * (res.edges[1:] ** 3 - res.edges[:-1] ** 3)
    total = np.sum(res.shell_density * shell)
    assert total == pytest.approx(2 * (res.n_pairs_per_chain * 2000 - res.n_pairs_outside / 5) / (2000 * 11), rel=1e-9)


# --------------------------------------------------------------------------------------
# Autocorrelations and the relaxed / not relaxed flag
# --------------------------------------------------------------------------------------
def test_bond_autocorrelation_of_an_ornstein_uhlenbeck_bond_recovers_tau():
    tau, dt = 10.0, 1.0
    x, chains, times = _ornstein_uhlenbeck_bonds(2000, 200, tau, dt, seed=10)
    box = np.diag([3.0, 3.0, 3.0])
    res = bond_autocorrelation(_wrap(x, box), chains, times, box=box)
    assert res.kind == "bond" and res.correlation[0] == pytest.approx(1.0)
    np.testing.assert_allclose(res.correlation[:31], np.exp(-res.lag_times[:31] / tau), atol=0.02)
    assert res.tau_integral == pytest.approx(tau, rel=0.04)
    assert res.tau_kww == pytest.approx(tau, rel=0.03) and res.beta_kww == pytest.approx(1.0, abs=0.05)
    assert res.tau_kww_mean == pytest.approx(tau, rel=0.05)
    assert res.mean_square == pytest.approx(B**2, rel=0.03)
    assert res.decayed and res.decay_time == pytest.approx(tau, abs=1.5 * dt)
    assert "decayed below 1/e" in res.message


def test_an_autocorrelation_that_has_not_decayed_is_flagged(caplog):
    tau, dt = 10.0, 1.0
    x, chains, times = _ornstein_uhlenbeck_bonds(12, 2000, tau, dt, seed=11)     # 12 ps < tau
    res = end_to_end_autocorrelation(x, chains, times)
    assert not res.decayed and res.decay_time is None
    assert res.correlation[-1] == pytest.approx(np.exp(-6 / tau), abs=0.05)
    assert res.message.startswith("end-to-end autocorrelation has not decayed: C(t_max)=0.")
    assert "> 1/e" in res.message and "not relaxed" in res.message
    assert "not relaxed" in caplog.text
    assert end_to_end_autocorrelation(x, chains, times, threshold=0.7).decayed     # the threshold is a parameter


# --------------------------------------------------------------------------------------
# Rouse chains
# --------------------------------------------------------------------------------------
def test_rouse_modes_of_brownian_rouse_chains_match_theory(rouse_trajectory):
    # The cos basis diagonalises the free-end Rouse matrix: for 1 < n < N,
    # 2 cos(q(n - 1/2)) - cos(q(n + 1/2)) - cos(q(n - 3/2)) = 2 (1 - cos q) cos(q(n - 1/2)), q = p pi / N, and at the
    # ends cos(q/2) - cos(3q/2) = 2 (1 - cos q) cos(q/2); so lambda_p = 4 sin^2(p pi / 2N) and each X_p is an OU
    # process with tau_p = zeta / (k lambda_p) and, from U = k N sum_p lambda_p |X_p|^2 and equipartition,
    # <X_p^2> = kT / (2 N k lambda_p) = kT / (8 N k sin^2(p pi / 2N)) per component (three times that for |X_p|^2).
    x, chains, times = rouse_trajectory
    n, k, zeta, kt = ROUSE["n_beads"], ROUSE["k"], ROUSE["zeta"], ROUSE["kT"]
    p = np.array([1, 2, 3])
    q = np.sin(p * np.pi / (2 * n)) ** 2
    tau_true, amp_true = rouse_theory(n, k, zeta, kt, modes=p)
    np.testing.assert_allclose(tau_true, zeta / (4 * k * q))
    np.testing.assert_allclose(amp_true, 3 * kt / (8 * n * k * q))
    res = rouse_modes(x, chains, times, modes=p)
    np.testing.assert_array_equal(res.p, p)
    np.testing.assert_allclose(res.amplitude2, amp_true, rtol=0.06)
    assert np.all(res.decayed)
    assert res.tau_kww[0] == pytest.approx(tau_true[0], rel=0.10)
    assert res.tau_integral[0] == pytest.approx(tau_true[0], rel=0.15)       # integral to the first zero: noisier
    np.testing.assert_allclose(res.tau_kww, tau_true, rtol=0.12)
    np.testing.assert_allclose(res.beta_kww, 1.0, atol=0.1)
    # the Rouse hierarchy: tau_p and <X_p^2> fall together
    assert np.all(np.diff(res.tau_kww) < 0) and np.all(np.diff(res.amplitude2) < 0)


def test_rouse_end_to_end_correlation_and_centre_of_mass_diffusion(rouse_trajectory):
    x, chains, times = rouse_trajectory
    n, k, zeta, kt = ROUSE["n_beads"], ROUSE["k"], ROUSE["zeta"], ROUSE["kT"]
    # R = r_N - r_1 = 2 sum_p X_p (cos(p pi (N - 1/2) / N) - cos(p pi / 2N)) = -4 sum_{p odd} cos(p pi / 2N) X_p
    p = np.arange(1, n)
    tau_p, amp_p = rouse_theory(n, k, zeta, kt)
    weight = np.where(p % 2 == 1, 16 * np.cos(p * np.pi / (2 * n)) ** 2 * amp_p, 0.0)
    assert weight.sum() == pytest.approx((n - 1) * 3 * kt / k)             # <R^2> = (N - 1) 3 kT / k
    ee = end_to_end_autocorrelation(x, chains, times)
    theory = np.exp(-ee.lag_times[:, None] / tau_p) @ weight / weight.sum()
    np.testing.assert_allclose(ee.correlation[:60], theory[:60], atol=0.04)
    assert ee.mean_square == pytest.approx((n - 1) * 3 * kt / k, rel=0.05)
    # the centre of mass of a Rouse chain diffuses with D = kT / (N zeta) at all times
    com = chain_com_msd(x, chains, times)
    assert com.regime.regime == "diffusive" and com.D is not None
    assert abs(com.D - kt / (n * zeta)) < 4 * com.D_err and com.D == pytest.approx(kt / (n * zeta), rel=0.1)


# --------------------------------------------------------------------------------------
# Centre-of-mass MSD regimes
# --------------------------------------------------------------------------------------
def test_brownian_chain_centres_give_back_d_and_are_diffusive():
    rng = np.random.default_rng(12)
    d_true, dt, n_frames, n_chains = 0.01, 1.0, 1000, 60
    shape, chains = _random_walks(1, n_chains, 4, seed=12)                  # rigid chains, one shape each
    steps = rng.normal(scale=np.sqrt(2 * d_true * dt), size=(n_frames - 1, n_chains, 1, 3))
    com_path = np.concatenate([np.zeros((1, n_chains, 1, 3)), np.cumsum(steps, axis=0)])
    x = (shape.reshape(1, n_chains, 5, 3) + com_path).reshape(n_frames, -1, 3)
    box = np.diag([4.0, 4.0, 4.0])
    res = chain_com_msd(_wrap(x, box), chains, np.arange(n_frames) * dt, box=box, remove_com=False)
    assert res.regime.diffusive and res.regime.exponent == pytest.approx(1.0, abs=0.1)
    assert abs(res.D - d_true) < 4 * res.D_err and res.D == pytest.approx(d_true, rel=0.1)
    assert res.msd.n_particles == n_chains


def test_subdiffusive_centres_get_an_exponent_and_no_d(caplog):
    # fractional Brownian motion with Hurst index 1/4: MSD = 3 t^(1/2) exactly, stationary increments
    rng = np.random.default_rng(13)
    n_frames, n_chains, hurst = 300, 100, 0.25
    t = np.arange(1, n_frames) * 1.0
    cov = 0.5 * (t[:, None] ** (2 * hurst) + t[None, :] ** (2 * hurst) - np.abs(t[:, None] - t[None, :]) ** (2 * hurst))
    path = np.linalg.cholesky(cov) @ rng.normal(size=(n_frames - 1, n_chains * 3))
    com_path = np.concatenate([np.zeros((1, n_chains * 3)), path]).reshape(n_frames, n_chains, 1, 3)
    x = (np.array([[0.0, 0, 0], [0.3, 0, 0]]) + com_path).reshape(n_frames, -1, 3)
    chains = np.arange(2 * n_chains).reshape(n_chains, 2)
    res = chain_com_msd(x, chains, np.arange(n_frames) * 1.0)
    assert res.regime.regime == "sub-diffusive" and res.D is None and res.diffusion is None
    assert res.regime.exponent == pytest.approx(0.5, abs=0.1)                 # over the last factor 3 in time
    assert res.regime.subdiffusive_exponent == pytest.approx(0.5, abs=0.04)   # over the whole sub-diffusive run
    assert "sub-diffusive" in res.reason and "D is not fitted" in res.reason
    assert "sub-diffusive" in caplog.text


@pytest.mark.parametrize("power, regime", [(0.5, "sub-diffusive"), (1.0, "diffusive"), (2.0, "super-diffusive"),
                                           (0.88, "undetermined")])
def test_classify_msd_on_synthetic_power_laws(power, regime):
    t = np.linspace(0, 1000, 2001)
    res = classify_msd(t, 6 * 0.1 * t**power)
    assert res.regime == regime
    assert res.exponent == pytest.approx(power, abs=0.02)
    assert (res.subdiffusive_exponent is not None) == (power < 0.8)
    if power < 0.8:
        assert res.subdiffusive_exponent == pytest.approx(power, abs=0.02)


def test_classify_msd_reports_the_early_subdiffusive_range_of_a_crossover():
    t = np.geomspace(1e-3, 1e4, 4000)
    res = classify_msd(t, np.sqrt(t) * np.sqrt(1 + t))                    # t^(1/2) below t = 1, t above
    assert res.diffusive and res.window[0] > 3
    assert res.subdiffusive_window[1] < 2 and res.subdiffusive_exponent == pytest.approx(0.5, abs=0.05)


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------
def _call(name, x, chains, **kw):
    times = np.arange(x.shape[0]) * 1.0
    return {
        "dimensions": lambda: chain_dimensions(x, chains, **kw),
        "internal": lambda: internal_distances(x, chains, **kw),
        "along": lambda: along_chain(x, chains, **kw),
        "pairs": lambda: intra_chain_distribution(x, chains, **kw),
        "bond_acf": lambda: bond_autocorrelation(x, chains, times, **kw),
        "ree_acf": lambda: end_to_end_autocorrelation(x, chains, times, **kw),
        "com": lambda: chain_com_msd(x, chains, times, **kw),
        "rouse": lambda: rouse_modes(x, chains, times, **kw),
    }[name]()


X10 = np.random.default_rng(0).uniform(0, 2, (6, 10, 3))


@pytest.mark.parametrize("name", ["dimensions", "internal", "along", "pairs", "bond_acf", "ree_acf", "com", "rouse"])
def test_out_of_range_indices_are_rejected(name):
    with pytest.raises(TrajectoryError, match=r"chain 1 refers to particle 99, outside 0\.\.9"):
        _call(name, X10, [[0, 1, 2, 3], [4, 5, 6, 99]])


@pytest.mark.parametrize("name, kw, message", [
    ("along", {}, r"along_chain\(kind='bond'\) needs chains of equal length; got lengths 3, 4 beads"),
    ("rouse", {}, r"rouse_modes needs chains of equal length; got lengths 3, 4 beads"),
])
def test_unequal_lengths_are_rejected_where_equal_length_is_needed(name, kw, message):
    with pytest.raises(TrajectoryError, match=message):
        _call(name, X10, [[0, 1, 2], [3, 4, 5, 6]], **kw)


@pytest.mark.parametrize("name, chains, kw, message", [
    ("dimensions", [[0], [1, 2]], {}, r"chain 0 has 1 bead; chain_dimensions needs at least 2 beads per chain"),
    ("rouse", [[0], [1]], {}, r"chain 0 has 1 bead; rouse_modes needs at least 2"),
    ("along", [[0, 1, 2], [3, 4, 5]], {"kind": "torsion"}, r"chain 0 has 3 beads; along_chain\(kind='torsion'\) needs "
                                                            r"at least 4"),
    ("pairs", [[0, 1, 2], [3, 4, 5]], {}, r"chain 0 has 3 beads; intra_chain_distribution\(min_separation=3\) needs "
                                          r"at least 4"),
    ("dimensions", [], {}, r"chains is empty"),
    ("dimensions", [[0, 1, 1]], {}, r"chain 0 lists a particle more than once"),
    ("dimensions", [[0.0, 1.0]], {}, r"chain 0 must hold integer particle indices, got dtype float64"),
    ("along", [[0, 1, 2]], {"kind": "dihedralx"}, r"kind must be 'bond', 'angle' or 'torsion', got 'dihedralx'"),
    ("rouse", [[0, 1, 2]], {"modes": [3]}, r"modes must be integers in 1\.\.2 for chains of 3 beads"),
    ("pairs", [[0, 1, 2, 3]], {"min_separation": 0}, r"min_separation must be a whole number of bonds >= 1"),
    ("bond_acf", [[0, 1, 2]], {"threshold": 1.5}, r"threshold must lie strictly between 0 and 1"),
    ("dimensions", [[0, 1, 2]], {"masses": [1.0, 2.0]}, r"masses must have one entry per particle \(10\)"),
])
def test_bad_chains_and_options_get_clear_errors(name, chains, kw, message):
    with pytest.raises(TrajectoryError, match=message):
        _call(name, X10, chains, **kw)


@pytest.mark.parametrize("name", ["dimensions", "internal", "along", "pairs", "bond_acf", "ree_acf", "com", "rouse"])
def test_box_shape_mismatch_is_rejected(name):
    with pytest.raises(TrajectoryError, match=r"box has 4 frames but the trajectory has 6"):
        _call(name, X10, [[0, 1, 2, 3], [4, 5, 6, 7]], box=np.tile(np.diag([3.0, 3, 3]), (4, 1, 1)))
    with pytest.raises(TrajectoryError, match=r"box must be box lengths \(3,\)"):
        _call(name, X10, [[0, 1, 2, 3], [4, 5, 6, 7]], box=np.ones((2, 2)))


def test_scaling_inputs_are_checked():
    one = chain_dimensions(*_rods(1, 2, 5))
    with pytest.raises(TrajectoryError, match=r"at least 2 sets of chains"):
        scaling_with_length([one])
    with pytest.raises(TrajectoryError, match=r"different chain lengths"):
        scaling_with_length([one, one])
    mixed = chain_dimensions(X10, [[0, 1, 2], [3, 4, 5, 6]])
    with pytest.raises(TrajectoryError, match=r"result 1 mixes chain lengths \(3, 4 beads\)"):
        scaling_with_length([one, mixed])
    with pytest.raises(TrajectoryError, match=r"at least 2 distinct lengths"):
        fit_scaling_exponent([4, 4], [1.0, 1.1])


def test_linear_path_walks_a_chain_from_its_lower_end_and_says_why_not():
    from openmm_cgml.analysis.chains import linear_path

    def adjacency(n, bonds):
        nb = [[] for _ in range(n)]
        for a, b in bonds:
            nb[a].append(b)
            nb[b].append(a)
        return nb

    assert linear_path([3, 1, 0, 2], adjacency(4, [(2, 0), (0, 3), (3, 1)])) == ([1, 3, 0, 2], "")
    assert linear_path([5], adjacency(6, [])) == ([5], "")
    path, why = linear_path(range(4), adjacency(4, [(0, 1), (1, 2), (1, 3)]))
    assert path is None and why == "branched at particle 1 (3 bonds)"
    path, why = linear_path(range(4), adjacency(4, [(0, 1), (1, 2), (2, 3), (3, 0)]))
    assert path is None and "a ring or several pieces" in why
    path, why = linear_path(range(4), adjacency(4, [(0, 1), (2, 3)]))
    assert path is None and "2 bonds, 4 chain ends" in why
