"""A trained-model bundle through CGSystemBuilder: the neural term is just another ForceTerm."""

import numpy as np
import openmm
import pytest
import torch
from _neural_helpers import _one_torch_thread, make_model, trimer_info, trimer_positions  # noqa: F401
from openmm import app

from openmm_cgml.builder import CGSystemBuilder, energy_components
from openmm_cgml.forces.neural import NeuralForceTerm
from openmm_cgml.forces.xml import deserialize_system, serialize_system
from openmm_cgml.mapping import CGMapping
from openmm_cgml.models import forces_and_energy, load_bundle, save_bundle

BOX, N_MOL = 2.0, 8


def _aa_topology():
    """N_MOL linear C-O-C 'molecules' mapped one atom per bead to A-B-A."""
    top = app.Topology()
    chain = top.addChain()
    for _ in range(N_MOL):
        res = top.addResidue("COC", chain)
        atoms = [top.addAtom(n, app.Element.getBySymbol(e), res) for n, e in (("C1", "C"), ("O", "O"), ("C2", "C"))]
        top.addBond(atoms[0], atoms[1])
        top.addBond(atoms[1], atoms[2])
    top.setPeriodicBoxVectors(np.eye(3) * BOX)
    return top


def test_bundle_through_the_builder(tmp_path):
    top = _aa_topology()
    mapping = CGMapping.from_groups(top, [[0], [1], [2]], bead_types=["A", "B", "A"])
    info = mapping.cg_topology(np.eye(3) * BOX)
    reference_info = trimer_info(N_MOL, box=BOX)
    assert info.bead_types == reference_info.bead_types
    model = make_model(info, dtype="float64")
    save_bundle(tmp_path / "model.cgml", model, info)
    pos = trimer_positions(info, seed=5)
    energy, _ = forces_and_energy(load_bundle(tmp_path / "model.cgml").build_model(info), torch.tensor(pos),
                                  torch.tensor(info.box_vectors))

    builder = CGSystemBuilder(mapping, [NeuralForceTerm(tmp_path / "model.cgml", tabulate=False)])
    system = builder.createSystem(top)
    names = [f.getName() for f in system.getForces()]
    assert names[0].startswith("neural") and "CMMotionRemover" in names
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(pos)
    total = ctx.getState(getEnergy=True).getPotentialEnergy()._value
    assert total == pytest.approx(float(energy), rel=1e-6)  # priors evaluated by OpenMM, not torch
    parts = energy_components(ctx)
    assert sum(parts.values()) == pytest.approx(total, rel=1e-9)
    # and the whole CG System survives an XML round trip
    again = deserialize_system(serialize_system(system))
    ctx2 = openmm.Context(again, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx2.setPositions(pos)
    assert ctx2.getState(getEnergy=True).getPotentialEnergy()._value == pytest.approx(total, rel=1e-12)
