"""IBI with ``exclusions: bonded`` (polymer chains): the pair tables act on every pair but the 1-2 and 1-3 pairs along
the bonds, the target and sampled g(r) count exactly those pairs, and IBI recovers a known pair potential of a
melt of Lennard-Jones chains from its own g(r).

Stated tolerance: in the attractive well (0.35-0.55 nm) the recovered potential is within 0.3 kT of the true one
at every grid point, and closer on average than the initial PMF guess (as the Lennard-Jones argon test).
"""

import numpy as np
import openmm
import pytest

from openmm_cgml.forces.bonded import HarmonicAngles, HarmonicBonds
from openmm_cgml.forces.tabulated import TabulatedPairPotential
from openmm_cgml.ibi import KB, IBISettings, IterativeBoltzmannInversion, PairRDFCounter, TargetRDF
from openmm_cgml.ibi._algebra import finalize
from openmm_cgml.ibi._rdf import bonded_exclusions
from openmm_cgml.topology import CGTopology

N_CHAINS, LENGTH, RHO, T = 40, 5, 7.6, 150.0
SIGMA, EPS, RC, R0 = 0.34, 0.996, 0.9, 0.38


def chain_topology(n_chains=N_CHAINS, length=LENGTH, box=None) -> CGTopology:
    n = n_chains * length
    bonds = np.array([(c * length + k, c * length + k + 1) for c in range(n_chains) for k in range(length - 1)])
    box = (n / RHO) ** (1 / 3) if box is None else box
    return CGTopology(bead_types=("A",) * n, molecule_index=np.repeat(np.arange(n_chains), length), bonds=bonds,
                      masses=np.full(n, 39.948), box_vectors=np.eye(3) * box)


def _brute_force_g(positions, box_length, excluded, r_max, bin_width):
    n = len(positions)
    skip = {tuple(p) for p in np.sort(excluded, axis=1).tolist()}
    d = []
    for i in range(n):
        for j in range(i + 1, n):
            if (i, j) in skip:
                continue
            v = positions[j] - positions[i]
            v -= box_length * np.round(v / box_length)
            d.append(np.linalg.norm(v))
    edges = np.arange(int(round(r_max / bin_width)) + 1) * bin_width
    counts = np.histogram(d, bins=edges)[0]
    n_pairs = n * (n - 1) / 2 - len(skip)
    ideal = n_pairs * 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3) / box_length**3
    return counts / ideal


def test_bonded_exclusions_are_the_1_2_and_1_3_pairs():
    top = chain_topology(2, 4, box=3.0)
    ex = bonded_exclusions(top).tolist()
    assert ex == [[0, 1], [0, 2], [1, 2], [1, 3], [2, 3], [4, 5], [4, 6], [5, 6], [5, 7], [6, 7]]


def test_the_counter_counts_every_pair_but_the_excluded_ones():
    top = chain_topology(6, 5, box=2.2)
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 2.2, size=(top.n_beads, 3))
    excluded = bonded_exclusions(top)
    counter = PairRDFCounter(top.bead_types, top.molecule_index, [("A", "A")], 1.0, 0.05, excluded=excluded)
    counter.add(x, top.box_vectors)
    expected = _brute_force_g(x, 2.2, excluded, 1.0, 0.05)
    np.testing.assert_allclose(counter.rdfs()[("A", "A")], expected, rtol=1e-12)
    # the intermolecular counter is a different set of pairs: it leaves out the 1-4 and 1-5 pairs too
    inter = PairRDFCounter(top.bead_types, top.molecule_index, [("A", "A")], 1.0, 0.05)
    assert inter.n_inter[("A", "A")] == counter.n_inter[("A", "A")] - 6 * 3
    # two bead types: the normalisation counts each type pair's own non-excluded pairs
    types = tuple("E" if k % 5 in (0, 4) else "M" for k in range(top.n_beads))
    two = PairRDFCounter(types, top.molecule_index, [("E", "E"), ("E", "M"), ("M", "M")], 1.0, 0.05,
                         excluded=excluded)
    assert two.n_inter[("E", "E")] == 12 * 11 / 2
    assert two.n_inter[("E", "M")] == 12 * 18 - 6 * 4  # E-M bonds and E-M 1-3 pairs: 2 + 2 per chain
    assert two.n_inter[("M", "M")] == 18 * 17 / 2 - 6 * 3  # M-M bonds 2, M-M 1-3 pair 1 per chain
    with pytest.raises(Exception, match="distinct bead indices"):
        PairRDFCounter(top.bead_types, top.molecule_index, [("A", "A")], 1.0, 0.05, excluded=[[0, 0]])


