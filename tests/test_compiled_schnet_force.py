"""The compiled SchNet network (CGSchNetForce, NeuralForceTerm backend 'compiled'): equal to the PyTorch model,
finite differences, tables, temperature, boxes, XML, in-place updates, NVE, list reuse and bad input."""

import numpy as np
import openmm
import pytest
import torch
from _neural_helpers import (
    _one_torch_thread,  # noqa: F401  (autouse fixture)
    make_model,
    openmm_system,
    trimer_info,
    trimer_positions,
)
from openmm import unit

from openmm_cgml.exceptions import ConfigurationError
from openmm_cgml.forces import compiled
from openmm_cgml.forces.neural import NeuralForceTerm
from openmm_cgml.models import forces_and_energy, save_bundle

pytestmark = pytest.mark.skipif(not compiled.available(), reason=f"no compiled plugin: {compiled.unavailable_reason()}")

KJ_NM = unit.kilojoule_per_mole / unit.nanometer


def _avx2_here() -> bool:
    import os

    saved = os.environ.pop("CGML_SIMD", None)
    try:
        return compiled.simd() == "avx2"
    finally:
        if saved is not None:
            os.environ["CGML_SIMD"] = saved


@pytest.fixture(params=["generic", "avx2"])
def simd(request, monkeypatch):
    """Each of the network's builds (CGML_SIMD, read when a Context is created): the portable code, and the AVX2 +
    FMA code where this CPU and build have it."""
    if request.param == "avx2" and not _avx2_here():
        pytest.skip("no AVX2 + FMA build of the network here (another CPU or compiler)")
    monkeypatch.setenv("CGML_SIMD", request.param)
    assert compiled.simd() == request.param
    return request.param


def _system(info, force):
    return openmm_system(info, [force])


def _context(system, platform="Reference", integrator=None):
    props = {"Threads": "1"} if platform == "CPU" else {}
    return openmm.Context(system, integrator or openmm.VerletIntegrator(0.001),
                          openmm.Platform.getPlatformByName(platform), props)


def _evaluate(ctx, pos):
    ctx.setPositions(pos)
    st = ctx.getState(getEnergy=True, getForces=True)
    return st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole), st.getForces(asNumpy=True).value_in_unit(KJ_NM)


def _network(info, **kwargs):
    """A float64 model without priors (the compiled force is the network alone)."""
    model = make_model(info, **kwargs)
    model.drop_priors()
    model.eval()
    with torch.no_grad():  # larger weights: the network's forces well above rounding
        for parameter in model.parameters():
            parameter.mul_(2.0)
    return model


def _reference(model, info, pos):
    box = None if info.box_vectors is None else torch.tensor(info.box_vectors)
    energy, forces = forces_and_energy(model, torch.tensor(pos), box)
    return float(energy), forces.numpy()


def _triclinic(n_mol=8):
    info = trimer_info(n_mol, box=2.0)
    box = np.array([[2.1, 0.0, 0.0], [0.5, 2.0, 0.0], [-0.4, 0.6, 1.95]])
    from openmm_cgml.topology import CGTopology

    tri = CGTopology(info.bead_types, info.molecule_index, info.bonds, info.masses, box, angles=info.angles)
    return tri, trimer_positions(info, seed=5) @ np.linalg.inv(np.eye(3) * 2.0) @ box


