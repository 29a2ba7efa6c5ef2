"""CGMapping: partition invariants, symmetry types, maps of positions/forces, refusals, JSON, datasets."""

import json

import numpy as np
import pytest
from conftest import requires_openff
from openmm import app

from openmm_cgml.exceptions import CorruptFileError, InvalidMappingError
from openmm_cgml.mapping import CGMapping, find_molecules, map_dataset

TMP_SMILES = "CC(C)C(C)C(C)C"


def water_topology(n_waters=2):
    top = app.Topology()
    chain = top.addChain()
    oxygen, hydrogen = app.Element.getBySymbol("O"), app.Element.getBySymbol("H")
    for _ in range(n_waters):
        res = top.addResidue("HOH", chain)
        o = top.addAtom("O", oxygen, res)
        h1 = top.addAtom("H1", hydrogen, res)
        h2 = top.addAtom("H2", hydrogen, res)
        top.addBond(o, h1)
        top.addBond(o, h2)
    return top


def rigid_water_system(n_waters=2):
    import openmm

    system = openmm.System()
    for _ in range(n_waters):
        for m in (15.999, 1.008, 1.008):
            system.addParticle(m)
    for w in range(n_waters):
        o = 3 * w
        system.addConstraint(o, o + 1, 0.09572)
        system.addConstraint(o, o + 2, 0.09572)
        system.addConstraint(o + 1, o + 2, 0.15139)
    return system


@pytest.fixture(scope="module")
def tmp_molecule():
    from openff.toolkit import Molecule

    return Molecule.from_smiles(TMP_SMILES)


@pytest.fixture(scope="module")
def tmp_topology(tmp_molecule):
    from openff.toolkit import Topology

    return Topology.from_molecules([tmp_molecule] * 4).to_openmm()


def test_find_molecules_by_bonds_and_residues():
    top = water_topology(3)
    mols = find_molecules(top)
    assert [m.atoms for m in mols] == [(0, 1, 2), (3, 4, 5), (6, 7, 8)]
    assert mols[0].elements == ("O", "H", "H")
    assert find_molecules(top, by="residues")[1].atoms == (3, 4, 5)


@requires_openff
@pytest.mark.parametrize("n_beads", [1, 3])
def test_automatic_mapping_invariants(tmp_topology, n_beads):
    mapping = CGMapping.automatic(tmp_topology, n_beads)
    assert mapping.n_beads == 4 * n_beads
    # every atom in exactly one bead
    membership = np.asarray(mapping.force_matrix.sum(axis=0)).ravel()
    np.testing.assert_array_equal(membership, 1)
    # position weights sum to one per bead
    np.testing.assert_allclose(np.asarray(mapping.position_matrix.sum(axis=1)).ravel(), 1.0)
    # bead masses sum to the molecule's mass
    masses = np.array([a.element.mass._value for a in tmp_topology.atoms()])
    per_mol = np.bincount(mapping.molecule_index, weights=mapping.bead_masses)
    np.testing.assert_allclose(per_mol, masses.reshape(4, -1).sum(axis=1))
    np.testing.assert_allclose(mapping.bead_masses.sum(), masses.sum())


@requires_openff
def test_symmetric_groups_share_a_type(tmp_topology):
    mapping = CGMapping.automatic(tmp_topology, 3)
    types = mapping.bead_types[:3]
    # 2,3,4-trimethylpentane splits into two isopropyl ends and a central CH(CH3)
    assert types[0] == types[2] != types[1]
    heavy = [[i for i in bead if mapping.molecule_types[0].elements[i] == "C"] for bead in mapping.molecule_types[0].beads]
    assert sorted(len(h) for h in heavy) == [2, 3, 3]
    # explicit groups: the two isopropyl groups are equivalent by symmetry, whatever their order
    groups = [[3, 4], [0, 1, 2], [5, 6, 7]]
    mol = mapping.molecule_types[0]
    hs = {i: [j for a, b in mol.bonds for i2, j in ((a, b), (b, a)) if i2 == i and mol.elements[j] == "H"]
          for i in range(8)}
    full = [sorted(g + [h for i in g for h in hs[i]]) for g in groups]
    m2 = CGMapping.from_groups(tmp_topology, full)
    assert m2.bead_types[1] == m2.bead_types[2] != m2.bead_types[0]
    # bonds along the chain, angle end-middle-end
    assert m2.bonds[:2].tolist() == [[0, 1], [0, 2]]
    assert m2.angles[:1].tolist() == [[1, 0, 2]]


