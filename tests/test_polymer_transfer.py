"""Transfer of a CG polymer force field from short chains to longer ones (openmm_cgml.workflows.polymer_transfer)."""

from __future__ import annotations

import numpy as np
import openmm
import pytest
from openmm import unit
from scipy.spatial import cKDTree

from openmm_cgml.exceptions import ConfigurationError, InvalidMappingError, InvalidSystemError
from openmm_cgml.forces.bonded import HarmonicAngles, HarmonicBonds, TabulatedDihedrals
from openmm_cgml.forces.tabulated import TabulatedPairPotential, write_openmm_tables
from openmm_cgml.geometry import minimum_image
from openmm_cgml.potential import CGPotential, energy_components
from openmm_cgml.topology import CGTopology, MoleculeTemplate, angles_from_bonds, dihedrals_from_bonds, key_to_str
from openmm_cgml.workflows.polymer_transfer import (
    chain_melt_positions,
    check_transfer,
    lengthen_chains,
    mean_bond_lengths,
    relax_melt,
    transfer_system,
)

MASS = {"E": 31.0, "M": 44.0, "A": 50.0, "B": 60.0, "C": 70.0}
R0 = {"E-M": 0.33, "M-M": 0.36}
THETA0 = {"E-M-M": 2.2, "M-M-M": 2.3}
K_BOND, K_ANGLE = 5000.0, 30.0


def chains(types, n: int = 10, box=None, bonds=None, name: str = "PEO") -> CGTopology:
    """``n`` copies of the molecule ``types`` (bonded in a line unless ``bonds`` is given)."""
    types = tuple(types)
    bonds = tuple((i, i + 1) for i in range(len(types) - 1)) if bonds is None else tuple(bonds)
    tpl = MoleculeTemplate(name, types, types, tuple(MASS[t] for t in types), bonds)
    return CGTopology.from_templates([tpl], [0] * n, box_vectors=box)


def molecules(top: CGTopology) -> list[np.ndarray]:
    return [np.flatnonzero(top.molecule_index == m) for m in np.unique(top.molecule_index)]


# ----------------------------------------------------------------------------- lengthen_chains
def test_factor_two_doubles_the_middle_and_keeps_the_ends():
    short = chains("EMMME")
    long = lengthen_chains(short, 2)
    # 3 middle beads x 2 = 6; by default about as many beads (50) in fewer chains: round(50 / 8) = 6
    assert long.molecule_counts() == {"E M M M M M M E": 6}
    assert long.n_beads == 48 and long.box_vectors is None
    expected_bonds = [(8 * m + i, 8 * m + i + 1) for m in range(6) for i in range(7)]
    assert long.bonds.tolist() == [list(b) for b in expected_bonds]
    np.testing.assert_array_equal(long.masses, [MASS[t] for t in long.bead_types])
    np.testing.assert_array_equal(long.angles, angles_from_bonds(long.bonds, long.n_beads))
    np.testing.assert_array_equal(long.dihedrals, dihedrals_from_bonds(long.bonds, long.n_beads))
    assert len(long.angles) == 6 * 6 and len(long.dihedrals) == 6 * 5
    assert long.residue_names == ("PEO",) * 6
    for beads in molecules(long):
        assert "".join(long.bead_types[i] for i in beads) == "EMMMMMME"

    assert lengthen_chains(short, 2, n_molecules=10).molecule_counts() == {"E M M M M M M E": 10}
    four = lengthen_chains(short, 4)
    assert four.molecule_counts() == {"E" + " M" * 12 + " E": 4}   # round(50 / 14) = 4


def test_bead_names_follow_the_repeat_unit_scheme():
    types = ("E", "M", "M", "M", "E")
    tpl = MoleculeTemplate("PEO", types, ("E1", "M1", "M2", "M3", "E2"), tuple(MASS[t] for t in types),
                           tuple((i, i + 1) for i in range(4)))
    long = lengthen_chains(CGTopology.from_templates([tpl], [0, 0]), 2)
    assert long.bead_names[:8] == ("E1", "M1", "M2", "M3", "M4", "M5", "M6", "E2")