CASES = {
    "cubic": lambda: (trimer_info(8, box=2.0), trimer_positions(trimer_info(8, box=2.0), seed=3)),
    "triclinic": _triclinic,
    "open": lambda: (trimer_info(8, box=None), trimer_positions(trimer_info(8, box=None), seed=4)),
    # 125 molecules in a 3.5 nm box: 3 cells of cutoff + skin per side, so the cell list builds the pairs
    "cells": lambda: (trimer_info(125, box=3.5), trimer_positions(trimer_info(125, box=3.5), seed=6, box=3.5)),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("platform", ["Reference", "CPU"])
def test_exact_filters_equal_the_pytorch_model(case, platform, simd):
    """With exact filters the compiled force is the float64 PyTorch model to rounding: energy and forces."""
    info, pos = CASES[case]()
    model = _network(info)
    energy, forces = _reference(model, info, pos)
    assert np.abs(forces).max() > 1.0  # the network part is not negligible
    force = compiled.make_schnet_force(model.compiled_parameters(), periodic=info.box_vectors is not None,
                                       table_spacing=0.0, double_precision=True)
    ctx = _context(_system(info, force), platform)
    e, f = _evaluate(ctx, pos)
    assert e == pytest.approx(energy, rel=1e-11, abs=1e-9)
    assert np.abs(f - forces).max() < 1e-10 * np.abs(forces).max()
    # a bead moved by box vectors (outside the box) is the same bead
    if info.box_vectors is not None:
        shifted = pos.copy()
        shifted[3] += info.box_vectors[0] - 2 * info.box_vectors[2]
        e2, f2 = _evaluate(ctx, shifted)
        assert e2 == pytest.approx(energy, rel=1e-11, abs=1e-9)
        assert np.abs(f2 - forces).max() < 1e-10 * np.abs(forces).max()


def test_single_precision_agrees_to_float32_rounding(simd):
    """The default single precision (float32 features, weights and tables; double sums) agrees with the float64
    model to float32 rounding, and a float32 bundle runs in it."""
    info, pos = CASES["cubic"]()
    model = _network(info)
    energy, forces = _reference(model, info, pos)
    spec = model.compiled_parameters()
    for spacing in (0.0, 0.001):
        system = _system(info, compiled.make_schnet_force(spec, periodic=True, table_spacing=spacing))
        e, f = _evaluate(_context(system, "CPU"), pos)
        assert e == pytest.approx(energy, rel=1e-5)
        assert np.abs(f - forces).max() < 1e-4 * np.abs(forces).max()
        assert 'double="0"' in openmm.XmlSerializer.serialize(system)


@pytest.mark.parametrize("avx2", [False, True])
def test_the_float32_activation_is_softplus_to_float32_rounding(avx2):
    """The network's float32 activation (shifted softplus, evaluated branch-free so that it vectorises) and its slope
    (the logistic function) against float64, over every regime: the exp range, x ~ 0, beyond PyTorch's threshold
    of 20 and past float32's exp range (a NaN stays NaN)."""
    if avx2 and not _avx2_here():
        pytest.skip("no AVX2 + FMA build of the network here")
    x = np.concatenate([np.linspace(-120, 120, 200_001), np.linspace(-1e-3, 1e-3, 2_001), [np.nan]]).astype(np.float32)
    value, slope = np.empty_like(x), np.empty_like(x)
    lib = compiled.load()
    assert lib.cgml_schnet_ssp_float(x.ctypes.data, value.ctypes.data, slope.ctypes.data, len(x), int(avx2)) == 0
    assert np.isnan(value[-1]) and np.isnan(slope[-1])
    xd = x[:-1].astype(np.float64)
    want = np.logaddexp(0.0, xd) - np.log(2.0)
    want_slope = 1.0 / (1.0 + np.exp(-xd))
    eps = np.finfo(np.float32).eps
    assert (np.abs(value[:-1] - want) / np.maximum(np.abs(want), 1.0)).max() < 2 * eps
    assert (np.abs(slope[:-1] - want_slope) / np.maximum(want_slope, 1e-30))[want_slope > 1e-30].max() < 2 * eps


def test_an_unknown_instruction_set_is_refused(monkeypatch):
    """CGML_SIMD names one of auto, generic and avx2; anything else is an error naming them when the Context is
    created."""
    info, pos = CASES["cubic"]()
    force = compiled.make_schnet_force(_network(info).compiled_parameters(), periodic=True)
    monkeypatch.setenv("CGML_SIMD", "sse9")
    with pytest.raises(Exception, match="expected auto, generic or avx2"):
        _context(_system(info, force), "CPU")
    with pytest.raises(ConfigurationError, match="expected auto, generic or avx2"):
        compiled.simd()


def test_threads_split_the_work_without_changing_the_result():
    """The CPU platform's threads share rows and pairs (per-thread scatter arrays): 2 and 3 threads give one
    thread's energy and forces to rounding (3,000 beads: threads are used from 768 beads per thread)."""
    info = trimer_info(1000, box=7.0)
    pos = trimer_positions(info, seed=2, box=7.0)
    spec = _network(info).compiled_parameters()
    results = []
    for threads in ("1", "2", "3"):
        system = _system(info, compiled.make_schnet_force(spec, periodic=True, double_precision=True))
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"),
                             {"Threads": threads})
        results.append(_evaluate(ctx, pos))
    for e, f in results[1:]:
        assert e == pytest.approx(results[0][0], rel=1e-12)
        assert np.abs(f - results[0][1]).max() < 1e-11 * np.abs(results[0][1]).max()


