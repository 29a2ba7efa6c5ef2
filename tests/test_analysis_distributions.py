"""Bonded geometry against mdtraj, distributions, overlaps, densities and molecular centres."""

import mdtraj
import numpy as np
import pytest

from openmm_cgml.analysis import (
    compute_angles,
    compute_bonds,
    compute_density,
    compute_dihedrals,
    compute_distribution,
    density_timeseries,
    distribution_overlap,
    enumerate_angles,
    enumerate_dihedrals,
    molecule_centers,
)
from openmm_cgml.exceptions import TrajectoryError


def _traj(x, box):
    top = mdtraj.Topology()
    residue = top.add_residue("X", top.add_chain())
    for _ in range(x.shape[1]):
        top.add_atom("C", mdtraj.element.carbon, residue)
    traj = mdtraj.Trajectory(x.astype(np.float32), top)
    traj.unitcell_vectors = np.broadcast_to(box, (x.shape[0], 3, 3)).astype(np.float32)
    return traj


def test_geometry_matches_mdtraj_across_periodic_boundaries():
    rng = np.random.default_rng(0)
    box = np.diag([2.0, 2.0, 2.0])
    # chains of 4 beads with 0.3 nm steps, wrapped into the box so that some are split
    start = rng.uniform(0, 2, (3, 10, 1, 3))
    steps = rng.normal(size=(3, 10, 3, 3))
    steps = 0.3 * steps / np.linalg.norm(steps, axis=-1, keepdims=True)
    chains = np.concatenate([start, start + np.cumsum(steps, axis=2)], axis=2)
    x = (chains % 2.0).reshape(3, 40, 3)
    bonds = np.array([[4 * m + i, 4 * m + i + 1] for m in range(10) for i in range(3)])
    angles, dihedrals = enumerate_angles(bonds), enumerate_dihedrals(bonds)
    assert angles.shape == (20, 3) and dihedrals.shape == (10, 4)
    traj = _traj(x, box)
    np.testing.assert_allclose(compute_bonds(x, bonds, box), 0.3, atol=1e-9)
    np.testing.assert_allclose(compute_bonds(x, bonds, box), mdtraj.compute_distances(traj, bonds), atol=1e-5)
    np.testing.assert_allclose(compute_angles(x, angles, box), mdtraj.compute_angles(traj, angles), atol=1e-4)
    ours = compute_dihedrals(x, dihedrals, box)
    ref = mdtraj.compute_dihedrals(traj, dihedrals)
    np.testing.assert_allclose(np.angle(np.exp(1j * (ours - ref))), 0.0, atol=1e-4)


def test_distribution_normalisation_and_overlap():
    rng = np.random.default_rng(1)
    a = compute_distribution(rng.normal(0.3, 0.01, (50, 20)), bins=40, value_range=(0.2, 0.4))
    b = compute_distribution(rng.normal(0.3, 0.01, (50, 20)), bins=40, value_range=(0.2, 0.4))
    c = compute_distribution(rng.normal(0.35, 0.005, (50, 20)), bins=40, value_range=(0.2, 0.4))
    assert np.sum(a.density * np.diff(a.edges)) == pytest.approx(1.0)
    assert a.mean == pytest.approx(0.3, abs=1e-3) and a.std == pytest.approx(0.01, rel=0.05)
    assert np.all(np.isfinite(a.density_err))
    assert distribution_overlap(a, a) == pytest.approx(1.0)
    assert distribution_overlap(a, b) > 0.9
    assert distribution_overlap(a, c) < 0.05


def test_density_of_water_box_and_time_series():
    masses = np.full(3000, 18.015 / 3)  # 1000 waters as 3000 equal-mass sites
    L = np.cbrt(1000 * 18.015 / 6.02214076e23 / 0.997) * 1e7  # nm for 0.997 g/cm^3
    assert compute_density([L] * 3, masses)[0] == pytest.approx(0.997, rel=1e-6)
    rng = np.random.default_rng(2)
    lengths = L * (1 + 0.002 * rng.normal(size=300))
    boxes = np.einsum("f,ij->fij", lengths, np.eye(3))
    series = density_timeseries(boxes, masses, np.arange(300) * 2.0)
    assert abs(series.average.value - 0.997) < 4 * series.average.error
    with pytest.raises(TrajectoryError, match="increase strictly"):
        density_timeseries(boxes, masses, np.r_[np.arange(299) * 2.0, 10.0])
    with pytest.raises(TrajectoryError, match="zero frames"):
        density_timeseries(np.zeros((0, 3, 3)), masses, [])


def test_molecule_centers_of_molecules_split_by_the_boundary():
    box = np.diag([2.0, 2.0, 2.0])
    x = np.array([[[1.95, 1.0, 1.0], [0.05, 1.0, 1.0], [0.5, 0.5, 0.5], [0.7, 0.5, 0.5]]])
    com = molecule_centers(x, [0, 0, 1, 1], masses=[1.0, 3.0, 1.0, 1.0], box=box)
    np.testing.assert_allclose(com[0, 0] % 2.0, [0.025, 1.0, 1.0], atol=1e-12)  # (1.95 + 3 * 2.05) / 4
    np.testing.assert_allclose(com[0, 1], [0.6, 0.5, 0.5])
    with pytest.raises(TrajectoryError, match="one entry per particle"):
        molecule_centers(x, [0, 0, 1])
