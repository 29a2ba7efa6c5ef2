"""XML round trips of Systems holding a TorchForce (without calling the crashing TorchForce proxy)."""

import re

import numpy as np
import openmm
import pytest
import torch

from openmm_cgml import CorruptFileError
from openmm_cgml.forces.xml import deserialize_system, load_system, save_system, serialize_system

openmmtorch = pytest.importorskip("openmmtorch")


class _PeriodicModel(torch.nn.Module):
    """A harmonic well around the box centre with a global strength parameter: E = k |x - L/2|^2."""

    def forward(self, positions, boxvectors, k: torch.Tensor):
        centre = 0.5 * torch.diagonal(boxvectors)
        return (k * ((positions - centre) ** 2).sum()).to(torch.float64)


def _system():
    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(*np.eye(3) * 2.0)
    for _ in range(4):
        system.addParticle(12.0)
    bonds = openmm.HarmonicBondForce()
    bonds.addBond(0, 1, 0.15, 1000.0)
    bonds.setName("bonds")
    bonds.setForceGroup(1)
    system.addForce(bonds)
    tf = openmmtorch.TorchForce(torch.jit.script(_PeriodicModel()))
    tf.setUsesPeriodicBoundaryConditions(True)
    tf.addGlobalParameter("k", 3.5)
    tf.addEnergyParameterDerivative("k")
    tf.setName("neural")
    tf.setForceGroup(2)
    system.addForce(tf)
    cm = openmm.CMMotionRemover()
    cm.setName("CMMotionRemover")
    system.addForce(cm)
    return system


def _evaluate(system, positions):
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(positions)
    state = ctx.getState(getEnergy=True, getForces=True, getParameterDerivatives=True)
    per_group = [ctx.getState(getEnergy=True, groups={g}).getPotentialEnergy()._value for g in (1, 2)]
    return (state.getPotentialEnergy()._value, state.getForces(asNumpy=True)._value, per_group,
            dict(state.getEnergyParameterDerivatives())["k"])


def test_round_trip_keeps_energies_forces_and_force_settings(tmp_path):
    system = _system()
    positions = np.random.default_rng(0).random((4, 3)) * 2.0
    path = save_system(system, tmp_path / "system.xml")
    again = load_system(path)
    assert [f.getName() for f in again.getForces()] == ["bonds", "neural", "CMMotionRemover"]
    assert [f.getForceGroup() for f in again.getForces()] == [f.getForceGroup() for f in system.getForces()]
    e0, f0, g0, d0 = _evaluate(system, positions)
    e1, f1, g1, d1 = _evaluate(again, positions)
    assert e1 == e0 and g1 == g0 and d1 == d0
    np.testing.assert_array_equal(f1, f0)
    # periodicity, the global parameter, its derivative and the properties all survive: the XML is identical
    # but for the module's zip archive, whose internal folder name torch.jit.save draws at random
    def strip(text):
        return re.sub(r'encodedFileContents="[0-9a-f]*"', "", text)

    assert strip(serialize_system(again)) == strip(serialize_system(system))
    assert 'usesPeriodic="1"' in serialize_system(again) and d1 != 0.0


def test_plain_systems_and_bad_files(tmp_path):
    plain = openmm.System()
    plain.addParticle(1.0)
    assert deserialize_system(serialize_system(plain)).getNumParticles() == 1
    with pytest.raises(CorruptFileError, match="not valid XML"):
        deserialize_system("<System><Forces>")
    with pytest.raises(CorruptFileError, match="System"):
        deserialize_system("<Integrator/>")
    bad = serialize_system(_system()).replace('encodedFileContents="504b', 'encodedFileContents="0000')
    with pytest.raises(CorruptFileError, match="embedded module"):
        deserialize_system(bad)


def test_importing_openmm_torch_through_us_drops_only_the_simtk_warning():
    """openmmtorch imports simtk.openmm, whose shim logs a deprecation warning on the root logger; the package's
    import helper drops that one message (a plain import shows it: the check can fail)."""
    import subprocess
    import sys

    code = ("import logging; logging.basicConfig(); {}; "
            "logging.getLogger().warning('a warning that must survive')")
    ours = subprocess.run([sys.executable, "-c", code.format(
        "from openmm_cgml.forces._openmmtorch import import_openmmtorch; import_openmmtorch('missing')")],
        capture_output=True, text=True, check=True)
    plain = subprocess.run([sys.executable, "-c", code.format("import openmmtorch")], capture_output=True, text=True,
                           check=True)
    assert "simtk.openmm" in plain.stderr and "simtk.openmm" not in ours.stderr
    assert "a warning that must survive" in ours.stderr
