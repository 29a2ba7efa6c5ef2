"""Run in a subprocess by ``test_neighbors.py``: registers a stand-in for NNPOps' ``neighbors::getNeighborPairs``
op (NNPOps is conda-only and absent here) with its documented schema and semantics, then checks that our
NNPOps path (search module, probe check, model, TorchForce) gives what the pure-PyTorch path gives.

``python _nnpops_standin.py good|bad``; prints ``OK`` on success.
"""

import math
import sys

import numpy as np
import torch

from openmm_cgml.models.neighbors import minimum_image

MODE = sys.argv[1]
LIB = torch.library.Library("neighbors", "DEF")
LIB.define("getNeighborPairs(Tensor positions, Scalar cutoff, Scalar max_num_neighbors, Tensor box_vectors, "
           "bool checkErrors) -> (Tensor neighbors, Tensor deltas, Tensor distances, Tensor num_pairs)")


def _get_neighbor_pairs(positions, cutoff, max_num_neighbors, box_vectors, check_errors):
    """NNPOps semantics with max_num_neighbors = -1: every pair (row 0 > row 1) listed, -1/NaN beyond the cutoff,
    deltas = positions[row 0] - positions[row 1] at the minimum image."""
    n = positions.shape[0]
    i, j = torch.tril_indices(n, n, -1)
    deltas = positions[i] - positions[j]
    if box_vectors.numel():
        deltas = deltas + minimum_image(deltas, box_vectors)
    if MODE == "bad":
        deltas = -deltas  # a kernel with the other sign convention must be caught by the probe check
    distances = deltas.norm(dim=-1)
    far = distances >= cutoff
    neighbors = torch.stack([i, j]).to(torch.int32)
    neighbors[:, far] = -1
    deltas[far] = math.nan
    distances[far] = math.nan
    return neighbors, deltas, distances, torch.tensor([int((~far).sum())], dtype=torch.int32)


LIB.impl("getNeighborPairs", _get_neighbor_pairs, "CompositeExplicitAutograd")

from openmm_cgml.exceptions import ConfigurationError  # noqa: E402
from openmm_cgml.forces.neural import NeuralForceTerm  # noqa: E402
from openmm_cgml.models import (  # noqa: E402
    CGSchNet,
    brute_force_pairs,
    nnpops_available,
    nnpops_neighbor_pairs,
    save_bundle,  # noqa: E402
)
from openmm_cgml.topology import CGTopology  # noqa: E402

assert nnpops_available()
gen = torch.Generator().manual_seed(3)
box = torch.tensor([[2.4, 0.0, 0.0], [0.5, 2.3, 0.0], [-0.4, 0.6, 2.2]], dtype=torch.float64)
pos = torch.rand(120, 3, generator=gen, dtype=torch.float64) @ box
n_mol = 40
info = CGTopology(("A", "B", "A") * n_mol, np.repeat(np.arange(n_mol), 3),
                    np.array([[3 * m + k, 3 * m + k + 1] for m in range(n_mol) for k in range(2)]),
                    np.array([43.0, 28.0, 43.0] * n_mol), box.numpy())
torch.manual_seed(0)
model = CGSchNet(["A", "B"], hidden=16, n_rbf=8, intra_cutoff=0.5, inter_cutoff=0.9, dtype="float64").bind(info)

if MODE == "bad":
    try:
        model.use_nnpops()
    except ConfigurationError as exc:
        assert "disagrees" in str(exc), exc
    else:
        raise AssertionError("a kernel with the wrong sign convention passed the probe check")
    assert type(model.pair_search).__name__ == "PairSearch"
    print("OK")
    sys.exit(0)

for b in (box, None):
    got, got_shift = nnpops_neighbor_pairs(pos, 0.9, b)
    ref, ref_shift = brute_force_pairs(pos, 0.9, b)
    n = pos.shape[0]
    kg, kr = got[0] * n + got[1], ref[0] * n + ref[1]
    assert torch.equal(kg.sort().values, kr.sort().values)
    torch.testing.assert_close(got_shift[kg.argsort()], ref_shift[kr.argsort()])

p = pos.clone().requires_grad_(True)
e_ref = model(p, box)
(f_ref,) = torch.autograd.grad(e_ref, p)
model.use_nnpops()
assert type(model.pair_search).__name__ == "NNPOpsPairSearch"
p = pos.clone().requires_grad_(True)
e = model(p, box)
(f,) = torch.autograd.grad(e, p)
torch.testing.assert_close(e, e_ref)
torch.testing.assert_close(f, f_ref)

# through TorchForce (TorchScript, the op called from OpenMM's C++) and the term's options
import openmm  # noqa: E402
from openmm import unit  # noqa: E402

path = save_bundle("/tmp/_nnpops_standin.cgml", model, info)
energies = {}
for search in ("torch", "nnpops", "auto"):
    term = NeuralForceTerm(path, priors="network", neighbor_search=search)
    assert type(term.build_model(info).pair_search).__name__ == ("PairSearch" if search == "torch" else "NNPOpsPairSearch")
    system = openmm.System()
    for m in info.masses:
        system.addParticle(float(m))
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*v) for v in info.box_vectors))
    for f in term.create_forces(info):
        system.addForce(f)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(pos.numpy())
    energies[search] = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
assert abs(energies["nnpops"] - energies["torch"]) < 1e-6 * max(1.0, abs(energies["torch"])), energies
assert abs(energies["auto"] - energies["torch"]) < 1e-6 * max(1.0, abs(energies["torch"])), energies
print("OK")