def test_a_pattern_of_several_types_is_extended_by_its_period():
    short = chains("EABABE", n=4)
    long = lengthen_chains(short, 2, n_molecules=4)
    assert long.molecule_counts() == {"E A B A B A B A B E": 4}
    np.testing.assert_array_equal(long.masses, [MASS[t] for t in long.bead_types])
    assert lengthen_chains(short, 1.5, n_molecules=1).molecule_counts() == {"E A B A B A B E": 1}
    with pytest.raises(ConfigurationError, match="whole number"):
        lengthen_chains(short, 1.25)   # 2.5 repeats of A B


def test_factor_one_gives_an_equal_topology():
    short = chains("EMMME", box=np.eye(3) * 3.0)
    same = lengthen_chains(short, 1)
    assert same.to_data() == short.replace(box_vectors=None).to_data()


@pytest.mark.parametrize("top, factor, error, match", [
    (chains("EMEE", bonds=[(0, 1), (1, 2), (1, 3)]), 2, InvalidMappingError, "branched at bead 1 \\(3 bonds\\)"),
    (chains("EMMME", bonds=[(0, 1), (1, 2), (2, 3), (3, 4), (0, 4)]), 2, InvalidMappingError, "not a linear chain"),
    (chains("EABCE"), 2, InvalidMappingError, "no repeating period"),
    (chains("EE"), 2, InvalidMappingError, "no middle"),
    (chains("EMMME"), 0.5, ConfigurationError, "factor must be >= 1"),
    (chains("EMMME"), float("nan"), ConfigurationError, "factor must be a number"),
])
def test_lengthen_refuses_what_it_cannot_lengthen(top, factor, error, match):
    with pytest.raises(error, match=match):
        lengthen_chains(top, factor)


def test_lengthen_refuses_masses_that_differ_between_repeats():
    tpl = MoleculeTemplate("X", tuple("EMME"), tuple("EMME"), (31.0, 44.0, 45.0, 31.0), ((0, 1), (1, 2), (2, 3)))
    with pytest.raises(InvalidMappingError, match="not their masses"):
        lengthen_chains(CGTopology.from_templates([tpl], [0]), 2)


# ----------------------------------------------------------------------------- melt positions
def _bond_targets(top: CGTopology, lengths) -> np.ndarray:
    return np.array([lengths[key_to_str((top.bead_types[i], top.bead_types[j]))] for i, j in top.bonds.tolist()])


def test_melt_has_exact_bonds_no_overlaps_and_the_box_of_the_density():
    long = lengthen_chains(chains("EMMME"), 2, n_molecules=40)
    melt = chain_melt_positions(long, density_beads_per_nm3=8.0, bond_length=R0, seed=3, min_distance=0.3)
    x, box = melt
    assert x.shape == (long.n_beads, 3)
    np.testing.assert_array_equal(box, np.diag(np.diag(box)))
    assert np.diag(box)[0] == np.diag(box)[1] == np.diag(box)[2]
    assert np.diag(box)[0] ** 3 * 8.0 == pytest.approx(long.n_beads, rel=1e-12)
    b = long.bonds
    r = np.linalg.norm(x[b[:, 1]] - x[b[:, 0]], axis=1)
    np.testing.assert_allclose(r, _bond_targets(long, R0), rtol=0, atol=1e-9)
    # every pair of beads that are not bonded, under the minimum image
    i, j = np.triu_indices(long.n_beads, 1)
    dist = np.linalg.norm(minimum_image(x[j] - x[i], box), axis=1)
    bonded = np.zeros((long.n_beads, long.n_beads), dtype=bool)
    bonded[b[:, 0], b[:, 1]] = bonded[b[:, 1], b[:, 0]] = True
    assert dist[~bonded[i, j]].min() >= 0.3
    # no sharp back-folding: every bond angle at least 90 degrees
    a = long.angles
    v1, v2 = x[a[:, 0]] - x[a[:, 1]], x[a[:, 2]] - x[a[:, 1]]
    cos = np.sum(v1 * v2, axis=1) / np.linalg.norm(v1, axis=1) / np.linalg.norm(v2, axis=1)
    assert cos.max() <= 1e-9
    # the seed decides everything
    again = chain_melt_positions(long, density_beads_per_nm3=8.0, bond_length=R0, seed=3, min_distance=0.3)
    np.testing.assert_array_equal(again.positions, x)
    other = chain_melt_positions(long, density_beads_per_nm3=8.0, bond_length=R0, seed=4, min_distance=0.3)
    assert np.abs(other.positions - x).max() > 0.1


