"""The CG SchNet model: gradients, invariances, periodic images, Verlet cache, registry, plain-data rebuild."""

import numpy as np
import pytest
import torch
from _neural_helpers import (
    PRIORS,
    _one_torch_thread,  # noqa: F401  (autouse fixture)
    make_model,
    trimer_info,
    trimer_positions,
)

from openmm_cgml.exceptions import ConfigurationError, InvalidMappingError, UnknownNameError
from openmm_cgml.models import MODELS, CGSchNet, Prior, build_model, forces_and_energy
from openmm_cgml.models import PRIORS as PRIOR_REGISTRY
from openmm_cgml.topology import CGTopology


@pytest.fixture(scope="module")
def system():
    info = trimer_info(4, box=None)
    pos = torch.tensor(trimer_positions(info, box=1.6))
    return info, pos


def test_gradcheck_float64():
    info = trimer_info(2, box=1.6)
    x = torch.tensor(trimer_positions(info, box=1.6)).requires_grad_(True)
    box = torch.eye(3, dtype=torch.float64) * 1.6
    for b in (None, box):
        model = make_model(info, skin=0.0, inter_cutoff=0.75)
        assert torch.autograd.gradcheck(lambda p, b=b, model=model: model(p, b), (x,), eps=1e-6, atol=1e-5,
                                        rtol=1e-4, fast_mode=True)


