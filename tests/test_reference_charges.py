"""Explicit, sourced partial charges and charge scaling of the components of an all-atom reference."""

import re

import numpy as np
import openmm
import pytest
import yaml

from openmm_cgml import ConfigurationError, InvalidSystemError
from openmm_cgml.testing import requires_openff

pytestmark = requires_openff

# CL&P (Canongia Lopes & Padua), il.ff: tetramethylammonium (ammonium N4, C1, H1) and hexafluorophosphate
CLP = "CL&P, Canongia Lopes & Padua, il.ff (J. Phys. Chem. B 2004)"
TMA = "C[N+](C)(C)C"
PF6 = "F[P-](F)(F)(F)(F)F"
BF4 = "F[B-](F)(F)F"
# Molecule.from_smiles order of TMA: C, N, C, C, C, then three hydrogens on each carbon
TMA_CHARGES = [-0.17, 0.12, -0.17, -0.17, -0.17] + [0.13] * 12
PF6_CHARGES = {"P": 1.34, "F": -0.39}
PF6_PER_ATOM = [-0.39, 1.34, -0.39, -0.39, -0.39, -0.39, -0.39]  # F, P, F, F, F, F, F
N_PAIRS = 4
SMALL_BOX = dict(box_length="1.4 nm", cutoff="0.6 nm")


def _refuse(*args, **kwargs):
    raise AssertionError("called although it should not be")


@pytest.fixture
def nothing_expensive(monkeypatch):
    """Charge methods and packmol fail the test if they are reached."""
    from openmm_cgml.reference import liquid

    monkeypatch.setattr(liquid, "assign_charges", _refuse)
    monkeypatch.setattr(liquid, "pack_molecules", _refuse)


def _nonbonded(system):
    (force,) = [f for f in system.getForces() if isinstance(f, openmm.NonbondedForce)]
    return force


def _charges(system) -> np.ndarray:
    force = _nonbonded(system)
    return np.array([force.getParticleParameters(i)[0]._value for i in range(system.getNumParticles())])


