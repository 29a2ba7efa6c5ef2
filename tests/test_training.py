"""Force matching: recovering a known potential, resume == uninterrupted, splits, bad data."""

import json

import numpy as np
import pytest
import torch
from _cg_fluid import boltzmann_bond_prior, simulate_known_fluid
from _neural_helpers import _one_torch_thread  # noqa: F401  (autouse fixture)

from openmm_cgml.dataset import open_dataset
from openmm_cgml.exceptions import CheckpointError, DatasetError
from openmm_cgml.models import build_model, load_bundle
from openmm_cgml.training import (
    ForceMatchingTrainer,
    PairCache,
    TrainingConfig,
    accumulate_force_loss,
    evaluate,
    force_loss,
    load_force_data,
    pass_chunks,
    time_block_split,
    train_force_matching,
)


@pytest.fixture(scope="module")
def fluid(tmp_path_factory):
    """32 A-B dimers with LJ pairs + harmonic bonds (known potential), exact forces, 80 frames."""
    path = tmp_path_factory.mktemp("fluid") / "fluid.h5"
    simulate_known_fluid(path, n_frames=80, interval=50)
    ds = open_dataset(path)
    bonds = np.array([[2 * m, 2 * m + 1] for m in range(32)])
    model_config = {"name": "schnet", "args": {
        "hidden": 24, "n_rbf": 16, "n_interactions": 2, "intra_cutoff": 0.5, "inter_cutoff": 0.9,
        "priors": [{"name": "harmonic_bond", "args": {"parameters": boltzmann_bond_prior(ds, bonds)}},
                   {"name": "repulsion", "args": {"sigma": 0.3, "exponent": 12, "cutoff": 0.5}}]}}
    return path, model_config


def test_force_matching_recovers_the_known_potential(fluid, tmp_path):
    """The data are exact forces of the known potential, so learned forces must approach them.

    Stated error: on held-out time blocks the force RMSE is below 10 % of the RMS force and
    below half the error of the fitted priors alone (which miss the LJ pair forces).
    """
    path, model_config = fluid
    result = train_force_matching(path, model_config, {"epochs": 30, "batch_size": 8, "learning_rate": 3e-3,
                                                       "progress": False}, output_dir=tmp_path)
    bundle = load_bundle(result.bundle_path)
    val = bundle.training["validation"]
    base = bundle.training["baselines"]
    assert val["relative_rmse"] < 0.10
    assert val["mse"] < 0.5 * base["prior_only_mse"]
    assert base["prior_only_mse"] < base["zero_force_mse"]
    margin = base["prior_margin"]  # per validation frame, with a block error: a clear win
    assert margin["beats_priors"] and margin["relative_improvement"] > 0.5 and margin["n_frames"] > 0
    assert 0.0 <= base["force_noise"]["noise_fraction"] <= 1.0 and base["force_noise"]["n_frames"] == 80
    curve = json.loads((tmp_path / "loss_curve.json").read_text())["history"]
    assert len(curve) == len(result.history) and curve[-1]["val_mse"] < curve[0]["val_mse"]
    assert (tmp_path / "loss_curve.csv").read_text().startswith("epoch,")
    assert (tmp_path / "loss_curve.png").stat().st_size > 1000
    # the bundle loads without the training code and reproduces the validated forces
    data = load_force_data(path)
    model = bundle.build_model(data.topology)
    pos = data.positions[-1].clone().requires_grad_(True)
    energy = model(pos, data.boxes[-1])
    (grad,) = torch.autograd.grad(energy, pos)
    rel = float(((-grad - data.forces[-1]) ** 2).mean() / (data.forces[-1] ** 2).mean()) ** 0.5
    assert rel < 0.15


