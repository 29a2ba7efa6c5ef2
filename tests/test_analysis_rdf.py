"""RDFs: ideal gas, lattices (orthorhombic and triclinic cells), mdtraj reference, intra/inter split."""

import itertools

import mdtraj
import numpy as np
import pytest

from openmm_cgml.analysis import compute_rdf, coordination_number, rdf_difference
from openmm_cgml.exceptions import TrajectoryError


def _mdtraj(positions, box):
    top = mdtraj.Topology()
    residue = top.add_residue("X", top.add_chain())
    for _ in range(positions.shape[1]):
        top.add_atom("X", mdtraj.element.argon, residue)
    traj = mdtraj.Trajectory(positions.astype(np.float32), top)
    traj.unitcell_vectors = np.broadcast_to(box, (positions.shape[0], 3, 3)).astype(np.float32)
    return traj


def test_ideal_gas_rdf_is_one_within_noise():
    rng = np.random.default_rng(1)
    box = 3.0
    x = rng.uniform(0, box, size=(30, 600, 3))
    res = compute_rdf(x, [box] * 3, r_max=1.4, r_min=0.2, n_bins=24)[(0, 0)]
    z = (res.g - 1.0) / res.g_err
    assert np.all(np.isfinite(z))
    assert np.mean(z**2) < 3.0, f"g(r) deviates from 1 beyond its error bars: chi2/bin = {np.mean(z**2):.2f}"
    assert np.all(np.abs(res.g - 1.0) < 0.1)
    # coordination number of an ideal gas = density * sphere volume
    rho = 599 / box**3
    assert coordination_number(res, 1.4) - coordination_number(res, 0.2) == pytest.approx(
        rho * 4 / 3 * np.pi * (1.4**3 - 0.2**3), rel=0.02)


def _cubic_lattice(a, n):
    return np.array(list(itertools.product(range(n), repeat=3)), dtype=float) * a


@pytest.mark.parametrize("triclinic", [False, True])
def test_simple_cubic_lattice_peaks_and_shells(triclinic):
    a, n = 0.5, 6
    x = _cubic_lattice(a, n)[None]
    L = a * n
    box = np.diag([L, L, L])
    if triclinic:
        # a sheared cell spanned by lattice vectors: the same infinite crystal, seen through a triclinic box
        box = np.array([[L, 0, 0], [L / 2, L, 0], [L / 2, L / 2, L]])
    res = compute_rdf(x, box, r_max=1.1, n_bins=200)[(0, 0)]  # no shell on a bin edge
    shells = {a: 6, a * np.sqrt(2): 12, a * np.sqrt(3): 8, 2 * a: 6}
    peaks = res.r[res.g > 0]
    np.testing.assert_allclose(peaks, sorted(shells), atol=res.edges[1] - res.edges[0])
    cumulative = 0
    for dist, count in sorted(shells.items()):
        cumulative += count
        assert coordination_number(res, dist + 0.01) == pytest.approx(cumulative)


@pytest.mark.parametrize("triclinic", [False, True])
def test_rdf_matches_mdtraj(triclinic):
    rng = np.random.default_rng(2)
    L = 2.5
    box = np.diag([L, L * 1.1, L * 0.95])
    if triclinic:
        box = np.array([[L, 0, 0], [0.3, L, 0], [-0.4, 0.5, L]])
    frac = rng.uniform(0, 1, (5, 300, 3))
    x = frac @ box
    types = np.array(["A", "B"] * 150)
    ours = compute_rdf(x, box, types, r_max=1.0, n_bins=50)
    traj = _mdtraj(x, box)
    a, b = np.flatnonzero(types == "A"), np.flatnonzero(types == "B")
    for pair, (ia, ib) in {("A", "A"): (a, a), ("A", "B"): (a, b), ("B", "B"): (b, b)}.items():
        pairs = traj.topology.select_pairs(ia, ib)
        _, g_ref = mdtraj.compute_rdf(traj, pairs, r_range=(0.0, 1.0), n_bins=50, periodic=True)
        np.testing.assert_allclose(ours[pair].g, g_ref, rtol=2e-4, atol=1e-6, err_msg=str(pair))


