"""Mapping methods are pluggable: the registry behind `cgml map`."""

import numpy as np
import pytest
from openmm import app
from test_ibi_cli import N, argon_dataset  # noqa: E402  (tests/ is on sys.path under pytest)

from openmm_cgml import ConfigurationError, UnknownNameError
from openmm_cgml.cli import main
from openmm_cgml.dataset import open_dataset
from openmm_cgml.mapping import MAPPINGS, CGMapping, create_mapping


def _propane_topology(n_mol=2):
    top = app.Topology()
    chain = top.addChain()
    c, h = app.element.carbon, app.element.hydrogen
    for _ in range(n_mol):
        res = top.addResidue("PRP", chain)
        carbons = [top.addAtom(f"C{i}", c, res) for i in range(3)]
        top.addBond(carbons[0], carbons[1])
        top.addBond(carbons[1], carbons[2])
        for i, ci in enumerate(carbons):
            for k in range(3 if i != 1 else 2):
                top.addBond(ci, top.addAtom(f"H{i}{k}", h, res))
    return top


def test_builtin_methods_agree_with_the_constructors():
    top = _propane_topology()
    auto = create_mapping("automatic", top, {"n_beads": 3})
    assert auto.to_data() == CGMapping.automatic(top, 3).to_data()
    groups = [[0, 3, 4, 5], [1, 6, 7], [2, 8, 9, 10]]
    by_groups = create_mapping("groups", top, {"groups": groups, "weights": "centroid"})
    assert by_groups.to_data() == CGMapping.from_groups(top, groups, weights="centroid").to_data()
    assert by_groups.bead_types[0] == by_groups.bead_types[2] != by_groups.bead_types[1]  # symmetric ends
    with pytest.raises(ConfigurationError, match="needs the option 'n_beads'"):
        create_mapping("automatic", top, {})
    with pytest.raises(UnknownNameError) as info:
        create_mapping("learned-by-magic", top, {})
    for name in ("automatic", "groups", "smarts", "file", "learned-by-magic"):
        assert name in str(info.value)


def test_user_method_through_cgml_map(tmp_path):
    calls = []

    def one_bead_per_residue(topology, options, masses=None):
        calls.append(options["tag"])
        return CGMapping.from_groups(topology, [[0]], weights=options.get("weights", "com"), masses=masses)

    MAPPINGS.register("one-bead-test", one_bead_per_residue, overwrite=True)
    aa = tmp_path / "aa.h5"
    argon_dataset(aa, n_frames=3)
    (tmp_path / "map.yaml").write_text(
        f"input: {aa}\noutput: {tmp_path / 'cg.h5'}\n"
        "mapping:\n  method: one-bead-test\n  options: {tag: hello}\n"
    )
    assert main(["map", str(tmp_path / "map.yaml")]) == 0
    assert calls == ["hello"]
    cg = open_dataset(tmp_path / "cg.h5")
    assert cg.n_particles == N
    np.testing.assert_allclose(cg.forces, open_dataset(aa).forces, atol=1e-4)
    (tmp_path / "bad.yaml").write_text(
        f"input: {aa}\noutput: {tmp_path / 'x.h5'}\nmapping:\n  method: nonexistent\n")
    assert main(["map", str(tmp_path / "bad.yaml")]) == 1
