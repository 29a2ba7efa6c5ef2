"""Polymer chains mapped by repeat unit (from_repeat_unit, the ``repeat_unit`` method) and the chain-in-box check."""

import logging

import numpy as np
import pytest
from conftest import requires_openff
from openmm import app

from openmm_cgml.exceptions import ConfigurationError, InvalidMappingError, InvalidSystemError
from openmm_cgml.mapping import MAPPINGS, CGMapping, check_chain_box, create_mapping, from_repeat_unit

C12 = "C" * 12
PEO = "COCCOCCOCCOCCOC"        # CH3-(O-CH2-CH2)4-O-CH3


def _molecule(smiles):
    from openff.toolkit import Molecule

    return Molecule.from_smiles(smiles, allow_undefined_stereo=True)


def _topology(*molecules):
    from openff.toolkit import Topology

    return Topology.from_molecules([_molecule(m) if isinstance(m, str) else m for m in molecules]).to_openmm()


def _heavy(mt, bead):
    return [i for i in bead if mt.elements[i] != "H"]


def _check_partition(mapping, topology):
    """Every atom in exactly one bead, hydrogens with their heavy atom, beads whole and bonded in chain order."""
    np.testing.assert_array_equal(np.asarray(mapping.force_matrix.sum(axis=0)).ravel(), 1)
    bead_of = np.asarray(mapping.force_matrix.argmax(axis=0)).ravel()
    for a, b in topology.bonds():
        if "H" in (a.element.symbol, b.element.symbol):
            assert bead_of[a.index] == bead_of[b.index]
    offset = 0
    for t, _ in mapping.molecules:
        n = mapping.molecule_types[t].n_beads
        mine = [tuple(b) for b in mapping.bonds.tolist() if offset <= b[0] < offset + n]
        assert mine == [(offset + k, offset + k + 1) for k in range(n - 1)]   # a chain of beads, in order
        offset += n


# ----------------------------------------------------------------------------- alkane / polyethylene
@requires_openff
def test_c12_alkane_by_ethylene_units_with_merged_ends():
    top = _topology(C12)
    mapping = from_repeat_unit(top, _molecule(C12), "[CH2][CH2]")
    mt = mapping.molecule_types[0]
    assert mapping.n_beads == 5   # 10 CH2 -> 5 units; each CH3 joins its terminal bead
    assert [_heavy(mt, b) for b in mt.beads] == [[0, 1, 2], [3, 4], [5, 6], [7, 8], [9, 10, 11]]
    _check_partition(mapping, top)
    assert mapping.bead_types == ("E", "M", "M", "M", "E")     # the ends are C3H7, the middle C2H4
    assert mt.bead_names == ("E1", "M1", "M2", "M3", "E2")
    np.testing.assert_allclose(mapping.bead_masses, [43.089, 28.054, 28.054, 28.054, 43.089], atol=0.01)
    # one type for all, or end types forced; the SMILES or an RDKit molecule serve as well as OpenFF's
    flat = from_repeat_unit(top, C12, "[CH2][CH2]", end_types=False)
    assert flat.bead_types == ("M",) * 5 and flat.molecule_types[0].beads == mt.beads
    assert from_repeat_unit(top, _molecule(C12).to_rdkit(), "[CH2][CH2]", end_types=True) == mapping
    # end groups as beads of their own
    own = from_repeat_unit(top, C12, "[CH2][CH2]", end_groups="bead")
    assert [_heavy(own.molecule_types[0], b) for b in own.molecule_types[0].beads] == \
        [[0], [1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11]]
    assert own.bead_types == ("E",) + ("M",) * 5 + ("E",)
    _check_partition(own, top)


@requires_openff
def test_units_per_bead_groups_consecutive_units_and_the_remainder_is_refused_or_joined():
    c14 = "C" * 14                                 # 12 CH2: 6 units
    top = _topology(c14)
    mapping = from_repeat_unit(top, c14, "[CH2][CH2]", units_per_bead=2)
    mt = mapping.molecule_types[0]
    assert [_heavy(mt, b) for b in mt.beads] == [[0, 1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12, 13]]
    assert mapping.bead_types == ("E", "M", "E")
    _check_partition(mapping, top)
    assert from_repeat_unit(top, c14, "[CH2][CH2]", units_per_bead=3).n_beads == 2
    # C12 has 5 units: 2 per bead leaves one over
    top12 = _topology(C12)
    with pytest.raises(InvalidMappingError, match="5 repeat units .* not a multiple of units_per_bead=2: 1 unit "
                                                  "would be left over.*remainder='join'"):
        from_repeat_unit(top12, C12, "[CH2][CH2]", units_per_bead=2)
    joined = from_repeat_unit(top12, C12, "[CH2][CH2]", units_per_bead=2, remainder="join")
    mt = joined.molecule_types[0]
    assert [_heavy(mt, b) for b in mt.beads] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10, 11]]
    assert joined.bead_types == ("E1", "E2")      # two ends of different composition (C5H11, C7H15)
    _check_partition(joined, top12)


