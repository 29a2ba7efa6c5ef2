"""The learned mapping (coarse-graining auto-encoder) recovers the beads that generated synthetic data.

Two known answers, each built so that the automatic (mass-balanced) partition gets it wrong:
- geometry: a 6-atom chain whose atoms 0-3 form a compact rigid cluster and 4-5 a rigid pair 0.4 nm away; the
  reconstruction loss alone must find {0,1,2,3} {4,5} (balanced: {0,1,2} {3,4,5}) with a lower reconstruction RMSD;
- forces: a floppy chain (no geometric clue) whose forces cancel inside {0,1,2,3} and inside {4,5}; with the
  mapped-force regulariser the encoder must find those groups, without it the compact balanced split.
"""

import json

import numpy as np
import pytest
from openmm import app
from scipy.spatial.transform import Rotation

from openmm_cgml.exceptions import ConfigurationError
from openmm_cgml.mapping import CGMapping, learn_mapping, reconstruction_rmsd
from openmm_cgml.mapping._learned import _units

CLUSTERS = ((0, 1, 2, 3), (4, 5))
N_MOL, N_FRAMES = 10, 20


def chain_topology(n_mol=N_MOL, hydrogens=False):
    top = app.Topology()
    chain = top.addChain()
    carbon, hydrogen = app.Element.getBySymbol("C"), app.Element.getBySymbol("H")
    for _ in range(n_mol):
        res = top.addResidue("CLU", chain)
        atoms = [top.addAtom(f"C{i}", carbon, res) for i in range(6)]
        for i in range(5):
            top.addBond(atoms[i], atoms[i + 1])
        if hydrogens:  # one hydrogen on every carbon, after the carbons
            for i in range(6):
                top.addBond(atoms[i], top.addAtom(f"H{i}", hydrogen, res))
    return top


def compact_clusters(rng, n_frames=N_FRAMES, n_mol=N_MOL):
    t_a = np.array([[0, 0, 0], [0.06, 0, 0], [0.03, 0.05, 0], [0.03, 0.02, 0.05]])
    t_b = np.array([[0, 0, 0], [0.06, 0, 0]])
    x = np.zeros((n_frames, 6 * n_mol, 3))
    for f in range(n_frames):
        for m in range(n_mol):
            ra, rb = Rotation.random(2, random_state=rng).as_matrix()
            a = (t_a - t_a.mean(0)) @ ra.T
            d = rng.normal(size=3)
            b = a[3] + 0.4 * d / np.linalg.norm(d) + t_b @ rb.T
            x[f, 6 * m : 6 * m + 6] = np.vstack([a, b]) + rng.normal(0, 0.003, (6, 3)) + rng.uniform(0, 5, 3)
    return x


def floppy_chain_with_cluster_forces(rng, n_frames=N_FRAMES, n_mol=N_MOL):
    x, f = np.zeros((n_frames, 6 * n_mol, 3)), np.zeros((n_frames, 6 * n_mol, 3))
    for k in range(n_frames):
        for m in range(n_mol):
            steps = rng.normal(size=(5, 3))
            steps *= 0.15 / np.linalg.norm(steps, axis=1, keepdims=True)
            x[k, 6 * m : 6 * m + 6] = np.vstack([np.zeros(3), np.cumsum(steps, 0)]) + rng.uniform(0, 5, 3)
            fa, fb = rng.normal(0, 500, (4, 3)), rng.normal(0, 500, (2, 3))
            f[k, 6 * m : 6 * m + 6] = np.vstack([fa - fa.mean(0), fb - fb.mean(0)]) + rng.normal(0, 20, (6, 3))
    return x, f


def test_reconstruction_finds_the_rigid_clusters():
    top = chain_topology()
    x = compact_clusters(np.random.default_rng(0))
    result = learn_mapping(top, x, 2, epochs=300)
    assert result.mapping.molecule_types[0].beads == CLUSTERS
    assert result.mapping.n_beads == 2 * N_MOL and result.disconnected == {"CLU": []}
    auto = CGMapping.automatic(top, 2)
    assert auto.molecule_types[0].beads != CLUSTERS
    learned_rmsd = reconstruction_rmsd(result.mapping, x)["CLU"]
    assert learned_rmsd == pytest.approx(result.rmsd_nm["CLU"])
    assert learned_rmsd < 0.95 * reconstruction_rmsd(auto, x)["CLU"]
    assert result.probabilities["CLU"].shape == (6, 2) and result.probabilities["CLU"].max(1).min() > 0.9
    assert result.history["CLU"][-1] < result.history["CLU"][0]


