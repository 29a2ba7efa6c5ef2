"""One temperature-conditioned model trained on several temperatures: the data, the checks, the recovery of a
temperature-dependent potential at a temperature it never saw, and the temperature of the System it becomes."""

import dataclasses
import logging

import numpy as np
import pytest
import torch
from _cg_fluid import EPSILON, boltzmann_bond_prior, simulate_known_fluid
from _neural_helpers import _one_torch_thread  # noqa: F401  (autouse fixture)

from openmm_cgml.dataset import open_dataset, recorded_temperature
from openmm_cgml.exceptions import ConfigurationError, DatasetError, InvalidMappingError
from openmm_cgml.forces.neural import NeuralForceTerm, trained_temperatures
from openmm_cgml.models import load_bundle
from openmm_cgml.topology import CGTopology
from openmm_cgml.training import TrainingConfig, load_force_data, train_force_matching
from openmm_cgml.training.data import combine_force_data, load_force_data_at, time_block_split
from openmm_cgml.workflows.train import TrainConfig, run_train

#: The known potential's LJ well depth grows with temperature (a CG potential of mean force is temperature
#: dependent): eps(T) = EPSILON (1 + 0.01 (T - 300 K)).
TRAIN = (260.0, 300.0, 340.0)
HELD_OUT = 320.0


def eps(t: float) -> float:
    return EPSILON * (1.0 + 0.01 * (t - 300.0))


@pytest.fixture(scope="module")
def fluids(tmp_path_factory):
    """The dimer fluid at each training temperature and at the held-out one (exact forces of eps(T))."""
    root = tmp_path_factory.mktemp("fluids")
    paths = {t: simulate_known_fluid(root / f"fluid_{t:g}K.h5", n_frames=60, interval=50, seed=int(t),
                                     temperature=t, epsilon=eps(t)) for t in (*TRAIN, HELD_OUT)}
    return paths


def _model_config(path, temperature_scale):
    ds = open_dataset(path)
    bonds = np.array([[2 * m, 2 * m + 1] for m in range(32)])
    args = {"hidden": 24, "n_rbf": 16, "n_interactions": 2, "intra_cutoff": 0.5, "inter_cutoff": 0.9,
            "priors": [{"name": "harmonic_bond", "args": {"parameters": boltzmann_bond_prior(ds, bonds)}},
                       {"name": "repulsion", "args": {"sigma": 0.3, "exponent": 12, "cutoff": 0.5}}]}
    if temperature_scale:
        args["temperature"] = {"reference": 300.0, "scale": 40.0, "default": 300.0}
    return {"name": "schnet", "args": args}


def test_time_block_split_by_segments():
    train, val = time_block_split(100, 0.2, 5, seed=3, segments=(60, 40))
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(100))
    # each run is validated on its own blocks: a share of each, and no block spans the join at frame 60
    assert 0 < np.sum(val < 60) < 60 and 0 < np.sum(val >= 60) < 40
    first, second = val[val < 60], val[val >= 60]
    assert np.all(np.diff(np.sort(first)) >= 1) and second.min() >= 60
    with pytest.raises(ConfigurationError, match="segments"):
        time_block_split(100, 0.2, 5, segments=(60, 30))


def test_data_at_several_temperatures(fluids):
    data = load_force_data_at([(fluids[t], f"{t:g} K") for t in TRAIN])
    assert data.segments == (60, 60, 60) and data.n_frames == 180
    assert data.temperatures == list(TRAIN)
    assert torch.equal(data.temperature[:60], torch.full((60,), 260.0))
    assert torch.equal(data.temperature[120:], torch.full((60,), 340.0))
    # a temperature given as None is the dataset's own
    assert load_force_data_at([(fluids[300.0], None)]).temperatures == [300.0]
    assert recorded_temperature(fluids[260.0]) == 260.0