def _pair(r, u, exclusions):
    return TabulatedPairPotential({("A", "A"): (np.r_[r[20:], RC], np.r_[u[20:], 0.0])}, cutoff=RC,
                                  exclusions=exclusions)


@pytest.mark.slow
def test_ibi_with_bonded_exclusions_recovers_the_pair_potential_of_a_chain_melt(tmp_path):
    top = chain_topology()
    box = float(top.box_vectors[0, 0])
    r = (np.arange(int(round(RC / 0.01))) + 0.5) * 0.01
    u_true = finalize(r, 4 * EPS * ((SIGMA / r) ** 12 - (SIGMA / r) ** 6), RC, 0.1)
    # bonds and angles keep the chains chain-like (the 1-3 pairs, excluded from the pair table, cannot overlap)
    bonds = HarmonicBonds({("A", "A"): (20000.0, R0)})
    angles = HarmonicAngles({("A", "A", "A"): (50.0, 2.0)})
    system = openmm.System()
    for m in top.masses:
        system.addParticle(m)
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*v) for v in top.box_vectors))
    for term in (bonds, angles, _pair(r, u_true, "bonded")):
        for force in term.create_forces(top):
            system.addForce(force)
    # the chains on a lattice of straight segments, then minimised and thermalised
    per_side = int(np.ceil(N_CHAINS ** (1 / 3)))
    sites = np.array([[i, j, k] for i in range(per_side) for j in range(per_side) for k in range(per_side)])[:N_CHAINS]
    x0 = np.concatenate([(s + 0.1) * box / per_side + np.outer(np.arange(LENGTH), [R0 * 0.55, R0 * 0.55, R0 * 0.6])
                         for s in sites])
    integ = openmm.LangevinMiddleIntegrator(T, 1.0, 0.01)
    integ.setRandomNumberSeed(7)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("CPU"))
    ctx.setPositions(x0)
    openmm.LocalEnergyMinimizer.minimize(ctx)
    ctx.setVelocitiesToTemperature(T, 7)
    integ.step(3000)
    counter = PairRDFCounter(top.bead_types, top.molecule_index, [("A", "A")], RC, 0.01,
                             excluded=bonded_exclusions(top))
    for _ in range(200):
        integ.step(50)
        counter.add(ctx.getState(getPositions=True).getPositions(asNumpy=True)._value, top.box_vectors)
    g_target = counter.rdfs()[("A", "A")]
    start = ctx.getState(getPositions=True).getPositions(asNumpy=True)._value
    settings = IBISettings(temperature=f"{T} K", cutoff=f"{RC} nm", exclusions="bonded", bin_width="0.01 nm",
                           max_iterations=6, damping=0.6, smoothing=3, tolerance=0.01, timestep="10 fs",
                           equilibration_steps=500, production_steps=8000, sample_interval=50, platform="CPU", seed=3)
    ibi = IterativeBoltzmannInversion(top, start, {("A", "A"): TargetRDF(counter.r, g_target)}, settings,
                                      fixed_terms=[bonds, angles])
    result = ibi.run(tmp_path, progress=False)
    # the System IBI built excludes exactly the 1-2 and 1-3 pairs
    from openmm_cgml.forces import compiled
    from openmm_cgml.potential import CGPotential

    built = CGPotential(tmp_path).createSystem(top)
    (pair,) = [f for f in built.getForces() if isinstance(f, openmm.CustomNonbondedForce) or compiled.is_pair_force(f)]
    if isinstance(pair, openmm.CustomNonbondedForce):
        n_excluded = pair.getNumExclusions()
    else:  # the compiled force (auto's layout on CPU machines): its exclusions as it serialises them
        import xml.etree.ElementTree as ET

        n_excluded = len(ET.fromstring(openmm.XmlSerializer._serializeForce(pair)).find("Exclusions"))
    assert n_excluded == len(bonded_exclusions(top)) == N_CHAINS * 7
    kt = KB * T
    u = result.potentials[("A", "A")]
    well = (r >= 0.35) & (r <= 0.55)
    err = np.abs(u - u_true)[well] / kt
    pmf = finalize(r, -kt * np.log(np.maximum(g_target, 1e-3)), RC, 0.1)
    pmf_err = np.abs(pmf - u_true)[well] / kt
    assert err.max() < 0.3, f"IBI well error {err.max():.3f} kT"
    assert err.mean() < pmf_err.mean(), (err.mean(), pmf_err.mean())