@requires_openff
def test_smarts_mapping_matches_groups(tmp_topology, tmp_molecule):
    mapping = CGMapping.from_smarts(tmp_topology, {"END": "[CH3][CH]([CH3])", "MID": "[CH][CH3]"}, tmp_molecule)
    auto = CGMapping.automatic(tmp_topology, 3)
    assert sorted(mapping.molecule_types[0].beads) == sorted(auto.molecule_types[0].beads)
    assert mapping.type_names == ("END", "MID")
    with pytest.raises(InvalidMappingError, match="in no bead"):
        CGMapping.from_smarts(tmp_topology, {"END": "[CH3][CH]([CH3])"}, tmp_molecule)


def test_water_dimer_oxygen_map_gets_hydrogen_forces():
    top = water_topology(2)
    system = rigid_water_system(2)
    mapping = CGMapping.from_groups(top, [[0, 1, 2]], weights=[[1.0, 0.0, 0.0]], bead_names=["OW"])
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 6, 3))
    f = rng.normal(size=(5, 6, 3))
    cg_x = mapping.map_positions(x)
    cg_f = mapping.map_forces(f, system)  # the water's constraints are inside the bead: accepted
    np.testing.assert_allclose(cg_x, x[:, [0, 3]])
    np.testing.assert_allclose(cg_f[:, 0], f[:, 0] + f[:, 1] + f[:, 2])
    np.testing.assert_allclose(cg_f[:, 1], f[:, 3] + f[:, 4] + f[:, 5])
    np.testing.assert_allclose(mapping.bead_masses, [18.015324, 18.015324])
    assert mapping.type_names == ("OW",)


def test_constraint_crossing_and_overlap_refused_for_forces():
    top = water_topology(2)
    system = rigid_water_system(2)
    split = CGMapping.from_groups(top, [[0, 1], [2]])
    f = np.zeros((6, 3))
    with pytest.raises(InvalidMappingError, match="constraints join atoms of different beads"):
        split.map_forces(f, system)
    split.map_positions(np.zeros((6, 3)))  # positions are still fine
    overlap = CGMapping.from_groups(top, [[0, 1, 2], [1, 2]], allow_overlap=True)
    assert overlap.overlapping
    with pytest.raises(InvalidMappingError, match="more than one bead"):
        overlap.map_forces(f)


def test_bad_groups_give_clear_errors():
    top = water_topology(2)
    with pytest.raises(InvalidMappingError, match=r"atoms \[2\] are in no bead"):
        CGMapping.from_groups(top, [[0, 1]])
    with pytest.raises(InvalidMappingError, match="more than one bead"):
        CGMapping.from_groups(top, [[0, 1, 2], [2]])
    with pytest.raises(InvalidMappingError, match="molecule has atoms 0..2"):
        CGMapping.from_groups(top, [[0, 1, 7]])
    with pytest.raises(InvalidMappingError, match="no entry for molecule type 0"):
        CGMapping.from_groups(top, {"XYZ": [[0, 1, 2]]})


def test_periodic_position_map_unwraps_beads():
    top = water_topology(1)
    mapping = CGMapping.from_groups(top, [[0, 1, 2]], weights="centroid")
    box = np.eye(3) * 2.0
    x = np.array([[1.99, 1.0, 1.0], [0.01, 1.0, 1.0], [1.97, 1.0, 1.0]])  # split across the x boundary
    cg = mapping.map_positions(x, box)
    np.testing.assert_allclose(cg[0], [1.99 + (0.02 - 0.02) / 3, 1.0, 1.0], atol=1e-12)
    # translation equivariance
    cg2 = mapping.map_positions(x + 0.3, box)
    np.testing.assert_allclose(cg2, cg + 0.3, atol=1e-12)


def test_json_round_trip(tmp_path):
    top = water_topology(3)
    mapping = CGMapping.from_groups(top, [[0, 1, 2]], weights=[[1.0, 0.0, 0.0]])
    path = tmp_path / "m.json"
    mapping.to_json(path)
    again = CGMapping.from_json(path)
    assert again == mapping
    assert again.bead_types == mapping.bead_types
    np.testing.assert_array_equal(again.position_matrix.toarray(), mapping.position_matrix.toarray())
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(CorruptFileError):
        CGMapping.from_json(path)


