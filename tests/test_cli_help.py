"""Every command's ``--help`` lists every key of its configuration model (nested ones dotted) with its unit and
default, generated from the model; every command has an example YAML in ``examples/`` that validates, and the
examples chain into each other (one command's output is the next one's input)."""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from openmm_cgml import config as cfgmod
from openmm_cgml.cli import build_parser, main
from openmm_cgml.config import load_config
from openmm_cgml.learn import LearnConfig
from openmm_cgml.models.schnet import SchNetConfig
from openmm_cgml.reference.run import ReferenceConfig
from openmm_cgml.sweep import SweepConfig, TemperatureStudyConfig
from openmm_cgml.training import TrainingConfig
from openmm_cgml.units import format_quantity
from openmm_cgml.workflows import (
    BuildConfig,
    CompareConfig,
    DemoConfig,
    ExportConfig,
    IBIConfig,
    MapConfig,
    PolymerConfig,
    RunConfig,
    TrainConfig,
)

ROOT = Path(__file__).resolve().parents[1]

MODELS = {"reference": ReferenceConfig, "map": MapConfig, "ibi": IBIConfig, "train": TrainConfig,
          "build": BuildConfig, "run": RunConfig, "compare": CompareConfig, "demo": DemoConfig,
          "sweep": SweepConfig, "learn": LearnConfig, "export": ExportConfig, "polymer": PolymerConfig,
          "temperature": TemperatureStudyConfig}
# free-form sections whose content a model of its own validates
SECTIONS = {"train": {"training.": TrainingConfig, "model.": SchNetConfig}}
EXAMPLES = {"reference": "reference_tmp.yaml", "map": "map.yaml", "ibi": "ibi.yaml", "train": "train.yaml",
            "build": "build.yaml", "run": "run.yaml", "compare": "compare.yaml", "demo": "demo.yaml",
            "sweep": "sweep.yaml", "learn": "learn.yaml", "export": "export.yaml", "polymer": "polymer/pe.yaml",
            "temperature": "temperature/tmp.yaml"}

# the validators of the unit-typed quantities of openmm_cgml.config, by kind
QUANTITY_KINDS = {}
for _name, _kind in (("Length", "length"), ("Time", "time"), ("Temperature", "temperature"),
                     ("Pressure", "pressure"), ("Energy", "energy"), ("Density", "density"),
                     ("Frequency", "frequency"), ("Acceleration", "acceleration")):
    for _m in getattr(cfgmod, _name).__metadata__:
        QUANTITY_KINDS[id(_m)] = _kind


def _quantity_kind(field) -> str | None:
    metadata = list(field.metadata)
    for arg in typing.get_args(field.annotation):
        metadata.extend(getattr(arg, "__metadata__", ()))
    kinds = {QUANTITY_KINDS[id(m)] for m in metadata if id(m) in QUANTITY_KINDS}
    return kinds.pop() if kinds else None


def _nested(annotation):
    for tp in (annotation, *typing.get_args(annotation)):
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return tp, "."
        args = typing.get_args(tp)
        if typing.get_origin(tp) is list and args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            return args[0], "[]."
    return None, ""


def expected_keys(model, prefix=""):
    """(dotted key, field) of every field of ``model``, nested models included."""
    for name, field in model.model_fields.items():
        yield prefix + name, field
        nested, joiner = _nested(field.annotation)
        if nested is not None:
            yield from expected_keys(nested, prefix + name + joiner)


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def _line(text: str, key: str) -> str:
    found = [line for line in text.splitlines() if line.startswith(f"  {key}: ")]
    assert found, f"the key {key!r} is not listed"
    return found[0]


def _default_text(value) -> str | None:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, Path, int, float)):
        return str(value)
    return None  # containers: only "default" is checked


#: commands that take no YAML configuration (options only)
NO_CONFIG = {"examples", "info", "report", "import"}