def test_force_regulariser_finds_the_groups_whose_forces_cancel():
    top = chain_topology()
    x, f = floppy_chain_with_cluster_forces(np.random.default_rng(1))
    plain = learn_mapping(top, x, 2, epochs=300)
    assert plain.mapping.molecule_types[0].beads != CLUSTERS  # no geometric clue: the compact split
    regular = learn_mapping(top, x, 2, forces=f, force_weight=1.0, epochs=300)
    assert regular.mapping.molecule_types[0].beads == CLUSTERS
    with pytest.raises(ConfigurationError, match="needs the AA forces"):
        learn_mapping(top, x, 2, force_weight=1.0)
    with pytest.raises(ConfigurationError, match="force_weight must be >= 0"):
        learn_mapping(top, x, 2, forces=f, force_weight=-1.0)


def test_hydrogens_stay_with_their_heavy_atom():
    """Hydrogens are not assigned on their own: each joins its carbon's bead (so no X-H constraint is split)."""
    top = chain_topology(hydrogens=True)
    elements = ["C"] * 6 + ["H"] * 6
    bonds = [(i, i + 1) for i in range(5)] + [(i, 6 + i) for i in range(6)]
    assert _units(elements, bonds) == [[i, 6 + i] for i in range(6)]
    rng = np.random.default_rng(2)
    heavy = compact_clusters(rng).reshape(N_FRAMES, N_MOL, 6, 3)
    h = heavy + rng.normal(0, 0.11, heavy.shape) * np.array([1.0, 1.0, 1.0])  # hydrogens near their carbons
    x = np.concatenate([heavy, h], axis=2).reshape(N_FRAMES, 12 * N_MOL, 3)
    beads = learn_mapping(top, x, 2, epochs=300).mapping.molecule_types[0].beads
    assert beads == ((0, 1, 2, 3, 6, 7, 8, 9), (4, 5, 10, 11))


def test_several_molecule_types_and_a_single_bead():
    """Two molecule types in one topology (as in an ionic liquid): beads per residue name; a one-bead type needs no
    training."""
    top = chain_topology()
    res = top.addResidue("ION", top.addChain())
    top.addAtom("N", app.Element.getBySymbol("N"), res)
    rng = np.random.default_rng(5)
    x = np.concatenate([compact_clusters(rng), rng.uniform(0, 5, (N_FRAMES, 1, 3))], axis=1)
    result = learn_mapping(top, x, {"CLU": 2, "ION": 1}, epochs=300)
    beads = {mt.name: mt.beads for mt in result.mapping.molecule_types}
    assert beads == {"CLU": CLUSTERS, "ION": ((0,),)} and result.history["ION"] == []
    assert result.mapping.n_beads == 2 * N_MOL + 1


def test_bad_input():
    top = chain_topology()
    x = compact_clusters(np.random.default_rng(3), n_frames=2)
    with pytest.raises(ConfigurationError, match="cannot be split into 7 beads"):
        learn_mapping(top, x, 7)
    with pytest.raises(ConfigurationError, match="positions must have shape"):
        learn_mapping(top, x[:, :5], 2)
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ConfigurationError, match="NaN"):
        learn_mapping(top, bad, 2)


def test_cgml_map_learned(tmp_path, capsys):
    from openmm_cgml.cli import main
    from openmm_cgml.dataset import TrajectoryWriter, open_dataset

    top = chain_topology()
    x = compact_clusters(np.random.default_rng(4))
    assert np.any(np.ptp(((x + 3.0) % 6.0).reshape(N_FRAMES, N_MOL, 6, 3), axis=2) > 3.0)  # some are split
    masses = np.full(6 * N_MOL, 12.011)
    aa = tmp_path / "aa.h5"
    with TrajectoryWriter(aa, top, masses, {"temperature": "300 K"}, fields=("positions", "forces")) as w:
        for k, frame in enumerate(x):
            # wrapped into the box: molecules split across its faces are made whole before learning
            w.append(positions=(frame + 3.0) % 6.0, forces=np.zeros_like(frame), box=np.eye(3) * 6.0, step=k,
                     time=0.1 * k)
    (tmp_path / "map.yaml").write_text(
        f"input: {aa}\noutput: {tmp_path / 'cg.h5'}\nmapping_out: {tmp_path / 'm.json'}\n"
        "mapping:\n  method: learned\n  n_beads: 2\n  options: {epochs: 300, restarts: 2}\n")
    assert main(["map", str(tmp_path / "map.yaml")]) == 0
    groups = json.loads((tmp_path / "m.json").read_text())
    assert CGMapping.from_data(groups).molecule_types[0].beads == CLUSTERS
    assert open_dataset(tmp_path / "cg.h5").n_particles == 2 * N_MOL
    # a coarse-grained input cannot be learned from
    (tmp_path / "map2.yaml").write_text(
        f"input: {tmp_path / 'cg.h5'}\noutput: {tmp_path / 'cg2.h5'}\nmapping:\n  method: learned\n  n_beads: 1\n")
    assert main(["map", str(tmp_path / "map2.yaml")]) == 1