@pytest.fixture(scope="module")
def scaled_liquid():
    """[N1111][PF6] with CL&P charges (TMA per atom, PF6 per element) scaled by 0.8; the charge method
    (AM1-BCC by default) must never run."""
    from openmm_cgml.reference import Component, build_liquid, liquid

    components = [
        Component(TMA, N_PAIRS, "TMA", partial_charges=TMA_CHARGES, charges_source=CLP, charge_scale=0.8),
        Component(PF6, N_PAIRS, "PF6", partial_charges=PF6_CHARGES, charges_source=CLP, charge_scale=0.8),
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(liquid, "assign_charges", _refuse)
        return build_liquid(components, **SMALL_BOX)


def test_explicit_scaled_charges_are_the_systems(scaled_liquid):
    charges = _charges(scaled_liquid.system)
    expected = np.concatenate([np.tile(TMA_CHARGES, N_PAIRS), np.tile(PF6_PER_ATOM, N_PAIRS)]) * 0.8
    np.testing.assert_allclose(charges, expected, rtol=0, atol=1e-12)
    assert charges.sum() == pytest.approx(0.0, abs=1e-9)
    # 1-4 pairs carry the scaled charges too (Sage's coulomb14scale 0.8333)
    force = _nonbonded(scaled_liquid.system)
    pairs = [force.getExceptionParameters(k) for k in range(force.getNumExceptions())]
    scaled_14 = [(i, j, q._value) for i, j, q, *_ in pairs if q._value != 0]
    assert scaled_14
    for i, j, q in scaled_14:
        assert q == pytest.approx(charges[i] * charges[j] / 1.2, rel=1e-6)


def test_provenance_records_source_method_and_scale(scaled_liquid):
    tma, pf6 = scaled_liquid.info["components"]
    for comp, per_atom in ((tma, TMA_CHARGES), (pf6, PF6_PER_ATOM)):
        assert comp["charge_method"] == "explicit"
        assert comp["charges_source"] == CLP
        assert comp["charge_scale"] == 0.8
        np.testing.assert_allclose(comp["partial_charges_e"], np.array(per_atom) * 0.8, atol=1e-12)
    mol = scaled_liquid.molecules[1]
    assert mol.partial_charges.m_as("elementary_charge").sum() == pytest.approx(-0.8)


def test_charge_scale_multiplies_a_charge_methods_charges_through_the_config():
    from openff.toolkit import Molecule

    from openmm_cgml.reference import ReferenceConfig, build_liquid

    text = f"""
components:
  - {{smiles: "{TMA}", count: {N_PAIRS}, name: TMA, charge_scale: 0.8}}
  - smiles: "{PF6}"
    count: {N_PAIRS}
    name: PF6
    partial_charges: {{P: 1.34, F: -0.39}}
    charges_source: "{CLP}"
    charge_scale: 0.8
box_length: 1.4 nm
cutoff: 0.6 nm
charge_method: gasteiger
"""
    config = ReferenceConfig.from_data(yaml.safe_load(text))
    assert config.components[1].partial_charges == PF6_CHARGES
    liquid = build_liquid([c.component() for c in config.components], box_length=config.box_length,
                          cutoff=config.cutoff, charge_method=config.charge_method)
    gasteiger = Molecule.from_smiles(TMA)
    gasteiger.assign_partial_charges("gasteiger")
    tma = gasteiger.partial_charges.m_as("elementary_charge") * 0.8
    expected = np.concatenate([np.tile(tma, N_PAIRS), np.tile(PF6_PER_ATOM, N_PAIRS) * 0.8])
    np.testing.assert_allclose(_charges(liquid.system), expected, rtol=0, atol=1e-9)
    first, second = liquid.info["components"]
    assert (first["charge_method"], first["charges_source"], first["charge_scale"]) == ("gasteiger", None, 0.8)
    assert (second["charge_method"], second["charges_source"]) == ("explicit", CLP)


def test_wrong_number_of_charges_lists_the_atom_order(nothing_expensive):
    from openmm_cgml.reference import Component, ComponentConfig, build_liquid

    with pytest.raises(ConfigurationError) as info:
        ComponentConfig(smiles=BF4, count=2, name="BF4", partial_charges=[0.96, -0.49, -0.49, -0.49],
                        charges_source=CLP)
    message = str(info.value)
    assert f"'BF4' ({BF4})" in message
    assert "4 charges, but the molecule has 5 atoms" in message
    assert "F, B, F, F, F" in message
    # hydrogens follow the SMILES's atoms, heavy atom by heavy atom
    with pytest.raises(ConfigurationError, match="C, N, C, C, C, H, H, H, H, H, H, H, H, H, H, H, H"):
        build_liquid([Component(TMA, 2, partial_charges=TMA_CHARGES[:-1], charges_source=CLP),
                      Component("[Cl-]", 2)], **SMALL_BOX)


def test_element_mapping_must_match_the_molecules_elements(nothing_expensive):
    from openff.toolkit import Molecule

    from openmm_cgml.reference import ComponentConfig
    from openmm_cgml.reference.liquid import explicit_charges

    with pytest.raises(ConfigurationError, match=r"no charge for element F; expected one charge for each of its "
                                                 r"elements F, B"):
        ComponentConfig(smiles=BF4, count=1, partial_charges={"B": 0.96}, charges_source=CLP)
    with pytest.raises(ConfigurationError, match=r"'Cl' is not an element of the molecule"):
        ComponentConfig(smiles=BF4, count=1, partial_charges={"B": 0.96, "F": -0.49, "Cl": 0.0}, charges_source=CLP)
    # the mapping gives every atom of an element its charge, in the molecule's atom order
    bf4 = explicit_charges(Molecule.from_smiles(BF4), {"B": 0.96, "F": -0.49})
    np.testing.assert_allclose(bf4, [-0.49, 0.96, -0.49, -0.49, -0.49], atol=1e-12)


def test_charges_must_sum_to_the_formal_charge(nothing_expensive):
    from openff.toolkit import Molecule

    from openmm_cgml.reference import Component, ComponentConfig, build_liquid
    from openmm_cgml.reference.liquid import explicit_charges

    with pytest.raises(ConfigurationError, match=r"sum to -0\.9916 e, but the molecule's formal charge is -1 e"):
        ComponentConfig(smiles=BF4, count=1, partial_charges={"B": 0.9684, "F": -0.49}, charges_source=CLP)
    with pytest.raises(ConfigurationError, match=r"sum to -0\.9916 e"):
        build_liquid([Component(BF4, 2, partial_charges={"B": 0.9684, "F": -0.49}, charges_source=CLP),
                      Component(TMA, 2)], **SMALL_BOX)
    # within 0.001 e the remainder is spread evenly, so that the molecule is exactly as charged as its formula
    pf6 = explicit_charges(Molecule.from_smiles(PF6), {"P": 1.3404, "F": -0.39})
    assert pf6.sum() == pytest.approx(-1.0, abs=1e-12)
    np.testing.assert_allclose(pf6 - np.array(PF6_PER_ATOM), -0.0004 / 7 + np.array([0, 0.0004, 0, 0, 0, 0, 0]),
                               atol=1e-12)


def test_charges_need_a_source(nothing_expensive):
    from openmm_cgml.reference import Component, ComponentConfig

    with pytest.raises(ConfigurationError, match=r"partial_charges are given without charges_source"):
        ComponentConfig(smiles=PF6, count=1, partial_charges=PF6_CHARGES)
    with pytest.raises(ConfigurationError, match=r"without charges_source"):
        Component(PF6, 1, partial_charges=PF6_CHARGES)
    with pytest.raises(ConfigurationError, match=r"charges_source .* but no partial_charges are given"):
        ComponentConfig(smiles=PF6, count=1, charges_source=CLP)
    with pytest.raises(ConfigurationError, match=r"expected a list of charges in e"):
        ComponentConfig(smiles=PF6, count=1, partial_charges="1.34 -0.39", charges_source=CLP)


def test_charge_scale_must_be_in_zero_one(nothing_expensive):
    from openmm_cgml.reference import Component, ComponentConfig

    for bad in (0, -0.8, 1.2):
        with pytest.raises(ConfigurationError, match=rf"component 'PF6' \({re.escape(PF6)}\): charge_scale must be "
                                                     rf"greater than 0 and at most 1.*got {float(bad)}"):
            ComponentConfig(smiles=PF6, count=1, name="PF6", charge_scale=bad)
        with pytest.raises(ConfigurationError, match=r"charge_scale must be greater than 0"):
            Component(PF6, 1, charge_scale=bad)
    assert ComponentConfig(smiles=PF6, count=1, charge_scale=1).charge_scale == 1.0


def test_scaling_one_ion_of_a_salt_is_refused_before_charges(nothing_expensive):
    from openmm_cgml.reference import Component, build_liquid

    components = [Component(TMA, 2, "TMA", charge_scale=0.8),
                  Component(PF6, 2, "PF6", partial_charges=PF6_CHARGES, charges_source=CLP)]
    with pytest.raises(InvalidSystemError, match=r"net charge is -0\.4 e .*x charge_scale 0\.8.*same "
                                                 r"charge_scale for the cation and the anion"):
        build_liquid(components, **SMALL_BOX)


def test_charges_on_the_molecule_and_given_are_refused(nothing_expensive):
    from openff.toolkit import Molecule
    from openff.units import unit

    from openmm_cgml.reference import Component, build_liquid

    mol = Molecule.from_smiles(PF6)
    mol.partial_charges = np.array(PF6_PER_ATOM) * unit.elementary_charge
    with pytest.raises(ConfigurationError, match="give one or the other"):
        build_liquid([Component(mol, 2, partial_charges=PF6_CHARGES, charges_source=CLP), Component(TMA, 2)],
                     **SMALL_BOX)
    with pytest.raises(ConfigurationError, match="but none are given"):
        build_liquid([Component(Molecule.from_smiles(PF6), 2, charges_source=CLP), Component(TMA, 2)], **SMALL_BOX)


def test_checkpoint_identity_of_plain_components_is_unchanged():
    from openmm_cgml.reference import ReferenceConfig
    from openmm_cgml.reference.run import _identity

    base = dict(box_length="1.4 nm", cutoff="0.6 nm", charge_method="gasteiger")
    plain = ReferenceConfig.from_data(dict(base, components=[dict(smiles=TMA, count=2), dict(smiles="[Cl-]", count=2)]))
    assert _identity(plain)["components"] == [{"smiles": TMA, "count": 2, "name": None},
                                              {"smiles": "[Cl-]", "count": 2, "name": None}]
    scaled = ReferenceConfig.from_data(dict(base, components=[dict(smiles=TMA, count=2, charge_scale=0.8),
                                                               dict(smiles="[Cl-]", count=2, charge_scale=0.8)]))
    assert _identity(scaled)["components"][0]["charge_scale"] == 0.8


def test_dataset_records_the_charges_provenance(tmp_path):
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.reference import run_reference

    config = dict(
        components=[dict(smiles=TMA, count=N_PAIRS, name="TMA", partial_charges=TMA_CHARGES, charges_source=CLP,
                         charge_scale=0.8),
                    dict(smiles=PF6, count=N_PAIRS, name="PF6", partial_charges=PF6_CHARGES, charges_source=CLP,
                         charge_scale=0.8)],
        **SMALL_BOX, minimize=False, nvt="0 ps", npt="0 ps", production="0.004 ps", report_interval="0.002 ps",
        checkpoint_interval="0.004 ps", platform="CPU", threads=1, fields=["positions"],
    )
    result = run_reference(config, tmp_path / "il.h5")
    meta = open_dataset(result.dataset).metadata
    tma, pf6 = meta["components"]
    assert (tma["charge_method"], tma["charges_source"], tma["charge_scale"]) == ("explicit", CLP, 0.8)
    assert pf6["partial_charges_e"] == pytest.approx([q * 0.8 for q in PF6_PER_ATOM])
    assert meta["configuration"]["components"][1]["partial_charges"] == PF6_CHARGES
    system = openmm.XmlSerializer.deserialize(result.system_xml.read_text())
    assert _charges(system)[:17] == pytest.approx(np.array(TMA_CHARGES) * 0.8)


def test_bf4_builds_with_the_clandp_parameters_layered_on_sage(tmp_path):
    """Sage types no boron; the example's .offxml layered on it (``extra_forcefields``) gives BF4- CL&P's bond,
    angle and Lennard-Jones parameters, and a missing or broken file is refused before packing."""
    from pathlib import Path

    from openmm_cgml.reference import Component, build_liquid
    from openmm_cgml.reference.liquid import load_forcefield

    offxml = Path(__file__).resolve().parents[1] / "examples" / "ionic_liquid" / "bf4_clandp.offxml"
    components = [Component(TMA, N_PAIRS, "TMA", partial_charges=TMA_CHARGES, charges_source=CLP),
                  Component(BF4, N_PAIRS, "BF4", partial_charges={"B": 0.96, "F": -0.49}, charges_source=CLP)]
    liq = build_liquid(components, extra_forcefields=[offxml], **SMALL_BOX)
    assert liq.info["extra_forcefields"] == [str(offxml)]
    bf4 = [a.index for a in liq.topology.atoms() if a.residue.name == "BF4"]
    bonds = [f for f in liq.system.getForces() if isinstance(f, openmm.HarmonicBondForce)][0]
    b_f = [bonds.getBondParameters(k) for k in range(bonds.getNumBonds())
           if bonds.getBondParameters(k)[0] in bf4]
    assert len(b_f) == 4 * N_PAIRS
    for _, _, r0, k in b_f:  # 1.394 A; CL&P's k/2 (r - r0)^2 with k 3235 kJ/mol/A^2, as OpenMM writes it
        assert r0._value == pytest.approx(0.1394) and k._value == pytest.approx(323500.0)
    force = _nonbonded(liq.system)
    boron = next(i for i in bf4 if next(a for a in liq.topology.atoms() if a.index == i).element.symbol == "B")
    q, sigma, eps = force.getParticleParameters(boron)
    assert q._value == pytest.approx(0.96) and sigma._value == pytest.approx(0.358) and eps._value == pytest.approx(
        0.3975)
    with pytest.raises(ConfigurationError, match="do not exist"):
        load_forcefield("openff-2.2.0", [tmp_path / "missing.offxml"])
    broken = tmp_path / "broken.offxml"
    broken.write_text("<SMIRNOFF version='0.3'><Bonds version='0.4'><Bond smirks='[#5:1]' /></Bonds></SMIRNOFF>")
    with pytest.raises(ConfigurationError, match="do not load on top of"):
        load_forcefield("openff-2.2.0", [broken])
    # without it Sage cannot type boron: the reason the example needs the file
    with pytest.raises(Exception, match="B"):
        build_liquid(components, **SMALL_BOX)