def test_melt_of_ten_thousand_beads():
    long = lengthen_chains(chains("EMMME"), 2, n_molecules=1250)
    melt = chain_melt_positions(long, density_beads_per_nm3=8.0, bond_length=R0, seed=0, min_distance=0.3)
    x, box = melt
    b = long.bonds
    np.testing.assert_allclose(np.linalg.norm(x[b[:, 1]] - x[b[:, 0]], axis=1), _bond_targets(long, R0), atol=1e-9)
    edges = np.diag(box)
    wrapped = np.mod(x, edges)
    wrapped[wrapped >= edges] = 0.0
    pairs = cKDTree(wrapped, boxsize=edges).query_pairs(0.3, output_type="ndarray")
    assert {tuple(p) for p in np.sort(pairs, axis=1).tolist()} <= {tuple(p) for p in b.tolist()}


def test_melt_box_given_directly_and_a_single_bond_length():
    long = lengthen_chains(chains("EMMME"), 2, n_molecules=8)
    x, box = chain_melt_positions(long, box=3.0, bond_length=0.4, seed=1)
    np.testing.assert_array_equal(box, np.eye(3) * 3.0)
    np.testing.assert_allclose(np.linalg.norm(x[long.bonds[:, 1]] - x[long.bonds[:, 0]], axis=1), 0.4, atol=1e-9)
    with pytest.raises(ConfigurationError, match="no entry for the bond type E-M"):
        chain_melt_positions(long, box=3.0, bond_length={"M-M": 0.4})
    with pytest.raises(ConfigurationError, match="not both"):
        chain_melt_positions(long, box=3.0, density_beads_per_nm3=5.0, bond_length=0.4)


@pytest.mark.parametrize("density, match", [
    (20.0, "cannot pack .* restarts"),   # below close packing, beyond what random growth fills
    (80.0, "exceeds close packing"),     # impossible: refused before any growth
])
def test_too_dense_a_melt_is_refused_rather_than_looping(density, match):
    long = lengthen_chains(chains("EMMME"), 2)
    with pytest.raises(InvalidSystemError, match=match):
        chain_melt_positions(long, density_beads_per_nm3=density, bond_length=0.36, min_distance=0.35, seed=0)


def test_mean_bond_lengths_by_type_pair_across_the_box_edge():
    top = chains("EMME", n=1, box=np.eye(3) * 2.0)
    x = np.array([[1.9, 1.0, 1.0], [0.23, 1.0, 1.0], [0.23, 1.4, 1.0], [-0.07, 1.4, 1.0]])  # E-M across the edge
    assert mean_bond_lengths(top, x) == pytest.approx({"E-M": (0.33 + 0.30) / 2, "M-M": 0.4})


# ----------------------------------------------------------------------------- the force field
def _pair_tables(pairs=("E-E", "E-M", "M-M"), exclusions: str = "bonded") -> TabulatedPairPotential:
    r = np.linspace(0.05, 1.0, 96)
    height = {"E-E": 20.0, "E-M": 25.0, "M-M": 30.0}
    return TabulatedPairPotential({p: (r, height[p] * (1 - r) ** 3 - 2.0 * np.sin(np.pi * r) ** 2 * (1 - r))
                                   for p in pairs}, cutoff=1.0, exclusions=exclusions, name="pair")


def write_ibi_dir(path, *, pairs=("E-E", "E-M", "M-M"), angles=("E-M-M", "M-M-M"), extra=(),
                  exclusions: str = "bonded"):
    """A short-chain force field stored as `cgml ibi` stores its output: pair_tables.json + bonded_terms.json."""
    path.mkdir()
    write_openmm_tables(path / "pair_tables.json", _pair_tables(pairs, exclusions))
    terms = [HarmonicBonds({k: {"r0": v, "k": K_BOND} for k, v in R0.items()}),
             HarmonicAngles({k: {"theta0": THETA0[k], "k": K_ANGLE} for k in angles}), *extra]
    CGPotential(terms).save(path / "bonded_terms.json")
    return path