def test_cg_topology_and_info():
    top = water_topology(3)
    mapping = CGMapping.from_groups(top, [[0, 1, 2]], weights=[[1.0, 0.0, 0.0]])
    cg = mapping.to_topology(np.eye(3) * 3)
    assert cg.getNumAtoms() == 3 and cg.getNumResidues() == 3
    assert all(a.element is None for a in cg.atoms())
    np.testing.assert_allclose([a.mass for a in cg.atoms()], 18.015324)
    info = mapping.cg_topology(np.eye(3) * 3)
    assert info.n_beads == 3 and info.periodic
    np.testing.assert_array_equal(info.molecule_index, [0, 1, 2])


def test_map_dataset(tmp_path):
    from openmm_cgml.dataset import TrajectoryWriter, open_dataset

    top = water_topology(2)
    masses = [15.999, 1.008, 1.008] * 2
    rng = np.random.default_rng(0)
    aa = tmp_path / "aa.h5"
    frames = []
    with TrajectoryWriter(aa, top, masses, {"constraints": "HBonds"}, chunk_frames=3) as w:
        for k in range(7):
            fr = {n: rng.normal(size=(6, 3)) for n in ("positions", "velocities", "forces")}
            frames.append(fr)
            w.append(**fr, box=np.eye(3) * 5, step=k, time=0.1 * k, potential_energy=float(k))
    mapping = CGMapping.from_groups(top, [[0, 1, 2]])
    cg_path = map_dataset(aa, mapping, tmp_path / "cg.h5", chunk_frames=2, progress=False)
    cg = open_dataset(cg_path)
    assert cg.kind == "coarse-grained" and cg.n_frames == 7 and cg.n_particles == 2
    f = np.stack([fr["forces"] for fr in frames])
    np.testing.assert_allclose(cg.forces, mapping.map_forces(f), rtol=1e-5, atol=1e-5)
    v = np.stack([fr["velocities"] for fr in frames])
    np.testing.assert_allclose(cg.velocities, mapping.map_velocities(v), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cg.masses, mapping.bead_masses)
    assert CGMapping.from_data(cg.metadata["mapping"]) == mapping
    np.testing.assert_allclose(cg.potential_energy, np.arange(7))
    # a mapping that splits an O-H constraint (HBonds) is refused before writing
    split = CGMapping.from_groups(top, [[0, 1], [2]])
    with pytest.raises(InvalidMappingError, match="constraints"):
        map_dataset(aa, split, tmp_path / "bad.h5", progress=False)
    assert not (tmp_path / "bad.h5").exists()


def test_periodic_image_of_an_atom_does_not_change_beads_triclinic():
    top = water_topology(1)
    mapping = CGMapping.from_groups(top, [[0, 1, 2]])
    box = np.array([[2.0, 0, 0], [0.5, 2.0, 0], [-0.4, 0.6, 2.0]])  # reduced triclinic
    x = np.array([[1.0, 1.0, 1.0], [1.08, 1.03, 1.0], [0.97, 1.07, 1.01]])
    ref = mapping.map_positions(x, box)
    np.testing.assert_allclose(ref, mapping.map_positions(x))  # compact molecule: same as no box
    for k in range(3):
        shifted = x.copy()
        shifted[1] += box[k]
        shifted[2] -= box[(k + 1) % 3]
        np.testing.assert_allclose(mapping.map_positions(shifted, box), ref, atol=1e-12)


def _two_atom_mapping(n_molecules: int = 50):
    """Molecules of two equal-mass atoms, one bead each (centre of mass: position weights 1/2, 1/2)."""
    from openmm_cgml.mapping import MoleculeType

    mt = MoleculeType(name="DI", elements=("C", "C"), bonds=((0, 1),), masses=(12.0, 12.0), beads=((0, 1),),
                      weights=((0.5, 0.5),), bead_names=("A",), bead_types=("DI_A",))
    return CGMapping((mt,), tuple((0, (2 * m, 2 * m + 1)) for m in range(n_molecules)), 2 * n_molecules)


