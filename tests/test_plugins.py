"""An out-of-tree plug-in package, built and installed in a temporary directory, used from YAML.

``tests/plugin_example`` is a separate package (its own ``pyproject.toml``) that registers a model, a prior,
a mapping scheme and an alpha model through openmm_cgml's entry-point groups.  Here it is built into a wheel,
installed with pip into a temporary folder, and used by ``cgml map``, ``cgml train`` (the model's own
hyperparameters, validated by its own schema, and the prior's own YAML section) and ``cgml build`` (the trained
bundle, and a force-field file holding the plug-in's force term), in fresh processes that find it on their
path; the contract tests then run on its registrations too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent


def _run(args, env, cwd=None, timeout=600):
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plugin")
    src = tmp / "src"
    shutil.copytree(HERE / "plugin_example", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"),
          str(src)], env)
    (wheel,) = (tmp / "dist").glob("cgml_plugin_example-*.whl")
    site = tmp / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], env)
    assert (site / "cgml_plugin_example").is_dir() and list(site.glob("cgml_plugin_example-*.dist-info"))
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(HERE.parent)]))


def test_plugin_registrations_are_found(plugin_env):
    code = ("import json; from openmm_cgml.models import MODELS, PRIORS; from openmm_cgml.mapping import MAPPINGS; "
            "from openmm_cgml.dynamics import ALPHA_MODELS; from openmm_cgml.forces.base import TERMS; "
            "print(json.dumps([MODELS.names(), PRIORS.names(), MAPPINGS.names(), ALPHA_MODELS.names(), TERMS.names()]))")
    models, priors, mappings, alphas, terms = json.loads(_run([sys.executable, "-c", code], plugin_env).stdout)
    assert {"gaussian_pairs", "tabulated_pair", "neural"} <= set(terms)
    assert {"pair_mlp", "schnet", "priors"} <= set(models) and {"soft_core", "repulsion"} <= set(priors)
    assert {"one_bead", "automatic"} <= set(mappings) and {"linear", "arrhenius"} <= set(alphas)
    # without the plug-in on the path (this process), none of its names exists
    from openmm_cgml.models import MODELS

    assert "pair_mlp" not in MODELS.names()


def test_plugin_used_from_yaml(plugin_env, tmp_path):
    from test_contracts import _propane_liquid

    _propane_liquid(tmp_path / "aa.h5", n_frames=12)
    (tmp_path / "map.yaml").write_text(f"input: {tmp_path / 'aa.h5'}\noutput: {tmp_path / 'cg.h5'}\n"
                                       "mapping:\n  method: one_bead\n")
    cgml = [sys.executable, "-m", "openmm_cgml.cli"]
    _run(cgml + ["map", str(tmp_path / "map.yaml")], plugin_env)
    train = f"""
dataset: {tmp_path / 'cg.h5'}
output: {tmp_path / 'train'}
model:
  name: pair_mlp          # the plug-in's model, with its own hyperparameters (units checked by its schema)
  width: 6
  cutoff: "6 angstrom"
priors:
  soft_core: {{epsilon: {{PRP_A-PRP_A: "2 kJ/mol"}}, cutoff: "0.45 nm"}}
training: {{epochs: 2, batch_size: 4, validation_fraction: 0.25, n_blocks: 4}}
"""
    (tmp_path / "train.yaml").write_text(train)
    _run(cgml + ["train", str(tmp_path / "train.yaml")], plugin_env)
    bundle = tmp_path / "train" / "model.cgml"
    assert bundle.exists()
    # a hyperparameter the plug-in's schema does not know is refused before any work, naming it
    (tmp_path / "bad.yaml").write_text(train.replace("width: 6", "widht: 6"))
    proc = subprocess.run(cgml + ["train", str(tmp_path / "bad.yaml")], capture_output=True, text=True,
                          env=plugin_env, timeout=300)
    assert proc.returncode == 1 and "widht" in proc.stderr
    (tmp_path / "build.yaml").write_text(f"bundle: {bundle}\ndataset: {tmp_path / 'cg.h5'}\n"
                                         f"system: {tmp_path / 'cg.xml'}\npdb: {tmp_path / 'cg.pdb'}\n")
    _run(cgml + ["build", str(tmp_path / "build.yaml")], plugin_env)
    check = f"""
import json, openmm
from openmm_cgml import energy_components
from openmm_cgml.dataset import open_dataset
from openmm_cgml.forces.xml import load_system
from openmm_cgml.models import load_bundle
from openmm_cgml.topology import CGTopology
import torch
ds = open_dataset({str(tmp_path / 'cg.h5')!r})
system = load_system({str(tmp_path / 'cg.xml')!r})
ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
ctx.setPositions(ds.positions[-1])
parts = energy_components(ctx)
model = load_bundle({str(bundle)!r}).build_model(CGTopology.from_dataset(ds), dtype="float64")
e = float(model(torch.tensor(ds.positions[-1], dtype=torch.float64), torch.tensor(ds.box[-1], dtype=torch.float64)))
print(json.dumps({{"parts": parts, "model": e, "total": sum(parts.values())}}))
"""
    out = json.loads(_run([sys.executable, "-c", check], plugin_env).stdout)
    assert {"neural:network", "neural:soft_core"} <= set(out["parts"])
    assert out["total"] == pytest.approx(out["model"], rel=1e-4, abs=1e-3)
    # the plug-in's force term in a force-field file, built from YAML next to a built-in term
    write_ff = ("from cgml_plugin_example import GaussianPairs; from openmm_cgml import CGPotential; "
                f"CGPotential([GaussianPairs({{'PRP_A-PRP_A': 4.0}}, width=0.3, cutoff=0.7)]).save({str(tmp_path / 'ff.json')!r})")
    _run([sys.executable, "-c", write_ff], plugin_env)
    (tmp_path / "build_ff.yaml").write_text(f"force_field: {tmp_path / 'ff.json'}\ndataset: {tmp_path / 'cg.h5'}\n"
                                            f"system: {tmp_path / 'ff.xml'}\npdb: {tmp_path / 'ff.pdb'}\n")
    _run(cgml + ["build", str(tmp_path / "build_ff.yaml")], plugin_env)
    assert "gaussian" in (tmp_path / "ff.xml").read_text()


def test_plugin_passes_the_contract_tests(plugin_env):
    _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "test_contracts.py"),
          "-k", "pair_mlp or soft_core or one_bead or linear or gaussian_pairs"], plugin_env, cwd=HERE.parent)
