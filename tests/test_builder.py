"""CGSystemBuilder + tabulated/bonded terms: energy components, XML round trip, finite differences, bad input."""

import numpy as np
import openmm
import pytest
from openmm import app, unit

from openmm_cgml.builder import CGSystemBuilder, energy_components
from openmm_cgml.exceptions import ConfigurationError, InvalidSystemError, UnknownNameError
from openmm_cgml.forces.bonded import HarmonicAngles, HarmonicBonds, TabulatedAngles, TabulatedBonds, TabulatedDihedrals
from openmm_cgml.forces.tabulated import AnalyticPairPotential, TabulatedPairPotential
from openmm_cgml.mapping import CGMapping

N_MOL, BOX = 6, 2.6


def chain_topology(n_mol=N_MOL, n_atoms=8, box=BOX):
    top = app.Topology()
    chain = top.addChain()
    carbon = app.Element.getBySymbol("C")
    for _ in range(n_mol):
        res = top.addResidue("OCT", chain)
        atoms = [top.addAtom(f"C{k}", carbon, res) for k in range(n_atoms)]
        for a, b in zip(atoms[:-1], atoms[1:]):
            top.addBond(a, b)
    top.setPeriodicBoxVectors([openmm.Vec3(box, 0, 0), openmm.Vec3(0, box, 0), openmm.Vec3(0, 0, box)] * unit.nanometer)
    return top


def chain_positions(n_mol=N_MOL, n_atoms=8, box=BOX, seed=0):
    rng = np.random.default_rng(seed)
    pos = []
    grid = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)], float)[:n_mol]
    for m in range(n_mol):
        start = (grid[m] + 0.25) * box / 2
        steps = rng.normal(size=(n_atoms, 3))
        steps = 0.13 * steps / np.linalg.norm(steps, axis=1, keepdims=True)
        steps[:, 0] = np.abs(steps[:, 0]) + 0.05
        pos.append(start + np.cumsum(steps, axis=0) * 0.8)
    return np.concatenate(pos)


def lj(r, sigma, eps, rc=1.2):
    u = 4 * eps * ((sigma / r) ** 12 - (sigma / r) ** 6)
    taper = np.where(r > rc - 0.2, 0.5 * (1 + np.cos(np.pi * (r - (rc - 0.2)) / 0.2)), 1.0)
    uc = 4 * eps * ((sigma / rc) ** 12 - (sigma / rc) ** 6)
    return np.where(r < rc, (u - uc) * taper, 0.0)


def lj_table(sigma, eps, rc=1.2, r0=0.2):
    r = np.linspace(r0, rc, 400)
    return r, lj(r, sigma, eps, rc)


@pytest.fixture(scope="module")
def setup():
    top = chain_topology()
    mapping = CGMapping.from_groups(top, [[0, 1], [2, 3], [4, 5], [6, 7]])
    a, b = mapping.bead_types[0], mapping.bead_types[1]
    assert mapping.bead_types[:4] == (a, b, b, a)
    tables = {(a, a): lj_table(0.40, 1.0), (a, b): lj_table(0.42, 0.8), (b, b): lj_table(0.45, 1.2)}
    # the test of table values relies on these parameters
    assert tables[(a, b)][1][100] == lj(tables[(a, b)][0][100], 0.42, 0.8)
    phi = np.linspace(-np.pi, np.pi, 73)
    theta = np.linspace(0.3, np.pi, 100)
    terms = [
        TabulatedPairPotential(tables, cutoff=1.2, layout="groups"),  # a force per type pair, named for it
        HarmonicBonds({(a, b): (2000.0, 0.25), (b, b): (1500.0, 0.26)}),
        HarmonicAngles({(a, b, b): (50.0, 2.0)}, name="angles"),
        TabulatedDihedrals({(a, b, b, a): (phi, 2.0 * np.cos(phi) + 0.7 * np.cos(3 * phi - 0.4))}),
        TabulatedAngles({(a, b, b): (theta, 20.0 * (theta - 2.1) ** 2)}, name="angle_tables"),
        TabulatedBonds({(a, b): (np.linspace(0.15, 0.4, 60), 800 * (np.linspace(0.15, 0.4, 60) - 0.26) ** 2),
                        (b, b): (np.linspace(0.15, 0.4, 60), 600 * (np.linspace(0.15, 0.4, 60) - 0.25) ** 2)}),
    ]
    builder = CGSystemBuilder(mapping, terms)
    x_aa = chain_positions()
    return top, mapping, builder, x_aa, tables


def make_context(system, positions):
    integ = openmm.VerletIntegrator(0.001)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(positions)
    return ctx, integ