def _context(system, box, x):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPeriodicBoxVectors(*(openmm.Vec3(*row) for row in box))
    context.setPositions(x)
    return context


def _energy(context, x) -> float:
    context.setPositions(x)
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


@pytest.fixture(scope="module")
def long_melt():
    short = chains("EMMME")
    long = lengthen_chains(short, 2, n_molecules=10)
    melt = chain_melt_positions(long, density_beads_per_nm3=5.0, bond_length=R0, seed=7, min_distance=0.3)
    return short, long.with_box(melt.box_vectors), melt


def test_long_chain_system_from_an_ibi_directory(tmp_path, long_melt):
    short, long, (x, box) = long_melt
    system = transfer_system(write_ibi_dir(tmp_path / "ibi"), short, long)
    assert system.getNumParticles() == long.n_beads
    context = _context(system, box, x)
    parts = energy_components(context)
    pair_parts = {k for k in parts if k.startswith("pair")}  # one force (compiled layout) or one per type pair
    assert pair_parts in ({"pair"}, {"pair:E-E", "pair:E-M", "pair:M-M"})
    assert set(parts) - pair_parts == {"bonds", "angles", "CMMotionRemover"}
    assert all(np.isfinite(v) for v in parts.values())
    assert abs(parts["bonds"]) < 1e-12                   # grown at the force field's r0
    a = long.angles                                      # every angle of the long chains, E-M-M and M-M-M
    v1, v2 = x[a[:, 0]] - x[a[:, 1]], x[a[:, 2]] - x[a[:, 1]]
    theta = np.arccos(np.sum(v1 * v2, axis=1) / np.linalg.norm(v1, axis=1) / np.linalg.norm(v2, axis=1))
    theta0 = np.array([THETA0[key_to_str(long.bead_types[b] for b in t)] for t in a.tolist()])
    assert parts["angles"] == pytest.approx(np.sum(0.5 * K_ANGLE * (theta - theta0) ** 2), rel=1e-9)
    # the short chains' pair tables between all pairs of the long melt but 1-2 and 1-3 (exclusions="bonded")
    pair = _pair_tables()
    i, j = np.triu_indices(long.n_beads, 1)
    excluded = {tuple(sorted(b)) for b in long.bonds.tolist()} | {(min(p, q), max(p, q)) for p, _, q in a.tolist()}
    keep = np.array([(p, q) not in excluded for p, q in zip(i.tolist(), j.tolist())])
    r = np.linalg.norm(minimum_image(x[j] - x[i], box), axis=1)
    keep &= r < 1.0
    types = np.asarray(long.bead_types)
    ti, tj, rr = types[i[keep]], types[j[keep]], r[keep]
    expected = sum(pair.energy(a, b, rr[((ti == a) & (tj == b)) | ((ti == b) & (tj == a))]).sum()
                   for a, b in (("E", "E"), ("E", "M"), ("M", "M")))
    pair_energy = sum(parts[k] for k in pair_parts)
    assert pair_energy == pytest.approx(float(expected), rel=1e-3, abs=1e-3)


def test_long_chain_forces_are_the_gradient_of_the_energy(tmp_path, long_melt):
    short, long, (x0, box) = long_melt
    system = transfer_system(write_ibi_dir(tmp_path / "ibi"), short, long)
    context = _context(system, box, x0)
    rng = np.random.default_rng(11)
    h = 1e-5
    for _ in range(3):   # random coordinates near the grown melt
        x = x0 + rng.normal(0.0, 0.02, x0.shape)
        context.setPositions(x)
        forces = context.getState(getForces=True).getForces(asNumpy=True).value_in_unit(
            unit.kilojoule_per_mole / unit.nanometer)
        for bead, axis in zip(rng.choice(long.n_beads, 4, replace=False), rng.integers(0, 3, 4)):
            plus, minus = x.copy(), x.copy()
            plus[bead, axis] += h
            minus[bead, axis] -= h
            numeric = -(_energy(context, plus) - _energy(context, minus)) / (2 * h)
            assert numeric == pytest.approx(forces[bead, axis], rel=1e-4, abs=1e-3)


