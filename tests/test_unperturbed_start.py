"""Unperturbed start conformations for melts: the truncated vacuum System, per-copy packing, the reference key."""

import numpy as np
import openmm
import pytest
from openmm import unit

from openmm_cgml import ConfigurationError
from openmm_cgml.testing import requires_openff

pytestmark = requires_openff


def _molecule(smiles):
    from openff.toolkit import Molecule

    mol = Molecule.from_smiles(smiles)
    mol.generate_conformers(n_conformers=1)
    mol.assign_partial_charges("gasteiger")
    return mol


def _vacuum_system(mol):
    from openff.toolkit import ForceField, Topology

    ff = ForceField("openff-2.2.0.offxml")
    return ff, ff.create_interchange(Topology.from_molecules([mol]), charge_from_molecules=[mol]).to_openmm_system()


def _energy_forces(system, positions):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True)
    return (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))


def test_bond_separations_of_a_chain():
    from openmm_cgml.reference.unperturbed import bond_separations

    chain = [(i, i + 1) for i in range(5)]  # 6 atoms in a row
    pairs = bond_separations(6, chain, 3)
    assert pairs == {(i, j): j - i for i in range(6) for j in range(i + 1, min(i + 4, 6))}
    ring = [(0, 1), (1, 2), (2, 3), (3, 0)]  # the shorter way round counts
    assert bond_separations(4, ring, 5)[(0, 3)] == 1 and bond_separations(4, ring, 5)[(0, 2)] == 2