def energy_forces(ctx):
    st = ctx.getState(getEnergy=True, getForces=True)
    return (st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            np.asarray(st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)))


def test_builder_system_topology_positions(setup):
    top, mapping, builder, x_aa, _ = setup
    system = builder.createSystem(top)
    assert system.getNumParticles() == mapping.n_beads == 4 * N_MOL
    np.testing.assert_allclose([system.getParticleMass(i)._value for i in range(system.getNumParticles())],
                               mapping.bead_masses)
    box = np.array([v.value_in_unit(unit.nanometer) for v in system.getDefaultPeriodicBoxVectors()])
    np.testing.assert_allclose(box, np.eye(3) * BOX)
    forces = [f for f in system.getForces() if f.getName() != "CMMotionRemover"]
    n_pair = sum(f.getName().startswith("pair") for f in forces)  # pair tables: one force per type pair
    a, b = sorted(set(mapping.bead_types))
    assert n_pair == 3 and [f.getName() for f in forces[:n_pair]] == [f"pair:{a}-{a}", f"pair:{a}-{b}", f"pair:{b}-{b}"]
    assert [f.getName() for f in forces[n_pair:]] == ["bonds", "angles", "dihedral_tables", "angle_tables",
                                                      "bond_tables"]  # every tabulated term: one force
    assert [f.getForceGroup() for f in forces] == list(range(len(forces)))  # every force its own group
    cg_top = builder.createTopology()
    assert cg_top.getNumAtoms() == mapping.n_beads and cg_top.getNumBonds() == 3 * N_MOL
    pos = builder.mapPositions(x_aa)
    np.testing.assert_allclose(pos.value_in_unit(unit.nanometer), mapping.map_positions(x_aa))


def test_builder_never_mutates_inputs(setup):
    top, mapping, builder, _, _ = setup
    aa = openmm.System()
    for _ in range(mapping.n_atoms):
        aa.addParticle(12.0)
    aa.setDefaultPeriodicBoxVectors(openmm.Vec3(BOX, 0, 0), openmm.Vec3(0, BOX, 0), openmm.Vec3(0, 0, BOX))
    before = openmm.XmlSerializer.serialize(aa)
    cg = builder.createSystem(system=aa)
    assert openmm.XmlSerializer.serialize(aa) == before
    assert cg.getNumParticles() == mapping.n_beads


def test_energy_components_sum_to_total(setup):
    top, mapping, builder, x_aa, _ = setup
    system = builder.createSystem(top)
    ctx, _ = make_context(system, builder.mapPositions(x_aa))
    parts = energy_components(ctx)
    total, _ = energy_forces(ctx)
    a, b = sorted(set(mapping.bead_types))
    assert set(parts) == {f"pair:{a}-{a}", f"pair:{a}-{b}", f"pair:{b}-{b}", "bonds", "angles", "dihedral_tables",
                          "angle_tables", "bond_tables", "CMMotionRemover"}
    assert all(abs(v) > 1e-6 for k, v in parts.items() if k != "CMMotionRemover")
    assert sum(parts.values()) == pytest.approx(total, rel=1e-10, abs=1e-8)


def test_xml_round_trip_identical(setup):
    top, mapping, builder, x_aa, _ = setup
    system = builder.createSystem(top)
    pos = builder.mapPositions(x_aa)
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    e1, f1 = energy_forces(make_context(system, pos)[0])
    e2, f2 = energy_forces(make_context(copy, pos)[0])
    assert e1 == e2
    np.testing.assert_array_equal(f1, f2)


@pytest.mark.parametrize("which", [0, 3, 4, 5])
def test_finite_difference_forces(setup, which):
    top, mapping, _, x_aa, _ = setup
    builder = CGSystemBuilder(mapping, [setup[2].terms[which]])
    system = builder.createSystem(top, removeCMMotion=False)
    x = builder.mapPositions(x_aa).value_in_unit(unit.nanometer)
    ctx, _ = make_context(system, x)
    e0, f = energy_forces(ctx)
    rng = np.random.default_rng(which)
    h = 1e-5
    for _ in range(4):
        d = rng.normal(size=x.shape)
        d /= np.linalg.norm(d)
        ctx.setPositions(x + h * d)
        ep, _ = energy_forces(ctx)
        ctx.setPositions(x - h * d)
        em, _ = energy_forces(ctx)
        fd = -(ep - em) / (2 * h)
        assert fd == pytest.approx(np.sum(f * d), rel=2e-4, abs=1e-4)