@pytest.mark.parametrize("noise", ["0 nm", "0.003 nm"])
def test_resume_equals_uninterrupted(fluid, tmp_path, noise):
    """Also with position noise (drawn from a generator seeded per epoch)."""
    path, model_config = fluid
    data = load_force_data(path, max_frames=24)
    small = {"name": "schnet", "args": dict(model_config["args"], hidden=8, n_interactions=1)}
    cfg = {"epochs": 4, "batch_size": 6, "progress": False, "seed": 7, "position_noise": noise}
    full = ForceMatchingTrainer(small, data, cfg, tmp_path / "full").train()
    interrupted = ForceMatchingTrainer(small, data, cfg, tmp_path / "split")
    first = interrupted.train(max_epochs=2)
    assert len(first.history) == 2
    resumed = ForceMatchingTrainer(small, data, cfg, tmp_path / "split").train(resume=True)
    assert [h["val_mse"] for h in resumed.history] == [h["val_mse"] for h in full.history]
    for key, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0)
    # a checkpoint from another run is refused
    other = {"name": "schnet", "args": dict(small["args"], hidden=12)}
    with pytest.raises(CheckpointError, match=r"different training run.*these settings differ: model\.args\.hidden"):
        ForceMatchingTrainer(other, data, cfg, tmp_path / "split").train(resume=True)
    (tmp_path / "split" / "checkpoint.chk").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        ForceMatchingTrainer(small, data, cfg, tmp_path / "split").train(resume=True)


def test_time_block_split():
    train, val = time_block_split(100, 0.2, 10, seed=3)
    assert len(train) + len(val) == 100 and not set(train) & set(val)
    assert len(val) == 20
    # validation frames come in contiguous blocks of 10
    assert all(np.all(np.diff(b) == 1) for b in np.split(np.sort(val), 2))
    again, _ = time_block_split(100, 0.2, 10, seed=3)
    np.testing.assert_array_equal(train, again)


def test_bad_datasets(fluid, tmp_path):
    nan_path = tmp_path / "nan.h5"
    simulate_known_fluid(nan_path, n_frames=6, interval=10, nan_frame=4)
    with pytest.raises(DatasetError, match=r"non-finite forces.*first \[4\]"):
        load_force_data(nan_path)
    # an all-atom dataset is refused with a pointer to the mapping step
    from openmm_cgml.dataset import write_dataset

    ds = open_dataset(fluid[0])
    aa = tmp_path / "aa.h5"
    import dataclasses

    write_dataset(aa, dataclasses.replace(ds, kind="all-atom"))
    with pytest.raises(DatasetError, match="coarse-grained"):
        load_force_data(aa)
    # cutoff beyond half the box
    path, model_config = fluid
    too_long = {"name": "schnet", "args": dict(model_config["args"], inter_cutoff=1.5)}
    from openmm_cgml.exceptions import InvalidSystemError

    with pytest.raises(InvalidSystemError, match="half the smallest box width"):
        ForceMatchingTrainer(too_long, load_force_data(path, max_frames=4), {"progress": False})


