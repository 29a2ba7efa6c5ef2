"""The repulsion prior's compiled twin (a ``CGPairTableForce`` from its table), which the compiled network backend
runs instead of OpenMM's ``CustomNonbondedForce``: the analytic energy and force to the table's accuracy over the
range a liquid samples, a finite repulsive continuation where the power law has no finite value, exclusions, and
which backend takes which twin."""
from __future__ import annotations

import numpy as np
import openmm
import pytest
from _neural_helpers import _one_torch_thread  # noqa: F401  (autouse fixture: one torch thread)

from openmm_cgml import CGTopology
from openmm_cgml.forces import compiled
from openmm_cgml.forces.neural import NeuralForceTerm, compiled_prior_force
from openmm_cgml.models import CGSchNet, save_bundle
from openmm_cgml.models.priors import RepulsionPrior

pytestmark = pytest.mark.skipif(not compiled.available(), reason="the compiled plugin is not built here")

BOX = 3.0


def _pair_topology(n_pairs: int) -> CGTopology:
    """``n_pairs`` A-B dimers (bonded) far apart in a box."""
    types = ("A", "B") * n_pairs
    mol = np.repeat(np.arange(n_pairs), 2)
    bonds = np.array([(2 * m, 2 * m + 1) for m in range(n_pairs)])
    return CGTopology(types, mol, bonds, np.full(2 * n_pairs, 40.0), np.eye(3) * BOX)


def _energy_forces(force, positions, n):
    system = openmm.System()
    for _ in range(n):
        system.addParticle(40.0)
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*r) for r in np.eye(3) * BOX))
    system.addForce(openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(force)))   # a copy per call
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(positions)
    st = ctx.getState(getEnergy=True, getForces=True)
    return (st.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole),
            st.getForces(asNumpy=True).value_in_unit(openmm.unit.kilojoule_per_mole / openmm.unit.nanometer))


@pytest.mark.parametrize("exponent", [6, 12])
def test_compiled_repulsion_is_the_power_law_over_the_sampled_range(exponent):
    """Bead 0 (A) and bead 2 (A, another molecule) at distances from where one pair costs 1e3 kJ/mol to past the
    cutoff: energy to 1e-6 relative (or 1e-9 kJ/mol), force to 1e-5 relative (or 1e-6 kJ/mol/nm)."""
    sigma, cutoff = 0.36, 0.8
    prior = RepulsionPrior(["A", "B"], sigma=sigma, exponent=exponent, cutoff=cutoff)
    top = _pair_topology(2)
    force = compiled_prior_force(prior, top)
    assert force is not None and compiled.is_pair_force(force) and force.getName() == "repulsion"
    r_min = sigma * 1e3 ** (-1.0 / exponent)
    for r in np.linspace(r_min, cutoff + 0.05, 57):
        pos = np.array([[0.5, 0.5, 0.5], [0.5, 0.5, 2.0], [0.5 + r, 0.5, 0.5], [0.5 + r, 2.0, 0.5]])
        e, f = _energy_forces(force, pos, 4)
        want = (sigma / r) ** exponent - (sigma / cutoff) ** exponent if r < cutoff else 0.0
        want_f = exponent * (sigma / r) ** exponent / r if r < cutoff else 0.0   # on bead 2, along +x
        assert e == pytest.approx(want, rel=1e-6, abs=1e-9), r
        assert f[2][0] == pytest.approx(want_f, rel=1e-5, abs=1e-6), r
        assert f[0][0] == pytest.approx(-f[2][0], rel=1e-12, abs=1e-12)


def test_below_the_cap_the_table_continues_linearly_and_repulsive():
    """Where the power law exceeds RepulsionPrior.COMPILED_ENERGY_CAP the energy rises linearly to r = 0 with the
    slope at the cap: finite, and the force keeps pushing the beads apart."""
    sigma, cutoff = 0.36, 0.8
    prior = RepulsionPrior(["A", "B"], sigma=sigma, exponent=12, cutoff=cutoff)
    force = compiled_prior_force(prior, _pair_topology(2))
    cap = RepulsionPrior.COMPILED_ENERGY_CAP
    shift = (sigma / cutoff) ** 12
    r_cap = sigma * (cap + shift) ** (-1.0 / 12)
    previous = None
    for r in (0.9 * r_cap, 0.5 * r_cap, 0.2 * r_cap):
        pos = np.array([[0.5, 0.5, 0.5], [0.5, 0.5, 2.0], [0.5 + r, 0.5, 0.5], [0.5 + r, 2.0, 0.5]])
        e, f = _energy_forces(force, pos, 4)
        slope = 12 * (cap + shift) / r_cap
        assert e == pytest.approx(cap + slope * (r_cap - r), rel=1e-3)
        assert f[2][0] == pytest.approx(slope, rel=1e-3) and f[2][0] > 0
        assert previous is None or e > previous
        previous = e


def test_bonded_and_one_three_pairs_are_excluded():
    """A bonded pair closer than any sampled distance contributes nothing (as the custom-force twin)."""
    prior = RepulsionPrior(["A", "B"], sigma=0.36, exponent=12, cutoff=0.8)
    top = _pair_topology(1)
    e, _ = _energy_forces(compiled_prior_force(prior, top), np.array([[0.5, 0.5, 0.5], [0.6, 0.5, 0.5]]), 2)
    assert e == 0.0


def test_the_compiled_backend_takes_the_compiled_twin_and_the_others_the_custom_force(tmp_path):
    """NeuralForceTerm(backend="compiled") puts the repulsion in a CGPairTableForce; "python" keeps OpenMM's
    CustomNonbondedForce; both give the same energy."""
    top = _pair_topology(6)
    rng = np.random.default_rng(0)
    pos = np.concatenate([[c, c + [0.25, 0.0, 0.0]] for c in rng.uniform(0, BOX, (6, 3))])
    model = CGSchNet(["A", "B"], priors=[{"name": "repulsion", "args": {"sigma": 0.3, "exponent": 12,
                                                                        "cutoff": 0.8}}],
                     hidden=8, n_rbf=4, n_interactions=1, intra_cutoff=0.5, inter_cutoff=0.8).double().bind(top)
    bundle = save_bundle(tmp_path / "m.cgml", model, top)
    energies = {}
    for backend in ("compiled", "python"):
        forces = NeuralForceTerm(bundle, backend=backend).create_forces(top)
        rep = [f for f in forces if f.getName() == "repulsion"]
        assert len(rep) == 1
        assert compiled.is_pair_force(rep[0]) == (backend == "compiled")
        energies[backend] = _energy_forces(rep[0], pos, len(pos))[0]
    assert energies["compiled"] == pytest.approx(energies["python"], rel=1e-7, abs=1e-9)
