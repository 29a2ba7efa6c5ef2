"""The neural force term inside OpenMM: backends, platforms, priors placement, XML, finite differences, watchdog."""

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

from openmm_cgml.exceptions import InvalidMappingError, InvalidSystemError, SimulationError
from openmm_cgml.forces.neural import EnergyWatchdogReporter, NeuralForceTerm
from openmm_cgml.models import forces_and_energy, load_bundle, save_bundle

BOX = 2.0


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    info = trimer_info(8, box=BOX)
    model = make_model(info, dtype="float64")
    path = tmp_path_factory.mktemp("neural") / "model.cgml"
    save_bundle(path, model, info)
    pos = trimer_positions(info, seed=3)
    energy, forces = forces_and_energy(load_bundle(path).build_model(info), torch.tensor(pos),
                                       torch.tensor(info.box_vectors))
    return {"info": info, "path": path, "pos": pos, "energy": float(energy), "forces": forces.numpy()}


_system = openmm_system


def _evaluate(system, pos, platform="Reference"):
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    ctx.setPositions(pos)
    st = ctx.getState(getEnergy=True, getForces=True)
    return (st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))


@pytest.fixture(scope="module")
def systems(setup):
    """One compiled system per (backend, priors) combination, shared by the tests."""
    out = {}
    for backend in ("torch", "python"):
        for priors in ("openmm", "network"):
            term = NeuralForceTerm(setup["path"], backend=backend, priors=priors)
            out[backend, priors] = _system(setup["info"], term.create_forces(setup["info"]))
    term = NeuralForceTerm(setup["path"], backend="compiled", tabulate=False)  # the network in C++; priors in OpenMM
    out["compiled", "openmm"] = _system(setup["info"], term.create_forces(setup["info"]))
    return out


#: Reference and CPU always; CUDA where this OpenMM has a working CUDA platform (a GPU machine).
PLATFORMS = ["Reference", "CPU"] + [
    name for name in ("CUDA",)
    if name in {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}
]


@pytest.mark.parametrize("backend", ["torch", "python", "compiled"])
@pytest.mark.parametrize("priors", ["openmm", "network"])
@pytest.mark.parametrize("platform", PLATFORMS)
def test_same_energy_and_forces_everywhere(setup, systems, backend, priors, platform):
    if (backend, priors) not in systems:
        pytest.skip("the compiled backend runs the priors in OpenMM only (refused otherwise: test_bad_inputs)")
    energy, forces = _evaluate(systems[backend, priors], setup["pos"], platform)
    scale = np.abs(setup["forces"]).max()
    assert scale > 10.0
    # OpenMM's CPU platform evaluates the custom prior forces in single precision (CUDA: mixed by default)
    tol = 1e-6 if platform == "Reference" or (platform == "CPU" and priors == "network") else 2e-5
    assert energy == pytest.approx(setup["energy"], rel=tol, abs=tol * 10)
    assert np.abs(forces - setup["forces"]).max() < tol * scale


def test_torchforce_without_own_forces_and_float32(setup):
    info = setup["info"]
    term = NeuralForceTerm(setup["path"], outputs_forces=False, dtype="float32", priors="network")
    force = term.create_forces(info)[0]
    assert not force.getOutputsForces() and force.usesPeriodicBoundaryConditions()
    assert force.getProperties()["useCUDAGraphs"] == "false"
    energy, forces = _evaluate(_system(info, [force]), setup["pos"])
    assert energy == pytest.approx(setup["energy"], rel=1e-4)
    assert np.abs(forces - setup["forces"]).max() < 1e-3 * np.abs(setup["forces"]).max()


def test_tabulated_filters_equal_to_exact(setup, systems):
    """The TorchForce term runs the exact filter networks as an inference model (no weight gradients) by
    default, PythonForce tabulated filters (0.001 nm); both give the same energy and forces."""
    info = setup["info"]
    exact_model = NeuralForceTerm(setup["path"], backend="torch").build_model(info)
    assert not exact_model.use_tables and not exact_model.training
    assert not any(p.requires_grad for p in exact_model.parameters())
    assert NeuralForceTerm(setup["path"], backend="python").build_model(info).use_tables  # its faster default
    tab_term = NeuralForceTerm(setup["path"], backend="torch", tabulate=True)
    assert tab_term.build_model(info).use_tables
    e_exact, f_exact = _evaluate(systems["torch", "openmm"], setup["pos"])
    e_tab, f_tab = _evaluate(_system(info, tab_term.create_forces(info)), setup["pos"])
    assert e_tab == pytest.approx(e_exact, rel=1e-9)
    assert np.abs(f_tab - f_exact).max() < 1e-7 * np.abs(f_exact).max()
    with pytest.raises(InvalidSystemError, match="table_spacing"):
        NeuralForceTerm(setup["path"], table_spacing=-0.1)