def test_pair_table_matches_spline_energy(setup):
    """Two beads in vacuum: OpenMM's energy equals the table (incl. the concatenated-table layout)."""
    _, mapping, _, _, tables = setup
    term = TabulatedPairPotential(tables, cutoff=1.2)
    a, b = mapping.bead_types[0], mapping.bead_types[1]
    top = chain_topology(n_mol=2, n_atoms=2)
    m2 = CGMapping.from_groups(top, {0: [[0], [1]]}, bead_types=[a, b])
    # beads of different molecules interact: 0(a)-2(a), 0(a)-3(b), 1(b)-3(b)
    system = CGSystemBuilder(m2, [term]).createSystem(top, removeCMMotion=False)
    for r in (0.35, 0.45, 0.6, 0.9, 1.15):
        x = np.array([[0, 0, 0], [0, 0, 1.25], [r, 0, 0], [r, 0, 1.25]])  # intramolecular pairs excluded
        e, _ = energy_forces(make_context(system, x)[0])
        expect = lj(r, 0.40, 1.0) + lj(r, 0.45, 1.2) + 2 * lj(np.hypot(r, 1.25), 0.42, 0.8)
        assert e == pytest.approx(float(expect), rel=1e-4, abs=1e-4)


def test_in_place_table_update(setup):
    top, mapping, builder, x_aa, tables = setup
    term = TabulatedPairPotential(tables, cutoff=1.2)
    info = mapping.cg_topology(np.eye(3) * BOX)
    system = openmm.System()
    for m in mapping.bead_masses:
        system.addParticle(m)
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*r) for r in np.eye(3) * BOX))
    forces = term.create_forces(info)
    for force in forces:
        system.addForce(force)
    ctx, _ = make_context(system, mapping.map_positions(x_aa))
    e1, _ = energy_forces(ctx)
    doubled = term.with_tables({k: (r, 2 * u) for k, (r, u) in tables.items()})
    doubled.update_context(forces, ctx, info.type_names)
    e2, _ = energy_forces(ctx)
    assert e2 == pytest.approx(2 * e1, rel=1e-6)


def test_analytic_fit_reproduces_table(setup):
    _, mapping, _, _, tables = setup
    a = mapping.bead_types[0]
    r, u = lj_table(0.4, 1.0, rc=1.2)
    term = AnalyticPairPotential.fit({(a, a): (r, u)}, cutoff=1.2, exponents=(12, 6))
    well = (r > 0.42) & (r < 0.9)
    np.testing.assert_allclose(term.energy(a, a, r[well]), u[well], atol=0.05)


def test_bad_terms_give_clear_errors(setup):
    top, mapping, _, _, tables = setup
    a, b = mapping.bead_types[0], mapping.bead_types[1]
    with pytest.raises(UnknownNameError, match="known bead types"):
        CGSystemBuilder(mapping, [TabulatedPairPotential({**tables, (a, "ZZ"): tables[(a, a)]})]).createSystem(top)
    partial = {k: v for k, v in tables.items() if k != (a, b)}
    with pytest.raises(ConfigurationError, match=f"no table for the bead-type pair.*{a}-{b}"):
        CGSystemBuilder(mapping, [TabulatedPairPotential(partial)]).createSystem(top)
    with pytest.raises(InvalidSystemError, match="longer than half the smallest box width"):
        CGSystemBuilder(mapping, [TabulatedPairPotential(tables, cutoff=1.4)]).createSystem(top)
    with pytest.raises(ConfigurationError, match="no parameters for the bond"):
        CGSystemBuilder(mapping, [HarmonicBonds({(a, b): (1.0, 0.3)})]).createSystem(top)
    with pytest.raises(ConfigurationError, match="distinct names"):
        CGSystemBuilder(mapping, [HarmonicBonds({(a, b): (1.0, 0.3)}), HarmonicBonds({(a, b): (1.0, 0.3)})])
    with pytest.raises(InvalidSystemError, match="atoms"):
        CGSystemBuilder(mapping, [TabulatedPairPotential(tables)]).createSystem(chain_topology(n_mol=2))
    with pytest.raises(ConfigurationError, match="at least one force term"):
        CGSystemBuilder(mapping, [])