# ----------------------------------------------------------------------------- poly(ethylene oxide)
@requires_openff
@pytest.mark.parametrize("smarts", ["[O][CH2][CH2]", "[CH2][CH2][O]"])
def test_peo_oligomer_by_ether_units(smarts):
    top = _topology(PEO)
    mapping = from_repeat_unit(top, PEO, smarts)
    mt = mapping.molecule_types[0]
    assert [_heavy(mt, b) for b in mt.beads] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12, 13, 14]]
    _check_partition(mapping, top)
    formulas = ["".join(sorted(mt.elements[i] for i in b)) for b in mt.beads]
    assert formulas[1] == formulas[2] == "CCHHHHO"
    # CH3-O... and ...O-CH3 ends differ from the middle and from each other
    assert mapping.bead_types == ("E1", "M", "M", "E2")
    # hydroxyl-terminated: the extra O is an end group
    ho = "OCCOCCOCCOCCO"
    top = _topology(ho)
    own = from_repeat_unit(top, ho, smarts, end_groups="bead")
    assert [_heavy(own.molecule_types[0], b) for b in own.molecule_types[0].beads] == \
        [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11], [12]]
    _check_partition(own, top)


# ----------------------------------------------------------------------------- several chains
@requires_openff
def test_two_chains_are_mapped_identically_whatever_their_atom_order():
    first = _molecule(C12)
    rng = np.random.default_rng(3)
    order = rng.permutation(first.n_atoms)
    second = first.remap({int(old): int(new) for new, old in enumerate(order)}, current_to_new=True)
    top = _topology(first, second)
    mapping = from_repeat_unit(top, first, "[CH2][CH2]")
    assert len(mapping.molecule_types) == 1 and mapping.n_molecules == 2
    assert mapping.bead_types == ("E", "M", "M", "M", "E") * 2
    np.testing.assert_allclose(mapping.bead_masses[:5], mapping.bead_masses[5:])
    _check_partition(mapping, top)
    # the second chain's beads hold its carbons in chain order: bead k of both chains, atom for atom
    atoms = np.array(mapping.molecules[1][1])
    carbons = [sorted(int(a) for a in atoms[list(_heavy(mapping.molecule_types[0], b))])
               for b in mapping.molecule_types[0].beads]
    new_index = {int(old): 38 + new for new, old in enumerate(order)}   # second molecule starts at atom 38
    assert carbons == [sorted(new_index[c] for c in chunk) for chunk in
                       ([0, 1, 2], [3, 4], [5, 6], [7, 8], [9, 10, 11])]


@requires_openff
def test_chains_of_different_lengths_share_their_bead_types():
    top = _topology(C12, "C" * 16, "CCCCCCCCCCO")
    mapping = from_repeat_unit(top, [C12, "C" * 16, "CCCCCCCCCCO"], "[CH2][CH2]")
    types = [mt.bead_types for mt in mapping.molecule_types]
    assert types[0] == ("E1", "M", "M", "M", "E1") and types[1] == ("E1",) + ("M",) * 5 + ("E1",)
    assert types[2] == ("E1", "M", "M", "E2")    # the CH2-OH end: a composition of its own
    _check_partition(mapping, top)


