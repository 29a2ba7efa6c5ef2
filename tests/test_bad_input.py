"""The bad-input table: each case must fail with the named error type, a message that names the offending key
or file, and before any real work starts (each case runs in well under a few seconds).

Dataset damage (truncated, empty, foreign, non-finite, flipped bytes) has its own file
(``test_dataset_integrity.py``); files that would run code on load are in ``test_security.py``.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import yaml

from openmm_cgml import ConfigurationError, DatasetError, InvalidSystemError
from openmm_cgml.config import load_config
from openmm_cgml.testing import requires_openff

ETHANE = {"components": [{"smiles": "CC", "count": 32}], "density": "0.4 g/cm**3"}
IBI = {"cg_dataset": "cg.h5", "output_dir": "ibi", "temperature": "300 K", "cutoff": "1.0 nm"}
TRAIN = {"dataset": "cg.h5", "output": "out"}
BUILD = {"ibi": "ibi", "dataset": "cg.h5", "system": "cg.xml", "pdb": "cg.pdb"}
COMPARE = {"reference": "aa.h5", "model": "cg.h5", "output": "cmp"}


def _reference(**change):
    from openmm_cgml.reference import ReferenceConfig

    return ReferenceConfig.from_data({**ETHANE, **change})


def _ibi(**change):
    from openmm_cgml.workflows.ibi import IBIConfig

    return IBIConfig.from_data({**IBI, **change})


def _train(**training):
    from openmm_cgml.workflows.train import TrainConfig

    return TrainConfig.from_data({**TRAIN, "training": training})


def _build(**change):
    from openmm_cgml.workflows.build import BuildConfig

    return BuildConfig.from_data({**BUILD, **change})


def _compare(**change):
    from openmm_cgml.workflows.compare import CompareConfig

    return CompareConfig.from_data({**COMPARE, **change})


def _demo(**change):
    from openmm_cgml.workflows.demo import DemoConfig

    return DemoConfig.from_data(change)


def _map(**change):
    from openmm_cgml.workflows.map import MapConfig

    return MapConfig.from_data({"input": "aa.h5", "output": "cg.h5", "mapping": {"method": "auto"}, **change})


def _simulate(**change):
    """``run_simulation`` with a bad state: it must refuse before building a Context."""
    import openmm

    from openmm_cgml.simulation import run_simulation
    from openmm_cgml.topology import CGTopology

    system = openmm.System()
    system.addParticle(1.0)
    top = CGTopology(bead_types=("A",), molecule_index=np.zeros(1, int), bonds=np.zeros((0, 2), int),
                     masses=np.ones(1))
    kwargs = dict(temperature="300 K", timestep="2 fs", friction="1 /ps", steps=10, report_interval=10)
    kwargs.update(change)
    return run_simulation(system, top, np.zeros((1, 3)), "never-written.h5", **kwargs)


CASES = [
    # (id, call, error type, the message must match: it names the key)
    ("reference temperature 0 K", lambda: _reference(temperature="0 K"), ConfigurationError, r"temperature: must be greater than 0"),
    ("reference temperature < 0", lambda: _reference(temperature="-10 K"), ConfigurationError, r"temperature: must be greater"),
    ("reference timestep 0", lambda: _reference(timestep="0 fs"), ConfigurationError, r"timestep: must be greater than 0"),
    ("reference timestep < 0", lambda: _reference(timestep="-2 fs"), ConfigurationError, r"timestep: .*MD timestep"),
    ("reference friction < 0", lambda: _reference(friction="-1 /ps"), ConfigurationError, r"friction: must be at least 0"),
    ("reference duration < 0", lambda: _reference(production="-5 ps"), ConfigurationError, r"production: must be at least"),
    ("reference density off range", lambda: _reference(density="9 g/cm**3"), ConfigurationError, r"density 9 g/cm\^3 is not a liquid"),
    ("reference density 0", lambda: _reference(density="0 g/cm**3"), ConfigurationError, r"density: must be greater"),
    ("reference negative cutoff", lambda: _reference(cutoff="-1 nm"), ConfigurationError, r"cutoff: must be greater"),
    ("reference bare number", lambda: _reference(timestep=2), ConfigurationError, r"timestep.*has no unit"),
    ("reference wrong unit", lambda: _reference(timestep="2 nm"), ConfigurationError, r"timestep"),
    ("reference unknown key", lambda: _reference(temprature="300 K"), ConfigurationError, r"unknown key 'temprature'"),
    ("reference no components", lambda: _reference(components=[]), ConfigurationError, r"components"),
    ("ibi temperature < 0", lambda: _ibi(temperature="-1 K"), ConfigurationError, r"temperature: must be greater"),
    ("ibi timestep 0", lambda: _ibi(timestep="0 fs"), ConfigurationError, r"timestep: must be greater than 0"),
    ("ibi friction 0", lambda: _ibi(friction="0 /ps"), ConfigurationError, r"friction must be positive"),
    ("ibi cutoff 0", lambda: _ibi(cutoff="0 nm"), ConfigurationError, r"cutoff: must be greater"),
    ("ibi temperature guard 0", lambda: _ibi(temperature_guard=0), ConfigurationError, r"temperature_guard"),
    ("ibi renamed key", lambda: _ibi(pressure_factor=0.1), ConfigurationError, r"pressure_factor.*renamed"),
    ("train learning rate 0", lambda: _train(learning_rate=0), ConfigurationError, r"learning_rate: .*greater than 0"),
    ("train learning rate < 0", lambda: _train(learning_rate=-1e-3), ConfigurationError, r"learning_rate"),
    ("train epochs 0", lambda: _train(epochs=0), ConfigurationError, r"epochs: .*greater than or equal to 1"),
    ("train batch size 0", lambda: _train(batch_size=0), ConfigurationError, r"batch_size"),
    ("train validation fraction 1", lambda: _train(validation_fraction=1.0), ConfigurationError, r"validation_fraction"),
    ("train negative noise", lambda: _train(position_noise="-0.01 nm"), ConfigurationError, r"position_noise"),
    ("train unknown model", lambda: load_config_text(TRAIN | {"model": {"name": "nope"}}, "train"), Exception, r"nope"),
    ("build two sources", lambda: _build(bundle="m.cgml"), ConfigurationError, r"exactly one of 'bundle'"),
    ("build bad backend", lambda: _build(backend="jax"), ConfigurationError, r"backend"),
    ("compare temperature 0", lambda: _compare(temperatures=[{"temperature": "0 K", "reference": "a", "model": "b"}]),
     ConfigurationError, r"temperatures\.0\.temperature: must be greater"),
    ("compare r_max < 0", lambda: _compare(r_max="-1 nm"), ConfigurationError, r"r_max: must be greater"),
    ("compare too few bins", lambda: _compare(n_bins=2), ConfigurationError, r"n_bins"),
    ("demo one molecule", lambda: _demo(molecules=1), ConfigurationError, r"molecules"),
    ("demo zero beads", lambda: _demo(beads=0), ConfigurationError, r"beads"),
    ("map chunk 0", lambda: _map(chunk_frames=0), ConfigurationError, r"chunk_frames"),
    ("simulate temperature 0", lambda: _simulate(temperature="0 K"), ConfigurationError, r"temperature must be greater"),
    ("simulate timestep < 0", lambda: _simulate(timestep="-1 fs"), ConfigurationError, r"timestep must be greater"),
    ("simulate friction < 0", lambda: _simulate(friction="-1 /ps"), ConfigurationError, r"friction must be at least"),
    ("simulate steps", lambda: _simulate(steps=15), ConfigurationError, r"steps \(15\).*report_interval"),
]


def load_config_text(data: dict, command: str):
    from openmm_cgml.workflows.train import TrainConfig

    return TrainConfig.from_data(data)


@pytest.mark.parametrize(("call", "error", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_table(call, error, pattern):
    start = time.perf_counter()
    with pytest.raises(error, match=pattern):
        call()
    assert time.perf_counter() - start < 5.0


def test_config_files_name_the_file(tmp_path):
    from openmm_cgml.reference import ReferenceConfig

    with pytest.raises(ConfigurationError, match=r"cannot read configuration file .*missing\.yaml"):
        load_config(tmp_path / "missing.yaml", ReferenceConfig)
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigurationError, match=r"list\.yaml: expected a mapping"):
        load_config(tmp_path / "list.yaml", ReferenceConfig)
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigurationError, match=r"broken\.yaml is not valid YAML"):
        load_config(tmp_path / "broken.yaml", ReferenceConfig)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**ETHANE, "timestep": "-1 fs"}))
    with pytest.raises(ConfigurationError, match=r"bad\.yaml for ReferenceConfig:\n  timestep: must be greater"):
        load_config(tmp_path / "bad.yaml", ReferenceConfig)


def test_train_refuses_an_all_atom_dataset_before_any_work(tmp_path, monkeypatch):
    """``cgml train`` on AA data fails at once, naming the file, before the (slow) automatic priors run."""
    from _cg_fluid import simulate_known_fluid

    from openmm_cgml.cli import main
    from openmm_cgml.dataset import open_dataset, write_dataset
    from openmm_cgml.training import priors as priors_module

    cg = tmp_path / "cg.h5"
    simulate_known_fluid(cg, n_frames=4, interval=10)
    aa = tmp_path / "aa.h5"
    write_dataset(aa, dataclasses.replace(open_dataset(cg), kind="all-atom"))

    def never(*args, **kwargs):
        raise AssertionError("the priors were fitted before the dataset was checked")

    monkeypatch.setattr(priors_module, "boltzmann_priors", never)
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({"dataset": str(aa), "output": str(tmp_path / "out"), "priors": "auto",
                                   "temperature": "300 K", "training": {"epochs": 1}}))
    start = time.perf_counter()
    assert main(["train", str(cfg)]) == 1
    assert time.perf_counter() - start < 10
    assert not (tmp_path / "out" / "model.cgml").exists()


def test_train_cli_message_names_the_dataset(tmp_path, capsys):
    from _cg_fluid import simulate_known_fluid

    from openmm_cgml.cli import main
    from openmm_cgml.dataset import open_dataset, write_dataset

    cg = tmp_path / "cg.h5"
    simulate_known_fluid(cg, n_frames=4, interval=10)
    aa = tmp_path / "aa.h5"
    write_dataset(aa, dataclasses.replace(open_dataset(cg), kind="all-atom"))
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({"dataset": str(aa), "output": str(tmp_path / "out")}))
    assert main(["train", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert str(aa) in err and "'all-atom' data" in err and "cgml map" in err


@requires_openff
def test_packing_that_cannot_succeed_fails_in_seconds():
    """Hexane at 1.2 g/cm^3 is within the accepted density range but its molecules fill 94 % of the box:
    packmol would grind for minutes (110 s at 1.0 g/cm^3 on the development machine) and fail."""
    from openmm_cgml.reference.liquid import Component, build_liquid

    start = time.perf_counter()
    with pytest.raises(InvalidSystemError, match=r"cannot be packed.*fills 9\d% .*at most 0\.9\d* g/cm\^3"):
        build_liquid([Component("CCCCCC", 64)], density="1.2 g/cm**3", charge_method="am1bcc")
    assert time.perf_counter() - start < 20  # no AM1-BCC charges (minutes), no packmol


def test_dataset_errors_are_dataset_errors(tmp_path):
    from openmm_cgml.training.data import check_force_dataset

    with pytest.raises(DatasetError, match=r"missing\.h5"):
        check_force_dataset(tmp_path / "missing.h5")