def test_tables_equal_the_tabulated_pytorch_model_and_approach_the_exact_one():
    """The compiled tables are CGSchNet.tabulate_filters' (same grid, same Hermite cubic): equal to rounding;
    against the exact filters the error is interpolation error and falls as h^4 (energy) and h^3 (forces)."""
    info, pos = CASES["cubic"]()
    model = _network(info)
    exact_e, exact_f = _reference(model, info, pos)
    errors = []
    for spacing in (0.004, 0.002):
        model.tabulate_filters(spacing)
        tab_e, tab_f = _reference(model, info, pos)
        force = compiled.make_schnet_force(model.compiled_parameters(), periodic=True, table_spacing=spacing,
                                           double_precision=True)
        e, f = _evaluate(_context(_system(info, force)), pos)
        assert e == pytest.approx(tab_e, rel=1e-11)
        assert np.abs(f - tab_f).max() < 1e-9 * np.abs(tab_f).max()
        errors.append((abs(e - exact_e), np.abs(f - exact_f).max()))
        model.clear_tables()
    assert 0 < errors[1][1] < errors[0][1] / 4  # O(h^3) in the forces (8x in theory)
    assert errors[1][0] < 1e-5 * abs(exact_e) + 1e-8


def test_finite_differences_and_nve():
    """Forces are minus the gradient of the energy (central differences, tables), and a short NVE run at 2 fs
    keeps the total energy (the tables are C1, the Verlet list is rebuilt as beads move)."""
    info, pos = CASES["cubic"]()
    model = _network(info)
    force = compiled.make_schnet_force(model.compiled_parameters(), periodic=True, table_spacing=0.001,
                                       double_precision=True)
    ctx = _context(_system(info, force))
    _, f = _evaluate(ctx, pos)
    rng = np.random.default_rng(1)
    direction = rng.normal(size=pos.shape)
    direction /= np.linalg.norm(direction)
    h = 1e-5
    energies = [_evaluate(ctx, pos + s * h * direction)[0] for s in (1, -1)]
    assert -(energies[0] - energies[1]) / (2 * h) == pytest.approx(np.sum(f * direction), rel=1e-5)
    # NVE: the network plus a soft repulsion so the run stays bounded
    system = _system(info, compiled.make_schnet_force(model.compiled_parameters(), periodic=True))
    wall = openmm.CustomNonbondedForce("100*(0.3/r)^12")
    wall.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic)
    wall.setCutoffDistance(0.8)
    for _ in range(system.getNumParticles()):
        wall.addParticle([])
    system.addForce(wall)
    ctx = _context(system, "CPU", openmm.VerletIntegrator(0.002))
    ctx.setPositions(pos)
    openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 100)
    ctx.setVelocitiesToTemperature(300.0, 2)

    def total():
        st = ctx.getState(getEnergy=True)
        return (st.getPotentialEnergy() + st.getKineticEnergy()).value_in_unit(unit.kilojoule_per_mole)

    e0 = total()
    ctx.getIntegrator().step(500)
    kinetic = ctx.getState(getEnergy=True).getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert abs(total() - e0) < 0.02 * kinetic
    assert compiled.num_list_builds(system.getForce(0), ctx) > 1  # rebuilt along the run, not at every step
    assert compiled.num_list_builds(system.getForce(0), ctx) < 250


def test_temperature_is_folded_into_the_features():
    """A temperature-aware model: the compiled force at T equals the PyTorch model evaluated at T."""
    info, pos = CASES["cubic"]()
    model = _network(info, temperature={"reference": 300.0, "scale": 50.0, "default": 300.0})
    with torch.no_grad():
        model.temperature_embedding.weight.normal_(0, 1.0)
    results = []
    for kelvin in (280.0, 350.0):
        model.set_temperature(kelvin)
        energy, _ = _reference(model, info, pos)
        force = compiled.make_schnet_force(model.compiled_parameters(), periodic=True, table_spacing=0.0,
                                           double_precision=True)
        e, _ = _evaluate(_context(_system(info, force)), pos)
        assert e == pytest.approx(energy, rel=1e-11)
        results.append(e)
    assert abs(results[0] - results[1]) > 1e-3


def test_xml_round_trip_and_in_place_update(tmp_path):
    """The System's XML holds the weights as numbers and loads through the safe loader; new weights copied into
    a live Context give the new model's energy, and a changed architecture is refused."""
    from openmm_cgml.forces.xml import load_system, save_system

    info, pos = CASES["cubic"]()
    model = _network(info)
    force = compiled.make_schnet_force(model.compiled_parameters(), periodic=True, table_spacing=0.002,
                                       double_precision=True)
    system = _system(info, force)
    e0, f0 = _evaluate(_context(system), pos)
    save_system(system, tmp_path / "system.xml")
    text = (tmp_path / "system.xml").read_text()
    assert 'type="CGSchNetForce"' in text and "pickle" not in text
    e1, f1 = _evaluate(_context(load_system(tmp_path / "system.xml")), pos)
    assert e1 == pytest.approx(e0, rel=1e-13)
    assert np.abs(f1 - f0).max() < 1e-11 * np.abs(f0).max()

    other = _network(info, seed=7)
    ctx = _context(system)
    ctx.setPositions(pos)
    compiled.set_schnet_parameters(force, other.compiled_parameters()["parameters"])
    compiled.update_in_context(force, ctx)
    e_new = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    other.tabulate_filters(0.002)
    assert e_new == pytest.approx(_reference(other, info, pos)[0], rel=1e-11)
    assert abs(e_new - e0) > 1e-3
    with pytest.raises(ConfigurationError, match="needs 256 values"):
        compiled.set_schnet_parameters(force, {"intra0.in2f.weight": np.zeros(5)})
    with pytest.raises(ConfigurationError, match="no parameter 'intra9.in2f.weight'"):
        compiled.set_schnet_parameters(force, {"intra9.in2f.weight": np.zeros(256)})


