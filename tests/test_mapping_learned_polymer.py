"""The learned mapping of polymer chains with every repeat unit mapped the same way (learn_repeat_unit_mapping, the
``learned_repeat_unit`` method), compared with the hand mapping by repeat unit by reconstruction error.

The data: 6 chains of a PEO oligomer CH3-(O-CH2-CH2)4-O-CH3, frames made of RDKit/OpenFF conformers under random
rigid rotations and translations plus 0.01 nm of Gaussian noise (no simulation).
"""

import numpy as np
import pytest
from conftest import requires_openff
from scipy.spatial.transform import Rotation

from openmm_cgml.exceptions import ConfigurationError, InvalidMappingError
from openmm_cgml.mapping import (
    MAPPINGS,
    CGMapping,
    create_mapping,
    from_repeat_unit,
    learn_repeat_unit_mapping,
    reconstruction_rmsd,
)

PEO = "COCCOCCOCCOCCOC"        # CH3-(O-CH2-CH2)4-O-CH3: 4 repeat units, a CH3 (head) and an O-CH3 (tail) end
UNIT = "[O][CH2][CH2]"
N_MOL, N_FRAMES, N_UNITS = 6, 20, 4


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The auto-encoder's tensors are tiny: one thread is fastest, and much faster on a loaded machine."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def melt():
    """(topology, positions (n_frames, n_atoms, 3) nm) of N_MOL PEO chains, rigid conformers moved at random."""
    pytest.importorskip("openff.toolkit")
    from openff.toolkit import Molecule, Topology

    mol = Molecule.from_smiles(PEO, allow_undefined_stereo=True)
    mol.generate_conformers(n_conformers=3)
    conformers = [np.asarray(c.m_as("nanometer")) for c in mol.conformers]
    top = Topology.from_molecules([mol] * N_MOL).to_openmm()
    rng = np.random.default_rng(0)
    n = mol.n_atoms
    x = np.zeros((N_FRAMES, N_MOL * n, 3))
    for f in range(N_FRAMES):
        for m in range(N_MOL):
            c = conformers[rng.integers(len(conformers))]
            rot = Rotation.random(random_state=rng).as_matrix()
            x[f, m * n:(m + 1) * n] = (c - c.mean(0)) @ rot.T + rng.uniform(0, 4, 3) + rng.normal(0, 0.01, (n, 3))
    return top, x


def _unit_patterns(mapping, top):
    """Per repeat unit of every chain: the bead of each of its heavy atoms (in atom order), relative to the unit's
    first bead.  The units are the middle beads of the hand mapping with end groups as beads of their own."""
    units = from_repeat_unit(top, PEO, UNIT, end_groups="bead")
    bead_of = np.asarray(mapping.force_matrix.argmax(axis=0)).ravel()
    patterns = []
    for (t, atoms), (_, hand_atoms) in zip(mapping.molecules, units.molecules):
        assert atoms == hand_atoms
        mt = units.molecule_types[t]
        for bead in mt.beads[1:-1]:
            heavy = [atoms[i] for i in bead if mt.elements[i] != "H"]
            patterns.append(tuple(int(bead_of[a] - bead_of[heavy[0]]) for a in heavy))
    return patterns


def _check_chain(mapping, top, beads_per_chain):
    """Every atom in one bead, hydrogens with their heavy atom, beads bonded one after the other along each chain."""
    np.testing.assert_array_equal(np.asarray(mapping.force_matrix.sum(axis=0)).ravel(), 1)
    bead_of = np.asarray(mapping.force_matrix.argmax(axis=0)).ravel()
    for a, b in top.bonds():
        if "H" in (a.element.symbol, b.element.symbol):
            assert bead_of[a.index] == bead_of[b.index]
    assert mapping.n_beads == N_MOL * beads_per_chain
    expected = [(m * beads_per_chain + k, m * beads_per_chain + k + 1) for m in range(N_MOL)
                for k in range(beads_per_chain - 1)]
    assert [tuple(b) for b in mapping.bonds.tolist()] == expected


@requires_openff
def test_one_bead_per_unit_is_the_hand_mapping(melt):
    """Nothing to learn with one bead per unit: the hand mapping itself, with its reconstruction error."""
    top, x = melt
    hand = from_repeat_unit(top, PEO, UNIT)
    learned = learn_repeat_unit_mapping(top, PEO, UNIT, x, beads_per_unit=1)
    assert learned == hand
    rmsd = reconstruction_rmsd(learned, x)["UNK"]
    assert rmsd == pytest.approx(reconstruction_rmsd(hand, x)["UNK"], rel=1e-12)
    assert 0.03 < rmsd < 0.2     # nm: measured 0.074


