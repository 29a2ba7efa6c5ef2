"""Packaging: one source of truth for pins, the README's commands, example configs that validate."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

# conda-forge names of packages pinned in devtools/constraints.txt under another pip name
_CONDA_NAMES = {"torch": "pytorch"}


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "devtools/constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def test_conda_environment_pins_agree_with_constraints():
    env = yaml.safe_load((ROOT / "devtools/conda-envs/openmm_cgml.yaml").read_text())
    pins = _pins()
    checked = 0
    for dep in env["dependencies"]:
        if not isinstance(dep, str) or "=" not in dep:
            continue
        name, version = dep.split("=", 1)
        pip_name = {v: k for k, v in _CONDA_NAMES.items()}.get(name, name)
        candidates = [pip_name, f"acellera-{pip_name}"]
        pinned = [pins[c] for c in candidates if c in pins]
        if name == "python":
            continue
        assert pinned, f"{name} is pinned in the conda environment but not in devtools/constraints.txt"
        assert pinned[0].startswith(version), f"{name}: conda pins {version}, constraints.txt pins {pinned[0]}"
        checked += 1
    assert checked >= 10


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
