"""The System assembler façade: one System whatever the form of the topology, and clear errors."""

from __future__ import annotations

import numpy as np
import openmm
import pytest
from openmm import app

from openmm_cgml import CGPotential, CGSystemBuilder, CGTopology
from openmm_cgml.exceptions import ConfigurationError, InvalidMappingError, InvalidSystemError
from openmm_cgml.forces.bonded import HarmonicAngles, HarmonicBonds
from openmm_cgml.forces.tabulated import TabulatedPairPotential
from openmm_cgml.mapping import CGMapping

BOX = 2.4


def aa_topology(n_mol=6):
    """Propane-like carbon chains (no hydrogens): C-C-C, three carbons per molecule."""
    top = app.Topology()
    chain = top.addChain()
    for _ in range(n_mol):
        res = top.addResidue("PRP", chain)
        atoms = [top.addAtom(f"C{i}", app.element.carbon, res) for i in range(3)]
        top.addBond(atoms[0], atoms[1])
        top.addBond(atoms[1], atoms[2])
    top.setPeriodicBoxVectors(np.eye(3) * BOX * openmm.unit.nanometer)
    return top


@pytest.fixture
def setup():
    top = aa_topology()
    mapping = CGMapping.from_groups(top, [[0], [1], [2]])
    cg = mapping.cg_topology(np.eye(3) * BOX)
    a, b = sorted(set(cg.bead_types))
    terms = [TabulatedPairPotential.example(cg), HarmonicBonds({f"{a}-{b}": {"r0": 0.15, "k": 1e4}}),
             HarmonicAngles({f"{a}-{b}-{a}": {"theta0": 2.0, "k": 100.0}})]
    return top, mapping, cg, terms


def xml(system):
    return openmm.XmlSerializer.serialize(system)


def test_every_form_of_topology_gives_the_same_system(setup):
    top, mapping, cg, terms = setup
    potential = CGPotential(terms)
    reference = xml(potential.createSystem(cg))
    assert xml(potential.createSystem(cg.to_openmm())) == reference          # openmm-ml style: an OpenMM topology
    assert xml(potential.createSystem(top, mapping=mapping)) == reference    # AA topology + mapping
    assert xml(CGSystemBuilder(mapping, terms).createSystem(top)) == reference
    # an OpenMM topology read back from a PDB has lost the bead types and masses: a clear error, or give them
    bare = cg.to_openmm()
    for atom in bare.atoms():
        atom.mass = None
    with pytest.raises(InvalidMappingError, match="needs bead masses"):
        potential.createSystem(bare)
    masses = potential.createSystem(cg)
    assert xml(potential.createSystem(bare, masses=masses)) == reference
    # the box: the topology's, or boxVectors (nm or a Quantity), which wins
    other = potential.createSystem(cg, boxVectors=np.eye(3) * 2.5 * openmm.unit.nanometer)
    assert other.getDefaultPeriodicBoxVectors()[0][0].value_in_unit(openmm.unit.nanometer) == pytest.approx(2.5)


def test_clear_errors_before_any_work(setup, tmp_path):
    top, mapping, cg, terms = setup
    with pytest.raises(ConfigurationError, match="does not exist"):
        CGPotential(tmp_path / "nothing.cgml")
    with pytest.raises(ConfigurationError, match="cannot build a CG potential from a int"):
        CGPotential(3)
    with pytest.raises(ConfigurationError, match="apply to model bundles"):
        CGPotential(terms, backend="python")
    with pytest.raises(ConfigurationError, match="holds no pair_tables.json"):
        CGPotential(tmp_path)
    with pytest.raises(InvalidSystemError, match="atoms"):
        CGPotential(terms).createSystem(aa_topology(n_mol=2), mapping=mapping)
    with pytest.raises(ConfigurationError, match="takes a CGTopology or an OpenMM Topology"):
        CGPotential(terms).createSystem("topology.pdb")


def test_more_forces_than_force_groups_is_refused(setup):
    _, _, cg, _ = setup
    many = [HarmonicBonds({"PRP_A-PRP_B": {"r0": 0.15, "k": 1.0}}, name=f"bonds{k}") for k in range(32)]
    with pytest.raises(ConfigurationError, match="at most 31 fit"):
        CGPotential(many).createSystem(cg)


def test_cg_topology_from_and_to_openmm(setup):
    _, mapping, cg, _ = setup
    back = CGTopology.from_openmm(cg.to_openmm())
    assert back.bead_types == cg.bead_types and back.bead_names == cg.bead_names
    np.testing.assert_array_equal(back.bonds, cg.bonds)
    np.testing.assert_array_equal(back.molecule_index, cg.molecule_index)
    np.testing.assert_allclose(back.masses, cg.masses)
    np.testing.assert_allclose(back.box_vectors, cg.box_vectors)
    assert CGTopology.from_data(cg.to_data()).fingerprint() == cg.fingerprint() == back.fingerprint()
    with pytest.raises(InvalidMappingError, match="contain neither '-'"):
        CGTopology(("A-1", "B"), np.array([0, 0]))


def test_cg_topology_json_round_trip(setup, tmp_path):
    _, _, cg, _ = setup
    back = CGTopology.from_json(cg.to_json(tmp_path / "cg.json"))
    assert back.to_data() == cg.to_data()
    assert CGTopology.from_json(tmp_path / "cg.json").to_data() == cg.to_data()
