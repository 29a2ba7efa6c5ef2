"""`cgml train` and `cgml build` end to end on a tiny CG dataset."""

import numpy as np
import openmm
import pytest
from _cg_fluid import simulate_known_fluid
from _neural_helpers import _one_torch_thread  # noqa: F401  (autouse fixture)

from openmm_cgml.cli import main


def test_train_then_build(tmp_path, capsys):
    data = simulate_known_fluid(tmp_path / "fluid.h5", n_frames=12, interval=20)
    (tmp_path / "train.yaml").write_text(f"""
dataset: {data}
output: {tmp_path / "run"}
temperature: "300 K"
model: {{hidden: 8, n_rbf: 8, n_interactions: 1, intra_cutoff: "0.5 nm", inter_cutoff: "9 angstrom"}}
priors:
  repulsion: {{sigma: "0.3 nm", exponent: 12, cutoff: "0.5 nm"}}
  harmonic_bond: {{A-B: {{r0: "0.3 nm", k: "4000 kJ/mol/nm**2"}}}}
training: {{epochs: 2, batch_size: 4, progress: false}}
""")
    assert main(["train", str(tmp_path / "train.yaml")]) == 0
    bundle = tmp_path / "run" / "model.cgml"
    assert bundle.exists() and (tmp_path / "run" / "loss_curve.png").exists()
    (tmp_path / "build.yaml").write_text(f"""
bundle: {bundle}
dataset: {data}
system: {tmp_path / "cg.xml"}
pdb: {tmp_path / "cg.pdb"}
""")
    assert main(["build", str(tmp_path / "build.yaml")]) == 0
    xml = (tmp_path / "cg.xml").read_text()
    from openmm_cgml.forces.neural import NeuralForceTerm

    default = NeuralForceTerm(bundle).resolved_backend()  # compiled where no GPU platform is installed
    assert xml.count("<Particle mass=") == 64
    assert ('type="CGSchNetForce"' if default == "compiled" else "encodedFileContents") in xml
    # the priors as OpenMM forces; the repulsion as the compiled pair force under the compiled backend
    assert "CustomBondForce" in xml
    assert ('type="CGPairTableForce"' if default == "compiled" else "CustomNonbondedForce") in xml
    pdb = openmm.app.PDBFile(str(tmp_path / "cg.pdb"))
    assert pdb.topology.getNumAtoms() == 64
    assert np.allclose(pdb.topology.getPeriodicBoxVectors()[0][0].value_in_unit(openmm.unit.nanometer), 2.2)
    # the term's options: TorchForce, filter tables, our neighbour search; same energy as the default build
    (tmp_path / "build2.yaml").write_text(f"""
bundle: {bundle}
dataset: {data}
system: {tmp_path / "cg2.xml"}
pdb: {tmp_path / "cg2.pdb"}
backend: torch
tabulate: true
neighbor_search: torch
""")
    assert main(["build", str(tmp_path / "build2.yaml")]) == 0
    assert "encodedFileContents" in (tmp_path / "cg2.xml").read_text()
    from openmm_cgml.forces.xml import load_system

    energies = []
    for name in ("cg.xml", "cg2.xml"):
        ctx = openmm.Context(load_system(tmp_path / name), openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(pdb.getPositions())
        energies.append(ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole))
    assert energies[1] == pytest.approx(energies[0], rel=1e-5, abs=1e-4)


def test_train_rejects_unitless_prior_values(tmp_path, capsys):
    data = simulate_known_fluid(tmp_path / "fluid.h5", n_frames=4, interval=10)
    (tmp_path / "bad.yaml").write_text(f"""
dataset: {data}
output: {tmp_path / "run"}
priors:
  repulsion: {{sigma: 0.3}}
""")
    assert main(["train", str(tmp_path / "bad.yaml")]) == 1
    assert "has no unit" in capsys.readouterr().err
    (tmp_path / "bad2.yaml").write_text(f"dataset: {data}\noutput: {tmp_path}\nmodel: {{inter_cutoff: 1.0}}\n")
    assert main(["train", str(tmp_path / "bad2.yaml")]) == 1
    assert "no unit" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["missing.cgml"])
def test_build_reports_missing_bundle(tmp_path, capsys, bad):
    data = simulate_known_fluid(tmp_path / "fluid.h5", n_frames=2, interval=10)
    (tmp_path / "b.yaml").write_text(f"bundle: {tmp_path / bad}\ndataset: {data}\nsystem: {tmp_path / 's.xml'}\n"
                                     f"pdb: {tmp_path / 's.pdb'}\n")
    assert main(["build", str(tmp_path / "b.yaml")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_train_with_priors_from_the_data(tmp_path):
    data = simulate_known_fluid(tmp_path / "fluid.h5", n_frames=12, interval=20)
    base = f"""
dataset: {data}
output: {tmp_path / "run"}
model: {{hidden: 8, n_rbf: 8, n_interactions: 1, intra_cutoff: "0.5 nm", inter_cutoff: "0.9 nm"}}
priors: auto
training: {{epochs: 1, batch_size: 4, progress: false, position_noise: "0.002 nm"}}
"""
    (tmp_path / "no_t.yaml").write_text(base)
    assert main(["train", str(tmp_path / "no_t.yaml")]) != 0  # auto priors need the temperature
    (tmp_path / "train.yaml").write_text(base + 'temperature: "300 K"\n')
    assert main(["train", str(tmp_path / "train.yaml")]) == 0
    from openmm_cgml.models import load_bundle

    priors = {p["name"]: p["args"] for p in load_bundle(tmp_path / "run" / "model.cgml").model_config["args"]["priors"]}
    assert set(priors) == {"repulsion", "harmonic_bond"}
    assert priors["harmonic_bond"]["parameters"]["A-B"]["r0"] == pytest.approx(0.30, rel=0.02)
    config = load_bundle(tmp_path / "run" / "model.cgml").training["config"]
    assert config["position_noise"] == "0.002 nm"  # a length with its unit, kept in the bundle
