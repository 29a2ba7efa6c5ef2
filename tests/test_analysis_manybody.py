"""Many-body structure (openmm_cgml.analysis.manybody): analytic ground truths for the three-body angular and
coordination distributions, the first-minimum cutoff and the overlap's jackknife error, and the rows compare adds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from openmm_cgml.analysis import compute_local_structure, first_minimum, overlap_with_error
from openmm_cgml.exceptions import TrajectoryError


def _lattice(n: int, a: float) -> np.ndarray:
    g = np.arange(n) * a
    return np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3) + 0.1 * a


def test_a_simple_cubic_lattice_has_six_neighbours_at_right_angles_and_opposite():
    """Within 1.2 a every site of a simple cubic lattice has 6 neighbours; of their 15 pairs 12 are at 90 degrees
    and 3 at 180: probability 0.8 and 0.2."""
    a, n = 0.5, 6
    x = _lattice(n, a)
    positions = np.stack([x, x + 0.001])  # two frames
    local = compute_local_structure(positions, np.full(3, n * a), np.arange(len(x)), 1.2 * a, angle_bins=36)
    c = local.coordination
    assert c.density[6] == pytest.approx(1.0) and c.mean == pytest.approx(6.0) and c.std == pytest.approx(0.0)
    p = local.angles.density * np.diff(local.angles.edges)
    right = np.searchsorted(local.angles.edges, np.pi / 2) - 1
    assert p[right] + p[right + 1] == pytest.approx(0.8) and p[-1] == pytest.approx(0.2)
    # pairs in the same molecule are not neighbours: molecules of two sites along x leave five
    ix = np.round((x[:, 0] - 0.1 * a) / a).astype(int)
    mol = (np.arange(len(x)) - (ix % 2) * n * n)  # sites (i, j, k) and (i+1, j, k), i even, share a molecule
    paired = compute_local_structure(positions, np.full(3, n * a), mol, 1.2 * a)
    assert paired.coordination.mean == pytest.approx(5.0)


def test_an_ideal_gas_has_sine_distributed_angles_and_binomial_coordination():
    """Independent uniform particles: the angle between two neighbours of a centre has density sin(theta) / 2 and
    the neighbour count is binomial(N - 1, V_sphere / V)."""
    rng = np.random.default_rng(3)
    n, box, r_cut, frames = 800, 4.0, 0.7, 30
    x = rng.uniform(0, box, (frames, n, 3))
    local = compute_local_structure(x, np.full(3, box), np.arange(n), r_cut, angle_bins=18, max_coordination=60)
    theta = local.angles.centers
    expected = np.diff(-np.cos(local.angles.edges)) / 2 / np.diff(local.angles.edges)
    z = (local.angles.density - expected) / local.angles.density_err
    assert np.sqrt(np.mean(z**2)) < 2.0 and np.abs(local.angles.density - expected).max() < 0.03
    assert local.angles.mean == pytest.approx(np.pi / 2, abs=0.01)
    p = 4 / 3 * np.pi * r_cut**3 / box**3
    pmf = stats.binom.pmf(np.arange(61), n - 1, p)
    assert np.abs(local.coordination.density - pmf).max() < 0.01
    assert local.coordination.mean == pytest.approx((n - 1) * p, rel=0.02)
    assert theta.size == 18


def test_first_minimum_and_the_overlap_error():
    from openmm_cgml.analysis.distributions import Distribution

    class G:  # an RDF with a peak at 0.5 nm and its first minimum at 0.7 nm
        r = np.linspace(0.01, 1.2, 240)
        edges = np.linspace(0.0, 1.2, 241)
        g = 1 + 1.5 * np.exp(-((r - 0.5) / 0.06) ** 2) - 0.6 * np.exp(-((r - 0.7) / 0.06) ** 2)
    assert first_minimum(G) == pytest.approx(0.7, abs=0.01)
    flat = G()
    flat.g = np.ones_like(G.r)
    with pytest.raises(TrajectoryError, match="no peak"):
        first_minimum(flat)
    edges = np.linspace(0, 1, 11)
    rng = np.random.default_rng(0)
    blocks = 1 + 0.05 * rng.standard_normal((5, 10))
    blocks /= blocks.sum(axis=1, keepdims=True) * 0.1  # densities: each integrates to 1
    dist = Distribution(edges=edges, centers=edges[:-1] + 0.05, density=blocks.mean(0), density_err=np.zeros(10),
                        mean=0.5, std=0.3, n_samples=100)
    value, err = overlap_with_error(dist, dist, blocks, blocks)
    assert value == pytest.approx(1.0) and err == pytest.approx(0.0, abs=1e-12)
    other = 1 + 0.05 * rng.standard_normal((5, 10))
    other /= other.sum(axis=1, keepdims=True) * 0.1
    d2 = Distribution(edges=edges, centers=dist.centers, density=other.mean(0), density_err=np.zeros(10), mean=0.5,
                      std=0.3, n_samples=100)
    value, err = overlap_with_error(dist, d2, blocks, other)
    assert 0.9 < value < 1.0 and 0 < err < 0.05


def test_compare_reports_the_many_body_rows_with_errors(tmp_path):
    """Two runs of the same LJ dimer fluid (different seeds) agree in their many-body structure within errors; the
    same particles placed at random (an ideal gas at the same density) have a different three-body angle
    distribution.  (Their coordination-number distribution within the wide first shell of this dilute fluid is no
    test: its overlap with the liquid's went from 0.73 to 0.97 with the seeds and box sizes tried, sometimes above
    the liquid's own, as a system of 64 to 128 beads fluctuates.)"""
    from _cg_fluid import simulate_known_fluid

    from openmm_cgml.analysis import compare_runs
    from openmm_cgml.dataset import open_dataset

    a = open_dataset(simulate_known_fluid(tmp_path / "a.h5", n_frames=100, seed=1))
    b = open_dataset(simulate_known_fluid(tmp_path / "b.h5", n_frames=100, seed=2))

    import shutil

    import h5py

    shutil.copyfile(tmp_path / "b.h5", tmp_path / "gas.h5")
    with h5py.File(tmp_path / "gas.h5", "r+") as h5:  # b's particles at uniform random positions
        h5["positions"][...] = np.random.default_rng(4).uniform(0, 2.2, h5["positions"].shape)

    def rows(model):
        return {r.quantity.split(" (")[0]: r for r in compare_runs(a, model, r_max=1.0, n_bins=80).rows}

    same, gas = rows(b), rows(open_dataset(tmp_path / "gas.h5"))
    for key in ("3-body angle", "coordination"):
        s, g = same[key], gas[key]
        assert s.metric == "overlap" and s.value_err > 0 and np.isfinite(s.reference) and s.reference_err > 0
        assert s.value > 0.93 and s.value + 3 * s.value_err > 0.97
        assert g.metric == "overlap" and 0 < g.value <= 1 and g.value_err > 0
    s, g = same["3-body angle"], gas["3-body angle"]
    assert g.value < s.value - 3 * np.hypot(s.value_err, g.value_err)
    assert "inter, r < 0." in next(r.quantity for r in compare_runs(a, b, r_max=1.0, n_bins=80).rows
                                   if r.quantity.startswith("3-body"))


def test_paired_overlap_difference_cancels_the_shared_reference_noise():
    """Two models against one noisy reference: the paired jackknife error of the difference of their overlaps
    matches the spread of that difference over independent repetitions (within 35 %), is smaller than the two
    overlaps' errors combined (the reference's noise is common to both), and the closer model comes out ahead;
    identical models differ by exactly 0 with error 0; bins must agree."""
    from openmm_cgml.analysis import overlap_difference_with_error
    from openmm_cgml.analysis.distributions import Distribution

    edges = np.linspace(0, np.pi, 37)
    c = 0.5 * (edges[1:] + edges[:-1])
    truth = np.sin(c) * (1 + 0.3 * np.cos(2 * c))
    truth /= truth.sum() * np.diff(edges)[0]
    close, far = truth * (1 + 0.04 * np.cos(c)), truth * (1 + 0.08 * np.cos(c))
    close /= close.sum() * np.diff(edges)[0]
    far /= far.sum() * np.diff(edges)[0]
    width = np.diff(edges)
    exact = np.sum(np.minimum(truth, close) * width) - np.sum(np.minimum(truth, far) * width)
    rng = np.random.default_rng(3)

    def sample(density, n_blocks=8, n=4000):  # block densities from n samples each
        counts = rng.multinomial(n, density * width, size=n_blocks).astype(float)
        blocks = counts / (n * width)
        return Distribution(edges=edges, centers=c, density=blocks.mean(0), density_err=np.zeros(c.size), mean=0.0,
                            std=1.0, n_samples=n * n_blocks), blocks

    diffs, errs, unpaired = [], [], []
    for _ in range(200):
        (p, pb), (a, ab), (b, bb) = sample(truth), sample(close), sample(far)
        d, e = overlap_difference_with_error(p, a, b, pb, ab, bb)
        diffs.append(d)
        errs.append(e)
        unpaired.append(np.hypot(overlap_with_error(p, a, pb, ab)[1], overlap_with_error(p, b, pb, bb)[1]))
    spread = np.std(diffs, ddof=1)
    assert np.median(errs) == pytest.approx(spread, rel=0.35), (np.median(errs), spread)
    assert np.median(errs) < 0.9 * np.median(unpaired)
    # the overlap of sampled histograms is biased low, the more so the closer the two densities are: the difference
    # is biased towards 0 (conservative), yet it ranks the closer model first
    assert exact > 0 and 0 < np.mean(diffs) < exact and np.mean(diffs) > 10 * spread / np.sqrt(len(diffs))
    assert overlap_difference_with_error(p, a, a, pb, ab, ab) == (0.0, 0.0)
    shifted = Distribution(edges=edges + 0.1, centers=c + 0.1, density=a.density, density_err=a.density_err, mean=0.0,
                           std=1.0, n_samples=1)
    with pytest.raises(TrajectoryError, match="same bins"):
        overlap_difference_with_error(p, a, shifted, pb, ab, ab)