def test_cached_pairs_give_the_same_loss_and_gradients(fluid):
    """The per-frame pair cache (searched once, reused every epoch) changes nothing but the speed."""
    path, model_config = fluid
    data = load_force_data(path, max_frames=12)
    torch.manual_seed(0)
    model = build_model({"name": "schnet", "args": dict(model_config["args"], type_names=["A", "B"])}, data.topology)
    cache = PairCache(data, model.cutoff)
    assert len(cache.pairs) == 12 and cache.pairs[0].shape[1] > 100
    index = [7, 2, 5]
    results = []
    for pc in (None, cache):
        model.zero_grad()
        loss = force_loss(model, data, index, pair_cache=pc)
        loss.backward()
        results.append((float(loss.detach()), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-5)
    assert len(results[0][1]) == len(results[1][1]) > 5
    # with position noise, a cache reaching 6 sigma further loses no pair (same noise, same loss)
    sigma = 0.004
    wide = PairCache(data, model.cutoff, margin=0.01 + 6 * sigma)
    noisy = [float(force_loss(model, data, index, pair_cache=pc, noise=sigma,
                              generator=torch.Generator().manual_seed(1)).detach()) for pc in (None, wide)]
    assert noisy[1] == pytest.approx(noisy[0], rel=1e-5) and noisy[0] != pytest.approx(results[0][0], rel=1e-3)
    for g0, g1 in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(g1, g0, rtol=1e-4, atol=1e-4 * float(g0.abs().max()) + 1e-12)


def test_passes_of_limited_pairs_give_the_batch_gradient(fluid):
    """Splitting a mini-batch into passes of at most ``max_pairs`` pairs (gradients accumulated) gives the
    loss and gradients of one pass over the batch."""
    path, model_config = fluid
    data = load_force_data(path, max_frames=12)
    torch.manual_seed(0)
    model = build_model({"name": "schnet", "args": dict(model_config["args"], type_names=["A", "B"])}, data.topology)
    cache = PairCache(data, model.cutoff)
    index = np.array([7, 2, 5, 9, 0])
    sizes = [int(cache.pairs[f].shape[1]) for f in index]
    chunks = pass_chunks(index, cache, sizes[0] + sizes[1])
    assert [c.tolist() for c in chunks][0] == [7, 2] and np.array_equal(np.concatenate(chunks), index)
    assert all(sum(int(cache.pairs[f].shape[1]) for f in c) <= sizes[0] + sizes[1] or len(c) == 1 for c in chunks)
    assert [len(c) for c in pass_chunks(index, cache, 1)] == [1] * 5  # at least one frame per pass
    assert len(pass_chunks(index, None, 1)) == 1  # nothing to count without a cache

    results = []
    for max_pairs in (10**9, sizes[0] + sizes[1], 1):
        model.zero_grad()
        loss = accumulate_force_loss(model, data, index, pair_cache=cache, max_pairs=max_pairs)
        results.append((loss, [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    for loss, grads in results[1:]:
        assert loss == pytest.approx(results[0][0], rel=1e-5)
        for g0, g1 in zip(results[0][1], grads):
            torch.testing.assert_close(g1, g0, rtol=1e-4, atol=1e-4 * float(g0.abs().max()) + 1e-12)
    # validation is split the same way and gives the same error
    full = evaluate(model, data, index, batch_size=5, pair_cache=cache, max_pairs=10**9)
    for max_pairs in (sizes[0] + sizes[1], 1):
        split = evaluate(model, data, index, batch_size=5, pair_cache=cache, max_pairs=max_pairs)
        assert split["mse"] == pytest.approx(full["mse"], rel=1e-5)
    assert evaluate(model, data, index, batch_size=2)["mse"] == pytest.approx(full["mse"], rel=1e-4)
    with pytest.raises(Exception, match="max_pairs_per_pass"):
        TrainingConfig.from_data({"max_pairs_per_pass": 0})


def test_boltzmann_priors_recover_the_known_bond(fluid):
    """Priors estimated from the data: the harmonic bond of the known fluid (r0 = 0.30 nm, k = 4000 kJ/mol/nm^2)
    is recovered by Boltzmann inversion, and the repulsion sigma sits below the LJ contact distances."""
    from _cg_fluid import BOND_K, BOND_R0, SIGMA

    from openmm_cgml.exceptions import ConfigurationError
    from openmm_cgml.training import boltzmann_priors

    path, _ = fluid
    priors = {p["name"]: p["args"] for p in boltzmann_priors(path, 300.0, cutoff=0.8)}
    assert set(priors) == {"repulsion", "harmonic_bond"}  # dimers: no angles
    bond = priors["harmonic_bond"]["parameters"]["A-B"]
    assert bond["r0"] == pytest.approx(BOND_R0, rel=0.01)
    assert bond["k"] == pytest.approx(BOND_K, rel=0.15)
    sigma = priors["repulsion"]["sigma"]
    assert priors["repulsion"]["exponent"] == 12  # a wall steep enough that a network cannot dig under it
    assert set(sigma) == {"A-A", "A-B", "B-B"}
    for key, s in sigma.items():
        assert 0.6 * SIGMA[key] < s < SIGMA[key]  # below contact (the LJ wall starts near sigma), not far below
    assert sigma["A-A"] < sigma["B-B"]  # follows the bead sizes
    model = build_model({"name": "schnet", "args": {"type_names": ["A", "B"], "hidden": 8, "n_rbf": 8,
                                                    "priors": boltzmann_priors(path, 300.0)}},
                        load_force_data(path, max_frames=2).topology)
    assert len(model.prior_modules) == 2
    with pytest.raises(ConfigurationError, match="temperature"):
        boltzmann_priors(path, None)


def test_position_noise_is_a_penalty_on_force_derivatives(fluid):
    """Training with Gaussian position noise of width sigma adds sigma^2 |dF/dx|^2 to the loss (Tikhonov, to
    leading order): with the model's own forces as the reference, the mean noisy loss over many draws equals
    sigma^2 times the mean squared entry of the force Jacobian (the Hessian), computed here by autograd."""
    from dataclasses import replace

    path, model_config = fluid
    data = load_force_data(path, max_frames=2, dtype=torch.float64)
    torch.manual_seed(0)
    model = build_model({"name": "schnet", "args": dict(model_config["args"], type_names=["A", "B"], hidden=8,
                                                        dtype="float64")}, data.topology)
    x = data.positions[0].clone().requires_grad_(True)
    energy = model.energy_batch(x[None], data.boxes[:1])[0]
    (grad,) = torch.autograd.grad(energy, x, create_graph=True)
    hessian = torch.stack([torch.autograd.grad(g, x, retain_graph=True)[0].reshape(-1) for g in grad.reshape(-1)])
    own = replace(data, forces=(-grad).detach()[None])  # the model's own forces: zero loss without noise
    assert float(force_loss(model, own, [0], create_graph=False)) < 1e-20
    sigma = 2e-4  # nm: small enough for the leading order, large enough to dominate float64 round-off
    n_draws = 400
    gen = torch.Generator().manual_seed(3)
    losses = [float(force_loss(model, own, [0], create_graph=False, noise=sigma, generator=gen))
              for _ in range(n_draws)]
    expected = sigma**2 * float((hessian**2).mean()) * hessian.shape[0]  # sum over k of J_ik^2, mean over i
    assert np.mean(losses) == pytest.approx(expected, rel=0.05)
    # the generator makes the noise reproducible, and training is deterministic with it
    a = float(force_loss(model, own, [0], create_graph=False, noise=sigma, generator=torch.Generator().manual_seed(5)))
    b = float(force_loss(model, own, [0], create_graph=False, noise=sigma, generator=torch.Generator().manual_seed(5)))
    assert a == b
    with pytest.raises(Exception, match="position_noise must be >= 0"):
        TrainingConfig.from_data({"position_noise": "-0.001 nm"})
    with pytest.raises(Exception, match="no unit"):
        TrainingConfig.from_data({"position_noise": 0.001})


def test_a_network_no_better_than_its_priors_is_told_so():
    """prior_margin: a per-frame improvement within the frames' noise is not a meaningful margin; a clear one is."""
    from openmm_cgml.training.loop import prior_margin

    rng = np.random.default_rng(0)
    prior = 2.9e5 * (1 + 0.05 * rng.standard_normal(200))
    same = prior * (1 - 1e-4) + 2e3 * rng.standard_normal(200)
    verdict = prior_margin(same, prior)
    assert not verdict["beats_priors"] and abs(verdict["relative_improvement"]) < 3 * verdict["relative_improvement_err"]
    better = prior_margin(0.9 * prior, prior)
    assert better["beats_priors"] and better["relative_improvement"] == pytest.approx(0.1)


def test_the_noise_fraction_of_forces_with_a_known_share_of_noise():
    """A slow signal (correlation time 20 frames, variance 1) plus white noise of variance 9: 90 % noise; exact
    (noise-free) slow forces: none."""
    from openmm_cgml.analysis import force_noise_fraction

    rng = np.random.default_rng(0)
    n, b = 2000, 50
    a = np.exp(-1 / 20)
    slow = np.zeros((n, b, 3))
    slow[0] = rng.standard_normal((b, 3))
    for t in range(1, n):
        slow[t] = a * slow[t - 1] + np.sqrt(1 - a * a) * rng.standard_normal((b, 3))
    noisy = force_noise_fraction(slow + 3 * rng.standard_normal((n, b, 3)))
    assert noisy["noise_fraction"] == pytest.approx(0.9, abs=0.015) and 0 < noisy["noise_fraction_err"] < 0.02
    assert force_noise_fraction(slow)["noise_fraction"] < 0.01
    with pytest.raises(Exception, match="too few"):
        force_noise_fraction(slow[:10])