def test_missing_keys_are_refused_by_name(tmp_path, long_melt):
    short, long, _ = long_melt
    no_angle = write_ibi_dir(tmp_path / "no_angle", angles=("E-M-M",))
    with pytest.raises(ConfigurationError, match=r"angle M-M-M in term 'angles'"):
        transfer_system(no_angle, short, long)
    no_pair = write_ibi_dir(tmp_path / "no_pair", pairs=("E-E", "E-M"))
    with pytest.raises(ConfigurationError, match=r"pair M-M in term 'pair'"):
        transfer_system(no_pair, short, long)
    # dihedral tables that cover the short chains (E-M-M-M only) lack the long chains' M-M-M-M
    phi = np.linspace(-np.pi, np.pi, 36, endpoint=False)
    dihedrals = TabulatedDihedrals({"E-M-M-M": (phi, 2.0 * np.cos(phi))})
    ff = write_ibi_dir(tmp_path / "dihedrals", extra=[dihedrals])
    assert check_transfer(ff, short).ok
    check = check_transfer(ff, long, short)
    assert not check.ok and check.missing == (("dihedral_tables", "dihedral", "M-M-M-M"),)
    assert check.unseen == {"dihedral": ["M-M-M-M"]}
    with pytest.raises(ConfigurationError, match=r"dihedral M-M-M-M in term 'dihedral_tables' \(not in the short"):
        transfer_system(ff, short, long)


def test_pairs_excluded_per_molecule_are_noted(tmp_path, long_melt):
    short, long, _ = long_melt
    check = check_transfer(write_ibi_dir(tmp_path / "ibi", exclusions="molecule"), long, short)
    assert check.ok
    assert any("no excluded volume" in note for note in check.notes)


def test_relax_melt_minimises_and_runs(tmp_path, long_melt):
    short, long, (x, box) = long_melt
    system = transfer_system(write_ibi_dir(tmp_path / "ibi"), short, long)
    relaxed = relax_melt(system, x + np.random.default_rng(0).normal(0, 0.02, x.shape), box, temperature=300.0,
                         timestep=0.005, steps=200, platform="Reference", seed=1)
    assert relaxed.energy_minimized < relaxed.energy_initial
    assert np.isfinite(relaxed.energy_final)
    assert np.all(np.isfinite(relaxed.positions)) and np.all(np.isfinite(relaxed.velocities))
    r = np.linalg.norm(relaxed.positions[long.bonds[:, 1]] - relaxed.positions[long.bonds[:, 0]], axis=1)
    deviation = r - _bond_targets(long, R0)
    sigma = np.sqrt(0.0083144626 * 300.0 / K_BOND)      # thermal width of a harmonic bond, nm
    assert np.sqrt(np.mean(deviation**2)) < 2 * sigma and np.abs(deviation).max() < 7 * sigma   # the bonds hold


# ----------------------------------------------------------------------------- a neural model
def test_long_chain_system_from_a_neural_bundle(tmp_path, long_melt):
    pytest.importorskip("torch")
    from openmm_cgml.forces.neural import NeuralForceTerm
    from openmm_cgml.models import save_bundle

    short, long, (x, box) = long_melt
    example = NeuralForceTerm.example(short)   # a small untrained SchNet with priors keyed by the short chains
    path = save_bundle(tmp_path / "short.cgml", example.bundle.build_model(short), short)
    with pytest.raises(InvalidMappingError, match="different mapping"):   # the fingerprint holds the chain length
        CGPotential(path, backend="python").createSystem(long)
    system = transfer_system(path, short, long, backend="python")
    parts = energy_components(_context(system, box, x))
    assert {"neural:network", "neural:harmonic_bond", "neural:harmonic_angle", "neural:repulsion"} <= set(parts)
    assert all(np.isfinite(v) for v in parts.values())
    assert parts["neural:network"] != 0.0

    # trained on E M E, the prior knows no M-M bond, which E M M E chains have
    tiny = chains("EME")
    path = save_bundle(tmp_path / "tiny.cgml", NeuralForceTerm.example(tiny).bundle.build_model(tiny), tiny)
    with pytest.raises(ConfigurationError, match=r"bond M-M in term 'neural' \(not in the short chains"):
        transfer_system(path, tiny, lengthen_chains(tiny, 2).with_box(np.eye(3) * 3.0), backend="python")