def test_intra_and_inter_normalisation_for_rigid_dimers():
    rng = np.random.default_rng(3)
    n_mol, L, bond = 300, 4.0, 0.31  # not on a bin edge
    centres = rng.uniform(0, L, (20, n_mol, 3))
    u = rng.normal(size=(20, n_mol, 3))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    x = np.empty((20, 2 * n_mol, 3))
    x[:, 0::2] = centres
    x[:, 1::2] = centres + bond * u
    x %= L  # molecules broken across the boundary must still be measured by minimum image
    types = np.array(["A", "B"] * n_mol)
    mol = np.repeat(np.arange(n_mol), 2)
    kw = dict(molecule_index=mol, r_max=1.8, n_bins=36, pairs=[("A", "B")])
    inter = compute_rdf(x, [L] * 3, types, kind="inter", **kw)[("A", "B")]
    intra = compute_rdf(x, [L] * 3, types, kind="intra", **kw)[("A", "B")]
    total = compute_rdf(x, [L] * 3, types, kind="all", **kw)[("A", "B")]
    # the molecules' positions are uncorrelated: the intermolecular g is 1 everywhere
    assert np.mean(((inter.g - 1) / inter.g_err) ** 2) < 3.0
    # exactly one intramolecular partner, at the bond length
    assert intra.coordination[-1] == pytest.approx(1.0)
    assert intra.r[np.argmax(intra.g)] == pytest.approx(bond, abs=intra.edges[1])
    assert inter.n_pairs == n_mol * n_mol - n_mol and total.n_pairs == n_mol * n_mol
    np.testing.assert_allclose(total.g, intra.g + inter.n_pairs / total.n_pairs * inter.g, rtol=1e-10, atol=1e-12)
    assert rdf_difference(inter, inter) == 0.0
    assert rdf_difference(total, inter) > 0.0


def test_rdf_bad_input():
    x = np.zeros((0, 10, 3))
    with pytest.raises(TrajectoryError, match="zero frames"):
        compute_rdf(x, [2.0] * 3)
    x = np.random.default_rng(0).uniform(0, 2, (3, 10, 3))
    with pytest.raises(TrajectoryError, match="half the smallest"):
        compute_rdf(x, [2.0] * 3, r_max=1.5)
    with pytest.raises(TrajectoryError, match="4 frames but the trajectory has 3"):
        compute_rdf(x, np.tile(np.eye(3) * 2, (4, 1, 1)), r_max=0.9)
    with pytest.raises(TrajectoryError, match="one entry per particle"):
        compute_rdf(x, [2.0] * 3, types=["A"] * 9, r_max=0.9)
    with pytest.raises(TrajectoryError, match="molecule_index"):
        compute_rdf(x, [2.0] * 3, r_max=0.9, kind="inter")
    with pytest.raises(TrajectoryError, match="no particle has type"):
        compute_rdf(x, [2.0] * 3, types=["A"] * 10, pairs=[("A", "C")], r_max=0.9)


def test_periodic_tree_finds_the_same_pairs_as_the_image_search():
    """The orthorhombic fast path (scipy's periodic k-d tree, pairs mirrored) and the general image search give
    the same ordered pairs and distances, including particles outside the box and on its faces."""
    from openmm_cgml.analysis.rdf import _pairs_within

    rng = np.random.default_rng(11)
    box = np.diag([3.1, 2.7, 3.4])
    x = rng.uniform(-4, 8, (600, 3))
    x[:5] = [[0.0, 0.0, 0.0], [3.1, 2.7, 3.4], [3.1, 0.0, 0.0], [-3.1, 1.0, 6.8], [1e-12, 2.7 - 1e-12, 3.4]]
    i, j, d, once = _pairs_within(x, box, 1.3)
    fast = (np.concatenate([i, j]), np.concatenate([j, i]), np.concatenate([d, d]))
    *slow, twice = _pairs_within(x, box, 1.3, periodic_tree=False)
    assert once and not twice and np.all(i < j)

    def table(i, j, d):
        order = np.lexsort((j, i))
        return i[order], j[order], d[order]

    for a, b in zip(table(*fast), table(*slow)):
        np.testing.assert_allclose(a, b, atol=1e-9)
    assert len(fast[0]) > 1000