def test_the_optimal_force_map_weighs_atoms_by_their_inverse_noise():
    """f1 = g + n1, f2 = g + n2 with independent noises of variance s1^2 and s2^2: every valid map weighs
    (w1 + w2) / 2 = 1, and the least-noise one has w_i proportional to 1 / s_i^2; its mapped forces keep the same
    mean force (2 g) with less variance."""
    from openmm_cgml.mapping import optimal_force_map

    rng = np.random.default_rng(0)
    m = _two_atom_mapping()
    n_frames, s1, s2 = 400, 3.0, 1.0
    g = rng.normal(size=(n_frames, 50, 1, 3))
    noise = rng.normal(size=(n_frames, 50, 2, 3)) * np.array([s1, s2])[None, None, :, None]
    forces = (g + noise).reshape(n_frames, 100, 3)
    best, report = optimal_force_map(m, forces)
    w = np.asarray(best.molecule_types[0].force_weights)[0]
    expected = 2 * np.array([1 / s1**2, 1 / s2**2]) / (1 / s1**2 + 1 / s2**2)
    np.testing.assert_allclose(w, expected, atol=0.03)
    assert report["DI:A"]["variance_ratio"] < 0.6
    mapped, summed = best.map_forces(forces), m.map_forces(forces)
    np.testing.assert_allclose((mapped * 2 * g[:, :, 0]).mean(), (summed * 2 * g[:, :, 0]).mean(), rtol=0.05)
    assert (mapped**2).mean() < 0.6 * (summed**2).mean()
    # a constraint joins the two atoms: they must be weighed alike, which leaves only the sum map
    joined, _ = optimal_force_map(m, forces, np.array([[2 * k, 2 * k + 1] for k in range(50)]))
    np.testing.assert_allclose(joined.molecule_types[0].force_weights, [[1.0, 1.0]], atol=1e-9)
    # the force weights travel with the mapping (JSON) and a map inconsistent with the positions is refused
    again = CGMapping.from_data(json.loads(json.dumps(best.to_data())))
    np.testing.assert_allclose(again.map_forces(forces), mapped)
    from dataclasses import replace

    with pytest.raises(InvalidMappingError, match="not consistent"):
        CGMapping((replace(m.molecule_types[0], force_weights=((1.0, 0.5),)),), m.molecules, m.n_atoms)
    # with a general map, a constraint between atoms weighed differently cannot be mapped
    with pytest.raises(InvalidMappingError, match="constraints"):
        best.check_force_mapping(np.array([[0, 1]]))


def test_cgml_map_fits_the_optimal_force_map_and_keeps_it_with_the_data(tmp_path):
    """``force_map: optimal`` in cgml map (flexible waters, noisy hydrogen forces): the quiet oxygen carries the
    bead's force, the mapped forces are the fitted map's, and the map travels in the mapping JSON and the CG
    dataset."""
    from openmm_cgml.dataset import TrajectoryWriter, open_dataset
    from openmm_cgml.workflows import run_map

    top = water_topology(4)
    rng = np.random.default_rng(1)
    aa = tmp_path / "aa.h5"
    forces = []
    with TrajectoryWriter(aa, top, [15.999, 1.008, 1.008] * 4, {"constraints": None},
                          fields=("positions", "forces")) as w:
        for k in range(30):
            f = rng.normal(size=(12, 3)) * np.tile([1.0, 4.0, 4.0], 4)[:, None]  # noisy hydrogens
            forces.append(f)
            w.append(positions=rng.normal(size=(12, 3)), forces=f, box=np.eye(3) * 5, step=k, time=0.1 * k)
    result = run_map({"input": str(aa), "output": str(tmp_path / "cg.h5"), "mapping_out": str(tmp_path / "m.json"),
                      "mapping": {"method": "groups", "groups": [[0, 1, 2]]}, "force_map": "optimal"})
    weights = np.asarray(result.mapping.molecule_types[0].force_weights)[0]
    c = np.array([15.999, 1.008, 1.008]) / 18.015  # position weights; noise variances 1, 16, 16
    expected = c / np.array([1.0, 16.0, 16.0])  # the least-noise map: w_i proportional to c_i / s_i^2
    np.testing.assert_allclose(weights, expected / (expected @ c), atol=0.03)
    cg = open_dataset(tmp_path / "cg.h5")
    np.testing.assert_allclose(cg.forces, result.mapping.map_forces(np.stack(forces)), rtol=1e-5, atol=1e-5)
    assert "force_weights" in json.loads((tmp_path / "m.json").read_text())["molecule_types"][0]
    assert CGMapping.from_data(cg.metadata["mapping"]) == result.mapping
