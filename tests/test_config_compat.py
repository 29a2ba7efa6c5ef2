"""YAML files written before the library workflows existed still load; a renamed key is named in the error."""

from __future__ import annotations

import pytest

from openmm_cgml.config import load_config
from openmm_cgml.exceptions import ConfigurationError
from openmm_cgml.workflows import BuildConfig, CompareConfig, IBIConfig, MapConfig, TrainConfig

# As the demo wrote them (openmm_cgml 0.1, before the workflows moved out of the CLI), paths shortened.
OLD_FILES = {
    "map.yaml": (MapConfig, """
input: /d/aa.h5
output: /d/cg_reference.h5
mapping_out: /d/mapping.json
mapping:
  method: automatic
  n_beads: 3
  weights: com
"""),
    "ibi.yaml": (IBIConfig, """
cg_dataset: /d/cg_reference.h5
output_dir: /d/ibi
temperature: 298.15 K
cutoff: 1.2 nm
timestep: 10 fs
max_iterations: 20
equilibration_steps: 2000
production_steps: 10000
sample_interval: 50
bonded: harmonic
platform: CPU
resume: true
pressure_scale: 3333 bar
target_pressure: 1 bar
"""),
    "train.yaml": (TrainConfig, """
dataset: /d/cg_reference.h5
output: /d/neural
temperature: 298.15 K
resume: true
model:
  hidden: 32
  n_rbf: 16
  n_interactions: 2
  intra_cutoff: 0.6 nm
  inter_cutoff: 1.0 nm
priors: auto
training:
  epochs: 20
  batch_size: 16
  learning_rate: 0.003
  scheduler: cosine
  progress: false
  position_noise: 0.005 nm
"""),
    # `cgml demo --overwrite` wrote `resume: false` (the default of TrainConfig was false then)
    "train_fresh.yaml": (TrainConfig, """
dataset: /d/cg_reference.h5
output: /d/neural
temperature: 298.15 K
resume: false
model:
  hidden: 32
priors: auto
training:
  epochs: 20
"""),
    "compare.yaml": (CompareConfig, """
reference: /d/cg_reference.h5
model: /d/cg_run.h5
output: /d/compare
n_bins: 80
"""),
    "build.yaml": (BuildConfig, """
bundle: /d/model.cgml
dataset: /d/cg.h5
system: /d/cg_system.xml
pdb: /d/cg.pdb
backend: torch
priors: openmm
precision: float32
tabulate: null
neighbor_search: auto
"""),
}


@pytest.mark.parametrize("name", sorted(OLD_FILES))
def test_files_written_before_still_load(name, tmp_path):
    cls, text = OLD_FILES[name]
    (tmp_path / name).write_text(text)
    config = load_config(tmp_path / name, cls)
    assert cls.from_data(config.to_data()) == config  # and round-trip


def test_old_values_mean_the_same():
    ibi = IBIConfig.from_data({"cg_dataset": "x", "output_dir": "o", "temperature": "298.15 K", "cutoff": "12 angstrom",
                               "pressure_scale": "3333 bar"})
    assert ibi.cutoff == pytest.approx(1.2) and ibi.settings().pressure_factor == pytest.approx(3e-4, rel=1e-3)
    train = TrainConfig.from_data({"dataset": "x", "output": "o", "model": {"hidden": 8}})
    from openmm_cgml.workflows.train import model_arguments

    assert model_arguments(train.model) == ("schnet", pytest.approx(model_arguments({"name": "schnet",
                                                                                     "hidden": 8})[1]))


def test_a_renamed_key_is_named():
    with pytest.raises(ConfigurationError, match="pressure_factor.*renamed.*pressure_scale"):
        IBIConfig.from_data({"cg_dataset": "x", "output_dir": "o", "temperature": "300 K", "cutoff": "1 nm",
                             "pressure_factor": 3e-4})
    from openmm_cgml.ibi import IBISettings

    with pytest.raises(ConfigurationError, match="pressure_factor.*renamed"):
        IBISettings(temperature="300 K", cutoff="1 nm", pressure_factor=3e-4)
    with pytest.raises(ConfigurationError, match="unknown key 'cutof'"):
        IBISettings.from_data({"temperature": "300 K", "cutoff": "1 nm", "cutof": "1 nm"})


def test_resume_is_the_default_and_old_resume_false_still_loads(tmp_path):
    """Every long command resumes by default; ``resume: false`` (older files) still loads and means: start fresh,
    but never replace an existing checkpoint without ``overwrite`` (tests/test_resume.py runs it)."""
    from openmm_cgml.reference import ReferenceConfig

    train = TrainConfig.from_data({"dataset": "x", "output": "o"})
    ibi = IBIConfig.from_data({"cg_dataset": "x", "output_dir": "o", "temperature": "300 K", "cutoff": "1 nm"})
    for config in (train, ibi):
        assert config.resume and not config.overwrite
    (tmp_path / "train.yaml").write_text(OLD_FILES["train_fresh.yaml"][1])
    old = load_config(tmp_path / "train.yaml", TrainConfig)
    assert not old.resume and not old.overwrite
    # the reference configuration of the examples loads; its new `threads` and `max_production` keys default to
    # OpenMM's choice and no extension, and are not part of a checkpoint's identity (old checkpoints keep resuming)
    from pathlib import Path

    from openmm_cgml.reference.run import _identity

    example = load_config(Path(__file__).parents[1] / "examples" / "reference_tmp.yaml", ReferenceConfig)
    assert example.threads is None and "threads" not in _identity(example) and "max_production" not in _identity(example)
    # `forcefield_parameters` (a sweep's sample) is part of the identity only when it changes the force field
    assert example.forcefield_parameters == [] and "forcefield_parameters" not in _identity(example)
    changed = ReferenceConfig.from_data({**example.to_data(), "forcefield_parameters": [
        {"handler": "Bonds", "smirks": "[#6:1]-[#6:2]", "attribute": "k", "value": "1 kJ/mol/nm**2"}]})
    assert "forcefield_parameters" in _identity(changed)
    before = {k: v for k, v in example.to_data().items()  # earlier to_data(): without the keys added since
              if k not in ("threads", "max_production", "extend_until", "forcefield_parameters", "extra_forcefields",
                           "packing_density", "hydrogen_mass", "start_conformations")}
    before["components"] = [{k: v for k, v in c.items() if k in ("smiles", "count", "name")}
                            for c in before["components"]]
    assert _identity(example) == before
    import hashlib
    import json

    from openmm_cgml._checkpoint import identity_hash

    # the key earlier versions stored as `config_key`
    assert identity_hash(_identity(example)) == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()