def test_finite_difference_forces_in_openmm(setup, systems):
    """Finite differences of the default TorchForce energy equal its forces."""
    system = systems["torch", "openmm"]
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    pos = setup["pos"].copy()
    ctx.setPositions(pos)
    forces = ctx.getState(getForces=True).getForces(asNumpy=True).value_in_unit(
        unit.kilojoule_per_mole / unit.nanometer)
    rng = np.random.default_rng(0)
    direction = rng.normal(size=pos.shape)
    direction /= np.linalg.norm(direction)
    h = 1e-5
    energies = []
    for sign in (1, -1):
        ctx.setPositions(pos + sign * h * direction)
        energies.append(ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    numeric = -(energies[0] - energies[1]) / (2 * h)
    analytic = float((forces * direction).sum())
    assert numeric == pytest.approx(analytic, rel=1e-5, abs=1e-4)


_ROUND_TRIP = """
import sys, numpy as np, openmm, openmmtorch
from openmm import unit
from openmm_cgml.forces.xml import load_system
system = load_system(sys.argv[1])
ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
ctx.setPositions(np.load(sys.argv[2]))
st = ctx.getState(getEnergy=True, getForces=True)
np.save(sys.argv[3], np.concatenate([[st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)],
        st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer).ravel()]))
"""


def test_torchforce_xml_round_trip(setup, systems, tmp_path):
    import subprocess
    import sys

    from openmm_cgml.forces.xml import save_system

    system = systems["torch", "openmm"]
    save_system(system, tmp_path / "system.xml")
    assert (tmp_path / "system.xml").read_text().count("encodedFileContents") == 1
    np.save(tmp_path / "pos.npy", setup["pos"])
    # openmm-torch's own deserializer segfaults in the pip build (acellera-openmmtorch-cpu 1.10), so the System
    # is read back with openmm_cgml.forces.xml.load_system, in a fresh process (nothing shared with this one).
    proc = subprocess.run([sys.executable, "-c", _ROUND_TRIP, str(tmp_path / "system.xml"), str(tmp_path / "pos.npy"),
                           str(tmp_path / "out.npy")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = np.load(tmp_path / "out.npy")
    e0, f0 = _evaluate(system, setup["pos"])
    assert out[0] == pytest.approx(e0, rel=1e-12)
    np.testing.assert_allclose(out[1:].reshape(-1, 3), f0, atol=1e-9)


def test_bad_inputs(setup):
    term = NeuralForceTerm(setup["path"])
    with pytest.raises(InvalidSystemError, match="half the smallest box width"):
        term.create_forces(trimer_info(8, box=1.5))  # model cutoff 0.9 nm > 0.75 nm
    with pytest.raises(InvalidMappingError, match="different mapping"):
        term.create_forces(trimer_info(8, box=BOX, types=("B", "A", "B")))
    with pytest.raises(InvalidSystemError, match="backend"):
        NeuralForceTerm(setup["path"], backend="tensorflow")
    with pytest.raises(InvalidSystemError, match="compiled.*priors must be 'openmm'"):
        NeuralForceTerm(setup["path"], backend="compiled", priors="network")


def test_watchdog_reports_the_step(setup, systems):
    from openmm import app

    info = trimer_info(8, box=None)
    topology = app.Topology()
    chain = topology.addChain()
    for _ in range(info.n_beads):
        topology.addAtom("X", None, topology.addResidue("R", chain))
    term = NeuralForceTerm(setup["path"], backend="python", priors="network", strict_mapping=True)
    system = _system(info, term.create_forces(info))
    sim = app.Simulation(topology, system, openmm.VerletIntegrator(0.002), openmm.Platform.getPlatformByName("Reference"))
    pos = setup["pos"].copy()
    pos[3] = pos[0]  # two beads of different molecules on top of each other: infinite repulsion
    sim.context.setPositions(pos)
    sim.reporters.append(EnergyWatchdogReporter(1))
    with pytest.raises(SimulationError, match=r"became (nan|inf) at step 1"):
        sim.step(10)
    # an exploding (finite) energy is caught by the bound
    sim2 = app.Simulation(topology, systems["torch", "openmm"], openmm.VerletIntegrator(0.002),
                          openmm.Platform.getPlatformByName("Reference"))
    sim2.context.setPositions(setup["pos"])
    sim2.reporters.append(EnergyWatchdogReporter(2, maxEnergy=-1e9 * unit.kilojoule_per_mole))
    with pytest.raises(SimulationError, match="exceeded .* at step 2"):
        sim2.step(10)


def test_run_simulation_with_a_torchforce(setup, systems, tmp_path):
    """run_simulation copies the System TorchForce-safely (openmm.XmlSerializer.clone would crash the process)
    and records a trajectory of the neural CG model."""
    from openmm import app

    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.simulation import run_simulation

    info = setup["info"]
    top = app.Topology()
    chain = top.addChain()
    for m in range(int(max(info.molecule_index)) + 1):
        res = top.addResidue("CG", chain)
        for t, mol in zip(info.bead_types, info.molecule_index):
            if mol == m:
                top.addAtom(t, None, res)
    system = systems["torch", "openmm"]
    n_forces = system.getNumForces()
    result = run_simulation(system, top, setup["pos"], tmp_path / "run.h5", temperature="300 K", timestep="5 fs",
                            steps=20, report_interval=10, equilibration_steps=10, box_vectors=info.box_vectors,
                            platform="Reference")
    assert system.getNumForces() == n_forces  # the caller's System is not modified
    ds = open_dataset(result.dataset)
    assert ds.n_frames == 3 and np.isfinite(ds.positions).all()