# ----------------------------------------------------------------------------- refusals
BAD = [
    (C12, "[CH2][O]", {}, "matches nothing in molecule type 0 .* expected the SMARTS of one repeat unit"),
    (C12, "[CH2", {}, "cannot parse the repeat-unit SMARTS"),
    (PEO, "[O][CH2][CH2][O]", {}, "overlap along the chain .* shares atoms .* must cover exactly one repeat unit"),
    ("CCCCCOCCCCCC", "[CH2][CH2]", {},
     r"1 atom \(O\) is left over in the middle of the chain, not at its ends.*heavy atom \[5\] \(O\) next to "
     "repeat units 2 and 3"),
    ("CCCCCC(CC)CCCCCC", "[CH2][CH2]", {},
     r"9 atoms \(C3H6\) are left over in the middle of the chain.*heavy atoms \[5, 6, 7\]"),
    ("CCCCCCC(CCCCCC)CCCCCC", "[CH2][CH2]", {}, "branched and its backbone is ambiguous: 3 chain ends"),
    ("CCC(C)CC(C)C(C)CCC(C)C", "[CH2][CH]([CH3])", {},
     "not all oriented the same way along the chain: units 1 and 2 .* but units 2 and 3"),
    (C12, "[CH2][CH2]", {"units_per_bead": 0},
     r"units_per_bead must be a whole number >= 1 \(repeat units per bead\), got 0"),
    (C12, "[CH2][CH2]", {"units_per_bead": 6}, r"units_per_bead=6 but .* only 5 repeat units.*1 <= units_per_bead "
                                               "<= 5"),
    (C12, "[CH2][CH2]", {"end_groups": "error"}, r"atoms at the chain ends .* 4 atoms \(CH3; heavy atom \[0\].*"
                                                 "end_groups='error' refuses them"),
    (C12, "[CH2][CH2]", {"end_groups": "drop"}, r"end_groups must be one of \['merge', 'bead', 'error'\]"),
    (C12, "[CH2][CH2]", {"end_types": "maybe"}, "end_types must be 'auto', True or False"),
]


@requires_openff
@pytest.mark.parametrize("smiles, smarts, options, message", BAD, ids=[f"{b[1]}-{b[2]}-{b[0]}" for b in BAD])
def test_bad_input_is_refused_with_the_problem_named(smiles, smarts, options, message):
    with pytest.raises(InvalidMappingError, match=message):
        from_repeat_unit(_topology(smiles), smiles, smarts, **options)


@requires_openff
def test_a_molecule_without_its_description_is_refused():
    with pytest.raises(InvalidMappingError, match="no molecule given to from_repeat_unit matches molecule type 0"):
        from_repeat_unit(_topology(C12), "CCCC", "[CH2][CH2]")


# ----------------------------------------------------------------------------- serialisation and registry
@requires_openff
def test_json_round_trip_keeps_the_chain_mapping(tmp_path):
    top = _topology(C12, C12)
    mapping = from_repeat_unit(top, C12, "[CH2][CH2]", end_groups="bead", weights="centroid")
    again = CGMapping.from_json(mapping.to_json(tmp_path / "pe.json"))
    assert again == mapping
    assert again.bead_types == mapping.bead_types and again.bead_names == mapping.bead_names
    np.testing.assert_array_equal(again.position_matrix.toarray(), mapping.position_matrix.toarray())
    assert CGMapping.from_data(mapping.to_data()) == mapping


@requires_openff
def test_registry_method_and_map_config():
    from openmm_cgml.workflows.map import MappingSpec, build_mapping

    assert "repeat_unit" in MAPPINGS.names()
    top = _topology(PEO, PEO)
    options = {"repeat_smarts": "[O][CH2][CH2]", "smiles": [PEO], "units_per_bead": 2, "end_groups": "merge",
               "end_types": True, "weights": "centroid"}
    mapping = create_mapping("repeat_unit", top, options)
    assert mapping == from_repeat_unit(top, PEO, "[O][CH2][CH2]", units_per_bead=2, end_types=True,
                                       weights="centroid")
    assert mapping.n_beads == 4
    # as `cgml map` reads it from YAML: smiles and weights are mapping keys, the rest goes under options
    spec = MappingSpec.from_data({"method": "repeat_unit", "smiles": [PEO], "weights": "centroid",
                                  "options": {"repeat_smarts": "[O][CH2][CH2]", "units_per_bead": 2,
                                              "end_types": True}})
    assert build_mapping(spec, top) == mapping
    with pytest.raises(ConfigurationError, match="'repeat_unit' needs the option 'repeat_smarts'"):
        create_mapping("repeat_unit", top, {"smiles": [PEO]})


# ----------------------------------------------------------------------------- chains in their box
def _alkane(n_carbons, n_chains=1):
    """Linear alkanes (OpenMM topology, no OpenFF needed): carbons first, then each carbon's hydrogens."""
    top = app.Topology()
    c, h = app.element.carbon, app.element.hydrogen
    for _ in range(n_chains):
        res = top.addResidue("ALK", top.addChain())
        carbons = [top.addAtom(f"C{i}", c, res) for i in range(n_carbons)]
        for a, b in zip(carbons, carbons[1:]):
            top.addBond(a, b)
        for i, ci in enumerate(carbons):
            for k in range(3 if i in (0, n_carbons - 1) else 2):
                top.addBond(ci, top.addAtom(f"H{i}{k}", h, res))
    return top


