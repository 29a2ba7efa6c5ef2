"""Packaging: the README's commands, example configs that validate (the distributions: test_distribution.py)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci/run").read_text()
    command = re.search(r"^(bash devtools/run-tests\.sh)", readme, re.M).group(1)
    assert command in ci
    assert re.search(r"^bash devtools/run-demo\.sh", readme, re.M)


def test_example_configs_validate():
    from openmm_cgml.config import load_config
    from openmm_cgml.reference import ReferenceConfig

    cfg = load_config(ROOT / "examples/reference_tmp.yaml", ReferenceConfig)
    assert cfg.temperature == 298.15 and cfg.steps("production") == 50000