def test_bad_multi_temperature_data(fluids, tmp_path):
    with pytest.raises(DatasetError, match=r"given as data at 280 K, but its metadata says .* 260 K"):
        load_force_data_at([(fluids[260.0], "280 K"), (fluids[300.0], "300 K")])
    with pytest.raises(DatasetError, match="both at 300 K"):
        load_force_data_at([(fluids[300.0], "300 K"), (fluids[300.0], "300 K")])
    # a dataset that records no temperature needs one given
    bare = tmp_path / "bare.h5"
    ds = open_dataset(fluids[300.0])
    from openmm_cgml.dataset import write_dataset

    write_dataset(bare, dataclasses.replace(ds, metadata={k: v for k, v in ds.metadata.items()
                                                          if k not in ("temperature", "temperature_K")}))
    assert recorded_temperature(bare) is None
    with pytest.raises(DatasetError, match="records no temperature"):
        load_force_data_at([(bare, None)])
    # another mapping (here another system size) is refused
    other = simulate_known_fluid(tmp_path / "other.h5", n_frames=4, interval=10, n_dimers=27, box=2.1,
                                 temperature=320.0)
    with pytest.raises(InvalidMappingError, match="different mappings"):
        load_force_data_at([(fluids[300.0], "300 K"), (other, "320 K")])
    with pytest.raises(DatasetError, match="a temperature, or none"):
        combine_force_data([load_force_data(fluids[300.0], temperature=300.0), load_force_data(fluids[340.0])])


def test_train_config_of_several_datasets(fluids, tmp_path):
    base = {"output": str(tmp_path / "out"), "model": {"name": "schnet", "temperature_scale": "40 K"}}
    cfg = TrainConfig.from_data({**base, "datasets": [{"path": str(fluids[t]), "temperature": f"{t:g} K"}
                                                      for t in TRAIN]})
    assert cfg.data_temperature == pytest.approx(300.0)
    assert cfg.prior_dataset() == (fluids[300.0], 300.0)
    with pytest.raises(ConfigurationError, match="exactly one of 'dataset'"):
        TrainConfig.from_data({**base, "dataset": str(fluids[300.0]),
                               "datasets": [{"path": str(fluids[260.0]), "temperature": "260 K"}]})
    with pytest.raises(ConfigurationError, match="not a top-level"):
        TrainConfig.from_data({**base, "temperature": "300 K",
                               "datasets": [{"path": str(fluids[260.0]), "temperature": "260 K"}]})
    with pytest.raises(ConfigurationError, match="same temperature"):
        TrainConfig.from_data({**base, "datasets": [{"path": str(fluids[300.0]), "temperature": "300 K"},
                                                    {"path": str(fluids[340.0]), "temperature": "300 K"}]})
    # the temperatures are checked against the files before any training
    bad = {**base, "datasets": [{"path": str(fluids[300.0]), "temperature": "300 K"},
                                {"path": str(fluids[340.0]), "temperature": "350 K"}]}
    with pytest.raises(DatasetError, match="metadata says"):
        run_train(TrainConfig.from_data(bad))
    assert not (tmp_path / "out" / "checkpoint.chk").exists()


def _force_rmse(bundle_path, path, temperature):
    data = load_force_data(path)
    term = NeuralForceTerm(bundle_path, backend="python", temperature=temperature)
    model = term.build_model(data.topology, with_priors=True)
    pos = data.positions.clone().requires_grad_(True)
    energy = model.energy_batch(pos, data.boxes)
    (grad,) = torch.autograd.grad(energy.sum(), pos)
    return float(((-grad - data.forces) ** 2).mean() / (data.forces ** 2).mean()) ** 0.5