@requires_openff
def test_two_beads_per_unit_beat_the_hand_mapping_with_every_unit_mapped_alike(melt):
    top, x = melt
    hand_rmsd = reconstruction_rmsd(from_repeat_unit(top, PEO, UNIT), x)["UNK"]
    learned = learn_repeat_unit_mapping(top, PEO, UNIT, x, beads_per_unit=2, epochs=200)
    _check_chain(learned, top, 2 * N_UNITS)     # end groups merged into the terminal beads
    rmsd = reconstruction_rmsd(learned, x)["UNK"]
    assert rmsd < 0.7 * hand_rmsd               # measured 0.033 nm against 0.074 nm
    patterns = _unit_patterns(learned, top)
    assert len(patterns) == N_MOL * N_UNITS and len(set(patterns)) == 1
    assert sorted(set(patterns[0])) == [0, 1]   # two beads in every unit, in the same arrangement
    # the beads of a unit have their own types (M1, M2); the chain ends are typed apart
    mt = learned.molecule_types[0]
    assert set(mt.bead_types[1:-1]) == {"M1", "M2"} and mt.bead_types[0] != mt.bead_types[-1]
    assert all(t.startswith("E") for t in (mt.bead_types[0], mt.bead_types[-1]))
    assert CGMapping.from_json(learned.to_json()) == learned
    # deterministic with the seed
    assert learn_repeat_unit_mapping(top, PEO, UNIT, x, beads_per_unit=2, epochs=200) == learned


@requires_openff
def test_end_groups_as_beads_of_their_own(melt):
    top, x = melt
    learned = learn_repeat_unit_mapping(top, PEO, UNIT, x, beads_per_unit=2, end_groups="bead", epochs=200,
                                        restarts=1)
    _check_chain(learned, top, 2 * N_UNITS + 2)
    mt = learned.molecule_types[0]
    assert [sorted(mt.elements[i] for i in b) for b in (mt.beads[0], mt.beads[-1])] == \
        [["C", "H", "H", "H"], ["C", "H", "H", "H", "O"]]
    assert len(set(_unit_patterns(learned, top))) == 1
    with pytest.raises(InvalidMappingError, match="end_groups='error' refuses them"):
        learn_repeat_unit_mapping(top, PEO, UNIT, x, beads_per_unit=2, end_groups="error")


@requires_openff
@pytest.mark.parametrize("beads, message", [
    (0, r"beads_per_unit must be a whole number >= 1 \(beads per repeat unit\), got 0"),
    (True, "beads_per_unit must be a whole number >= 1"),
    (4, r"beads_per_unit=4 but the repeat unit '\[O\]\[CH2\]\[CH2\]' of molecule type 0 \(UNK, 37 atoms\) has 3 "
        r"heavy atoms; expected 1 <= beads_per_unit <= 3"),
])
def test_bad_beads_per_unit_is_refused(melt, beads, message):
    top, x = melt
    with pytest.raises(InvalidMappingError, match=message):
        learn_repeat_unit_mapping(top, PEO, UNIT, x[:2], beads_per_unit=beads)


@requires_openff
def test_bad_data_is_refused(melt):
    top, x = melt
    with pytest.raises(ConfigurationError, match="positions must have shape"):
        learn_repeat_unit_mapping(top, PEO, UNIT, x[:, :10], beads_per_unit=2)
    with pytest.raises(ConfigurationError, match="needs the AA forces"):
        learn_repeat_unit_mapping(top, PEO, UNIT, x, beads_per_unit=2, force_weight=1.0)
    with pytest.raises(ConfigurationError, match="epochs"):
        learn_repeat_unit_mapping(top, PEO, UNIT, x, beads_per_unit=2, epochs=0)


@requires_openff
def test_registry_method_learns_from_the_dataset(melt, tmp_path):
    from openmm_cgml.dataset import TrajectoryWriter

    top, x = melt
    assert "learned_repeat_unit" in MAPPINGS.names()
    masses = np.array([a.element.mass._value for a in top.atoms()])
    box = np.eye(3) * 6.0
    with TrajectoryWriter(tmp_path / "aa.h5", top, masses, {"temperature": "300 K"}, fields=("positions",)) as w:
        for k, frame in enumerate(x):
            w.append(positions=frame, box=box, step=k, time=0.1 * k)
    options = {"dataset": str(tmp_path / "aa.h5"), "smiles": [PEO], "repeat_smarts": UNIT, "beads_per_unit": 2,
               "epochs": 200, "restarts": 1}
    mapping = create_mapping("learned_repeat_unit", top, options, masses=masses)
    direct = learn_repeat_unit_mapping(top, PEO, UNIT, x.astype(np.float32), beads_per_unit=2, box=box,
                                       masses=masses, epochs=200, restarts=1)
    assert mapping == direct
    with pytest.raises(ConfigurationError, match="needs the option 'repeat_smarts'"):
        create_mapping("learned_repeat_unit", top, {k: v for k, v in options.items() if k != "repeat_smarts"})