@pytest.mark.parametrize("layout", ["groups", "slot", "compiled"])
def test_pair_layouts_agree_with_the_spline_and_each_other(setup, layout):
    """Every layout of the same tables gives the same energies and forces (and the analytic spline's)."""
    top, mapping, builder, x_aa, tables = setup
    info = mapping.cg_topology(np.eye(3) * BOX)
    assert len(info.type_names) >= 2  # several type pairs, so the layouts really differ
    x = mapping.map_positions(x_aa)
    results = {}
    for lay in ("groups", layout):
        term = TabulatedPairPotential(tables, cutoff=1.2, layout=lay)
        forces = term.create_forces(info)
        assert len(forces) == (len(term._pairs_present(info.type_names)) if lay == "groups" else 1)
        system = openmm.System()
        for m in mapping.bead_masses:
            system.addParticle(m)
        system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*r) for r in np.eye(3) * BOX))
        for f in forces:
            system.addForce(f)
        ctx, _ = make_context(system, x)
        results[lay] = energy_forces(ctx)
    e_ref, f_ref = results["groups"]
    e, f = results[layout]
    assert e == pytest.approx(e_ref, rel=1e-5, abs=1e-4)
    np.testing.assert_allclose(f, f_ref, rtol=1e-4, atol=1e-3)
    # the groups layout is exactly the natural spline of term.energy, summed over intermolecular pairs
    term = TabulatedPairPotential(tables, cutoff=1.2, layout="groups")
    types = np.asarray(info.bead_types)
    expected = 0.0
    for i in range(info.n_beads):
        for j in range(i + 1, info.n_beads):
            if info.molecule_index[i] == info.molecule_index[j]:
                continue
            d = x[i] - x[j]
            d -= BOX * np.round(d / BOX)
            expected += float(term.energy(types[i], types[j], np.linalg.norm(d)))
    assert e_ref == pytest.approx(expected, rel=1e-4)


def test_auto_layout_follows_the_measured_crossover(setup, monkeypatch):
    """"auto": the compiled force where it is available and no GPU platform is installed; otherwise a force per
    type pair (interaction groups) for small systems only, one force beyond GROUP_LAYOUT_MAX_BEADS
    (benchmarks/bench_pair_layout.py: groups' cost per bead grows with N); the tables are updated in place whichever
    it chose."""
    from openmm_cgml.forces import compiled, tabulated

    top, mapping, builder, x_aa, tables = setup
    info = mapping.cg_topology(np.eye(3) * BOX)
    term = TabulatedPairPotential(tables, cutoff=1.2)
    assert compiled.available(), compiled.unavailable_reason()  # CI builds it: g++ and OpenMM's headers
    assert term.resolved_layout(info) == "compiled"
    (force,) = term.create_forces(info)
    assert compiled.is_pair_force(force)
    monkeypatch.setattr(tabulated, "_compiled_preferred", lambda: False)
    n_pairs = len(term._pairs_present(info.type_names))
    assert n_pairs > 1 and info.n_beads <= tabulated.GROUP_LAYOUT_MAX_BEADS
    assert len(term.create_forces(info)) == n_pairs
    monkeypatch.setattr(tabulated, "GROUP_LAYOUT_MAX_BEADS", info.n_beads - 1)
    forces = term.create_forces(info)
    assert len(forces) == 1 and forces[0].getNumTabulatedFunctions() == 2
    doubled = term.with_tables({k: (r, 2 * u) for k, (r, u) in term.tables.items()})
    doubled.update_context(forces, None, info.type_names)  # the one-force layout is recognised from its forces
    values = np.asarray(forces[0].getTabulatedFunction(0).getFunctionParameters()[0])
    assert np.allclose(values, term._layout(info.type_names)[1] * 2)


def test_bonded_terms_round_trip_through_their_data(setup):
    """bonded_term_from_data(term.to_data()) rebuilds every bonded kind: same data, and a System built from the
    rebuilt terms gives the same energy and forces (JSON in between, as IBI checkpoints store them)."""
    import json

    from openmm_cgml.forces.bonded import bonded_term_from_data

    top, mapping, builder, x_aa, _ = setup
    rebuilt = [t if isinstance(t, TabulatedPairPotential) else bonded_term_from_data(json.loads(json.dumps(t.to_data())))
               for t in builder.terms]
    for old, new in zip(builder.terms, rebuilt):
        assert type(old) is type(new) and old.to_data() == new.to_data()
    pos = builder.mapPositions(x_aa)
    e0, f0 = energy_forces(make_context(builder.createSystem(top), pos)[0])
    e1, f1 = energy_forces(make_context(CGSystemBuilder(mapping, rebuilt).createSystem(top), pos)[0])
    assert e1 == pytest.approx(e0, rel=1e-12) and np.allclose(f1, f0, rtol=1e-12, atol=1e-9)
    with pytest.raises(UnknownNameError, match="unknown term 'morse_bonds'"):
        bonded_term_from_data({"kind": "morse_bonds"})
    with pytest.raises(ConfigurationError, match="must have exactly the keys 'r0' and 'k'"):
        bonded_term_from_data({"kind": "harmonic_bonds", "parameters": {"A-B": {"k": 1.0}}})
    with pytest.raises(ConfigurationError, match="incomplete or malformed"):
        bonded_term_from_data({"kind": "harmonic_bonds"})