@pytest.mark.slow
def test_a_temperature_conditioned_model_recovers_the_potential_between_its_temperatures(fluids, tmp_path, caplog):
    """Trained on 260, 300 and 340 K of a potential whose well depth grows with T, one temperature-conditioned model
    predicts the forces at 320 K, which it never saw, better than the same network trained on the same frames
    without the temperature (which can only fit their average potential)."""
    data = load_force_data_at([(fluids[t], t) for t in TRAIN])
    settings = TrainingConfig.from_data({"epochs": 25, "batch_size": 12, "learning_rate": 3e-3, "progress": False})
    conditioned = train_force_matching(data, _model_config(fluids[300.0], True), settings,
                                       output_dir=tmp_path / "t", prior_only_baseline=False)
    plain = train_force_matching(combine_force_data([load_force_data(fluids[t]) for t in TRAIN]),
                                 _model_config(fluids[300.0], False), settings, output_dir=tmp_path / "p",
                                 prior_only_baseline=False)
    bundle = load_bundle(conditioned.bundle_path)
    assert trained_temperatures(bundle) == list(TRAIN)
    assert bundle.training["temperature_range_K"] == [260.0, 340.0]
    rmse_t = _force_rmse(conditioned.bundle_path, fluids[HELD_OUT], HELD_OUT)
    rmse_p = _force_rmse(plain.bundle_path, fluids[HELD_OUT], HELD_OUT)
    assert rmse_t < 0.8 * rmse_p, (rmse_t, rmse_p)
    # the temperature is an input that matters: evaluated at 260 K the 320 K forces are worse
    assert _force_rmse(conditioned.bundle_path, fluids[HELD_OUT], 260.0) > rmse_t
    # a System needs the temperature; outside the trained range it warns
    with pytest.raises(ConfigurationError, match="temperature-conditioned, trained at 260, 300, 340 K"):
        NeuralForceTerm(conditioned.bundle_path)
    with caplog.at_level(logging.WARNING, logger="openmm_cgml.forces.neural"):
        NeuralForceTerm(conditioned.bundle_path, temperature="380 K")
    assert "extrapolates" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="openmm_cgml.forces.neural"):
        NeuralForceTerm(conditioned.bundle_path, temperature="320 K")
    assert "extrapolates" not in caplog.text


def test_the_system_runs_the_model_at_its_temperature(fluids, tmp_path):
    """The OpenMM force of a temperature-conditioned bundle is the model's energy at the term's temperature."""
    import openmm

    data = load_force_data_at([(fluids[t], t) for t in TRAIN])
    result = train_force_matching(data, _model_config(fluids[300.0], True),
                                  {"epochs": 1, "batch_size": 30, "progress": False}, output_dir=tmp_path,
                                  prior_only_baseline=False)
    ds = open_dataset(fluids[HELD_OUT])
    topology = CGTopology.from_dataset(ds)
    energies = {}
    for t in (260.0, 340.0):
        term = NeuralForceTerm(result.bundle_path, backend="python", temperature=t, dtype="float64")
        system = openmm.System()
        for m in topology.masses:
            system.addParticle(float(m))
        system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*v) for v in topology.box_vectors))
        for f in term.create_forces(topology):
            system.addForce(f)
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(ds.positions[0])
        energies[t] = ctx.getState(getEnergy=True).getPotentialEnergy()._value
        model = load_bundle(result.bundle_path).build_model(topology, dtype="float64")
        ref = model.energy_batch(torch.as_tensor(ds.positions[:1], dtype=torch.float64),
                                 torch.as_tensor(ds.box[:1], dtype=torch.float64),
                                 torch.tensor([t], dtype=torch.float64))
        assert energies[t] == pytest.approx(float(ref.detach()), rel=1e-6, abs=1e-6)
    assert abs(energies[260.0] - energies[340.0]) > 1e-6
    with pytest.raises(ConfigurationError, match="does not take a temperature"):
        plain = train_force_matching(load_force_data(fluids[300.0]), _model_config(fluids[300.0], False),
                                     {"epochs": 1, "batch_size": 30, "progress": False},
                                     output_dir=tmp_path / "plain", prior_only_baseline=False)
        load_bundle(plain.bundle_path).build_model(topology).set_temperature(300.0)