def test_bad_input_is_refused():
    info, pos = CASES["cubic"]()
    model = _network(info)
    spec = model.compiled_parameters()
    broken = {**spec, "parameters": {**spec["parameters"], "readout1.bias": np.full(8, np.nan)}}
    with pytest.raises(ConfigurationError, match="readout1.bias.*NaN"):
        compiled.make_schnet_force(broken, periodic=True)
    missing = {**spec, "parameters": {k: v for k, v in spec["parameters"].items() if k != "inter1.out2.bias"}}
    force = compiled.make_schnet_force(missing, periodic=True)
    with pytest.raises(openmm.OpenMMException, match="inter1.out2.bias' was not set"):
        _context(_system(info, force))
    with pytest.raises(ConfigurationError, match="table_spacing and skin"):
        compiled.make_schnet_force(spec, periodic=True, table_spacing=-1.0)
    force = compiled.make_schnet_force(spec, periodic=True)
    small = trimer_info(4, box=2.0)
    with pytest.raises(openmm.OpenMMException, match="exactly as many particles"):
        _context(_system(small, force))
    narrow = _system(info, compiled.make_schnet_force(spec, periodic=True))
    narrow.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*v) for v in np.eye(3) * 1.6))
    ctx = _context(narrow)
    ctx.setPositions(pos * 0.8)
    with pytest.raises(openmm.OpenMMException, match="exceeds half the periodic box"):
        ctx.getState(getEnergy=True)
    prior_only = make_model(info, use_network=False)
    with pytest.raises(ConfigurationError, match="prior-only"):
        prior_only.compiled_parameters()


def test_auto_backend_picks_the_compiled_force_on_the_cpu(tmp_path):
    """On a machine without a GPU platform, 'auto' runs a CGSchNet bundle as the compiled force, with the same
    energy as TorchForce; the term's data keeps 'auto' so the choice is remade where the System is built."""
    info, pos = CASES["cubic"]()
    model = make_model(info)
    save_bundle(tmp_path / "m.cgml", model, info)
    platforms = {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}
    term = NeuralForceTerm(tmp_path / "m.cgml")
    if platforms & {"CUDA", "HIP"}:
        assert term.resolved_backend() in ("torch", "python")
        return
    assert term.resolved_backend() == "compiled" and term.tabulate
    assert term.to_data()["backend"] == "auto"
    forces = term.create_forces(info)
    assert compiled.is_schnet_force(forces[0]) and forces[0].getName() == "network"
    e, f = _evaluate(_context(openmm_system(info, forces)), pos)
    energy, ref_f = _reference(make_model(info), info, pos)
    assert e == pytest.approx(energy, rel=1e-6)
    assert np.abs(f - ref_f).max() < 1e-5 * np.abs(ref_f).max()


def test_the_intramolecular_block_switched_off_by_its_cutoff():
    """With ``intra_cutoff`` below every bond (chains left to their priors), the compiled force is still the
    float64 PyTorch model: intermolecular forces only, none within a lone molecule."""
    info, pos = CASES["cubic"]()
    model = _network(info, intra_cutoff=0.05)
    energy, forces = _reference(model, info, pos)
    assert np.abs(forces).max() > 1.0
    force = compiled.make_schnet_force(model.compiled_parameters(), periodic=True, table_spacing=0.0,
                                       double_precision=True)
    e, f = _evaluate(_context(_system(info, force), "CPU"), pos)
    assert e == pytest.approx(energy, rel=1e-11, abs=1e-9)
    assert np.abs(f - forces).max() < 1e-10 * np.abs(forces).max()
    lone = trimer_info(1, box=None)
    model = _network(lone, intra_cutoff=0.05)
    force = compiled.make_schnet_force(model.compiled_parameters(), periodic=False, table_spacing=0.0,
                                       double_precision=True)
    e, f = _evaluate(_context(_system(lone, force), "CPU"), trimer_positions(lone, box=1.0))
    assert np.abs(f).max() == 0.0