def test_untruncated_copies_reproduce_the_force_field():
    """With every pair of butane within max_bonds (its atoms are at most 5 bonds apart), each copy's energy and
    forces are the force field's in vacuum; two copies add up; cutting to 1-4 pairs drops exactly the Lennard-Jones
    and Coulomb terms of the pairs further apart."""
    from openmm_cgml.reference.unperturbed import bond_separations, unperturbed_system

    mol = _molecule("CCCC")
    _, one = _vacuum_system(mol)
    x = mol.conformers[0].m_as("nanometer")
    e_ref, f_ref = _energy_forces(one, x)
    bonds = [(b.atom1_index, b.atom2_index) for b in mol.bonds]
    full = unperturbed_system(one, bonds, 2, max_bonds=6)
    e2, f2 = _energy_forces(full, np.concatenate([x, x + 3.0]))
    assert e2 == pytest.approx(2 * e_ref, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(f2, np.concatenate([f_ref, f_ref]), rtol=1e-8, atol=1e-8)
    # 1-4 only: the difference is the LJ + Coulomb of the 1-5 and 1-6 pairs (no exceptions among them)
    cut = unperturbed_system(one, bonds, 1, max_bonds=3)
    e3, _ = _energy_forces(cut, x)
    nb = next(f for f in one.getForces() if isinstance(f, openmm.NonbondedForce))
    p = [nb.getParticleParameters(i) for i in range(mol.n_atoms)]
    q = np.array([a[0].value_in_unit(unit.elementary_charge) for a in p])
    s = np.array([a[1].value_in_unit(unit.nanometer) for a in p])
    eps = np.array([a[2].value_in_unit(unit.kilojoule_per_mole) for a in p])
    far = [(i, j) for (i, j), d in bond_separations(mol.n_atoms, bonds, 6).items() if d > 3]
    assert far
    dropped = 0.0
    for i, j in far:
        r = np.linalg.norm(x[i] - x[j])
        sig, ep = 0.5 * (s[i] + s[j]), np.sqrt(eps[i] * eps[j])
        dropped += 4 * ep * ((sig / r) ** 12 - (sig / r) ** 6) + 138.935456 * q[i] * q[j] / r
    assert e3 == pytest.approx(e_ref - dropped, rel=1e-9, abs=1e-9)
    with pytest.raises(ConfigurationError, match="at least 3"):
        unperturbed_system(one, bonds, 1, max_bonds=2)
    other = openmm.System()
    other.addParticle(1.0)
    other.addForce(openmm.CustomExternalForce("x"))
    with pytest.raises(ConfigurationError, match="one NonbondedForce"):
        unperturbed_system(other, [], 1)
    site = openmm.System()
    for _ in range(3):
        site.addParticle(1.0)
    site.setVirtualSite(2, openmm.TwoParticleAverageSite(0, 1, 0.5, 0.5))
    site.addForce(openmm.NonbondedForce())
    with pytest.raises(ConfigurationError, match="virtual sites"):
        unperturbed_system(site, [(0, 1)], 1)


def test_conformations_are_sampled_and_packed_per_copy():
    """Each copy gets its own conformation (their end-to-end distances differ), packmol keeps each copy's shape
    (intramolecular distances as sampled) and the order of the copies; the same seed gives the same box."""
    from openmm_cgml.reference import Component, build_liquid, pack_molecules, unperturbed_conformations

    mol = _molecule("CCCCCCCC")
    from openff.toolkit import ForceField

    xyz, info = unperturbed_conformations(mol, ForceField("openff-2.2.0.offxml"), 6, temperature=400.0,
                                          duration_ps=4.0, seed=2)
    assert xyz.shape == (6, mol.n_atoms, 3) and info["copies"] == 6 and info["max_bonds"] == 6
    ends = np.linalg.norm(xyz[:, 0] - xyz[:, 7], axis=1)
    assert len(np.unique(np.round(ends, 4))) == 6
    box = 3.0
    packed = pack_molecules([mol], [6], box, seed=1, conformations=[xyz]).reshape(6, mol.n_atoms, 3)

    def internal(x):
        d = x[:, None] - x[None]
        d -= box * np.round(d / box)  # packmol may wrap atoms into the box
        return np.linalg.norm(d, axis=-1)

    for k in range(6):
        np.testing.assert_allclose(internal(packed[k]), internal(xyz[k]), atol=2e-4)
    with pytest.raises(ConfigurationError, match="expected \\(6, 26, 3\\)"):
        pack_molecules([mol], [6], box, conformations=[xyz[:5]])
    a = build_liquid([Component("CCCCCC", 8)], density=0.45, charge_method="gasteiger", cutoff="0.6 nm", seed=4,
                     start_conformations="unperturbed", temperature="350 K")
    b = build_liquid([Component("CCCCCC", 8)], density=0.45, charge_method="gasteiger", cutoff="0.6 nm", seed=4,
                     start_conformations="unperturbed", temperature="350 K")
    np.testing.assert_array_equal(a.positions, b.positions)
    assert a.info["start_conformations"] == "unperturbed" and a.info["unperturbed"][0]["copies"] == 8
    with pytest.raises(ConfigurationError, match="give temperature"):
        build_liquid([Component("CCCCCC", 8)], density=0.45, charge_method="gasteiger", start_conformations="unperturbed")
    with pytest.raises(ConfigurationError, match="unknown start_conformations"):
        build_liquid([Component("CCCCCC", 8)], density=0.45, charge_method="gasteiger", start_conformations="random")


def test_reference_key(tmp_path):
    """start_conformations runs through the reference (metadata records the sampling); it is part of a checkpoint's
    identity only when it is not the default, so earlier checkpoints keep resuming."""
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.reference import ReferenceConfig, run_reference
    from openmm_cgml.reference.run import _identity

    cfg = dict(components=[dict(smiles="CCCC", count=12, name="BUT")], density="0.45 g/cm**3", cutoff="0.6 nm",
               charge_method="gasteiger", nvt="0.2 ps", npt="0 ps", production="0.4 ps", report_interval="0.1 ps",
               checkpoint_interval="0.2 ps", platform="Reference", temperature="350 K",
               start_conformations="unperturbed")
    ds = open_dataset(run_reference(cfg, tmp_path / "but.h5", progress=False).dataset)
    assert ds.metadata["start_conformations"] == "unperturbed"
    assert ds.metadata["unperturbed_sampling"][0]["copies"] == 12
    default = ReferenceConfig.from_data({**cfg, "start_conformations": "conformer"})
    assert "start_conformations" not in _identity(default)
    assert _identity(ReferenceConfig.from_data(cfg))["start_conformations"] == "unperturbed"
    with pytest.raises(ConfigurationError, match="start_conformations"):
        ReferenceConfig.from_data({**cfg, "start_conformations": "random"})