def _positions(top, carbon_xyz):
    """Hydrogens 0.109 nm from their carbon, off the chain's axis."""
    x = np.zeros((top.getNumAtoms(), 3))
    carbon_of = {}
    for a, b in top.bonds():
        if a.element.symbol == "C" and b.element.symbol == "H":
            carbon_of[b.index] = a.index
    carbons = [a.index for a in top.atoms() if a.element.symbol == "C"]
    x[carbons] = carbon_xyz
    count: dict = {}
    for hyd, car in sorted(carbon_of.items()):
        k = count[car] = count.get(car, -1) + 1
        angle = 2 * np.pi * k / 3
        x[hyd] = x[car] + 0.109 * np.array([0.3, np.cos(angle), np.sin(angle)])
    return x


def test_an_extended_chain_in_a_small_box_is_reported_with_numbers(caplog):
    from scipy.spatial.distance import pdist

    top = _alkane(12)
    zigzag = np.array([[0.126 * k, 0.05 * (-1) ** k, 0.0] for k in range(12)]) + 0.2
    x = _positions(top, zigzag)
    box = np.eye(3) * 2.0
    with caplog.at_level(logging.WARNING, logger="openmm_cgml"):
        report = check_chain_box(top, box, x)
    assert report.too_long == (0,) and not report.ok and report.method == "extent"
    assert report.extents[0] == pytest.approx(pdist(x).max()) and report.extents[0] > 1.3
    assert report.limit == pytest.approx(1.0)
    assert "1 of 1 molecules are too long for the box" in caplog.text
    assert f"spans {report.extents[0]:.3g} nm" in caplog.text and "1 nm" in caplog.text
    assert "box widths [2.0, 2.0, 2.0] nm" in caplog.text
    # split by the periodic boundary: unwrapped along its bonds, the same extent
    wrapped = np.mod(x + [1.5, 0.0, 0.0], 2.0)
    assert check_chain_box(top, box, wrapped, on_problem="ignore").extents[0] == pytest.approx(report.extents[0])
    with pytest.raises(InvalidSystemError, match=r"spans 1\.\d+ nm .* at or over 0.5 x the smallest box width = "
                                                 r"1 nm .* wider than 2\.\d+ nm"):
        check_chain_box(top, box, x, on_problem="raise")
    # a big enough box: silent
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="openmm_cgml"):
        assert check_chain_box(top, np.eye(3) * 3.5, x).ok
    assert caplog.text == ""


def test_a_coiled_or_short_chain_passes_silently(caplog):
    top = _alkane(12, n_chains=2)
    turn = np.arange(12) * 2 * np.pi / 5
    helix = np.stack([0.22 * np.cos(turn), 0.22 * np.sin(turn), 0.03 * np.arange(12)], axis=1) + 1.0
    x = _positions(top, np.concatenate([helix, helix + [0.5, 0.5, 0.0]]))
    with caplog.at_level(logging.WARNING, logger="openmm_cgml"):
        report = check_chain_box(top, np.eye(3) * 2.0, x)
    assert report.ok and report.extents.shape == (2,) and report.extents.max() < 1.0
    short = _alkane(3)
    with caplog.at_level(logging.WARNING, logger="openmm_cgml"):
        assert check_chain_box(short, np.eye(3) * 2.0).ok          # contour: 2 bonds
    assert caplog.text == ""


def test_without_positions_the_contour_length_is_checked(caplog):
    top = _alkane(12)
    with caplog.at_level(logging.WARNING, logger="openmm_cgml"):
        report = check_chain_box(top, np.eye(3) * 3.0)
    assert report.method == "contour" and report.extents[0] == pytest.approx(11 * 0.154)
    assert "11 bonds x 0.154 nm" in caplog.text and "pass positions=" in caplog.text
    assert check_chain_box(top, np.eye(3) * 4.0).ok
    with pytest.raises(InvalidSystemError, match="needs a box"):
        check_chain_box(top)
    top.setPeriodicBoxVectors(np.eye(3) * 4.0)
    assert check_chain_box(top).ok
