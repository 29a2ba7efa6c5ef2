"""Tabulated continuous filters (the inference fast path): accuracy, smoothness, invariances, TorchScript."""

import numpy as np
import pytest
import torch
from _neural_helpers import (
    _one_torch_thread,  # noqa: F401  (autouse fixture)
    make_model,
    trimer_info,
    trimer_positions,
)

from openmm_cgml.exceptions import ConfigurationError
from openmm_cgml.models import forces_and_energy
from openmm_cgml.topology import CGTopology

BOX = 2.0


@pytest.fixture(scope="module")
def periodic():
    info = trimer_info(8, box=BOX)
    pos = torch.tensor(trimer_positions(info, seed=3))
    box = torch.eye(3, dtype=torch.float64) * BOX
    return info, pos, box


def _errors(model, pos, box, spacing):
    model.clear_tables()
    e0, f0 = forces_and_energy(model, pos, box)
    model.tabulate_filters(spacing)
    e1, f1 = forces_and_energy(model, pos, box)
    return abs(float(e1 - e0)) / abs(float(e0)), float((f1 - f0).norm() / f0.norm()), float(f0.norm())


def test_tabulated_equals_exact_network(periodic):
    """Network only (no priors, which would dilute the error): float64, spacing 0.001 nm.

    Stated tolerance: relative energy error < 1e-8 and relative force error (Frobenius) < 1e-6;
    the interpolation error of the forces shrinks like h^3 (at least 4x per halving of h).
    """
    info, pos, box = periodic
    model = make_model(info, priors=[])
    e_rel, f_rel, f_norm = _errors(model, pos, box, 0.001)
    assert f_norm > 1.0  # the network forces are not negligible
    assert e_rel < 1e-8 and f_rel < 1e-6
    coarse = _errors(model, pos, box, 0.02)[1]
    half = _errors(model, pos, box, 0.01)[1]
    assert coarse > 4.0 * half > 0.0  # converges like an interpolation (not an accidental match)
    assert model.use_tables and model.table_spacing == 0.01


def test_tables_leave_weights_and_bundle_format_alone(periodic):
    info, pos, box = periodic
    model = make_model(info)
    keys = set(model.state_dict())
    model.tabulate_filters(0.002)
    assert set(model.state_dict()) == keys  # non-persistent buffers: bundles are unchanged
    assert model.inter_table.coeffs.shape == (450, 4 * 2 * 16)  # 0.9 nm / 0.002 nm intervals, 2 steps x 16
    model.train()
    assert not model.use_tables  # training mode drops the (stale) tables
    model.eval()
    assert not model.use_tables
    with pytest.raises(ConfigurationError, match="spacing"):
        model.tabulate_filters(0.0)


def test_tabulated_gradcheck_and_invariances():
    info = trimer_info(2, box=1.6)
    x = torch.tensor(trimer_positions(info, box=1.6))
    box = torch.eye(3, dtype=torch.float64) * 1.6
    model = make_model(info, skin=0.0, inter_cutoff=0.75).tabulate_filters(0.005)
    xg = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: model(p, box), (xg,), eps=1e-6, atol=1e-5, rtol=1e-4)
    e0, f0 = forces_and_energy(model, x, box)
    shifted = (x + torch.tensor([0.7, 1.3, -0.4], dtype=torch.float64)) % 1.6
    e1, f1 = forces_and_energy(model, shifted, box)
    assert float(e1) == pytest.approx(float(e0), rel=1e-10)
    torch.testing.assert_close(f1, f0)
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    rot = torch.tensor(q * np.sign(np.linalg.det(q)))
    e2, f2 = forces_and_energy(model, x @ rot.T, None)
    e3, f3 = forces_and_energy(model, x, None)
    assert float(e2) == pytest.approx(float(e3), rel=1e-10)
    torch.testing.assert_close(f2, f3 @ rot.T)
    perm = torch.tensor([3, 4, 5, 0, 1, 2])  # swap the two molecules
    e4, f4 = forces_and_energy(model, x[perm], box)
    assert float(e4) == pytest.approx(float(e0), rel=1e-10)
    torch.testing.assert_close(f4, f0[perm])


def test_smooth_through_the_cutoff():
    """A pair of different molecules crossing the intermolecular cutoff: energy and force go to zero continuously."""
    top = CGTopology(("A", "B"), np.array([0, 1]), np.zeros((0, 2), int), np.ones(2))
    model = make_model(top, priors=[], skin=0.0, inter_cutoff=0.9).tabulate_filters(0.001)
    lone = forces_and_energy(model, torch.tensor([[0.0, 0, 0], [5.0, 0, 0]], dtype=torch.float64))[0]
    energies, forces = [], []
    for r in (0.5, 0.8999, 0.899999, 0.9000001):
        e, f = forces_and_energy(model, torch.tensor([[0.0, 0, 0], [r, 0, 0]], dtype=torch.float64))
        energies.append(float(e - lone))
        forces.append(float(f[1, 0]))
    assert abs(energies[0]) > 1e-3 and abs(forces[0]) > 1e-3  # the pair interacts at 0.5 nm
    assert abs(energies[1]) < 1e-6 * abs(energies[0]) and abs(forces[1]) < 1e-3 * abs(forces[0])
    assert abs(energies[2]) < abs(energies[1]) and energies[3] == 0.0 and forces[3] == 0.0


def test_tabulated_model_scripts_and_runs_in_float32(periodic):
    from openmm_cgml.forces.neural import _script

    info, pos, box = periodic
    exact = make_model(info)
    e0, f0 = forces_and_energy(exact, pos, box)
    single = make_model(info, dtype="float32").tabulate_filters(0.001)
    scripted = _script(single, True, True)
    e1, f1 = scripted(pos, box)
    assert e1.dtype == torch.float64 and f1.dtype == torch.float64
    assert float(e1) == pytest.approx(float(e0), rel=1e-4)
    assert float((f1 - f0).abs().max()) < 1e-3 * float(f0.abs().max())
