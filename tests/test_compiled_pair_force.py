"""The compiled tabulated pair force (C++ plugin, ``layout="compiled"``) against the custom-force layouts.

Energies and forces equal the interaction-groups layout's (the same natural splines) on the Reference platform, in
both of the Verlet list's build paths (all pairs in small or triclinic boxes, cells in large ones), with beads
outside the box, after moves shorter and longer than the skin (a stale list or forces summed across calls would
show), and against finite differences; NVE conserves energy like the slot layout; a System holding it round-trips
through XML; tables update in place; bad input gets OpenMM exceptions that say what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openmm
import pytest

from openmm_cgml.exceptions import ConfigurationError
from openmm_cgml.forces import compiled
from openmm_cgml.forces.tabulated import TabulatedPairPotential
from openmm_cgml.topology import CGTopology

pytestmark = pytest.mark.skipif(not compiled.available(), reason=f"{compiled.unavailable_reason()}")

CUTOFF = 1.0


def tables(scale=1.0):
    r = np.linspace(0.15, CUTOFF, 120)

    def lj(s, e):
        u = 4 * e * ((s / r) ** 12 - (s / r) ** 6)
        return scale * np.minimum(u - u[-1], 300.0)

    return {("A", "A"): (r, lj(0.40, 1.0)), ("A", "B"): (r, lj(0.38, 0.8)), ("B", "B"): (r, lj(0.36, 0.6))}


def trimers(n_mol: int, box) -> CGTopology:
    box = None if box is None else np.asarray(box, dtype=float)
    return CGTopology(bead_types=tuple(["A", "B", "A"] * n_mol), molecule_index=np.repeat(np.arange(n_mol), 3),
                      bonds=np.array([[3 * m + i, 3 * m + i + 1] for m in range(n_mol) for i in range(2)]),
                      masses=np.tile([40.0, 30.0, 40.0], n_mol), box_vectors=box)


def liquid_positions(topology: CGTopology, rng, spacing=0.3):
    """Molecule centres on a jittered lattice in the (possibly triclinic) cell, beads 0.25 nm apart."""
    n_mol = topology.n_beads // 3
    box = topology.box_vectors
    g = int(np.ceil(n_mol ** (1 / 3)))
    frac = np.array([[k % g, (k // g) % g, k // g**2] for k in range(n_mol)], dtype=float) + 0.5
    centres = (frac / g + rng.uniform(-0.1, 0.1, frac.shape) / g) @ box
    direction = rng.normal(size=(n_mol, 3))
    direction /= np.linalg.norm(direction, axis=1)[:, None]
    x = np.concatenate([centres[:, None] + k * 0.25 * direction[:, None] for k in (-1, 0, 1)], axis=1)
    return x.reshape(-1, 3)


def system_of(term: TabulatedPairPotential, topology: CGTopology):
    system = openmm.System()
    for m in topology.masses:
        system.addParticle(float(m))
    if topology.periodic:
        system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*v) for v in topology.box_vectors))
    forces = term.create_forces(topology)
    for f in forces:
        system.addForce(f)
    return system, forces


def evaluate(system, x, platform="Reference"):
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    ctx.setPositions(x)
    state = ctx.getState(getEnergy=True, getForces=True)
    return state.getPotentialEnergy()._value, state.getForces(asNumpy=True)._value


BOXES = {
    # 2.4 nm: fewer than three cells of cutoff + skin per side, so the list is built from all pairs
    "small": (np.eye(3) * 2.4, 60),
    # 4.6 nm: four cells per side, the cell-list build
    "cells": (np.eye(3) * 4.6, 320),
    # a triclinic box in OpenMM's reduced form (all pairs, with minimum images across the tilted faces)
    "triclinic": (np.array([[2.6, 0, 0], [0.9, 2.5, 0], [-1.1, 0.8, 2.4]]), 60),
}


@pytest.mark.parametrize("box_name", list(BOXES))
@pytest.mark.parametrize("exclusions", ["molecule", "bonded", "none"])
def test_energies_and_forces_equal_the_groups_layout(box_name, exclusions):
    box, n_mol = BOXES[box_name]
    topology = trimers(n_mol, box)
    rng = np.random.default_rng(3)
    x = liquid_positions(topology, rng)
    x += rng.integers(-2, 3, size=(len(x), 1)) * box[rng.integers(0, 3, size=len(x))]  # beads outside the cell
    ref_e, ref_f = evaluate(system_of(TabulatedPairPotential(tables(), cutoff=CUTOFF, layout="groups",
                                                             exclusions=exclusions), topology)[0], x)
    system, forces = system_of(TabulatedPairPotential(tables(), cutoff=CUTOFF, layout="compiled",
                                                      exclusions=exclusions), topology)
    assert len(forces) == 1 and compiled.is_pair_force(forces[0])
    for platform in ("Reference", "CPU"):
        e, f = evaluate(system, x, platform)
        assert e == pytest.approx(ref_e, rel=1e-10, abs=1e-8)
        np.testing.assert_allclose(f, ref_f, rtol=1e-8, atol=1e-7 * np.abs(ref_f).max())


def test_missing_pairs_do_not_interact_and_nonperiodic_systems_work():
    topology = trimers(20, None)
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 2.0, size=(60, 3))
    partial = {k: v for k, v in tables().items() if k != ("A", "B")}
    e = {}
    for layout in ("groups", "compiled"):
        e[layout] = evaluate(system_of(TabulatedPairPotential(partial, cutoff=CUTOFF, layout=layout, missing="zero"),
                                       topology)[0], x)
    assert e["compiled"][0] == pytest.approx(e["groups"][0], rel=1e-10)
    np.testing.assert_allclose(e["compiled"][1], e["groups"][1], rtol=1e-8, atol=1e-8)


def test_forces_are_minus_the_energy_gradient():
    topology = trimers(60, np.eye(3) * 2.4)
    rng = np.random.default_rng(7)
    x = liquid_positions(topology, rng)
    system, _ = system_of(TabulatedPairPotential(tables(), cutoff=CUTOFF, layout="compiled"), topology)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(x)
    f = ctx.getState(getForces=True).getForces(asNumpy=True)._value
    h = 1e-5
    for _ in range(4):
        d = rng.normal(size=x.shape)
        d /= np.linalg.norm(d)
        energies = []
        for sign in (1, -1):
            ctx.setPositions(x + sign * h * d)
            energies.append(ctx.getState(getEnergy=True).getPotentialEnergy()._value)
        assert -(energies[0] - energies[1]) / (2 * h) == pytest.approx(float(np.sum(f * d)), rel=1e-6, abs=1e-6)


def test_list_reuse_and_rebuild_give_fresh_results():
    """One Context evaluated after moves shorter than half the skin (list reused) and longer (rebuilt), and after a
    bead jumps a box length, equals a fresh Context each time; the list is not rebuilt for the short moves."""
    box, n_mol = BOXES["cells"]
    topology = trimers(n_mol, box)
    rng = np.random.default_rng(11)
    x = liquid_positions(topology, rng)
    system, (force,) = system_of(TabulatedPairPotential(tables(), cutoff=CUTOFF, layout="compiled"), topology)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    moves = [rng.uniform(-0.01, 0.01, x.shape), rng.uniform(-0.01, 0.01, x.shape), rng.uniform(-0.3, 0.3, x.shape)]
    jump = np.zeros_like(x)
    jump[5] = box[0]
    builds = []
    for dx in [np.zeros_like(x), *moves, jump]:
        x = x + dx
        ctx.setPositions(x)
        state = ctx.getState(getEnergy=True, getForces=True)
        builds.append(compiled.num_list_builds(force, ctx))
        e_ref, f_ref = evaluate(system, x)
        assert state.getPotentialEnergy()._value == pytest.approx(e_ref, rel=1e-12)
        np.testing.assert_allclose(state.getForces(asNumpy=True)._value, f_ref, rtol=1e-10, atol=1e-9)
    assert builds[:3] == [1, 1, 1]  # two moves within skin/2 = 0.05 nm in all: the list is kept
    assert builds[3] == 2 and builds[4] == 3  # a long move, then a jump across the box: rebuilt


def test_nve_conserves_energy_like_the_slot_layout():
    box, n_mol = BOXES["cells"]
    topology = trimers(n_mol, box)
    x = liquid_positions(topology, np.random.default_rng(13))
    drift = {}
    for layout in ("slot", "compiled"):
        system, forces = system_of(TabulatedPairPotential(tables(), cutoff=CUTOFF, layout=layout), topology)
        for i in range(n_mol):
            for k in (0, 1):
                system.addConstraint(3 * i + k, 3 * i + k + 1, 0.25)
        integrator = openmm.VerletIntegrator(0.002)
        ctx = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
        ctx.setPositions(x)
        openmm.LocalEnergyMinimizer.minimize(ctx, 1.0, 300)
        ctx.setVelocitiesToTemperature(300, 1)
        energies = []
        for _ in range(20):
            integrator.step(50)
            s = ctx.getState(getEnergy=True)
            energies.append(s.getPotentialEnergy()._value + s.getKineticEnergy()._value)
        kinetic = s.getKineticEnergy()._value
        drift[layout] = (max(energies) - min(energies)) / kinetic
        if layout == "compiled":
            assert compiled.num_list_builds(forces[0], ctx) < 1000 / 3  # a list lasts several steps
    assert drift["compiled"] < 0.01
    assert drift["compiled"] < 3 * drift["slot"] + 1e-3


def test_a_system_round_trips_through_xml(tmp_path):
    topology = trimers(60, np.eye(3) * 2.4)
    x = liquid_positions(topology, np.random.default_rng(17))
    system, _ = system_of(TabulatedPairPotential(tables(), cutoff=CUTOFF, layout="compiled"), topology)
    system.getForce(0).setForceGroup(3)
    xml = openmm.XmlSerializer.serialize(system)
    assert 'type="CGPairTableForce"' in xml
    again = openmm.XmlSerializer.deserialize(xml)
    assert again.getForce(0).getForceGroup() == 3
    assert openmm.XmlSerializer.serialize(again) == xml
    e1, f1 = evaluate(system, x)
    e2, f2 = evaluate(again, x)
    assert e1 == e2 and np.array_equal(f1, f2)


def test_tables_update_in_place():
    box, n_mol = BOXES["cells"]
    topology = trimers(n_mol, box)
    x = liquid_positions(topology, np.random.default_rng(19))
    term = TabulatedPairPotential(tables(), cutoff=CUTOFF, layout="compiled")
    system, forces = system_of(term, topology)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(x)
    e1 = ctx.getState(getEnergy=True).getPotentialEnergy()._value
    term.with_tables(tables(scale=2.5)).update_context(forces, ctx, topology.type_names)
    e2 = ctx.getState(getEnergy=True).getPotentialEnergy()._value
    assert e2 == pytest.approx(2.5 * e1, rel=1e-3)  # (the wall below the tables' first point is not scaled)
    fresh = evaluate(system_of(TabulatedPairPotential(tables(scale=2.5), cutoff=CUTOFF, layout="compiled"),
                               topology)[0], x)[0]
    assert e2 == pytest.approx(fresh, rel=1e-12)
    coarse = TabulatedPairPotential(tables(), cutoff=CUTOFF, spacing=0.004, layout="compiled")
    with pytest.raises(ConfigurationError, match="different length"):
        coarse.update_context(forces, ctx, topology.type_names)


def test_bad_input_is_refused_with_its_reason():
    topology = trimers(60, np.eye(3) * 2.4)
    x = liquid_positions(topology, np.random.default_rng(23))
    force = compiled.make_pair_force([0, 1, 0] * 60, 2, {(0, 0): np.linspace(1, 0, 50)}, np.zeros((0, 2)),
                                     cutoff=1.0, periodic=True)
    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*v) for v in np.eye(3) * 1.8))  # cutoff > half the box
    for _ in range(180):
        system.addParticle(1.0)
    system.addForce(force)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(x)
    with pytest.raises(openmm.OpenMMException, match="cutoff .* exceeds half the periodic box width"):
        ctx.getState(getEnergy=True)
    system.addParticle(1.0)
    with pytest.raises(openmm.OpenMMException, match="exactly as many particles as the System"):
        openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    with pytest.raises(ConfigurationError, match="same length"):
        compiled.make_pair_force([0], 1, {(0, 0): np.zeros(10), (0, 1): np.zeros(12)}, np.zeros((0, 2)), cutoff=1.0,
                                 periodic=False)
    with pytest.raises(ConfigurationError, match="NaN or infinite"):
        compiled.make_pair_force([0], 1, {(0, 0): np.array([1.0, np.nan, 0, 0])}, np.zeros((0, 2)), cutoff=1.0,
                                 periodic=False)
    ctx2 = openmm.Context(*_one_bead_system(), openmm.VerletIntegrator(0.001))
    with pytest.raises(ConfigurationError, match="not a CGPairTableForce"):
        compiled.update_in_context(openmm.HarmonicBondForce(), ctx2)


def _one_bead_system():
    system = openmm.System()
    system.addParticle(1.0)
    return (system,)


def test_the_library_is_cached_by_openmm_version_and_sources(tmp_path, monkeypatch):
    """A build goes to CGML_PLUGIN_DIR under a name with OpenMM's version and the sources' hash, atomically."""
    monkeypatch.setenv("CGML_PLUGIN_DIR", str(tmp_path))
    path = compiled.build()
    assert path.parent == tmp_path and openmm.__version__ in path.name and path.stat().st_size > 0
    assert compiled.build() == path  # cached
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    with pytest.raises(ConfigurationError, match="no C\\+\\+ compiler"):
        compiled.build(force=True)


def test_boxes_narrower_than_twice_the_list_range_list_every_image():
    """In a box narrower than 2 (cutoff + skin) a pair can have two images within the list's range; a list that
    held only the nearest one would miss the other once the beads move, before any rebuild."""
    L = 2.1  # cutoff 1.0 + skin 0.1: 2.2 nm > 2.1 nm
    values = np.linspace(1.0, 0.0, 101) ** 2
    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*v) for v in np.eye(3) * L))
    for _ in range(2):
        system.addParticle(1.0)
    force = compiled.make_pair_force([0, 0], 1, {(0, 0): values}, np.zeros((0, 2)), cutoff=1.0, periodic=True)
    system.addForce(force)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    # 1.04 nm apart, and 1.06 nm through the box's face: both images within cutoff + skin, neither within cutoff
    x = np.array([[0.3, 0.5, 0.5], [1.34, 0.5, 0.5]])
    ctx.setPositions(x)
    assert ctx.getState(getEnergy=True).getPotentialEnergy()._value == 0.0
    # each bead moves 0.045 nm (< skin/2: no rebuild) apart: 1.13 nm directly, 0.97 nm through the face
    x = x + [[-0.045, 0, 0], [0.045, 0, 0]]
    ctx.setPositions(x)
    e = ctx.getState(getEnergy=True).getPotentialEnergy()._value
    assert compiled.num_list_builds(force, ctx) == 1
    expected = float(np.interp(0.97, np.linspace(0, 1, 101), values))
    assert e == pytest.approx(expected, rel=1e-3) and e > 0


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_cpu_platforms_threads_share_the_rows(threads):
    """On the CPU platform the force uses the platform's threads (each a block of rows with equal pair counts and
    its own force array): the same numbers as one thread, up to the order of the sums."""
    box, n_mol = BOXES["cells"]
    topology = trimers(n_mol, box)
    x = liquid_positions(topology, np.random.default_rng(31))
    system, _ = system_of(TabulatedPairPotential(tables(), cutoff=CUTOFF, layout="compiled"), topology)
    ref_e, ref_f = evaluate(system, x)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"),
                         {"Threads": str(threads)})
    for step in range(3):  # the list built, then reused
        ctx.setPositions(x + 0.01 * step)
        state = ctx.getState(getEnergy=True, getForces=True)
        e_ref, f_ref = evaluate(system, x + 0.01 * step) if step else (ref_e, ref_f)
        assert state.getPotentialEnergy()._value == pytest.approx(e_ref, rel=1e-12)
        np.testing.assert_allclose(state.getForces(asNumpy=True)._value, f_ref, rtol=1e-9, atol=1e-9)


# --- the device kernel (common compute API), tested on OpenCL: pocl runs it on the CPU where no GPU is --------------

@pytest.fixture(scope="module")
def opencl():
    from _debian import require_opencl

    require_opencl()
    why = compiled.device_kernels(retry=True).get("OpenCL", "OpenMM has no OpenCL platform")
    if why is not None:
        pytest.fail(f"the OpenCL kernels of the compiled pair force were not built: {why}")
    return openmm.Platform.getPlatformByName("OpenCL")


def _device_context(system, x, platform, precision="double"):
    ctx = openmm.Context(system, openmm.LangevinMiddleIntegrator(300, 5.0, 0.005), platform,
                         {"Precision": precision})
    ctx.setPositions(x)
    return ctx


@pytest.mark.slow
@pytest.mark.parametrize("box_name", ["cells", "triclinic"])
@pytest.mark.parametrize("exclusions", ["bonded", "none"])
def test_the_opencl_kernel_equals_the_host_kernel(opencl, box_name, exclusions):
    box, n_mol = BOXES[box_name]
    top = trimers(n_mol, box)
    system, forces = system_of(TabulatedPairPotential(tables(), cutoff=CUTOFF, layout="compiled",
                                                      exclusions=exclusions), top)
    x = liquid_positions(top, np.random.default_rng(3))
    e_ref, f_ref = evaluate(system, x)
    ctx = _device_context(system, x, opencl)
    assert compiled.runs_on_device(forces[0], ctx)
    state = ctx.getState(getEnergy=True, getForces=True)
    assert state.getPotentialEnergy()._value == pytest.approx(e_ref, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(state.getForces(asNumpy=True)._value, f_ref, rtol=0, atol=1e-7 * np.abs(f_ref).max())
    # single precision: float coefficients and sums
    single = _device_context(system, x, opencl, "single").getState(getEnergy=True, getForces=True)
    assert single.getPotentialEnergy()._value == pytest.approx(e_ref, rel=1e-5)
    np.testing.assert_allclose(single.getForces(asNumpy=True)._value, f_ref, rtol=0, atol=1e-4 * np.abs(f_ref).max())


@pytest.mark.slow
def test_the_opencl_kernel_survives_reordering_updates_and_missing_pairs(opencl):
    """After 600 steps (OpenMM reorders the atoms every 250) the device's energy and forces still equal the host's
    at the same positions; a type pair without a table does not interact; tables update in place."""
    top = CGTopology(bead_types=tuple(["A", "B", "A"] * 120), molecule_index=np.repeat(np.arange(120), 3),
                     bonds=np.array([[3 * m + i, 3 * m + i + 1] for m in range(120) for i in range(2)]),
                     masses=np.tile([40.0, 30.0, 40.0], 120), box_vectors=np.eye(3) * 3.6)
    no_ab = lambda scale: {k: v for k, v in tables(scale).items() if k != ("A", "B")}  # noqa: E731
    term = TabulatedPairPotential(no_ab(1.0), cutoff=CUTOFF, layout="compiled", exclusions="bonded", missing="zero")
    system, forces = system_of(term, top)
    bond = openmm.HarmonicBondForce()
    for a, b in top.bonds:
        bond.addBond(int(a), int(b), 0.25, 5000.0)
    system.addForce(bond)
    ctx = _device_context(system, liquid_positions(top, np.random.default_rng(4)), opencl)
    ctx.setVelocitiesToTemperature(300, 1)
    ctx.getIntegrator().step(600)
    x = ctx.getState(getPositions=True).getPositions(asNumpy=True)._value

    def device_and_host():
        state = ctx.getState(getEnergy=True, getForces=True)
        return (state.getPotentialEnergy()._value, state.getForces(asNumpy=True)._value), evaluate(system, x)

    for step in ("after 600 steps", "after the update"):
        (e_dev, f_dev), (e_ref, f_ref) = device_and_host()
        assert np.isfinite(e_dev) and e_dev == pytest.approx(e_ref, rel=1e-9), step
        np.testing.assert_allclose(f_dev, f_ref, rtol=0, atol=1e-7 * np.abs(f_ref).max(), err_msg=step)
        if step == "after 600 steps":
            e_before = e_dev
            term.with_tables(no_ab(2.5)).update_context(forces, ctx, top.type_names)
    assert abs(e_dev - e_before) > 1.0   # the update reached the device


@pytest.mark.slow
def test_a_force_that_disagrees_with_it_sends_it_to_the_host(opencl):
    """OpenMM's nonbonded kernel needs identical exclusions: beside a CustomNonbondedForce that excludes other pairs
    the force runs on the host (and says why), beside one with the same exclusions on the device; energies right."""
    from openmm_cgml.forces.tabulated import add_exclusions

    top = trimers(60, np.eye(3) * 3.0)
    x = liquid_positions(top, np.random.default_rng(5))
    for same in (True, False):
        system, forces = system_of(TabulatedPairPotential(tables(), cutoff=CUTOFF, layout="compiled",
                                                          exclusions="bonded"), top)
        other = openmm.CustomNonbondedForce("1e-3*(0.3/r)^6")
        other.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic)
        other.setCutoffDistance(0.9)
        other.setForceGroup(1)
        for _ in range(system.getNumParticles()):
            other.addParticle([])
        if same:
            add_exclusions(other, top, "bonded")
        else:  # the bonds only: 1-3 pairs interact
            for a, b in top.bonds:
                other.addExclusion(int(a), int(b))
        system.addForce(other)
        e_ref, f_ref = evaluate(system, x)
        ctx = _device_context(system, x, opencl)
        assert compiled.runs_on_device(forces[0], ctx) is same
        reason = compiled.host_reason(forces[0], ctx)
        assert reason is None if same else "CustomNonbondedForce (force 1) excludes other pairs" in reason
        state = ctx.getState(getEnergy=True, getForces=True)
        assert state.getPotentialEnergy()._value == pytest.approx(e_ref, rel=1e-9)
        np.testing.assert_allclose(state.getForces(asNumpy=True)._value, f_ref, rtol=0,
                                   atol=1e-7 * np.abs(f_ref).max())


def test_host_platforms_run_the_host_kernel():
    top = trimers(20, np.eye(3) * 2.4)
    system, forces = system_of(TabulatedPairPotential(tables(), cutoff=CUTOFF, layout="compiled"), top)
    for name in ("Reference", "CPU"):
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(name))
        assert not compiled.runs_on_device(forces[0], ctx) and compiled.host_reason(forces[0], ctx) is None


def test_the_cuda_flavour_of_the_device_kernel_compiles(tmp_path):
    """No CUDA platform here (the pip OpenMM has none): the CUDA build of the same source is checked by the
    compiler against OpenMM's CUDA headers, so it builds where OpenMM has the CUDA platform."""
    import shutil
    import subprocess

    _, include, _ = compiled._openmm_dirs()
    cuda = next((d for d in ("/usr/local/cuda/include", "/usr/include") if (Path(d) / "cuda.h").is_file()), None)
    if cuda is None or not (include / "openmm" / "cuda" / "CudaContext.h").is_file() or not shutil.which("c++"):
        pytest.skip("no cuda.h or OpenMM CUDA headers here")
    proc = subprocess.run(["c++", "-fsyntax-only", "-std=c++17", "-DCGML_CUDA", f"-I{include}", f"-I{cuda}",
                           f"-I{compiled.SOURCE_DIR}", str(compiled.SOURCE_DIR / "CGPairTableCommon.cpp")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