def test_every_command_has_a_configuration_model_here():
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(sub.choices) == set(MODELS) | NO_CONFIG


@pytest.mark.parametrize("command", sorted(MODELS))
def test_help_lists_every_key_with_unit_and_default(command, capsys):
    text = _help(command, capsys)
    assert "configuration keys" in text
    keys = list(expected_keys(MODELS[command]))
    for prefix, model in SECTIONS.get(command, {}).items():
        keys += list(expected_keys(model, prefix))
    assert keys
    for key, field in keys:
        line = _line(text, key)
        kind = _quantity_kind(field)
        if kind is not None:
            unit = format_quantity(1.0, kind).split(" ", 1)[1]
            assert f"{kind} [{unit}]" in line, line
        required = field.default is PydanticUndefined and field.default_factory is None
        if required:
            assert line.rstrip().endswith("; required"), line
            continue
        default = field.default if field.default_factory is None else field.default_factory()
        shown = _default_text(default)
        assert "; default " in line, line
        if shown is not None:
            assert line.rstrip().endswith(f"; default {shown}"), line


def test_help_describes_keys(capsys):
    text = _help("run", capsys)
    lines = text.splitlines()
    at = lines.index(_line(text, "temperature"))
    assert lines[at + 1].strip() == "thermostat temperature"
    text = _help("train", capsys)
    lines = text.splitlines()
    assert "feature width" in lines[lines.index(_line(text, "model.hidden")) + 1]  # from the model's docstring
    text = _help("ibi", capsys)
    lines = text.splitlines()
    assert "pair cutoff" in lines[lines.index(_line(text, "cutoff")) + 1].lower()  # IBISettings' docstring


def test_building_the_parser_imports_no_model():
    """Help is generated when shown, so `cgml --version` does not pay for torch."""
    code = "import sys; from openmm_cgml.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("command", sorted(MODELS))
def test_every_command_has_an_example_that_validates(command):
    path = ROOT / "examples" / EXAMPLES[command]
    config = load_config(path, MODELS[command])
    for key in config.model_fields_set:  # every key the example sets is documented in the help
        assert key in MODELS[command].model_fields


def test_the_examples_chain_into_each_other():
    ex = {c: load_config(ROOT / "examples" / name, MODELS[c]) for c, name in EXAMPLES.items() if c != "reference"}
    header = (ROOT / "examples" / "reference_tmp.yaml").read_text().splitlines()[0]
    assert f"-o {ex['map'].input}" in header  # the reference run's output is the mapping's input
    assert Path(ex["ibi"].cg_dataset) == Path(ex["map"].output) == ex["train"].dataset == ex["build"].dataset
    assert ex["build"].ibi == Path(ex["ibi"].output_dir) == ex["export"].ibi
    assert ex["export"].dataset == ex["build"].dataset
    assert ex["run"].system == ex["build"].system and ex["run"].pdb == ex["build"].pdb
    assert ex["run"].topology_path() == ex["build"].topology_path()
    # cgml compare reads paths relative to its file's folder
    here = ROOT / "examples"
    assert (here / ex["compare"].model).resolve() == (ROOT / ex["run"].output).resolve()
    assert (here / ex["compare"].reference).resolve() == (ROOT / ex["map"].output).resolve()


def test_demo_reads_its_example_and_options_override_it(monkeypatch):
    from openmm_cgml.workflows import demo as workflow

    seen = []
    monkeypatch.setattr(workflow, "run_demo", lambda config, progress: seen.append(config) or {})
    monkeypatch.setattr(workflow, "summary_markdown", lambda summary: "")
    assert main(["demo", str(ROOT / "examples" / "demo.yaml"), "--quick", "--molecules", "16", "--no-neural"]) == 0
    assert seen[0] == DemoConfig(output="demo-output", molecules=16, beads=3, quick=True, neural=False)
    assert main(["demo"]) == 0
    assert seen[1] == DemoConfig()
