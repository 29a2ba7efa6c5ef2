"""Small CG systems and models shared by the neural-model tests."""

from __future__ import annotations

import numpy as np
import openmm
import pytest
import torch

from openmm_cgml.models import CGSchNet
from openmm_cgml.topology import CGTopology

PRIORS = [
    {"name": "repulsion", "args": {"sigma": {"A-A": 0.30, "A-B": 0.32, "B-B": 0.35}, "exponent": 6, "cutoff": 0.7}},
    {"name": "harmonic_bond", "args": {"parameters": {"A-B": {"r0": 0.28, "k": 3000.0}}}},
    {"name": "harmonic_angle", "args": {"parameters": {"A-B-A": {"theta0": 2.0, "k": 40.0}}}},
]


def trimer_info(n_mol: int = 8, box: float | None = 2.0, types=("A", "B", "A")) -> CGTopology:
    """``n_mol`` bent A-B-A trimers (CGTopology; periodic cubic box when ``box`` is given)."""
    k = len(types)
    bead_types = tuple(types) * n_mol
    mol = np.repeat(np.arange(n_mol), k)
    bonds = np.array([[k * m + b, k * m + b + 1] for m in range(n_mol) for b in range(k - 1)])
    angles = np.array([[k * m + b, k * m + b + 1, k * m + b + 2] for m in range(n_mol) for b in range(k - 2)])
    return CGTopology(bead_types, mol, bonds, np.full(len(bead_types), 40.0),
                        None if box is None else np.eye(3) * box, angles=angles.reshape(-1, 3))


def trimer_positions(info: CGTopology, seed: int = 0, box: float = 2.0) -> np.ndarray:
    """Molecules on a grid with bond lengths near 0.28 nm (no overlaps), nm."""
    rng = np.random.default_rng(seed)
    n_mol = int(info.molecule_index.max()) + 1
    grid = int(np.ceil(n_mol ** (1 / 3)))
    spacing = box / grid
    out = []
    for m in range(n_mol):
        c = (np.array([m % grid, (m // grid) % grid, m // grid**2]) + 0.5) * spacing + rng.normal(0, 0.03, 3)
        out += [c + [-0.24, 0.0, 0.0], c + [0.0, 0.14, 0.0], c + [0.24, 0.0, 0.02]]
    pos = np.array(out)
    return pos + rng.normal(0, 0.01, pos.shape)


def openmm_system(info: CGTopology, forces) -> openmm.System:
    """An OpenMM System of ``info``'s masses and box with ``forces``, each in its own force group."""
    system = openmm.System()
    for m in info.masses:
        system.addParticle(float(m))
    if info.box_vectors is not None:
        system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*v) for v in info.box_vectors))
    for group, force in enumerate(forces):
        force.setForceGroup(group)
        system.addForce(force)
    return system


def make_model(info, dtype: str = "float64", seed: int = 0, **kwargs) -> CGSchNet:
    torch.manual_seed(seed)
    args = dict(hidden=16, n_rbf=12, n_interactions=2, intra_cutoff=0.6, inter_cutoff=0.9, priors=PRIORS, dtype=dtype)
    args.update(kwargs)
    model = CGSchNet(["A", "B"], **args).bind(info)
    # random init gives tiny readout weights; scale them so the network part is not negligible in tests
    with torch.no_grad():
        model.readout[-1].weight.mul_(20.0)
    return model


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small tensors on a shared 2-core machine: one thread is several times faster than two."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