def _rotation(seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return torch.tensor(q * np.sign(np.linalg.det(q)))


def test_rotation_translation_invariance(system):
    info, pos = system
    model = make_model(info)
    e0, f0 = forces_and_energy(model, pos)
    rot = _rotation(2)
    e1, f1 = forces_and_energy(model, pos @ rot.T + torch.tensor([0.3, -1.2, 5.0], dtype=torch.float64))
    assert float(e1) == pytest.approx(float(e0), rel=1e-10)
    torch.testing.assert_close(f1, f0 @ rot.T)  # forces rotate with the frame
    assert float(f0.norm()) > 1.0  # the test is not vacuous
    # periodic: translating every bead (and wrapping some) leaves the energy unchanged
    pinfo = trimer_info(4, box=2.0)
    pmodel = make_model(pinfo)
    box = torch.eye(3, dtype=torch.float64) * 2.0
    e2, f2 = forces_and_energy(pmodel, pos, box)
    shifted = (pos + torch.tensor([0.7, 1.9, -0.4], dtype=torch.float64)) % 2.0
    e3, f3 = forces_and_energy(pmodel, shifted, box)
    assert float(e3) == pytest.approx(float(e2), rel=1e-10)
    torch.testing.assert_close(f3, f2)


def test_same_type_permutation_invariance(system):
    info, pos = system
    model = make_model(info)
    e0, f0 = forces_and_energy(model, pos)
    # swap molecules 0 and 2 (beads 0-2 <-> 6-8): same bead types, same bonds after relabelling
    perm = torch.tensor([6, 7, 8, 3, 4, 5, 0, 1, 2, 9, 10, 11])
    e1, f1 = forces_and_energy(model, pos[perm])
    assert float(e1) == pytest.approx(float(e0), rel=1e-10)
    torch.testing.assert_close(f1, f0[perm])
    # swapping the two end beads (both type A) within every molecule: the bonded graph is symmetric
    perm2 = torch.tensor([2, 1, 0, 5, 4, 3, 8, 7, 6, 11, 10, 9])
    e2, _ = forces_and_energy(model, pos[perm2])
    assert float(e2) == pytest.approx(float(e0), rel=1e-10)


def test_periodic_image_pair_across_boundary():
    top = CGTopology(("A", "B"), np.array([0, 1]), np.zeros((0, 2), int), np.ones(2))
    model = make_model(top, skin=0.0)
    box = torch.eye(3, dtype=torch.float64) * 2.0
    across = torch.tensor([[0.05, 1.0, 1.0], [1.95, 1.0, 1.0]], dtype=torch.float64)  # 0.1 nm apart through x = 0
    inside = torch.tensor([[1.05, 1.0, 1.0], [0.95, 1.0, 1.0]], dtype=torch.float64)  # same geometry
    far = torch.tensor([[0.05, 1.0, 1.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    e_across, f_across = forces_and_energy(model, across, box)
    e_inside, f_inside = forces_and_energy(model, inside, box)
    e_free, _ = forces_and_energy(model, across, None)
    assert float(e_across) == pytest.approx(float(e_inside), rel=1e-10)
    torch.testing.assert_close(f_across, f_inside)
    assert abs(float(e_across) - float(e_free)) > 1.0  # without the box the pair is 1.9 nm apart: no interaction
    e_far, _ = forces_and_energy(model, far, box)
    assert abs(float(e_far) - float(e_across)) > 1.0


def test_verlet_cache_matches_fresh_search():
    info = trimer_info(4, box=1.6)
    pos = torch.tensor(trimer_positions(info, box=1.6))
    box = torch.eye(3, dtype=torch.float64) * 1.6
    cached = make_model(info, skin=0.2, inter_cutoff=0.6)  # skin is clipped to half box - cutoff
    fresh = make_model(info, skin=0.0, inter_cutoff=0.6)
    gen = torch.Generator().manual_seed(0)
    x = pos.clone()
    for _ in range(8):
        x = x + 0.006 * torch.randn(x.shape, generator=gen, dtype=torch.float64)
        e_c, f_c = forces_and_energy(cached, x, box)
        e_f, f_f = forces_and_energy(fresh, x, box)
        assert float(e_c) == pytest.approx(float(e_f), rel=1e-10)
        torch.testing.assert_close(f_c, f_f)
    assert cached.n_rebuilds < 8 and fresh.n_rebuilds == 8


def test_temperature_input_is_normalised():
    info = trimer_info(4, box=None)
    pos = torch.tensor(trimer_positions(info, box=1.6)).unsqueeze(0).repeat(2, 1, 1)
    model = make_model(info, temperature={"reference": 300.0, "scale": 50.0, "default": 300.0})
    with torch.no_grad():
        model.temperature_embedding.weight.normal_()
        e = model.energy_batch(pos, None, torch.tensor([300.0, 350.0], dtype=torch.float64))
        e_default = model(pos[0], None)
    assert float(e[0]) == pytest.approx(float(e_default), rel=1e-12)
    assert abs(float(e[1] - e[0])) > 1e-3
    plain = make_model(info)
    with torch.no_grad():
        assert float(plain.energy_batch(pos, None, torch.tensor([300.0, 900.0]))[1]) == pytest.approx(
            float(plain(pos[0], None)), rel=1e-12)


def test_rebuilt_from_plain_data_and_float32(system):
    info, pos = system
    model = make_model(info)
    with torch.no_grad():
        model.prior_modules[0].log_sigma.add_(0.05)
    config = {"name": "schnet", "args": model.get_init_args()}
    import json

    json.dumps(config)  # plain data only
    clone = build_model(config, info)
    clone.load_state_dict(model.state_dict())
    assert float(clone(pos, None).detach()) == pytest.approx(float(model(pos, None).detach()), rel=1e-12)
    assert clone.get_init_args()["priors"][0]["args"]["sigma"]["A-A"] == pytest.approx(0.30 * np.exp(0.05))
    single = build_model({"name": "schnet", "args": dict(config["args"], dtype="float32")}, info)
    single.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()})
    e32, f32 = forces_and_energy(single, pos.float())
    e64, f64 = forces_and_energy(model, pos)
    assert e32.dtype == torch.float32
    assert float(e32) == pytest.approx(float(e64), rel=1e-4)
    assert float((f32.double() - f64).abs().max()) < 1e-3 * float(f64.abs().max())


def test_sigma_is_learnable_per_type_pair(system):
    info, pos = system
    model = make_model(info)
    rep = model.prior_modules[0]
    assert rep.log_sigma.requires_grad
    table = rep.sigma_table()
    assert float(table[0, 0].detach()) != pytest.approx(float(table[1, 1].detach()))
    e = model(pos, None)
    (g,) = torch.autograd.grad(e, rep.log_sigma)
    assert float(g.abs().sum()) > 0


@pytest.fixture
def scratch_registrations():
    """Names this test registers are removed afterwards: the registries are global, and the contract tests of
    the same worker iterate every registered prior and model."""
    before = {registry: set(registry._entries) for registry in (PRIOR_REGISTRY, MODELS)}
    yield
    for registry, names in before.items():
        for name in set(registry._entries) - names:
            del registry._entries[name]


def test_registry_plugins_and_errors(system, scratch_registrations):
    info, pos = system

    @PRIOR_REGISTRY.register("test_wall", overwrite=True)
    class Wall(Prior):
        name = "test_wall"

        def __init__(self, type_names, k=1.0):
            super().__init__(type_names)
            self.k_wall = float(k)

        def get_init_args(self):
            return {"k": self.k_wall}

        def forward(self, pos, n_frames: int, types, pair_i, pair_j, vec, dist, excluded, boxes=None):
            return self.k_wall * (pos.reshape(n_frames, -1, 3) ** 2).sum((1, 2))

    base = make_model(info, priors=[])
    walled = make_model(info, priors=[{"name": "test_wall", "args": {"k": 2.0}}])
    expected = float(base(pos, None).detach()) + 2.0 * float((pos**2).sum())
    assert float(walled(pos, None).detach()) == pytest.approx(expected, rel=1e-10)

    @MODELS.register("test_schnet_alias", overwrite=True)
    def alias(**kwargs):
        return CGSchNet(**kwargs)

    assert isinstance(build_model({"name": "test_schnet_alias", "args": {"type_names": ["A", "B"]}}), CGSchNet)
    with pytest.raises(UnknownNameError, match="schnet"):
        build_model({"name": "no_such_model", "args": {}})
    with pytest.raises(UnknownNameError, match="repulsion"):
        make_model(info, priors=[{"name": "no_such_prior"}])
    with pytest.raises(ConfigurationError, match="A-B"):
        make_model(info, priors=[{"name": "harmonic_bond", "args": {"parameters": {"A-A": {"r0": 0.3, "k": 1.0}}}}])
    with pytest.raises(InvalidMappingError, match="C"):
        make_model(trimer_info(2, None, types=("A", "C", "A")))
    assert PRIORS  # shared prior configuration is used above


def test_an_intra_cutoff_below_the_bonds_leaves_a_molecule_to_its_priors():
    """``intra_cutoff`` shorter than every bond switches the intramolecular block off (the polymer workflow's
    setting for chains): a lone molecule's network energy is the same in every conformation, so its forces are
    the priors' alone, while other molecules within ``inter_cutoff`` still enter through the network."""
    lone = trimer_info(1, box=None)
    pos = torch.tensor(trimer_positions(lone, box=1.0))
    bent = pos.clone()
    bent[2] += torch.tensor([-0.05, 0.08, 0.03], dtype=torch.float64)  # a new bond length and angle
    for cutoff, network_free in ((0.05, True), (0.6, False)):
        model = make_model(lone, intra_cutoff=cutoff)
        model.drop_priors()
        e0, f0 = forces_and_energy(model, pos)
        e1, f1 = forces_and_energy(model, bent)
        if network_free:
            assert float(e1) == pytest.approx(float(e0), abs=1e-12)
            assert float(f0.abs().max()) == 0.0 and float(f1.abs().max()) == 0.0
        else:  # the same check with the block on is not vacuous
            assert abs(float(e1) - float(e0)) > 1e-3 and float(f0.abs().max()) > 0.05
    # with neighbours the network still acts, on intermolecular pairs only
    info = trimer_info(4, box=None)
    many = torch.tensor(trimer_positions(info, box=1.2))
    model = make_model(info, intra_cutoff=0.05)
    model.drop_priors()
    _, forces = forces_and_energy(model, many)
    assert float(forces.abs().max()) > 0.05
    assert torch.autograd.gradcheck(lambda p: model(p), (many.clone().requires_grad_(True),), eps=1e-6, atol=1e-5,
                                    rtol=1e-4, fast_mode=True)
